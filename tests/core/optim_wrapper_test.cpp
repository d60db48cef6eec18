// The optim wrapper on a tiny model: paramwise rules, accumulation, clipping, gradient
// synchronisation, autocast, loss scaling, lr access and its state.
#include <gtest/gtest.h>

#include <cstdio>
#include <deque>
#include <fstream>
#include <limits>
#include <optional>

#include <ATen/autocast_mode.h>
#include <torch/optim/sgd.h>
#include <torch/torch.h>

#include <selfsup/core/builtins.h>
#include <selfsup/core/checkpoint.h>
#include <selfsup/core/optim_wrapper.h>
#include <selfsup/core/optimizers.h>
#include <selfsup/dist.h>
#include <selfsup/registry.h>

#include "test_support.h"

using namespace selfsup;

namespace {

// Groups in MMEngine's order: the root's own "scale", then fc, bn, head.
struct TinyNet : torch::nn::Module {
  TinyNet() {
    scale = register_parameter("scale", torch::ones({2}));
    fc = register_module("fc", torch::nn::Linear(3, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
    head = register_module("head", torch::nn::Linear(2, 1));
  }
  torch::Tensor scale;
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Linear head{nullptr};
};

// One parameter w = [1, 2].
struct OneParam : torch::nn::Module {
  OneParam() { w = register_parameter("w", torch::tensor({1.0f, 2.0f})); }
  torch::Tensor w;
};

class OptimWrapperTest : public ::testing::Test {
protected:
  void SetUp() override { core::register_builtins(registry_); }

  std::unique_ptr<core::OptimWrapper> wrap(const std::string& json, torch::nn::Module& model,
                                           std::optional<torch::Device> device = std::nullopt) {
    return std::make_unique<core::OptimWrapper>(
        Config(Json::parse(json, "test"), "optim_wrapper").with_registry(registry_), model, device);
  }
  std::string error_of(const std::string& json, torch::nn::Module& model,
                       std::optional<torch::Device> device = std::nullopt) {
    return test::message_of<ConfigError>([&] { (void)wrap(json, model, device); });
  }
  /// Group name -> the group's value of `key` in the state dict (PyTorch's layout).
  static std::map<std::string, double> per_group(const core::OptimWrapper& w,
                                                 const std::string& key) {
    std::map<std::string, double> out;
    const auto groups = w.state_dict().toGenericDict().at("param_groups").toList();
    for (size_t i = 0; i < groups.size(); ++i)
      out[w.group_name(i)] = groups.get(i).toGenericDict().at(key).toDouble();
    return out;
  }

  Registry registry_;
};

const char* kSgd = R"({"type": "SGD", "lr": 0.1, "weight_decay": 0.01})";

std::string with_paramwise(const std::string& paramwise) {
  return std::string(R"({"optimizer": )") + kSgd + R"(, "paramwise_cfg": )" + paramwise + "}";
}

} // namespace

TEST_F(OptimWrapperTest, OneGroupPerParameterInMMEngineOrder) {
  TinyNet net;
  auto w = wrap(std::string(R"({"type": "OptimWrapper", "optimizer": )") + kSgd + "}", net);
  const std::vector<std::string> names{"scale",   "fc.weight",   "fc.bias",  "bn.weight",
                                       "bn.bias", "head.weight", "head.bias"};
  ASSERT_EQ(w->num_groups(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(w->group_name(i), names[i]);
    EXPECT_EQ(w->optimizer().param_groups()[i].params().size(), 1u);
    EXPECT_DOUBLE_EQ(w->initial_lr(i), 0.1);
  }
  EXPECT_NE(dynamic_cast<torch::optim::SGD*>(&w->optimizer()), nullptr);
  EXPECT_EQ(w->autocast(torch::kCPU), nullptr); // not an AmpOptimWrapper
}

TEST_F(OptimWrapperTest, DecayRulesFollowMMEngineOrder) {
  TinyNet net;
  // bias_decay_mult alone covers norm biases too; norm weights keep the base decay.
  auto wd = per_group(*wrap(with_paramwise(R"({"bias_decay_mult": 0})"), net), "weight_decay");
  EXPECT_DOUBLE_EQ(wd.at("fc.bias"), 0.0);
  EXPECT_DOUBLE_EQ(wd.at("bn.bias"), 0.0);
  EXPECT_DOUBLE_EQ(wd.at("bn.weight"), 0.01);
  EXPECT_DOUBLE_EQ(wd.at("fc.weight"), 0.01);
  EXPECT_DOUBLE_EQ(wd.at("scale"), 0.01);
  // norm_decay_mult takes every norm parameter first.
  wd = per_group(*wrap(with_paramwise(R"({"norm_decay_mult": 0, "bias_decay_mult": 2})"), net),
                 "weight_decay");
  EXPECT_DOUBLE_EQ(wd.at("bn.weight"), 0.0);
  EXPECT_DOUBLE_EQ(wd.at("bn.bias"), 0.0);
  EXPECT_DOUBLE_EQ(wd.at("fc.bias"), 0.02);
  // flat_decay_mult: every other one-dimensional parameter, after the bias rule.
  wd = per_group(*wrap(with_paramwise(R"({"flat_decay_mult": 0, "bias_decay_mult": 3})"), net),
                 "weight_decay");
  EXPECT_DOUBLE_EQ(wd.at("scale"), 0.0);
  EXPECT_DOUBLE_EQ(wd.at("bn.weight"), 0.0);
  EXPECT_DOUBLE_EQ(wd.at("fc.bias"), 0.03);
  EXPECT_DOUBLE_EQ(wd.at("fc.weight"), 0.01);
  // bias_lr_mult: biases but norm layers'.
  auto lr = per_group(*wrap(with_paramwise(R"({"bias_lr_mult": 2})"), net), "lr");
  EXPECT_DOUBLE_EQ(lr.at("fc.bias"), 0.2);
  EXPECT_DOUBLE_EQ(lr.at("head.bias"), 0.2);
  EXPECT_DOUBLE_EQ(lr.at("bn.bias"), 0.1);
}

TEST_F(OptimWrapperTest, TheLongestCustomKeyWinsAndReplacesTheOtherRules) {
  TinyNet net;
  auto w = wrap(with_paramwise(R"({"norm_decay_mult": 5, "custom_keys": {
      "bn": {"decay_mult": 0}, "bn.weight": {"decay_mult": 3, "lr_mult": 0.5},
      "hea": {"lr_mult": 2}, "ead": {"lr_mult": 4}}})"),
                net);
  auto wd = per_group(*w, "weight_decay");
  auto lr = per_group(*w, "lr");
  EXPECT_DOUBLE_EQ(wd.at("bn.weight"), 0.03);
  EXPECT_DOUBLE_EQ(lr.at("bn.weight"), 0.05);
  EXPECT_DOUBLE_EQ(wd.at("bn.bias"), 0.0); // "bn", not the norm rule
  EXPECT_DOUBLE_EQ(lr.at("bn.bias"), 0.1);
  // Equal lengths: alphabetical order ("ead" before "hea").
  EXPECT_DOUBLE_EQ(lr.at("head.weight"), 0.4);
  EXPECT_DOUBLE_EQ(w->initial_lr(5), 0.4);
}

TEST_F(OptimWrapperTest, CustomKeysCarryTheOptimizersGroupOptions) {
  TinyNet net;
  auto w = wrap(R"({"optimizer": {"type": "LARS", "lr": 0.3, "momentum": 0.9},
      "paramwise_cfg": {"custom_keys": {"bn": {"decay_mult": 0, "lars_exclude": true},
                                        "head": {"momentum": 0.5}}}})",
                net);
  ASSERT_NE(dynamic_cast<core::LARS*>(&w->optimizer()), nullptr);
  for (size_t i = 0; i < w->num_groups(); ++i) {
    const auto& o =
        static_cast<const core::LARSOptions&>(w->optimizer().param_groups()[i].options());
    const std::string& name = w->group_name(i);
    EXPECT_EQ(o.lars_exclude(), name.rfind("bn.", 0) == 0) << name;
    EXPECT_DOUBLE_EQ(o.momentum(), name.rfind("head.", 0) == 0 ? 0.5 : 0.9) << name;
  }
  // A key the optimizer does not know is an error naming the custom key.
  EXPECT_TRUE(test::has_substr(
      error_of(with_paramwise(R"({"custom_keys": {"bn": {"lars_exclude": true}}})"), net),
      "optim_wrapper.paramwise_cfg.custom_keys.bn.lars_exclude: unknown key"));
  EXPECT_TRUE(test::has_substr(
      error_of(with_paramwise(R"({"custom_keys": {"bn": {"decay_mult": -1}}})"), net),
      "optim_wrapper.paramwise_cfg.custom_keys.bn.decay_mult: expected float >= 0"));
}

