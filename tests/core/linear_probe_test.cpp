// The linear probe on synthetic features: separable classes are learnt (~100 %), labels with
// no relation to the features stay at chance, the standardisation makes the result
// independent of the features' scale, and bad inputs are refused by name.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <selfsup/core/linear_probe.h>
#include <selfsup/core/npy.h>
#include <selfsup/errors.h>

#include "test_support.h"

using namespace selfsup;
using selfsup::test::has_substr;
using selfsup::test::message_of;

namespace {

// n samples per class of `classes` Gaussian clusters in `dim` dims: class means drawn from
// N(0, 1), noise sigma `noise`.
std::pair<torch::Tensor, torch::Tensor> clusters(int64_t classes, int64_t n, int64_t dim,
                                                 double noise, uint64_t seed,
                                                 const torch::Tensor& means = {}) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto m = means.defined() ? means : torch::randn({classes, dim}, gen);
  auto labels = torch::arange(classes, torch::kLong).repeat_interleave(n);
  auto x = m.index_select(0, labels) + noise * torch::randn({classes * n, dim}, gen);
  return {x, labels};
}

} // namespace

TEST(LinearProbeTest, SeparableClassesReachAHundredPercent) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto means = torch::randn({10, 32}, gen);
  auto [xtr, ytr] = clusters(10, 60, 32, 0.1, 1, means);
  auto [xte, yte] = clusters(10, 20, 32, 0.1, 2, means);
  core::LinearProbeOptions o;
  o.epochs = 20;
  o.batch_size = 64;
  std::vector<int64_t> epochs_seen;
  const auto r = core::linear_probe(xtr, ytr, xte, yte, o, -1,
                                    [&](int64_t e, double) { epochs_seen.push_back(e); });
  EXPECT_GE(r.top1, 99.5);
  EXPECT_EQ(r.top5, 100.0);
  EXPECT_GE(r.train_top1, 99.5);
  EXPECT_EQ(r.num_classes, 10);
  EXPECT_EQ(r.dim, 32);
  EXPECT_EQ(r.num_train, 600);
  EXPECT_EQ(r.num_test, 200);
  EXPECT_EQ(r.iters, 20 * 10); // ceil(600 / 64) per epoch
  EXPECT_DOUBLE_EQ(r.lr, 0.3 * 64 / 256);
  ASSERT_EQ(epochs_seen.size(), 20u);
  EXPECT_EQ(epochs_seen.back(), 20);
  // The loss goes down.
  EXPECT_LT(r.epoch_loss.back(), 0.5 * r.epoch_loss.front());
}

TEST(LinearProbeTest, LabelsUnrelatedToTheFeaturesStayNearChance) {
  auto [xtr, ytr] = clusters(10, 60, 32, 0.1, 1);
  auto [xte, yte] = clusters(10, 40, 32, 0.1, 2);
  // Test labels permuted: the features say nothing about them.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  yte = yte.index_select(0, torch::randperm(yte.size(0), gen, torch::kLong));
  core::LinearProbeOptions o;
  o.epochs = 10;
  const auto r = core::linear_probe(xtr, ytr, xte, yte, o);
  EXPECT_LT(r.top1, 25.0); // chance is 10 %
  EXPECT_GE(r.train_top1, 99.0);
}

TEST(LinearProbeTest, StandardisationMakesTheFeatureScaleIrrelevant) {
  // Clusters that overlap a little, so the figures are not all 100 %.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const auto means = torch::randn({5, 16}, gen);
  auto [xtr, ytr] = clusters(5, 40, 16, 0.9, 4, means);
  auto [xte, yte] = clusters(5, 40, 16, 0.9, 5, means);
  core::LinearProbeOptions o;
  o.epochs = 5;
  o.batch_size = 32;
  const auto a = core::linear_probe(xtr, ytr, xte, yte, o);
  const auto b = core::linear_probe(xtr * 1000.0 + 3.0, ytr, xte * 1000.0 + 3.0, yte, o);
  EXPECT_NEAR(a.top1, b.top1, 1e-9);
  EXPECT_NEAR(a.epoch_loss.back(), b.epoch_loss.back(), 1e-3);
  EXPECT_LT(a.top1, 100.0);
  // Without it, unit-norm features (the kNN's) learn slowly at the same lr: the scale matters.
  o.standardize = false;
  const auto c = core::linear_probe(xtr * 1000.0, ytr, xte * 1000.0, yte, o);
  EXPECT_NE(c.epoch_loss.back(), a.epoch_loss.back());
  // The same seed gives the same run.
  o.standardize = true;
  const auto d = core::linear_probe(xtr, ytr, xte, yte, o);
  EXPECT_EQ(d.epoch_loss, a.epoch_loss);
}

