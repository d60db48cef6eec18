// The momentum-encoder brick: MMEngine's averaged-model update rule, written out by hand.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <selfsup/bricks/ema.h>
#include <selfsup/bricks/queue.h>
#include <selfsup/errors.h>

namespace {

struct Net : torch::nn::Module {
  Net() {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

TEST(EmaTest, FirstStepCopiesLaterStepsAverageParametersAndCopyBuffers) {
  torch::manual_seed(0);
  Net online, target;
  selfsup::bricks::freeze(target);
  selfsup::bricks::momentum_update(target, online, 0.9, /*step=*/0);
  EXPECT_TRUE(torch::equal(target.fc->weight, online.fc->weight));

  const auto before = target.fc->weight.clone();
  {
    torch::NoGradGuard g;
    online.fc->weight.add_(1.0);
    online.bn->running_mean.fill_(7.0);
  }
  selfsup::bricks::momentum_update(target, online, 0.9, /*step=*/1);
  // 0.9 * old + 0.1 * (old + 1) = old + 0.1, element by element.
  EXPECT_TRUE(torch::allclose(target.fc->weight, before + 0.1, 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(target.bn->running_mean, online.bn->running_mean));
  EXPECT_FALSE(target.fc->weight.requires_grad());
}

TEST(EmaTest, CosineMomentumRisesFromBaseToEnd) {
  using selfsup::bricks::cosine_ema_momentum;
  EXPECT_DOUBLE_EQ(cosine_ema_momentum(0.996, 1.0, 0, 100), 0.996);
  EXPECT_NEAR(cosine_ema_momentum(0.996, 1.0, 50, 100), 0.998, 1e-12);
  EXPECT_NEAR(cosine_ema_momentum(0.996, 1.0, 100, 100), 1.0, 1e-12);
  // A quarter of the way: 1 - 0.004 * (cos(pi / 4) + 1) / 2.
  EXPECT_NEAR(cosine_ema_momentum(0.996, 1.0, 25, 100), 1.0 - 0.004 * (std::sqrt(0.5) + 1.0) / 2.0,
              1e-12);
}

TEST(EmaTest, DifferentNetworksAreRefusedByName) {
  Net online;
  torch::nn::Module other;
  other.register_module("fc", torch::nn::Linear(3, 4));
  try {
    selfsup::bricks::ema_update(other, online, 0.9);
    FAIL() << "expected ValueError";
  } catch (const selfsup::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("momentum encoder"), std::string::npos) << e.what();
  }
}

} // namespace

namespace {

TEST(KeyQueueTest, EnqueueWritesColumnsAndWrapsAround) {
  auto queue = torch::zeros({2, 5});
  auto ptr = torch::zeros({1}, torch::kLong);
  auto keys = torch::tensor({{1.f, 10.f}, {2.f, 20.f}, {3.f, 30.f}});
  selfsup::bricks::enqueue_keys(queue, ptr, keys);
  EXPECT_EQ(ptr.item<int64_t>(), 3);
  selfsup::bricks::enqueue_keys(queue, ptr, keys * 2);
  // Columns 3, 4 then 0 get the second batch: 2, 4 | 6 wraps to column 0.
  auto expected = torch::tensor({{6.f, 2.f, 3.f, 2.f, 4.f}, {60.f, 20.f, 30.f, 20.f, 40.f}});
  EXPECT_TRUE(torch::equal(queue, expected)) << queue;
  EXPECT_EQ(ptr.item<int64_t>(), 1);
  EXPECT_THROW(selfsup::bricks::enqueue_keys(queue, ptr, torch::zeros({6, 2})),
               selfsup::ValueError);
  EXPECT_THROW(selfsup::bricks::enqueue_keys(queue, ptr, torch::zeros({1, 3})),
               selfsup::ValueError);
}

TEST(KeyQueueTest, NewQueueHasUnitColumns) {
  auto q = selfsup::bricks::make_key_queue(8, 16);
  EXPECT_TRUE(torch::allclose(q.norm(2, 0), torch::ones({16}), 1e-5, 1e-5));
}

} // namespace