// MMEngine's `param_group[k] = v`: a custom key's lr, weight_decay and momentum reach the
// group as given (an explicit lr wins over lr_mult).
TEST_F(OptimWrapperTest, CustomKeysPassEveryKeyIntoTheGroup) {
  TinyNet net;
  auto w = wrap(with_paramwise(R"({"custom_keys": {
      "head": {"lr": 0.03, "weight_decay": 0.5, "momentum": 0.7, "lr_mult": 10},
      "fc": {"lr_mult": 2, "decay_mult": 3, "nesterov": false}}})"),
                net);
  auto lr = per_group(*w, "lr");
  auto wd = per_group(*w, "weight_decay");
  auto momentum = per_group(*w, "momentum");
  EXPECT_DOUBLE_EQ(lr.at("head.weight"), 0.03);
  EXPECT_DOUBLE_EQ(lr.at("head.bias"), 0.03);
  EXPECT_DOUBLE_EQ(wd.at("head.weight"), 0.5);
  EXPECT_DOUBLE_EQ(momentum.at("head.weight"), 0.7);
  EXPECT_DOUBLE_EQ(momentum.at("fc.weight"), 0.0); // the optimizer's own
  EXPECT_DOUBLE_EQ(lr.at("fc.weight"), 0.2);
  EXPECT_DOUBLE_EQ(wd.at("fc.bias"), 0.03);
  EXPECT_DOUBLE_EQ(w->initial_lr(5), 0.03);
  EXPECT_TRUE(
      test::has_substr(error_of(with_paramwise(R"({"custom_keys": {"fc": {"lr": -1}}})"), net),
                       "optim_wrapper.paramwise_cfg.custom_keys.fc.lr: expected float >= 0"));
}

// A depth-wise conv (groups == in_channels) and a parameter shared by two modules.
struct ConvNet : torch::nn::Module {
  ConvNet() {
    dw = register_module("dw",
                         torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 4, 3).groups(4).bias(true)));
    pw = register_module("pw", torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 8, 1).bias(true)));
    bn = register_module("bn", torch::nn::BatchNorm2d(8));
  }
  torch::nn::Conv2d dw{nullptr}, pw{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};

