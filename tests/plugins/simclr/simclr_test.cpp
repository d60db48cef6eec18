#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include <selfsup/sdk.h>

#include "local_registry.h"
#include "test_support.h"

using namespace selfsup;

namespace {

// Test doubles: the backbone passes its input through, the neck flattens it, so the
// embeddings SimCLR sees are exactly the vectors a test feeds in.
class PassBackbone final : public Backbone {
public:
  std::vector<torch::Tensor> forward(const torch::Tensor& x) override { return {x}; }
  std::vector<int64_t> out_channels() const override { return {0}; }
};

class FlattenNeck final : public Neck {
public:
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override {
    return {x.back().flatten(1)};
  }
};

// The plugins and this test's doubles, in a registry of the test's own.
const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry("simclr_test", [](Registrar& r) {
    r.add<Backbone>(
        "TestPassBackbone", [](const Config&) { return std::make_shared<PassBackbone>(); },
        Schema("test"));
    r.add<Neck>(
        "TestFlattenNeck", [](const Config&) { return std::make_shared<FlattenNeck>(); },
        Schema("test"));
  });
  return registry;
}

std::shared_ptr<Algorithm> make_simclr(double temperature) {
  Json cfg = Json::parse(R"({"type": "SimCLR", "backbone": {"type": "TestPassBackbone"},
      "neck": {"type": "TestFlattenNeck"},
      "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}}})",
                         "t");
  cfg.find("head")->set("temperature", temperature);
  return build<Algorithm>(registry().config(cfg, "model"));
}

// [B, D] -> [B, D, 1, 1] views.
torch::Tensor as_view(const std::vector<std::vector<float>>& rows) {
  std::vector<torch::Tensor> t;
  for (const auto& r : rows) t.push_back(torch::tensor(r));
  return torch::stack(t).unsqueeze(2).unsqueeze(3);
}

} // namespace

TEST(SimCLRTest, HandCheckedLoss) {
  // Two images, views identical, images orthogonal: for every row the positive has cosine 1
  // and both negatives 0, so the loss is log(e^(1/t) + 2) - 1/t = log(1 + 2 e^(-1/t)):
  // 0.551444714 at t = 1 and 9.0796e-05 at t = 0.1 (float32 logits of 10 keep ~1e-6).
  auto v1 = as_view({{1, 0}, {0, 1}});
  auto v2 = as_view({{2, 0}, {0, 3}}); // scale does not matter: embeddings are normalised
  EXPECT_NEAR(make_simclr(1.0)->loss({v1, v2}, DataSamples{})["loss"].item<double>(), 0.5514447139,
              1e-6);
  EXPECT_NEAR(make_simclr(0.1)->loss({v1, v2}, DataSamples{})["loss"].item<double>(), 9.0795737e-05,
              2e-6);

  // Views orthogonal to each other, images equal: positives 0, negatives {1, 0}:
  // loss = log(1 + e^(1/t) + 1) - 0 with t = 0.5 -> log(2 + e^2).
  auto model2 = make_simclr(0.5);
  auto a = as_view({{1, 0}, {1, 0}});
  auto b = as_view({{0, 1}, {0, 1}});
  EXPECT_NEAR(model2->loss({a, b}, DataSamples{})["loss"].item<double>(),
              std::log(2 + std::exp(2.0)), 1e-6);
}

TEST(SimCLRTest, MatchesIndependentNtXent) {
  // Second formulation: NT-Xent with the self-similarity masked to -inf, written directly
  // on the interleaved batch (rows 2k, 2k+1 are the two views of image k).
  torch::manual_seed(3);
  const double t = 0.2;
  auto model = make_simclr(t);
  auto v1 = torch::randn({5, 8, 1, 1}), v2 = torch::randn({5, 8, 1, 1});
  double ours = model->loss({v1, v2}, DataSamples{})["loss"].item<double>();

  auto z = torch::stack({v1.flatten(1), v2.flatten(1)}, 1).reshape({10, 8});
  z = z / z.norm(2, 1, true);
  auto s = torch::mm(z, z.t()) / t;
  s = s - torch::eye(10) * 1e9;
  auto partner = torch::arange(10) ^ 1;
  auto expected = (torch::logsumexp(s, 1) - s.gather(1, partner.view({-1, 1})).squeeze(1)).mean();
  EXPECT_NEAR(ours, expected.item<double>(), 1e-5);
}

