// The registered optimizers: torch::optim's SGD, Adam, AdamW and our LARS, against steps
// computed by hand; their state in PyTorch's state_dict layout.
#include <gtest/gtest.h>

#include <cmath>

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/torch.h>

#include <selfsup/core/builtins.h>
#include <selfsup/core/checkpoint.h>
#include <selfsup/core/optimizers.h>
#include <selfsup/interfaces/optimizer.h>
#include <selfsup/registry.h>

#include "test_support.h"

using namespace selfsup;

namespace {

class OptimizersTest : public ::testing::Test {
protected:
  void SetUp() override { core::register_builtins(registry_); }

  /// The optimizer type of `json` (an optim_wrapper.optimizer config), from this test's
  /// registry.
  std::shared_ptr<OptimizerFactory> factory(const std::string& json) {
    return build<OptimizerFactory>(
        Config(Json::parse(json, "test"), "optim_wrapper.optimizer").with_registry(registry_));
  }
  /// One group over `params`, with the factory's lr and weight decay, and `options` (the
  /// group's custom-key options).
  static OptimizerGroup group(const OptimizerFactory& f, std::vector<torch::Tensor> params,
                              const std::string& options = "{}") {
    OptimizerGroup g;
    g.params = std::move(params);
    g.lr = f.lr();
    g.weight_decay = f.weight_decay();
    g.options = Config(Json::parse(options, "test"), "custom_keys.k");
    return g;
  }
  std::unique_ptr<torch::optim::Optimizer> make(const std::string& json,
                                                std::vector<torch::Tensor> params) {
    auto f = factory(json);
    std::vector<OptimizerGroup> groups;
    groups.push_back(group(*f, std::move(params)));
    return f->make(std::move(groups));
  }

  Registry registry_;
};

/// Sets p's gradient to `g` (as after a backward pass).
void set_grad(torch::Tensor& p, const std::vector<double>& g) {
  p.mutable_grad() = torch::tensor(g, torch::kFloat32);
}

double value(const torch::Tensor& t, int64_t i) {
  return t[i].item<double>();
}

} // namespace

TEST_F(OptimizersTest, SgdIsLibTorchsAndMatchesAHandComputedStep) {
  auto p = torch::tensor({1.0f});
  auto opt = make(R"({"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01})", {p});
  EXPECT_NE(dynamic_cast<torch::optim::SGD*>(opt.get()), nullptr);
  for (int i = 0; i < 2; ++i) {
    set_grad(p, {2.0});
    opt->step();
  }
  // d1 = 2 + 0.01 = 2.01, p1 = 0.799; d2 = 2.00799, buf = 0.9*2.01 + 2.00799, p2 = 0.417301.
  EXPECT_NEAR(value(p, 0), 0.417301, 1e-6);
}