TEST_F(OptimWrapperTest, DwconvDecayMultAfterTheNormAndBiasRules) {
  ConvNet net;
  auto wd = per_group(
      *wrap(
          with_paramwise(R"({"dwconv_decay_mult": 0, "bias_decay_mult": 2, "flat_decay_mult": 3})"),
          net),
      "weight_decay");
  EXPECT_DOUBLE_EQ(wd.at("dw.weight"), 0.0);
  EXPECT_DOUBLE_EQ(wd.at("dw.bias"), 0.02); // the bias rule comes first
  EXPECT_DOUBLE_EQ(wd.at("pw.weight"), 0.01);
  EXPECT_DOUBLE_EQ(wd.at("bn.weight"), 0.03); // flat
  // norm_decay_mult before all.
  wd = per_group(*wrap(with_paramwise(R"({"dwconv_decay_mult": 0, "norm_decay_mult": 4})"), net),
                 "weight_decay");
  EXPECT_DOUBLE_EQ(wd.at("bn.bias"), 0.04);
  EXPECT_DOUBLE_EQ(wd.at("dw.bias"), 0.0);
  // Without it the depth-wise conv keeps the base decay.
  wd = per_group(*wrap(with_paramwise(R"({"bias_decay_mult": 2})"), net), "weight_decay");
  EXPECT_DOUBLE_EQ(wd.at("dw.weight"), 0.01);
}

TEST_F(OptimWrapperTest, ASharedParameterNeedsBypassDuplicate) {
  ConvNet net;
  auto tied = std::make_shared<torch::nn::Module>();
  tied->register_parameter("weight", net.pw->weight);
  net.register_module("tied", tied);
  // Without paramwise_cfg (MMEngine passes model.parameters()) it is listed once.
  auto plain = wrap(std::string(R"({"optimizer": )") + kSgd + "}", net);
  EXPECT_EQ(plain->num_groups(), 6u);
  EXPECT_TRUE(test::has_substr(
      error_of(with_paramwise(R"({"bias_decay_mult": 0})"), net),
      "optim_wrapper.paramwise_cfg: parameter tied.weight is pw.weight (one parameter registered "
      "by two modules)"));
  auto w = wrap(with_paramwise(R"({"bias_decay_mult": 0, "bypass_duplicate": true})"), net);
  EXPECT_EQ(w->num_groups(), 6u);
  EXPECT_EQ(w->group_name(2), "pw.weight");
}

// MMEngine gives a parameter that needs no gradient a plain group.
TEST_F(OptimWrapperTest, FrozenParametersGetNoRule) {
  TinyNet net;
  net.fc->bias.requires_grad_(false);
  auto w = wrap(with_paramwise(R"({"bias_decay_mult": 0, "bias_lr_mult": 3})"), net);
  auto wd = per_group(*w, "weight_decay");
  auto lr = per_group(*w, "lr");
  EXPECT_DOUBLE_EQ(wd.at("fc.bias"), 0.01);
  EXPECT_DOUBLE_EQ(lr.at("fc.bias"), 0.1);
  EXPECT_DOUBLE_EQ(lr.at("head.bias"), 0.3);
}

TEST_F(OptimWrapperTest, ConfigErrorsNameTheirPath) {
  TinyNet net;
  auto cfg = [](const std::string& rest) {
    return std::string(R"({"optimizer": )") + kSgd + rest + "}";
  };
  EXPECT_TRUE(test::has_substr(error_of(cfg(R"(, "type": "Wrapper")"), net),
                               "optim_wrapper.type: expected"));
  EXPECT_TRUE(test::has_substr(error_of(R"({"type": "OptimWrapper"})", net),
                               "optim_wrapper.optimizer: required key is missing"));
  EXPECT_TRUE(test::has_substr(error_of(cfg(R"(, "accumulative_counts": 0)"), net),
                               "optim_wrapper.accumulative_counts: expected int >= 1"));
  EXPECT_TRUE(test::has_substr(error_of(cfg(R"(, "dtype": "bfloat16")"), net),
                               "optim_wrapper.dtype: only AmpOptimWrapper takes a dtype"));
  EXPECT_TRUE(
      test::has_substr(error_of(cfg(R"(, "type": "AmpOptimWrapper", "dtype": "float16")"), net),
                       "optim_wrapper.dtype: float16 autocast needs CUDA (--device cuda)"));
  EXPECT_TRUE(test::has_substr(error_of(cfg(R"(, "type": "AmpOptimWrapper", "dtype": "float16")"),
                                        net, torch::Device(torch::kCPU)),
                               "optim_wrapper.dtype: float16 autocast needs CUDA"));
  EXPECT_TRUE(
      test::has_substr(error_of(cfg(R"(, "type": "AmpOptimWrapper", "dtype": "float32")"), net),
                       "optim_wrapper.dtype: expected one of"));
  EXPECT_TRUE(test::has_substr(error_of(cfg(R"(, "clip_grad": {"norm_type": 2})"), net),
                               "optim_wrapper.clip_grad.max_norm: required key is missing"));
  EXPECT_TRUE(test::has_substr(error_of(cfg(R"(, "clip_grad": {"max_norm": 1, "x": 2})"), net),
                               "optim_wrapper.clip_grad.x: unknown key"));
  EXPECT_TRUE(test::has_substr(error_of(cfg(R"(, "paramwise_cfg": {"norm_decay": 0})"), net),
                               "optim_wrapper.paramwise_cfg.norm_decay: unknown key"));
  EXPECT_TRUE(test::has_substr(error_of(R"({"optimizer": {"type": "Adamm", "lr": 0.1}})", net),
                               "optim_wrapper.optimizer.type: unknown optimizer type 'Adamm'"));
  OneParam frozen;
  frozen.w.requires_grad_(false);
  EXPECT_TRUE(test::has_substr(error_of(cfg(""), frozen),
                               "optim_wrapper: the model has no trainable parameters"));
}