TEST(SimCLRTest, GradientsFlowAndConfigErrorsNamePath) {
  auto cfg = Json::parse(R"({"type": "SimCLR", "backbone": {"type": "ResNet", "depth": 18,
      "in_channels": 1, "base_channels": 4, "stem": "cifar"},
      "neck": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 16, "out_channels": 8},
      "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}, "temperature": 0.1},
      "data_preprocessor": {"mean": [0.0], "std": [255.0], "bgr_to_rgb": false}})",
                         "t");
  auto model = build<Algorithm>(registry().config(cfg, "model"));
  DataSamples samples;
  auto views = model->preprocess({torch::randint(0, 255, {4, 1, 16, 16}).to(torch::kUInt8),
                                  torch::randint(0, 255, {4, 1, 16, 16}).to(torch::kUInt8)},
                                 samples);
  auto loss = model->forward(views, samples, ForwardMode::Loss).losses["loss"];
  loss.backward();
  auto grad = model->named_parameters()["backbone.conv1.weight"].grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_GT(grad.abs().sum().item<double>(), 0);

  cfg.erase("neck");
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([&] {
                                 (void)build<Algorithm>(registry().config(cfg, "model"));
                               }),
                               "model.neck: SimCLR needs a neck"));
}

namespace {
// A world of two ranks seen from rank 0: the other rank's embeddings are fixed rows.
class FakeTwoRanks final : public Distributed {
public:
  explicit FakeTwoRanks(torch::Tensor other) : other_(std::move(other)) {}
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  void all_reduce(torch::Tensor&, ReduceOp) override {}
  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override {
    return {t.detach(), other_};
  }
  torch::Tensor all_gather_with_grad(const torch::Tensor& t) override {
    ++calls;
    return torch::cat({t, other_});
  }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
  int calls = 0;

private:
  torch::Tensor other_;
};
} // namespace

TEST(SimCLRTest, GathersTheGlobalBatchThroughTheDistributedInterface) {
  torch::manual_seed(5);
  const double t = 0.3;
  auto model = make_simclr(t);
  auto v1 = torch::randn({3, 4, 1, 1}), v2 = torch::randn({3, 4, 1, 1});
  // The other rank's 2 images x 2 views, normalised and interleaved as SimCLR sends them.
  auto other = torch::randn({4, 4});
  other = other / other.norm(2, 1, true);
  auto world = std::make_shared<FakeTwoRanks>(other);
  set_dist(world);
  double ours = 0;
  try {
    ours = model->loss({v1, v2}, DataSamples{})["loss"].item<double>();
  } catch (...) {
    set_dist(nullptr);
    throw;
  }
  set_dist(nullptr);
  EXPECT_EQ(world->calls, 1);
  EXPECT_EQ(dist().world_size(), 1); // back to one process

  // NT-Xent over the 10 rows of the global batch, written directly.
  auto z = torch::stack({v1.flatten(1), v2.flatten(1)}, 1).reshape({6, 4});
  z = torch::cat({z / z.norm(2, 1, true), other});
  auto s = torch::mm(z, z.t()) / t - torch::eye(10) * 1e9;
  auto partner = torch::arange(10) ^ 1;
  auto expected = (torch::logsumexp(s, 1) - s.gather(1, partner.view({-1, 1})).squeeze(1)).mean();
  EXPECT_NEAR(ours, expected.item<double>(), 1e-5);
}