TEST_F(OptimizersTest, AdamWMatchesAHandComputedStep) {
  auto p = torch::tensor({1.0f, -2.0f});
  auto opt =
      make(R"({"type": "AdamW", "lr": 0.1, "betas": [0.8, 0.9], "eps": 1e-3, "weight_decay": 0.5})",
           {p});
  EXPECT_NE(dynamic_cast<torch::optim::AdamW*>(opt.get()), nullptr);
  const std::vector<std::vector<double>> grads{{0.5, -0.25}, {1.0, 0.5}};
  // AdamW (Loshchilov & Hutter): decoupled decay, then the bias-corrected Adam step.
  double w[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
  for (int t = 1; t <= 2; ++t) {
    for (int i = 0; i < 2; ++i) {
      const double g = grads[t - 1][i];
      w[i] *= 1 - 0.1 * 0.5;
      m[i] = 0.8 * m[i] + 0.2 * g;
      v[i] = 0.9 * v[i] + 0.1 * g * g;
      const double mhat = m[i] / (1 - std::pow(0.8, t)), vhat = v[i] / (1 - std::pow(0.9, t));
      w[i] -= 0.1 * mhat / (std::sqrt(vhat) + 1e-3);
    }
    set_grad(p, grads[t - 1]);
    opt->step();
  }
  EXPECT_NEAR(value(p, 0), w[0], 1e-6);
  EXPECT_NEAR(value(p, 1), w[1], 1e-6);
}

TEST_F(OptimizersTest, AdamAddsTheL2PenaltyToTheGradient) {
  auto p = torch::tensor({2.0f});
  auto opt = make(R"({"type": "Adam", "lr": 0.01, "weight_decay": 0.5})", {p});
  EXPECT_NE(dynamic_cast<torch::optim::Adam*>(opt.get()), nullptr);
  set_grad(p, {-0.5}); // + 0.5 * 2 = 0.5: the first Adam step moves by lr * sign
  opt->step();
  EXPECT_NEAR(value(p, 0), 2.0 - 0.01 * 0.5 / (0.5 + 1e-8), 1e-6);
}

TEST_F(OptimizersTest, LarsTrustRatioAndExclusion) {
  auto f = factory(R"({"type": "LARS", "lr": 1.0, "eta": 0.001})");
  auto w = torch::tensor({3.0f, 4.0f});
  auto b = torch::tensor({3.0f, 4.0f});
  std::vector<OptimizerGroup> groups;
  groups.push_back(group(*f, {w}));
  groups.push_back(group(*f, {b}, R"({"lars_exclude": true})"));
  auto opt = f->make(std::move(groups));
  ASSERT_NE(dynamic_cast<core::LARS*>(opt.get()), nullptr);
  set_grad(w, {0.3, 0.4});
  set_grad(b, {0.3, 0.4});
  opt->step();
  // |w| = 5, |g| = 0.5: local lr = 0.001 * 5 / 0.5 = 0.01; the excluded group takes lr * g.
  EXPECT_NEAR(value(w, 0), 3 - 0.003, 1e-6);
  EXPECT_NEAR(value(w, 1), 4 - 0.004, 1e-6);
  EXPECT_NEAR(value(b, 0), 3 - 0.3, 1e-6);
  EXPECT_NEAR(value(b, 1), 4 - 0.4, 1e-6);
}

TEST_F(OptimizersTest, LarsMomentumAndDecayMatchMMSelfSupsFormula) {
  for (bool nesterov : {false, true}) {
    auto p = torch::tensor({1.0f, -2.0f});
    auto opt = make(R"({"type": "LARS", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.1,
                        "eta": 0.02, "nesterov": )" +
                        std::string(nesterov ? "true" : "false") + "}",
                    {p});
    const std::vector<std::vector<double>> grads{{0.3, 0.4}, {-0.1, 0.2}};
    double w[2] = {1.0, -2.0}, buf[2] = {0, 0};
    for (int t = 0; t < 2; ++t) {
      const double* g = grads[t].data();
      const double wn = std::hypot(w[0], w[1]), gn = std::hypot(g[0], g[1]);
      const double local = 0.02 * wn / (gn + 0.1 * wn + 1e-8);
      for (int i = 0; i < 2; ++i) {
        const double d = (g[i] + 0.1 * w[i]) * local * 0.5;
        buf[i] = t == 0 ? d : 0.9 * buf[i] + d;
        w[i] -= nesterov ? d + 0.9 * buf[i] : buf[i];
      }
      set_grad(p, grads[t]);
      opt->step();
    }
    EXPECT_NEAR(value(p, 0), w[0], 1e-6) << "nesterov " << nesterov;
    EXPECT_NEAR(value(p, 1), w[1], 1e-6) << "nesterov " << nesterov;
  }
}

TEST_F(OptimizersTest, GroupsOverrideTheOptimizersOptions) {
  auto f = factory(R"({"type": "SGD", "lr": 1.0, "momentum": 0.9})");
  // Per group: any option but lr and weight_decay (their multipliers are lr_mult and
  // decay_mult), with no default; LARS adds lars_exclude.
  const Schema s = f->group_schema();
  EXPECT_TRUE(s.find("momentum") && s.find("nesterov"));
  EXPECT_FALSE(s.find("lr") || s.find("weight_decay") || s.find("lars_exclude"));
  EXPECT_TRUE(s.find("momentum")->default_value.is_null());
  EXPECT_TRUE(factory(R"({"type": "LARS", "lr": 1.0})")->group_schema().find("lars_exclude"));

  auto a = torch::tensor({1.0f}), b = torch::tensor({1.0f});
  std::vector<OptimizerGroup> groups;
  groups.push_back(group(*f, {a}));
  groups.push_back(group(*f, {b}, R"({"momentum": 0.0})")); // DeepCluster's head
  auto opt = f->make(std::move(groups));
  for (int i = 0; i < 2; ++i) {
    set_grad(a, {1.0});
    set_grad(b, {1.0});
    opt->step();
  }
  EXPECT_NEAR(value(a, 0), 1 - 1 - 1.9, 1e-6);
  EXPECT_NEAR(value(b, 0), 1 - 2, 1e-6);
  // A group's options are checked with the optimizer's rules, naming the custom key.
  groups.clear();
  groups.push_back(group(*f, {a}, R"({"nesterov": true, "dampening": 0.5})"));
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] { (void)f->make(groups); }),
                               "custom_keys.k.nesterov: Nesterov momentum needs momentum > 0"));
}