TEST_F(OptimWrapperTest, AccumulationStepsEveryNIterationsAndAtTheEndWithTheMeanGradient) {
  OneParam net;
  auto w = wrap(R"({"optimizer": {"type": "SGD", "lr": 1.0}, "accumulative_counts": 3})", net);
  // 8 iterations: windows {0,1,2}, {3,4,5} of 3 and the tail {6,7} of 2.
  std::vector<int64_t> stepped;
  std::vector<std::pair<std::string, double>> scalars;
  std::vector<double> expected{1.0, 2.0};
  double window_sum = 0;
  for (int64_t it = 0; it < 8; ++it) {
    const double c = double(it + 1);
    window_sum += c;
    if (w->update_params((net.w * torch::tensor({c, -c})).sum(), it, 8, scalars)) {
      stepped.push_back(it);
      const double len = it < 6 ? 3 : 2;
      expected[0] -= window_sum / len;
      expected[1] += window_sum / len;
      window_sum = 0;
      EXPECT_FALSE(net.w.grad().defined()) << "gradients are dropped after a step";
    }
  }
  EXPECT_EQ(stepped, (std::vector<int64_t>{2, 5, 7}));
  EXPECT_NEAR(net.w[0].item<double>(), expected[0], 1e-5);
  EXPECT_NEAR(net.w[1].item<double>(), expected[1], 1e-5);
  EXPECT_TRUE(scalars.empty()); // no clipping, no grad_norm
}

TEST_F(OptimWrapperTest, ClipsByNormAndLogsTheNormBeforeClipping) {
  OneParam net;
  auto w = wrap(R"({"optimizer": {"type": "SGD", "lr": 1.0},
                   "clip_grad": {"max_norm": 5.0, "norm_type": 2}})",
                net);
  std::vector<std::pair<std::string, double>> scalars;
  ASSERT_TRUE(w->update_params((net.w * torch::tensor({30.0f, 40.0f})).sum(), 0, 1, scalars));
  ASSERT_EQ(scalars.size(), 1u);
  EXPECT_EQ(scalars[0].first, "grad_norm");
  EXPECT_NEAR(scalars[0].second, 50.0, 1e-4);
  EXPECT_NEAR(net.w[0].item<double>(), 1.0 - 3.0, 1e-4);
  EXPECT_NEAR(net.w[1].item<double>(), 2.0 - 4.0, 1e-4);

  OneParam other;
  auto v = wrap(R"({"optimizer": {"type": "SGD", "lr": 1.0},
                   "clip_grad": {"type": "value", "clip_value": 0.5}})",
                other);
  scalars.clear();
  ASSERT_TRUE(v->update_params((other.w * torch::tensor({3.0f, -0.25f})).sum(), 0, 1, scalars));
  EXPECT_TRUE(scalars.empty());
  EXPECT_NEAR(other.w[0].item<double>(), 1.0 - 0.5, 1e-6);
  EXPECT_NEAR(other.w[1].item<double>(), 2.0 + 0.25, 1e-6);
}

TEST_F(OptimWrapperTest, ErrorIfNonfiniteStopsOnANanNormAsTorch) {
  OneParam net;
  auto w = wrap(R"({"optimizer": {"type": "SGD", "lr": 1.0},
                   "clip_grad": {"max_norm": 5.0, "error_if_nonfinite": true}})",
                net);
  std::vector<std::pair<std::string, double>> scalars;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] {
        (void)w->update_params((net.w * torch::tensor({nan, 1.0f})).sum(), 0, 1, scalars);
      }),
      "error_if_nonfinite: true"));
  // false (torch's default, as MoCo v3's config): the step goes on.
  OneParam other;
  auto v = wrap(R"({"optimizer": {"type": "SGD", "lr": 1.0},
                   "clip_grad": {"max_norm": 5.0, "error_if_nonfinite": false}})",
                other);
  scalars.clear();
  EXPECT_TRUE(v->update_params((other.w * torch::tensor({nan, 1.0f})).sum(), 0, 1, scalars));
  TinyNet net2;
  EXPECT_TRUE(test::has_substr(
      error_of(
          std::string(R"({"optimizer": )") + kSgd +
              R"(, "clip_grad": {"type": "value", "clip_value": 1, "error_if_nonfinite": true}})",
          net2),
      "optim_wrapper.clip_grad.error_if_nonfinite: only clip_grad of type 'norm'"));
}

TEST_F(OptimWrapperTest, LossScaleOnlyForAmpAndLoggedAsUnneeded) {
  TinyNet net;
  auto cfg = [](const std::string& rest) {
    return std::string(R"({"optimizer": )") + kSgd + rest + "}";
  };
  testing::internal::CaptureStderr();
  (void)wrap(cfg(R"(, "type": "AmpOptimWrapper", "loss_scale": "dynamic")"), net);
  (void)wrap(cfg(R"(, "type": "AmpOptimWrapper", "loss_scale": 512.0)"), net);
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(test::has_substr(log, "optim_wrapper.loss_scale \"dynamic\": no loss scaling"));
  EXPECT_TRUE(test::has_substr(log, "optim_wrapper.loss_scale 512"));
  EXPECT_TRUE(
      test::has_substr(error_of(cfg(R"(, "loss_scale": "dynamic")"), net),
                       "optim_wrapper.loss_scale: only AmpOptimWrapper takes a loss_scale"));
  EXPECT_TRUE(
      test::has_substr(error_of(cfg(R"(, "type": "AmpOptimWrapper", "loss_scale": "static")"), net),
                       "optim_wrapper.loss_scale: expected \"dynamic\", a number > 0"));
  EXPECT_TRUE(test::has_substr(
      error_of(cfg(R"(, "type": "AmpOptimWrapper", "loss_scale": {"growth_interval": 0})"), net),
      "optim_wrapper.loss_scale.growth_interval: expected int >= 1"));
  EXPECT_TRUE(test::has_substr(
      error_of(cfg(R"(, "type": "AmpOptimWrapper", "loss_scale": -1)"), net), "number > 0"));
}

