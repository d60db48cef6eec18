// ResNetSobel (backbones plugin), DeepCluster's Sobel backbone: the Sobel layer against
// MMSelfSup 1.0's and a hand-made edge, the whole backbone against upstream's with the same
// weights (tests/fixtures/deepcluster/make_resnet_sobel_reference.py), state_dict names, frozen
// Sobel weights, and the in_channels error.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/registry.h>

#include "plugins/plugin_test_support.h"
#include "test_support.h"

namespace selfsup {
namespace {

std::shared_ptr<Backbone> make_backbone(const std::string& json) {
  test::load_plugins();
  return build<Backbone>(Config(Json::parse(json, "test"), "model.backbone"));
}

std::shared_ptr<Backbone> small_sobel_resnet() {
  return make_backbone(R"({"type": "ResNetSobel", "depth": 18, "stem_channels": 8,
                           "base_channels": 4, "out_indices": [0, 4]})");
}

// The Sobel layer alone: the backbone's `sobel_layer` child.
torch::Tensor sobel_of(Backbone& backbone, const torch::Tensor& x) {
  auto sobel = backbone.named_modules()["sobel_layer.sobel"];
  return sobel->as<torch::nn::Sequential>()->forward(x);
}

TEST(DeepClusterResNetSobelTest, SobelLayerMatchesUpstreamAndAHandMadeEdge) {
  const auto ref = test::load_fixture("tests/fixtures/deepcluster/resnet_sobel_reference.pt");
  auto backbone = small_sobel_resnet();
  torch::NoGradGuard no_grad;
  test::expect_allclose(sobel_of(*backbone, test::ref(ref, "input")), test::ref(ref, "sobel"), 1e-5,
                        1e-4, "Sobel");
  // A vertical step (0 left, 3 right in every channel): the grey level steps 0 -> 3; d/dx is
  // (1 + 2 + 1) * (0 - 3) = -12 on both columns beside the step and 0 elsewhere inside; d/dy
  // is 0 inside (zero padding makes the top and bottom rows respond).
  auto x = torch::zeros({1, 3, 6, 6});
  x.slice(3, 3).fill_(3.0);
  const auto s = sobel_of(*backbone, x);
  const auto inner = s.slice(2, 1, 5); // rows away from the zero padding
  const auto dx = inner[0][0], dy = inner[0][1];
  EXPECT_TRUE(torch::allclose(dx.select(1, 2), torch::full({4}, -12.0)));
  EXPECT_TRUE(torch::allclose(dx.select(1, 3), torch::full({4}, -12.0)));
  EXPECT_TRUE(torch::allclose(dx.select(1, 1), torch::zeros({4})));
  EXPECT_TRUE(torch::allclose(dx.select(1, 4), torch::zeros({4})));
  EXPECT_TRUE(torch::allclose(dy.slice(1, 1, 5), torch::zeros({4, 4})));
}

TEST(DeepClusterResNetSobelTest, BackboneMatchesUpstreamWithItsWeights) {
  const auto ref = test::load_fixture("tests/fixtures/deepcluster/resnet_sobel_reference.pt");
  auto backbone = small_sobel_resnet();
  // Upstream's state_dict keys and order: the ResNet's, then the Sobel layer's.
  std::vector<std::string> keys;
  for (const auto& item : ref) {
    const std::string key = item.key().toStringRef();
    if (key.rfind("state.", 0) == 0) keys.push_back(key.substr(6));
  }
  auto params = backbone->named_parameters(), buffers = backbone->named_buffers();
  size_t loaded = 0;
  {
    torch::NoGradGuard no_grad;
    for (const auto& key : keys) {
      torch::Tensor* dst = params.find(key);
      if (!dst) dst = buffers.find(key);
      ASSERT_NE(dst, nullptr) << "no parameter or buffer " << key;
      ASSERT_EQ(dst->sizes(), test::ref(ref, "state." + key).sizes()) << key;
      dst->copy_(test::ref(ref, "state." + key));
      ++loaded;
    }
  }
  size_t tracked = 0; // num_batches_tracked, left out of the fixture
  for (const auto& b : buffers)
    if (b.key().find("num_batches_tracked") != std::string::npos) ++tracked;
  EXPECT_EQ(loaded, params.size() + buffers.size() - tracked);
  const auto names = params.keys();
  ASSERT_GE(names.size(), 4u);
  EXPECT_EQ(names.front(), "conv1.weight");
  EXPECT_EQ(names.back(), "sobel_layer.sobel.1.bias");
  backbone->eval();
  torch::NoGradGuard no_grad;
  const auto outs = backbone->forward(test::ref(ref, "input"));
  ASSERT_EQ(outs.size(), 2u);
  test::expect_allclose(outs[0], test::ref(ref, "out0"), 1e-5, 1e-4, "stem");
  test::expect_allclose(outs[1], test::ref(ref, "out4"), 1e-5, 1e-4, "stage 4");
  EXPECT_EQ(backbone->out_channels(), (std::vector<int64_t>{8, 32}));
}

TEST(DeepClusterResNetSobelTest, SobelWeightsDoNotTrain) {
  auto backbone = small_sobel_resnet();
  backbone->train();
  const auto x = torch::rand({2, 3, 16, 16}) * 255;
  backbone->forward(x).back().sum().backward();
  for (const auto& p : backbone->named_parameters()) {
    if (p.key().rfind("sobel_layer.", 0) == 0) {
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    } else {
      EXPECT_TRUE(p.value().requires_grad()) << p.key();
    }
  }
  EXPECT_TRUE(backbone->named_parameters()["conv1.weight"].grad().defined());
  EXPECT_EQ(backbone->named_parameters()["conv1.weight"].size(1), 2); // 2 Sobel channels
}

TEST(DeepClusterResNetSobelTest, ErrorsNameThePath) {
  const std::string msg = test::message_of<ConfigError>(
      [] { (void)make_backbone(R"({"type": "ResNetSobel", "depth": 18, "in_channels": 2})"); });
  EXPECT_TRUE(test::has_substr(msg, "model.backbone.in_channels: expected 3: the Sobel layer "
                                    "reads 3-channel images and feeds the ResNet its 2 channels, "
                                    "got 2"))
      << msg;
  auto backbone = small_sobel_resnet();
  const std::string shape = test::message_of([&] {
    (void)backbone->forward(torch::rand({1, 1, 8, 8}));
  });
  EXPECT_TRUE(test::has_substr(shape, "ResNetSobel: expected input [N, 3, H, W]")) << shape;
}

} // namespace
} // namespace selfsup