TEST_F(OptimizersTest, ConfigErrorsNameTheirPath) {
  auto error = [&](const std::string& json) {
    return test::message_of<ConfigError>([&] { (void)factory(json); });
  };
  EXPECT_TRUE(test::has_substr(error(R"({"type": "SGD"})"),
                               "optim_wrapper.optimizer.lr: required key is missing"));
  EXPECT_TRUE(test::has_substr(error(R"({"type": "SGD", "lr": 0.1, "nesterov": true})"),
                               "optim_wrapper.optimizer.nesterov: Nesterov momentum needs"));
  EXPECT_TRUE(test::has_substr(error(R"({"type": "AdamW", "betas": [0.9]})"),
                               "optim_wrapper.optimizer.betas: expected"));
  EXPECT_TRUE(test::has_substr(error(R"({"type": "LARS", "lr": 0.1, "lars_exclude": true})"),
                               "optim_wrapper.optimizer.lars_exclude: unknown key"));
  EXPECT_TRUE(test::has_substr(error(R"({"type": "Adam", "lr": -1})"),
                               "optim_wrapper.optimizer.lr: expected float >= 0"));
}

// ---- State in PyTorch's layout ---------------------------------------------------------

TEST_F(OptimizersTest, StateDictHasPyTorchsLayout) {
  auto w = torch::zeros({2, 3}), b = torch::zeros({3});
  auto f = factory(R"({"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4})");
  std::vector<OptimizerGroup> groups;
  groups.push_back(group(*f, {w}));
  groups.push_back(group(*f, {b}));
  auto opt = f->make(std::move(groups));
  w.mutable_grad() = torch::ones({2, 3});
  opt->step(); // b has no gradient: no state, as in PyTorch

  const auto sd = core::optimizer_state_dict(*opt);
  ASSERT_TRUE(sd.contains("state") && sd.contains("param_groups"));
  EXPECT_EQ(sd.size(), 2u);
  const auto state = sd.at("state").toGenericDict();
  ASSERT_EQ(state.size(), 1u);
  const auto s0 = state.at(int64_t(0)).toGenericDict();
  // The first buffer is the gradient plus the decay of a zero weight.
  EXPECT_TRUE(torch::equal(s0.at("momentum_buffer").toTensor(), torch::ones({2, 3})));
  const auto pg = sd.at("param_groups").toList();
  ASSERT_EQ(pg.size(), 2u);
  const auto g1 = pg.get(1).toGenericDict();
  EXPECT_DOUBLE_EQ(g1.at("lr").toDouble(), 0.1);
  EXPECT_DOUBLE_EQ(g1.at("momentum").toDouble(), 0.9);
  EXPECT_DOUBLE_EQ(g1.at("weight_decay").toDouble(), 1e-4);
  EXPECT_DOUBLE_EQ(g1.at("dampening").toDouble(), 0.0);
  EXPECT_FALSE(g1.at("nesterov").toBool());
  EXPECT_EQ(g1.at("params").toIntVector(), std::vector<int64_t>{1});
  EXPECT_EQ(pg.get(0).toGenericDict().at("params").toIntVector(), std::vector<int64_t>{0});

  // Adam: step, exp_avg, exp_avg_sq; betas a pair. LARS: its own options.
  auto p = torch::ones({2});
  auto adam = make(R"({"type": "Adam", "lr": 0.1})", {p});
  p.mutable_grad() = torch::ones({2});
  adam->step();
  const auto adam_sd = core::optimizer_state_dict(*adam);
  const auto st = adam_sd.at("state").toGenericDict().at(int64_t(0)).toGenericDict();
  EXPECT_EQ(st.at("step").toInt(), 1);
  EXPECT_TRUE(st.contains("exp_avg") && st.contains("exp_avg_sq"));
  const auto betas = adam_sd.at("param_groups").toList().get(0).toGenericDict().at("betas");
  ASSERT_TRUE(betas.isTuple());
  EXPECT_DOUBLE_EQ(betas.toTuple()->elements().at(1).toDouble(), 0.999);
  auto lars = make(R"({"type": "LARS", "lr": 0.1, "momentum": 0.9})", {p});
  const auto lg = core::optimizer_state_dict(*lars).at("param_groups").toList().get(0);
  for (const char* key : {"lr", "momentum", "dampening", "weight_decay", "nesterov", "eta", "eps",
                          "lars_exclude", "params"})
    EXPECT_TRUE(lg.toGenericDict().contains(key)) << key;
}