namespace {
// A world of two ranks seen from rank 0: each sum adds the other rank's next tensor.
class FakeTwoRanks final : public Distributed {
public:
  std::deque<torch::Tensor> other; // what rank 1 contributes, call by call
  int calls = 0;
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    ++calls;
    ASSERT_EQ(op, ReduceOp::Sum);
    ASSERT_FALSE(other.empty());
    ASSERT_EQ(t.sizes(), other.front().sizes());
    t.add_(other.front());
    other.pop_front();
  }
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override { return {t, t}; }
  torch::Tensor all_gather_with_grad(const torch::Tensor& t) override { return t; }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
};

struct DistGuard {
  explicit DistGuard(std::shared_ptr<Distributed> d) { set_dist(std::move(d)); }
  ~DistGuard() { set_dist(nullptr); }
};

struct TwoParams : torch::nn::Module {
  TwoParams() {
    a = register_parameter("a", torch::zeros({2}));
    b = register_parameter("b", torch::zeros({1}));
    c = register_parameter("c", torch::zeros({1}));
  }
  torch::Tensor a, b, c;
};
} // namespace

TEST_F(OptimWrapperTest, SynchronisesTheMeanGradientAcrossRanks) {
  TwoParams net;
  auto w = wrap(R"({"optimizer": {"type": "SGD", "lr": 1.0}})", net);
  auto fake = std::make_shared<FakeTwoRanks>();
  // Rank 1 has gradients for a and b (b unused here), none for c; then its flat gradients.
  fake->other.push_back(torch::tensor({1.0f, 1.0f, 0.0f}));
  fake->other.push_back(torch::tensor({4.0f, 6.0f, 8.0f}));
  DistGuard guard(fake);
  std::vector<std::pair<std::string, double>> scalars;
  ASSERT_TRUE(w->update_params((net.a * torch::tensor({2.0f, 2.0f})).sum(), 0, 1, scalars));
  EXPECT_EQ(fake->calls, 2);
  EXPECT_TRUE(torch::allclose(net.a, torch::tensor({-3.0f, -4.0f}))); // -(2 + 4) / 2, -(2 + 6) / 2
  EXPECT_TRUE(torch::allclose(net.b, torch::tensor({-4.0f})));        // -(0 + 8) / 2
  EXPECT_TRUE(torch::equal(net.c, torch::zeros({1})));                // no rank had one
}

TEST_F(OptimWrapperTest, AmpOptimWrapperAutocastsInBf16AndRestores) {
  OneParam net;
  auto w = wrap(R"({"type": "AmpOptimWrapper", "optimizer": {"type": "SGD", "lr": 0.1}})", net);
  EXPECT_TRUE(w->amp());
  ASSERT_FALSE(at::autocast::is_cpu_enabled());
  {
    auto guard = w->autocast(torch::kCPU);
    ASSERT_NE(guard, nullptr);
    EXPECT_TRUE(at::autocast::is_cpu_enabled());
    EXPECT_EQ(at::autocast::get_autocast_cpu_dtype(), at::kBFloat16);
    auto y = torch::mm(torch::ones({2, 2}), torch::ones({2, 2}));
    EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
}

TEST_F(OptimWrapperTest, LrAndStateRoundTrip) {
  TinyNet net;
  auto w = wrap(with_paramwise(R"({"custom_keys": {"head": {"lr_mult": 10}}})"), net);
  w->set_lr(6, 0.5);
  EXPECT_DOUBLE_EQ(w->lr(6), 0.5);
  EXPECT_DOUBLE_EQ(w->initial_lr(6), 1.0);
  const auto state = w->state_dict();
  const auto g6 = state.toGenericDict().at("param_groups").toList().get(6).toGenericDict();
  EXPECT_DOUBLE_EQ(g6.at("initial_lr").toDouble(), 1.0);
  EXPECT_DOUBLE_EQ(g6.at("lr").toDouble(), 0.5);

  TinyNet copy;
  auto v = wrap(with_paramwise(R"({"custom_keys": {"head": {"lr_mult": 10}}})"), copy);
  v->load_state_dict(torch::pickle_load(torch::pickle_save(state)));
  EXPECT_DOUBLE_EQ(v->lr(6), 0.5);
  EXPECT_DOUBLE_EQ(v->initial_lr(6), 1.0);
  // Another model has other groups: the state does not fit.
  OneParam other;
  auto u = wrap(R"({"optimizer": {"type": "SGD", "lr": 0.1}})", other);
  EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] { u->load_state_dict(state); }),
                               "optimizer state (SGD): 7 param groups saved, the optimizer has 1"));
}

// ---- Loss scaling (AmpOptimWrapper on CUDA) -----------------------------------------------
//
// The wrapper is told it runs on CUDA, which gives it float16 autocast and a loss scaler; the
// model and its gradients stay float32 on the CPU, where the scaler's arithmetic is the same.

namespace {
const torch::Device kCuda(torch::kCUDA);

std::string amp_sgd(const std::string& rest, const std::string& lr = "1.0") {
  return R"({"type": "AmpOptimWrapper", "optimizer": {"type": "SGD", "lr": )" + lr + "}" + rest +
         "}";
}

double last_scalar(const std::vector<std::pair<std::string, double>>& scalars,
                   const std::string& name) {
  for (auto it = scalars.rbegin(); it != scalars.rend(); ++it)
    if (it->first == name) return it->second;
  return std::numeric_limits<double>::quiet_NaN();
}
} // namespace