TEST(LinearProbeTest, BatchIsCappedToTheDataAndTheHeadStartsNearZero) {
  // A batch larger than the data is one batch of all of it (one iteration per epoch), and the
  // first epoch's loss is that of the N(0, 0.01^2) init: close to log(classes).
  auto [xtr, ytr] = clusters(4, 8, 6, 0.1, 9);
  core::LinearProbeOptions o;
  o.epochs = 1;
  o.batch_size = 1000;
  const auto r = core::linear_probe(xtr, ytr, xtr, ytr, o);
  EXPECT_EQ(r.batch_size, 32);
  EXPECT_EQ(r.iters, 1);
  EXPECT_NEAR(r.epoch_loss.front(), std::log(4.0), 0.1);
}

TEST(LinearProbeTest, BadInputsAreRefusedByName) {
  auto [x, y] = clusters(3, 4, 5, 0.1, 1);
  core::LinearProbeOptions o;
  o.epochs = 1;
  EXPECT_TRUE(
      has_substr(message_of<ValueError>([&] { core::linear_probe(x, y, x.slice(1, 0, 4), y, o); }),
                 "training features have 5 dims, test features 4"));
  EXPECT_TRUE(
      has_substr(message_of<ValueError>([&] { core::linear_probe(x, y.slice(0, 0, 5), x, y, o); }),
                 "training labels must be [12]"));
  auto neg = y.clone();
  neg[0] = -1;
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { core::linear_probe(x, y, x, neg, o); }),
                         "every test sample needs a class label"));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { core::linear_probe(x, y, x, y, o, 2); }),
                         "label 2 is not below 2 classes"));
  o.epochs = 0;
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { core::linear_probe(x, y, x, y, o); }),
                         "epochs and batch size must be > 0"));
}

TEST(NpyTest, HeaderIsNumpyV1AlignedTo64Bytes) {
  const auto t = torch::arange(6, torch::kFloat32).view({2, 3});
  const std::string b = core::npy_bytes(t);
  ASSERT_GE(b.size(), 10u);
  EXPECT_EQ(b.substr(0, 6), std::string("\x93NUMPY", 6));
  EXPECT_EQ(b[6], 1);
  EXPECT_EQ(b[7], 0);
  const size_t hlen = size_t(uint8_t(b[8])) | size_t(uint8_t(b[9])) << 8;
  EXPECT_EQ((10 + hlen) % 64, 0u);
  const std::string header = b.substr(10, hlen);
  EXPECT_EQ(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0), 0u)
      << header;
  EXPECT_EQ(header.back(), '\n');
  ASSERT_EQ(b.size(), 10 + hlen + 6 * 4);
  float v[6];
  std::memcpy(v, b.data() + 10 + hlen, sizeof v);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(v[i], float(i));
  // A vector's shape is a 1-tuple; int64 is '<i8'; other dtypes are refused.
  EXPECT_NE(core::npy_bytes(torch::arange(3, torch::kLong)).find("'descr': '<i8'"),
            std::string::npos);
  EXPECT_NE(core::npy_bytes(torch::arange(3, torch::kLong)).find("'shape': (3,)"),
            std::string::npos);
  EXPECT_TRUE(has_substr(
      message_of<ValueError>([] { (void)core::npy_bytes(torch::zeros({2}, torch::kHalf)); }),
      "only float32 and int64"));
}