TEST_F(OptimizersTest, StateRoundTripsThroughPickleBitIdentically) {
  for (const char* json :
       {R"({"type": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": true})",
        R"({"type": "AdamW", "lr": 0.01, "amsgrad": true})",
        R"({"type": "LARS", "lr": 0.3, "momentum": 0.9, "weight_decay": 0.1})"}) {
    torch::manual_seed(0);
    auto a = torch::randn({4, 3}), b = a.clone();
    auto first = make(json, {a});
    auto grad = [](int i) { return torch::sin(torch::arange(12.0f).view({4, 3}) + float(i)); };
    for (int i = 0; i < 3; ++i) {
      a.mutable_grad() = grad(i);
      first->step();
    }
    // Through the checkpoint's bytes, into a fresh optimizer over a copy of the weights.
    const std::vector<char> bytes = torch::pickle_save(core::optimizer_state_dict(*first));
    b.copy_(a);
    auto second = make(json, {b});
    second->param_groups()[0].options().set_lr(123.0); // restored from the state too
    core::load_optimizer_state_dict(*second, torch::pickle_load(bytes), "test");
    EXPECT_DOUBLE_EQ(second->param_groups()[0].options().get_lr(),
                     first->param_groups()[0].options().get_lr());
    for (int i = 3; i < 6; ++i) {
      a.mutable_grad() = grad(i);
      b.mutable_grad() = grad(i);
      first->step();
      second->step();
    }
    EXPECT_TRUE(torch::equal(a, b)) << json;
  }
}

TEST_F(OptimizersTest, LoadingAStateThatDoesNotFitNamesTheProblem) {
  auto p = torch::zeros({2});
  auto opt = make(R"({"type": "SGD", "lr": 0.1, "momentum": 0.9})", {p});
  p.mutable_grad() = torch::ones({2});
  opt->step();
  auto load_error = [&](const c10::IValue& state) {
    return test::message_of<ValueError>(
        [&] { core::load_optimizer_state_dict(*opt, state, "ckpt.pth: optimizer"); });
  };
  auto fresh = [&] { return core::optimizer_state_dict(*opt); };

  EXPECT_TRUE(test::has_substr(load_error(c10::IValue(int64_t(3))),
                               "ckpt.pth: optimizer: expected PyTorch's optimizer state_dict"));
  auto two_groups = fresh();
  auto groups = two_groups.at("param_groups").toList();
  groups.push_back(groups.get(0));
  EXPECT_TRUE(
      test::has_substr(load_error(two_groups), "2 param groups saved, the optimizer has 1"));
  auto foreign = fresh();
  foreign.at("param_groups").toList().get(0).toGenericDict().insert("betas", 0.5);
  EXPECT_TRUE(test::has_substr(load_error(foreign),
                               "param_groups[0].betas: not an option of this optimizer"));
  auto misshaped = fresh();
  misshaped.at("state")
      .toGenericDict()
      .at(int64_t(0))
      .toGenericDict()
      .insert_or_assign("momentum_buffer", torch::zeros({3}));
  EXPECT_TRUE(test::has_substr(load_error(misshaped), "state[0].momentum_buffer has shape [3]"));
  auto flat = c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
  flat.insert("state.0.0.momentum_buffer", torch::zeros({2}));
  EXPECT_TRUE(test::has_substr(load_error(flat), "unexpected entry"));
}