TEST_F(OptimWrapperTest, AmpOnCudaScalesTheLossWhateverTheDtypeAsMMEngine) {
  OneParam net;
  auto w = wrap(amp_sgd(""), net, kCuda);
  EXPECT_EQ(w->cast_dtype(), torch::kHalf); // torch's CUDA autocast default
  ASSERT_NE(w->loss_scaler(), nullptr);
  EXPECT_TRUE(w->loss_scaler()->dynamic());
  EXPECT_EQ(w->loss_scaler()->scale(), 65536.0);
  auto b = wrap(amp_sgd(R"(, "dtype": "bfloat16", "loss_scale": 128.0)"), net, kCuda);
  EXPECT_EQ(b->cast_dtype(), torch::kBFloat16);
  ASSERT_NE(b->loss_scaler(), nullptr); // MMEngine builds a GradScaler for any dtype
  EXPECT_FALSE(b->loss_scaler()->dynamic());
  EXPECT_EQ(b->loss_scaler()->scale(), 128.0);
  EXPECT_EQ(wrap(amp_sgd(R"(, "loss_scale": {"enabled": false})"), net, kCuda)->loss_scaler(),
            nullptr);
  EXPECT_EQ(wrap(R"({"optimizer": {"type": "SGD", "lr": 1.0}})", net, kCuda)->loss_scaler(),
            nullptr);
  // The CPU: bfloat16 and no scaler (torch's GradScaler disables itself without CUDA).
  auto cpu = wrap(amp_sgd(""), net);
  EXPECT_EQ(cpu->cast_dtype(), torch::kBFloat16);
  EXPECT_EQ(cpu->loss_scaler(), nullptr);
  // A wrapper built for float16 on CUDA does not autocast on the CPU.
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { (void)w->autocast(torch::kCPU); }),
                       "optim_wrapper.dtype: float16 autocast on the CPU"));
}

TEST_F(OptimWrapperTest, AnInjectedInfGradientSkipsTheStepKeepsTheWeightsAndHalvesTheScale) {
  OneParam net;
  auto w = wrap(amp_sgd(""), net, kCuda);
  std::vector<std::pair<std::string, double>> scalars;
  net.w.mutable_grad() = torch::tensor({std::numeric_limits<float>::infinity(), 0.0f});
  EXPECT_FALSE(w->update_params((net.w * torch::tensor({3.0f, -4.0f})).sum(), 0, 10, scalars));
  EXPECT_TRUE(torch::equal(net.w, torch::tensor({1.0f, 2.0f}))) << net.w;
  EXPECT_FALSE(net.w.grad().defined()); // the window's gradients are dropped
  EXPECT_EQ(w->loss_scaler()->scale(), 32768.0);
  EXPECT_EQ(w->loss_scaler()->growth_tracker(), 0);
  EXPECT_EQ(last_scalar(scalars, "loss_scale"), 32768.0);
  // The next step goes through with the true (unscaled) gradient.
  scalars.clear();
  EXPECT_TRUE(w->update_params((net.w * torch::tensor({3.0f, -4.0f})).sum(), 1, 10, scalars));
  EXPECT_TRUE(torch::equal(net.w, torch::tensor({-2.0f, 6.0f}))) << net.w;
  EXPECT_EQ(w->loss_scaler()->growth_tracker(), 1);
  EXPECT_EQ(last_scalar(scalars, "loss_scale"), 32768.0);
}

TEST_F(OptimWrapperTest, AGradientTheScaleOverflowsBacksOffUntilItFits) {
  // The true gradient 1e34 is finite; times 65536 it is beyond float32 (3.4e38), times 32768
  // it is not: the first step is skipped and the second, at half the scale, is taken.
  OneParam net;
  auto w = wrap(amp_sgd("", "1e-34"), net, kCuda);
  std::vector<std::pair<std::string, double>> scalars;
  auto loss = [&] { return (net.w * torch::tensor({1e34f, 1e34f})).sum(); };
  EXPECT_FALSE(w->update_params(loss(), 0, 10, scalars));
  EXPECT_TRUE(torch::equal(net.w, torch::tensor({1.0f, 2.0f})));
  EXPECT_EQ(w->loss_scaler()->scale(), 32768.0);
  EXPECT_TRUE(w->update_params(loss(), 1, 10, scalars));
  EXPECT_TRUE(torch::allclose(net.w, torch::tensor({0.0f, 1.0f}), 1e-5, 1e-5)) << net.w;
  EXPECT_EQ(w->loss_scaler()->scale(), 32768.0);
}

TEST_F(OptimWrapperTest, GoodStepsGrowTheScaleAfterTheInterval) {
  OneParam net;
  auto w =
      wrap(amp_sgd(R"(, "loss_scale": {"init_scale": 256, "growth_interval": 3})"), net, kCuda);
  std::vector<std::pair<std::string, double>> scalars;
  for (int64_t it = 0; it < 3; ++it) {
    EXPECT_TRUE(w->update_params(net.w.sum(), it, 100, scalars));
    EXPECT_EQ(w->loss_scaler()->scale(), it < 2 ? 256.0 : 512.0) << it;
    EXPECT_EQ(w->loss_scaler()->growth_tracker(), it < 2 ? it + 1 : 0) << it;
  }
  EXPECT_EQ(last_scalar(scalars, "loss_scale"), 512.0);
  // A static scale stays, and still skips an overflowing step.
  OneParam other;
  auto s = wrap(amp_sgd(R"(, "loss_scale": 512.0)"), other, kCuda);
  for (int64_t it = 0; it < 3; ++it) EXPECT_TRUE(s->update_params(other.w.sum(), it, 100, scalars));
  other.w.mutable_grad() = torch::tensor({std::numeric_limits<float>::quiet_NaN(), 0.0f});
  EXPECT_FALSE(s->update_params(other.w.sum(), 3, 100, scalars));
  EXPECT_EQ(s->loss_scaler()->scale(), 512.0);
}

