// The loss scaler on its own (torch.cuda.amp.GradScaler's algorithm): the scale's course over
// good and overflowing steps, unscaling and the Inf/NaN check, the static scale, its config
// and its state, read from GradScaler's own state_dict (tests/fixtures/amp, written by
// make_grad_scaler_state.py with Debian's python3-torch). torch 1.13 has the scaler's kernels
// (_amp_update_scale_, _amp_foreach_non_finite_check_and_unscale_) for CUDA only, so the
// scale's course is checked against the numbers GradScaler's documented rule gives by hand.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include <torch/torch.h>

#include <selfsup/config.h>
#include <selfsup/core/loss_scaler.h>
#include <selfsup/errors.h>
#include <selfsup/json.h>

#include "test_support.h"

using namespace selfsup;
using core::LossScaler;

namespace {

LossScaler from_json(const std::string& json) {
  return LossScaler::from_config(Config(Json::parse(json, "test"), "optim_wrapper.loss_scale"));
}

c10::impl::GenericDict fixture() {
  const auto path = std::filesystem::path(SELFSUP_SOURCE_DIR) / "tests" / "fixtures" / "amp" /
                    "grad_scaler_state.pt";
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict();
}

} // namespace

TEST(LossScalerTest, DynamicDefaultsAreGradScalers) {
  const LossScaler s = from_json(R"("dynamic")");
  EXPECT_TRUE(s.dynamic());
  EXPECT_EQ(s.scale(), 65536.0);
  EXPECT_EQ(s.options().growth_factor, 2.0);
  EXPECT_EQ(s.options().backoff_factor, 0.5);
  EXPECT_EQ(s.options().growth_interval, 2000);
  EXPECT_EQ(s.growth_tracker(), 0);
}

TEST(LossScalerTest, BacksOffOnInfAndGrowsAfterTheIntervalOfGoodSteps) {
  LossScaler s = from_json(
      R"({"init_scale": 8, "growth_factor": 3, "backoff_factor": 0.25, "growth_interval": 3})");
  // good, good: the tracker counts; the third good step grows the scale and restarts it.
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 8.0);
  EXPECT_EQ(s.growth_tracker(), 2);
  s.update(false);
  EXPECT_EQ(s.scale(), 24.0);
  EXPECT_EQ(s.growth_tracker(), 0);
  // Two good steps, then an overflow: backed off and the count starts again from 0.
  s.update(false);
  s.update(false);
  s.update(true);
  EXPECT_EQ(s.scale(), 6.0);
  EXPECT_EQ(s.growth_tracker(), 0);
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 6.0);
  s.update(false);
  EXPECT_EQ(s.scale(), 18.0);
}

TEST(LossScalerTest, NeverGrowsPastFloat32) {
  const double big = double(std::numeric_limits<float>::max()) / 1.5;
  LossScaler s = from_json(R"({"init_scale": )" + std::to_string(big) +
                           R"(, "growth_factor": 2, "growth_interval": 1})");
  const double before = s.scale();
  s.update(false);
  EXPECT_EQ(s.scale(), before); // 2x would be Inf in float32: kept
  EXPECT_EQ(s.growth_tracker(), 0);
}

TEST(LossScalerTest, AStaticScaleNeverChanges) {
  LossScaler s = from_json("512");
  EXPECT_FALSE(s.dynamic());
  EXPECT_EQ(s.scale(), 512.0);
  s.update(true);
  EXPECT_EQ(s.scale(), 512.0);
  for (int i = 0; i < 3000; ++i) s.update(false);
  EXPECT_EQ(s.scale(), 512.0);
  EXPECT_EQ(s.growth_tracker(), 0);
}