TEST_F(OptimWrapperTest, ClippingSeesTheUnscaledGradients) {
  OneParam net;
  auto w = wrap(amp_sgd(R"(, "clip_grad": {"max_norm": 5.0, "norm_type": 2})"), net, kCuda);
  std::vector<std::pair<std::string, double>> scalars;
  ASSERT_TRUE(w->update_params((net.w * torch::tensor({30.0f, 40.0f})).sum(), 0, 1, scalars));
  // The true norm 50 (not 50 x 65536), clipped to 5: the step is -(3, 4), as without scaling.
  EXPECT_NEAR(last_scalar(scalars, "grad_norm"), 50.0, 1e-4);
  EXPECT_NEAR(net.w[0].item<double>(), 1.0 - 3.0, 1e-4);
  EXPECT_NEAR(net.w[1].item<double>(), 2.0 - 4.0, 1e-4);
  // By value too: a 0.5 bound on the true gradient.
  OneParam other;
  auto v = wrap(amp_sgd(R"(, "clip_grad": {"type": "value", "clip_value": 0.5})"), other, kCuda);
  ASSERT_TRUE(v->update_params((other.w * torch::tensor({3.0f, -0.25f})).sum(), 0, 1, scalars));
  EXPECT_NEAR(other.w[0].item<double>(), 1.0 - 0.5, 1e-6);
  EXPECT_NEAR(other.w[1].item<double>(), 2.0 + 0.25, 1e-6);
}

TEST_F(OptimWrapperTest, AccumulatedScaledGradientsAreUnscaledOncePerWindow) {
  OneParam net;
  auto w = wrap(amp_sgd(R"(, "accumulative_counts": 2)"), net, kCuda);
  std::vector<std::pair<std::string, double>> scalars;
  EXPECT_FALSE(w->update_params((net.w * torch::tensor({2.0f, 2.0f})).sum(), 0, 4, scalars));
  EXPECT_TRUE(w->update_params((net.w * torch::tensor({4.0f, -2.0f})).sum(), 1, 4, scalars));
  EXPECT_TRUE(torch::equal(net.w, torch::tensor({-2.0f, 2.0f}))) << net.w; // mean (3, 0)
  EXPECT_EQ(w->loss_scaler()->growth_tracker(), 1);                        // one update per window
  // An overflow in a window's first iteration skips the whole window at its end.
  net.w.mutable_grad() = torch::tensor({std::numeric_limits<float>::infinity(), 0.0f});
  EXPECT_FALSE(w->update_params((net.w * torch::tensor({1.0f, 1.0f})).sum(), 2, 4, scalars));
  EXPECT_EQ(w->loss_scaler()->scale(), 65536.0); // not yet: only at the window's end
  EXPECT_FALSE(w->update_params((net.w * torch::tensor({1.0f, 1.0f})).sum(), 3, 4, scalars));
  EXPECT_TRUE(torch::equal(net.w, torch::tensor({-2.0f, 2.0f}))) << net.w;
  EXPECT_EQ(w->loss_scaler()->scale(), 32768.0);
  EXPECT_FALSE(net.w.grad().defined());
}

TEST_F(OptimWrapperTest, AnInfOnAnotherRankSkipsTheStepHereToo) {
  TwoParams net;
  auto w = wrap(amp_sgd(""), net, kCuda);
  auto fake = std::make_shared<FakeTwoRanks>();
  // Rank 1 has gradients for a and b; its flat gradients hold an Inf. Ours are finite.
  fake->other.push_back(torch::tensor({1.0f, 1.0f, 0.0f}));
  fake->other.push_back(torch::tensor({std::numeric_limits<float>::infinity(), 0.0f, 0.0f}));
  DistGuard guard(fake);
  std::vector<std::pair<std::string, double>> scalars;
  EXPECT_FALSE(w->update_params((net.a * torch::tensor({2.0f, 2.0f})).sum(), 0, 2, scalars));
  EXPECT_EQ(fake->calls, 2);
  EXPECT_TRUE(torch::equal(net.a, torch::zeros({2})));
  EXPECT_TRUE(torch::equal(net.b, torch::zeros({1})));
  EXPECT_EQ(w->loss_scaler()->scale(), 32768.0); // as rank 1's, which saw the same sums
  // Synchronised scaled gradients are unscaled after the mean: -(2 + 4) / 2 = -3.
  fake->other.push_back(torch::tensor({1.0f, 0.0f, 0.0f}));
  fake->other.push_back(torch::tensor({4.0f * 32768.0f, 0.0f}));
  EXPECT_TRUE(w->update_params((net.a * torch::tensor({2.0f, 2.0f})).sum(), 1, 2, scalars));
  EXPECT_TRUE(torch::equal(net.a, torch::tensor({-3.0f, -1.0f}))) << net.a;
}