TEST(LossScalerTest, ScalesTheLossAndUnscalesGradientsFindingInfAndNan) {
  const LossScaler s = from_json(R"({"init_scale": 4})");
  EXPECT_EQ(s.scale_loss(torch::tensor(1.5f)).item<float>(), 6.0f);

  auto a = torch::zeros({2}, torch::requires_grad());
  auto b = torch::zeros({1}, torch::requires_grad());
  auto none = torch::zeros({1}, torch::requires_grad()); // no gradient: passed over
  a.mutable_grad() = torch::tensor({8.0f, -2.0f});
  b.mutable_grad() = torch::tensor({1.0f});
  EXPECT_FALSE(s.unscale({a, b, none}));
  EXPECT_TRUE(torch::equal(a.grad(), torch::tensor({2.0f, -0.5f})));
  EXPECT_TRUE(torch::equal(b.grad(), torch::tensor({0.25f})));
  EXPECT_FALSE(none.grad().defined());

  for (const float bad :
       {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
        std::numeric_limits<float>::quiet_NaN()}) {
    a.mutable_grad() = torch::tensor({8.0f, -2.0f});
    b.mutable_grad() = torch::tensor({bad});
    EXPECT_TRUE(s.unscale({a, b})) << bad;
    EXPECT_TRUE(torch::equal(a.grad(), torch::tensor({2.0f, -0.5f}))); // still unscaled
  }
  // Large but finite gradients are no overflow (a check by sum would call them one).
  const float huge = std::numeric_limits<float>::max() / 2;
  a.mutable_grad() = torch::tensor({huge, huge});
  EXPECT_FALSE(s.unscale({a}));
}

TEST(LossScalerTest, ConfigErrorsNameThePath) {
  auto error = [](const std::string& json) {
    return test::message_of<ConfigError>([&] { (void)from_json(json); });
  };
  EXPECT_TRUE(test::has_substr(error(R"("static")"),
                               "optim_wrapper.loss_scale: expected \"dynamic\", a number > 0"));
  EXPECT_TRUE(test::has_substr(error("0"), "optim_wrapper.loss_scale: expected"));
  EXPECT_TRUE(test::has_substr(error(R"({"init_scal": 2})"),
                               "optim_wrapper.loss_scale.init_scal: unknown key"));
  EXPECT_TRUE(test::has_substr(error(R"({"growth_factor": 0.5})"),
                               "optim_wrapper.loss_scale.growth_factor: expected"));
  EXPECT_TRUE(test::has_substr(error(R"({"backoff_factor": 1})"),
                               "optim_wrapper.loss_scale.backoff_factor: expected"));
  EXPECT_TRUE(test::has_substr(error(R"({"growth_interval": 0})"),
                               "optim_wrapper.loss_scale.growth_interval: expected int >= 1"));
}

TEST(LossScalerTest, ReadsGradScalersStateDictAndWritesItsLayout) {
  const auto states = fixture();
  LossScaler fresh;
  fresh.load_state_dict(states.at("fresh"), "fixture fresh");
  EXPECT_EQ(fresh.scale(), 1024.0);
  EXPECT_EQ(fresh.options().growth_factor, 4.0);
  EXPECT_EQ(fresh.options().backoff_factor, 0.25);
  EXPECT_EQ(fresh.options().growth_interval, 7);
  EXPECT_EQ(fresh.growth_tracker(), 0);
  LossScaler loaded;
  loaded.load_state_dict(states.at("loaded"), "fixture loaded");
  EXPECT_EQ(loaded.scale(), 2048.0);
  EXPECT_EQ(loaded.growth_tracker(), 3);

  // Ours has GradScaler's keys and value types, so torch's load_state_dict takes it.
  const auto mine = fresh.state_dict();
  const auto theirs = states.at("fresh").toGenericDict();
  ASSERT_EQ(mine.size(), theirs.size());
  for (const auto& item : theirs) {
    ASSERT_TRUE(mine.contains(item.key())) << item.key().toStringRef();
    EXPECT_EQ(mine.at(item.key()).tagKind(), item.value().tagKind()) << item.key().toStringRef();
    EXPECT_EQ(mine.at(item.key()), item.value()) << item.key().toStringRef();
  }
}

TEST(LossScalerTest, RefusesABrokenStateNamingTheSource) {
  LossScaler s;
  c10::impl::GenericDict empty(c10::StringType::get(), c10::AnyType::get());
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { s.load_state_dict(empty, "ckpt: loss_scaler"); }),
      "ckpt: loss_scaler: empty (saved from a disabled GradScaler)"));
  c10::impl::GenericDict d = s.state_dict();
  d.insert_or_assign("_growth_tracker", 2.5);
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { s.load_state_dict(d, "ckpt: loss_scaler"); }),
      "ckpt: loss_scaler: _growth_tracker: expected an int"));
  d = s.state_dict();
  (void)d.erase("scale");
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { s.load_state_dict(d, "ckpt: loss_scaler"); }),
      "ckpt: loss_scaler: scale: missing"));
  EXPECT_EQ(s.scale(), 65536.0); // unchanged by the failed loads
}