TEST_F(OptimWrapperTest, TheScalerStateGoesThroughACheckpoint) {
  const std::string cfg =
      amp_sgd(R"(, "loss_scale": {"init_scale": 1024, "growth_interval": 5})", "0.1");
  auto loss = [](TwoParams& n) { return n.a.sum() + 2 * n.b.sum() + 3 * n.c.sum(); };
  TwoParams net;
  auto w = wrap(cfg, net, kCuda);
  std::vector<std::pair<std::string, double>> scalars;
  // good, good, good, overflow, good, good: scale 512, two good steps since.
  for (int64_t it = 0; it < 6; ++it) {
    if (it == 3) net.c.mutable_grad() = torch::tensor({std::numeric_limits<float>::infinity()});
    (void)w->update_params(loss(net), it, 100, scalars);
  }
  ASSERT_EQ(w->loss_scaler()->scale(), 512.0);
  ASSERT_EQ(w->loss_scaler()->growth_tracker(), 2);

  // Written as the runner writes it (no paramwise_cfg: the groups merge into one) and read.
  test::TempDir dir;
  const std::string path = (dir.path() / "epoch_1.pth").string();
  core::Checkpoint c;
  c.meta.set("iter", Json(int64_t(6)));
  c.meta.set("config", Json::parse(R"({"optim_wrapper": )" + cfg + "}", "cfg"));
  c.state_dict = core::module_state(net);
  c.optimizer = w->state_dict();
  core::save_checkpoint(path, c);
  const core::Checkpoint back = core::load_checkpoint(path);

  TwoParams resumed;
  auto v = wrap(cfg, resumed, kCuda);
  v->load_state_dict(back.optimizer);
  EXPECT_EQ(v->loss_scaler()->scale(), 512.0);
  EXPECT_EQ(v->loss_scaler()->growth_tracker(), 2);
  // It goes on as the unbroken run does: three more good steps make five, and it grows.
  for (int64_t it = 6; it < 9; ++it) {
    (void)w->update_params(loss(net), it, 100, scalars);
    (void)v->update_params(loss(resumed), it, 100, scalars);
  }
  EXPECT_EQ(v->loss_scaler()->scale(), 1024.0);
  EXPECT_EQ(v->loss_scaler()->scale(), w->loss_scaler()->scale());
  EXPECT_EQ(v->loss_scaler()->growth_tracker(), w->loss_scaler()->growth_tracker());

  // A wrapper without a scaler (the CPU) passes the scaler's state over; a state without one
  // leaves a scaler at its configured start.
  TwoParams on_cpu;
  auto cpu = wrap(cfg, on_cpu);
  ASSERT_EQ(cpu->loss_scaler(), nullptr);
  cpu->load_state_dict(back.optimizer);
  EXPECT_FALSE(cpu->state_dict().toGenericDict().contains("loss_scaler"));
  TwoParams fresh;
  auto f = wrap(cfg, fresh, kCuda);
  f->load_state_dict(cpu->state_dict());
  EXPECT_EQ(f->loss_scaler()->scale(), 1024.0);
  EXPECT_EQ(f->loss_scaler()->growth_tracker(), 0);
  // A broken scaler state is an error naming it, and changes nothing.
  c10::impl::GenericDict bad = back.optimizer.toGenericDict().copy();
  c10::impl::GenericDict scaler = bad.at("loss_scaler").toGenericDict().copy();
  scaler.insert_or_assign("scale", -1.0);
  bad.insert_or_assign("loss_scaler", scaler);
  EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] { f->load_state_dict(bad); }),
                               "optimizer state (SGD): loss_scaler: scale: expected a finite"));
  EXPECT_EQ(f->loss_scaler()->scale(), 1024.0);

  // torch's GradScaler takes the saved state (python3-torch as the oracle, when installed).
  if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0) return;
  const std::string script = (dir.path() / "load.py").string();
  std::ofstream(script) << R"(import sys, torch
import torch.cuda.amp.grad_scaler as gs
gs.amp_definitely_not_available = lambda: False  # state_dict/load_state_dict touch no device
s = gs.GradScaler()
s.load_state_dict(torch.load(sys.argv[1])["optimizer"]["loss_scaler"])
print(s.get_scale(), s._get_growth_tracker(), s.get_growth_interval())
)";
  std::string out;
  if (FILE* p = popen(("/usr/bin/python3 " + script + " " + path + " 2>&1").c_str(), "r")) {
    char buf[512];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    pclose(p);
  }
  EXPECT_TRUE(test::has_substr(out, "512.0 2 5\n"));
}

TEST_F(OptimWrapperTest, EnableAmpTurnsTheWrapperIntoAnAmpOptimWrapperAsMMSelfSup) {
  Json cfg = Json::parse(R"({"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1}}})", "t");
  EXPECT_EQ(core::enable_amp(cfg), "");
  EXPECT_EQ(cfg.find("optim_wrapper")->find("type")->as_string(), "AmpOptimWrapper");
  EXPECT_EQ(cfg.find("optim_wrapper")->find("loss_scale")->as_string(), "dynamic");
  // Already one: said so; a given loss_scale is kept.
  Json amp = Json::parse(
      R"({"optim_wrapper": {"type": "AmpOptimWrapper", "loss_scale": 512.0, "optimizer": {}}})",
      "t");
  EXPECT_TRUE(test::has_substr(core::enable_amp(amp), "already AmpOptimWrapper"));
  EXPECT_EQ(amp.find("optim_wrapper")->find("loss_scale")->as_number(), 512.0);
  Json other = Json::parse(R"({"optim_wrapper": {"type": "MyWrapper", "optimizer": {}}})", "t");
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([&] { (void)core::enable_amp(other); }),
      "optim_wrapper.type: --amp turns an OptimWrapper into an AmpOptimWrapper, got 'MyWrapper'"));
  Json none = Json::parse(R"({"model": {}})", "t");
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] { (void)core::enable_amp(none); }),
                               "optim_wrapper: --amp needs an optim_wrapper dict"));
}
