// ResNet / ResNet_CIFAR (backbones plugin): shapes, torchvision names and counts, init,
// frozen stages, norm_eval, zero_init_residual and config errors that name the JSON path.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/registry.h>

#include "test_support.h"

namespace selfsup {
namespace {

std::shared_ptr<Backbone> make_backbone(const std::string& json,
                                        const std::string& path = "model.backbone") {
  test::load_plugins();
  return build<Backbone>(Config(Json::parse(json, "test"), path));
}

// Parameter and buffer names in state_dict order: pre-order over modules, each module's own
// parameters, then its own buffers (as torch.nn.Module.state_dict).
std::vector<std::string> state_dict_keys(const torch::nn::Module& m) {
  std::vector<std::string> keys;
  for (const auto& item : m.named_modules()) {
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false))
      keys.push_back(prefix + p.key());
    for (const auto& b : item.value()->named_buffers(/*recurse=*/false))
      keys.push_back(prefix + b.key());
  }
  return keys;
}

int64_t num_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

std::vector<std::vector<int64_t>> shapes(const std::vector<torch::Tensor>& ts) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& t : ts) out.push_back(t.sizes().vec());
  return out;
}

std::shared_ptr<torch::nn::Module> child(const torch::nn::Module& m, const std::string& name) {
  return m.named_modules()[name];
}

std::string error_of(const std::string& json) {
  return test::message_of<ConfigError>([&] { (void)make_backbone(json); });
}

using Shapes = std::vector<std::vector<int64_t>>;

TEST(ResNetTest, ResNet18CifarStemShapesAt32) {
  torch::manual_seed(0);
  auto net = make_backbone(
      R"({"type": "ResNet", "depth": 18, "stem": "cifar", "out_indices": [0, 1, 2, 3, 4]})");
  net->eval();
  auto outs = net->forward(torch::randn({2, 3, 32, 32}));
  EXPECT_EQ(
      shapes(outs),
      (Shapes{{2, 64, 32, 32}, {2, 64, 32, 32}, {2, 128, 16, 16}, {2, 256, 8, 8}, {2, 512, 4, 4}}));
  EXPECT_EQ(net->out_channels(), (std::vector<int64_t>{64, 64, 128, 256, 512}));
}

TEST(ResNetTest, ResNet18ImagenetStemShapesAt32) {
  torch::manual_seed(0);
  auto net = make_backbone(R"({"type": "ResNet", "depth": 18, "out_indices": [4, 0]})");
  net->eval();
  auto outs = net->forward(torch::randn({2, 3, 32, 32}));
  // Outputs come in ascending index order, whatever the order in the config.
  EXPECT_EQ(shapes(outs), (Shapes{{2, 64, 16, 16}, {2, 512, 1, 1}}));
  EXPECT_EQ(net->out_channels(), (std::vector<int64_t>{64, 512}));
}

TEST(ResNetTest, ResNet18ImagenetStemShapesAt224) {
  torch::manual_seed(0);
  auto net = make_backbone(R"({"type": "ResNet", "depth": 18})");
  net->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({1, 3, 224, 224});
  EXPECT_EQ(shapes(net->forward(x)), (Shapes{{1, 512, 7, 7}}));
  auto all = make_backbone(R"({"type": "ResNet", "depth": 18, "out_indices": [1, 2, 3, 4]})");
  all->eval();
  EXPECT_EQ(shapes(all->forward(x)),
            (Shapes{{1, 64, 56, 56}, {1, 128, 28, 28}, {1, 256, 14, 14}, {1, 512, 7, 7}}));
}

TEST(ResNetTest, ResNet50ImagenetStemShapesAt224) {
  torch::manual_seed(0);
  auto net = make_backbone(R"({"type": "ResNet", "depth": 50, "out_indices": [0, 1, 2, 3, 4]})");
  net->eval();
  torch::NoGradGuard no_grad;
  auto outs = net->forward(torch::randn({1, 3, 224, 224}));
  EXPECT_EQ(shapes(outs), (Shapes{{1, 64, 112, 112},
                                  {1, 256, 56, 56},
                                  {1, 512, 28, 28},
                                  {1, 1024, 14, 14},
                                  {1, 2048, 7, 7}}));
  EXPECT_EQ(net->out_channels(), (std::vector<int64_t>{64, 256, 512, 1024, 2048}));
}

TEST(ResNetTest, ResNet50CifarStemShapesAt32) {
  torch::manual_seed(0);
  auto net = make_backbone(R"({"type": "ResNet", "depth": 50, "stem": "cifar",
                               "out_indices": [2, 4]})");
  net->eval();
  torch::NoGradGuard no_grad;
  auto outs = net->forward(torch::randn({2, 3, 32, 32}));
  EXPECT_EQ(shapes(outs), (Shapes{{2, 512, 16, 16}, {2, 2048, 4, 4}}));
}

TEST(ResNetTest, ResNetCifarTypeDefaultsToCifarStem) {
  auto net = make_backbone(R"({"type": "ResNet_CIFAR", "depth": 18})");
  auto params = net->named_parameters();
  EXPECT_EQ(params["conv1.weight"].sizes().vec(), (std::vector<int64_t>{64, 3, 3, 3}));
  net->eval();
  EXPECT_EQ(shapes(net->forward(torch::randn({1, 3, 32, 32}))), (Shapes{{1, 512, 4, 4}}));
  // The stem can still be overridden.
  auto imagenet = make_backbone(R"({"type": "ResNet_CIFAR", "depth": 18, "stem": "imagenet"})");
  EXPECT_EQ(imagenet->named_parameters()["conv1.weight"].sizes().vec(),
            (std::vector<int64_t>{64, 3, 7, 7}));
}

TEST(ResNetTest, ResNet18StateDictMatchesTorchvision) {
  // torchvision.models.resnet18().state_dict().keys() without fc.weight / fc.bias.
  const std::vector<std::string> torchvision = {
      "conv1.weight",
      "bn1.weight",
      "bn1.bias",
      "bn1.running_mean",
      "bn1.running_var",
      "bn1.num_batches_tracked",
      "layer1.0.conv1.weight",
      "layer1.0.bn1.weight",
      "layer1.0.bn1.bias",
      "layer1.0.bn1.running_mean",
      "layer1.0.bn1.running_var",
      "layer1.0.bn1.num_batches_tracked",
      "layer1.0.conv2.weight",
      "layer1.0.bn2.weight",
      "layer1.0.bn2.bias",
      "layer1.0.bn2.running_mean",
      "layer1.0.bn2.running_var",
      "layer1.0.bn2.num_batches_tracked",
      "layer1.1.conv1.weight",
      "layer1.1.bn1.weight",
      "layer1.1.bn1.bias",
      "layer1.1.bn1.running_mean",
      "layer1.1.bn1.running_var",
      "layer1.1.bn1.num_batches_tracked",
      "layer1.1.conv2.weight",
      "layer1.1.bn2.weight",
      "layer1.1.bn2.bias",
      "layer1.1.bn2.running_mean",
      "layer1.1.bn2.running_var",
      "layer1.1.bn2.num_batches_tracked",
      "layer2.0.conv1.weight",
      "layer2.0.bn1.weight",
      "layer2.0.bn1.bias",
      "layer2.0.bn1.running_mean",
      "layer2.0.bn1.running_var",
      "layer2.0.bn1.num_batches_tracked",
      "layer2.0.conv2.weight",
      "layer2.0.bn2.weight",
      "layer2.0.bn2.bias",
      "layer2.0.bn2.running_mean",
      "layer2.0.bn2.running_var",
      "layer2.0.bn2.num_batches_tracked",
      "layer2.0.downsample.0.weight",
      "layer2.0.downsample.1.weight",
      "layer2.0.downsample.1.bias",
      "layer2.0.downsample.1.running_mean",
      "layer2.0.downsample.1.running_var",
      "layer2.0.downsample.1.num_batches_tracked",
      "layer2.1.conv1.weight",
      "layer2.1.bn1.weight",
      "layer2.1.bn1.bias",
      "layer2.1.bn1.running_mean",
      "layer2.1.bn1.running_var",
      "layer2.1.bn1.num_batches_tracked",
      "layer2.1.conv2.weight",
      "layer2.1.bn2.weight",
      "layer2.1.bn2.bias",
      "layer2.1.bn2.running_mean",
      "layer2.1.bn2.running_var",
      "layer2.1.bn2.num_batches_tracked",
      "layer3.0.conv1.weight",
      "layer3.0.bn1.weight",
      "layer3.0.bn1.bias",
      "layer3.0.bn1.running_mean",
      "layer3.0.bn1.running_var",
      "layer3.0.bn1.num_batches_tracked",
      "layer3.0.conv2.weight",
      "layer3.0.bn2.weight",
      "layer3.0.bn2.bias",
      "layer3.0.bn2.running_mean",
      "layer3.0.bn2.running_var",
      "layer3.0.bn2.num_batches_tracked",
      "layer3.0.downsample.0.weight",
      "layer3.0.downsample.1.weight",
      "layer3.0.downsample.1.bias",
      "layer3.0.downsample.1.running_mean",
      "layer3.0.downsample.1.running_var",
      "layer3.0.downsample.1.num_batches_tracked",
      "layer3.1.conv1.weight",
      "layer3.1.bn1.weight",
      "layer3.1.bn1.bias",
      "layer3.1.bn1.running_mean",
      "layer3.1.bn1.running_var",
      "layer3.1.bn1.num_batches_tracked",
      "layer3.1.conv2.weight",
      "layer3.1.bn2.weight",
      "layer3.1.bn2.bias",
      "layer3.1.bn2.running_mean",
      "layer3.1.bn2.running_var",
      "layer3.1.bn2.num_batches_tracked",
      "layer4.0.conv1.weight",
      "layer4.0.bn1.weight",
      "layer4.0.bn1.bias",
      "layer4.0.bn1.running_mean",
      "layer4.0.bn1.running_var",
      "layer4.0.bn1.num_batches_tracked",
      "layer4.0.conv2.weight",
      "layer4.0.bn2.weight",
      "layer4.0.bn2.bias",
      "layer4.0.bn2.running_mean",
      "layer4.0.bn2.running_var",
      "layer4.0.bn2.num_batches_tracked",
      "layer4.0.downsample.0.weight",
      "layer4.0.downsample.1.weight",
      "layer4.0.downsample.1.bias",
      "layer4.0.downsample.1.running_mean",
      "layer4.0.downsample.1.running_var",
      "layer4.0.downsample.1.num_batches_tracked",
      "layer4.1.conv1.weight",
      "layer4.1.bn1.weight",
      "layer4.1.bn1.bias",
      "layer4.1.bn1.running_mean",
      "layer4.1.bn1.running_var",
      "layer4.1.bn1.num_batches_tracked",
      "layer4.1.conv2.weight",
      "layer4.1.bn2.weight",
      "layer4.1.bn2.bias",
      "layer4.1.bn2.running_mean",
      "layer4.1.bn2.running_var",
      "layer4.1.bn2.num_batches_tracked",
  };
  ASSERT_EQ(torchvision.size(), 120u);
  auto net = make_backbone(R"({"type": "ResNet", "depth": 18})");
  EXPECT_EQ(state_dict_keys(*net), torchvision);
}

TEST(ResNetTest, ResNet50NamesFollowTorchvisionBottleneck) {
  auto net = make_backbone(R"({"type": "ResNet", "depth": 50})");
  const auto keys = state_dict_keys(*net);
  // torchvision resnet50 has 320 state_dict entries, 2 of them fc.*.
  EXPECT_EQ(keys.size(), 318u);
  const std::vector<std::string> head = {"conv1.weight",
                                         "bn1.weight",
                                         "bn1.bias",
                                         "bn1.running_mean",
                                         "bn1.running_var",
                                         "bn1.num_batches_tracked",
                                         "layer1.0.conv1.weight",
                                         "layer1.0.bn1.weight",
                                         "layer1.0.bn1.bias",
                                         "layer1.0.bn1.running_mean",
                                         "layer1.0.bn1.running_var",
                                         "layer1.0.bn1.num_batches_tracked",
                                         "layer1.0.conv2.weight",
                                         "layer1.0.bn2.weight",
                                         "layer1.0.bn2.bias",
                                         "layer1.0.bn2.running_mean",
                                         "layer1.0.bn2.running_var",
                                         "layer1.0.bn2.num_batches_tracked",
                                         "layer1.0.conv3.weight",
                                         "layer1.0.bn3.weight",
                                         "layer1.0.bn3.bias",
                                         "layer1.0.bn3.running_mean",
                                         "layer1.0.bn3.running_var",
                                         "layer1.0.bn3.num_batches_tracked",
                                         "layer1.0.downsample.0.weight",
                                         "layer1.0.downsample.1.weight",
                                         "layer1.0.downsample.1.bias",
                                         "layer1.0.downsample.1.running_mean",
                                         "layer1.0.downsample.1.running_var",
                                         "layer1.0.downsample.1.num_batches_tracked",
                                         "layer1.1.conv1.weight"};
  ASSERT_GE(keys.size(), head.size());
  EXPECT_EQ(std::vector<std::string>(keys.begin(), keys.begin() + head.size()), head);
  EXPECT_EQ(keys.back(), "layer4.2.bn3.num_batches_tracked");
  auto params = net->named_parameters();
  // 'pytorch' style: the stride sits on the 3x3 conv; the shortcut is a strided 1x1 conv.
  EXPECT_EQ(params["layer2.0.conv2.weight"].sizes().vec(), (std::vector<int64_t>{128, 128, 3, 3}));
  EXPECT_EQ(params["layer4.0.downsample.0.weight"].sizes().vec(),
            (std::vector<int64_t>{2048, 1024, 1, 1}));
  for (const auto& k : keys) EXPECT_EQ(k.find("fc"), std::string::npos) << k;
}

TEST(ResNetTest, ParameterCountsMatchTorchvisionWithoutFc) {
  EXPECT_EQ(num_params(*make_backbone(R"({"type": "ResNet", "depth": 18})")), 11176512);
  EXPECT_EQ(num_params(*make_backbone(R"({"type": "ResNet", "depth": 34})")), 21284672);
  EXPECT_EQ(num_params(*make_backbone(R"({"type": "ResNet", "depth": 50})")), 23508032);
}

TEST(ResNetTest, InitIsKaimingFanOutAndUnitBatchNorm) {
  torch::manual_seed(0);
  auto net = make_backbone(R"({"type": "ResNet", "depth": 18})");
  auto params = net->named_parameters();
  // fan_out = 512 * 3 * 3 -> std = sqrt(2 / 4608).
  const double std = params["layer4.1.conv2.weight"].std().item<double>();
  EXPECT_NEAR(std, std::sqrt(2.0 / 4608.0), 0.02 * std::sqrt(2.0 / 4608.0));
  EXPECT_TRUE(torch::all(params["layer3.0.bn2.weight"] == 1).item<bool>());
  EXPECT_TRUE(torch::all(params["layer3.0.bn2.bias"] == 0).item<bool>());
  for (const auto& p : net->parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(ResNetTest, ZeroInitResidualZeroesLastNormOfEachBlock) {
  auto r18 = make_backbone(R"({"type": "ResNet", "depth": 18, "zero_init_residual": true})");
  for (const auto& p : r18->named_parameters()) {
    const auto& k = p.key();
    if (k.find(".bn2.weight") != std::string::npos) {
      EXPECT_TRUE(torch::all(p.value() == 0).item<bool>()) << k;
    }
    if (k.find(".bn1.weight") != std::string::npos || k == "bn1.weight" ||
        k.find("downsample.1.weight") != std::string::npos) {
      EXPECT_TRUE(torch::all(p.value() == 1).item<bool>()) << k;
    }
  }
  auto r50 = make_backbone(R"({"type": "ResNet", "depth": 50, "zero_init_residual": true})");
  int zeroed = 0;
  for (const auto& p : r50->named_parameters()) {
    const auto& k = p.key();
    if (k.find(".bn3.weight") != std::string::npos) {
      EXPECT_TRUE(torch::all(p.value() == 0).item<bool>()) << k;
      ++zeroed;
    }
    if (k.find(".bn2.weight") != std::string::npos) {
      EXPECT_TRUE(torch::all(p.value() == 1).item<bool>()) << k;
    }
  }
  EXPECT_EQ(zeroed, 16);
  // Without the option, the last BN weights are 1.
  auto plain = make_backbone(R"({"type": "ResNet", "depth": 50})");
  EXPECT_TRUE(torch::all(plain->named_parameters()["layer1.0.bn3.weight"] == 1).item<bool>());
}

TEST(ResNetTest, FrozenStagesStopGradientsAndKeepBatchNormInEval) {
  torch::manual_seed(0);
  auto net =
      make_backbone(R"({"type": "ResNet", "depth": 18, "stem": "cifar", "frozen_stages": 2})");
  for (const auto& p : net->named_parameters()) {
    const auto& k = p.key();
    const bool frozen = k.rfind("conv1.", 0) == 0 || k.rfind("bn1.", 0) == 0 ||
                        k.rfind("layer1.", 0) == 0 || k.rfind("layer2.", 0) == 0;
    EXPECT_EQ(p.value().requires_grad(), !frozen) << k;
  }
  net->train();
  EXPECT_TRUE(net->is_training());
  EXPECT_FALSE(child(*net, "bn1")->is_training());
  EXPECT_FALSE(child(*net, "layer1.0.bn1")->is_training());
  EXPECT_FALSE(child(*net, "layer2.0.downsample.1")->is_training());
  EXPECT_TRUE(child(*net, "layer3.0.bn1")->is_training());
  EXPECT_TRUE(child(*net, "layer4.1.bn2")->is_training());

  // A training step leaves the frozen BN statistics alone and updates the others.
  auto buffers = net->named_buffers();
  auto frozen_mean = buffers["layer1.0.bn1.running_mean"].clone();
  auto live_mean = buffers["layer3.0.bn1.running_mean"].clone();
  auto outs = net->forward(torch::randn({4, 3, 16, 16}));
  outs[0].sum().backward();
  EXPECT_TRUE(torch::equal(buffers["layer1.0.bn1.running_mean"], frozen_mean));
  EXPECT_FALSE(torch::equal(buffers["layer3.0.bn1.running_mean"], live_mean));
  auto params = net->named_parameters();
  EXPECT_FALSE(params["layer1.0.conv1.weight"].grad().defined());
  EXPECT_TRUE(params["layer3.0.conv1.weight"].grad().defined());

  // eval() then train() again: still frozen.
  net->eval();
  net->train(true);
  EXPECT_FALSE(child(*net, "layer2.1.bn2")->is_training());
  EXPECT_TRUE(child(*net, "layer3.1.bn2")->is_training());
}

TEST(ResNetTest, FrozenStagesZeroFreezesOnlyTheStem) {
  auto net = make_backbone(R"({"type": "ResNet", "depth": 18, "frozen_stages": 0})");
  auto params = net->named_parameters();
  EXPECT_FALSE(params["conv1.weight"].requires_grad());
  EXPECT_FALSE(params["bn1.weight"].requires_grad());
  EXPECT_TRUE(params["layer1.0.conv1.weight"].requires_grad());
  net->train();
  EXPECT_FALSE(child(*net, "bn1")->is_training());
  EXPECT_TRUE(child(*net, "layer1.0.bn1")->is_training());
}

TEST(ResNetTest, NormEvalKeepsEveryBatchNormInEvalButTrainable) {
  auto net = make_backbone(R"({"type": "ResNet", "depth": 18, "norm_eval": true})");
  net->train();
  EXPECT_TRUE(net->is_training());
  int bns = 0;
  for (const auto& m : net->named_modules()) {
    if (m.value()->as<torch::nn::BatchNorm2d>()) {
      EXPECT_FALSE(m.value()->is_training()) << m.key();
      ++bns;
    }
  }
  EXPECT_EQ(bns, 1 + 8 * 2 + 3);
  EXPECT_TRUE(child(*net, "layer1.0.conv1")->is_training());
  for (const auto& p : net->parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(ResNetTest, NormCfgSyncBNActsAsBatchNorm) {
  auto net = make_backbone(
      R"({"type": "ResNet", "depth": 18, "norm_cfg": {"type": "SyncBN", "requires_grad": true}})");
  EXPECT_NE(child(*net, "bn1")->as<torch::nn::BatchNorm2d>(), nullptr);
  auto frozen_bn = make_backbone(
      R"({"type": "ResNet", "depth": 18, "norm_cfg": {"type": "BN", "requires_grad": false}})");
  auto params = frozen_bn->named_parameters();
  EXPECT_FALSE(params["layer1.0.bn1.weight"].requires_grad());
  EXPECT_TRUE(params["layer1.0.conv1.weight"].requires_grad());
}

TEST(ResNetTest, StagesWidthsAndInputChannels) {
  auto net = make_backbone(R"({"type": "ResNet", "depth": 18, "in_channels": 1,
      "base_channels": 16, "num_stages": 3, "out_indices": [3], "stem": "cifar"})");
  EXPECT_EQ(net->out_channels(), (std::vector<int64_t>{64}));
  net->eval();
  EXPECT_EQ(shapes(net->forward(torch::randn({2, 1, 28, 28}))), (Shapes{{2, 64, 7, 7}}));
  EXPECT_EQ(net->named_modules().find("layer4"), nullptr);
  auto strided = make_backbone(R"({"type": "ResNet", "depth": 18, "stem": "cifar",
      "strides": [1, 1, 2, 1], "out_indices": [4]})");
  strided->eval();
  EXPECT_EQ(shapes(strided->forward(torch::randn({1, 3, 32, 32}))), (Shapes{{1, 512, 16, 16}}));
  auto stem = make_backbone(R"({"type": "ResNet", "depth": 50, "stem_channels": 32,
      "out_indices": [0, 1]})");
  EXPECT_EQ(stem->out_channels(), (std::vector<int64_t>{32, 256}));
}

TEST(ResNetTest, GradientsReachTheStem) {
  torch::manual_seed(0);
  auto net = make_backbone(R"({"type": "ResNet", "depth": 18, "stem": "cifar"})");
  net->train();
  auto out = net->forward(torch::randn({2, 3, 16, 16}));
  out[0].pow(2).mean().backward();
  auto params = net->named_parameters();
  ASSERT_TRUE(params["conv1.weight"].grad().defined());
  EXPECT_GT(params["conv1.weight"].grad().abs().sum().item<double>(), 0.0);
}

TEST(ResNetTest, PrettyPrintNamesTheArchitecture) {
  auto net = make_backbone(R"({"type": "ResNet", "depth": 50, "out_indices": [3, 4]})");
  std::ostringstream s;
  net->pretty_print(s);
  EXPECT_NE(s.str().find("ResNet(depth=50"), std::string::npos) << s.str();
  EXPECT_NE(s.str().find("Bottleneck"), std::string::npos) << s.str();
  EXPECT_NE(s.str().find("out_channels=[1024, 2048]"), std::string::npos) << s.str();
}

TEST(ResNetTest, BadConfigValuesNameTheJsonPath) {
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 20})")
                .rfind("model.backbone.depth: expected one of 18, 34, 50, 101, 152", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet"})").rfind("model.backbone.depth: required key", 0), 0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": "18"})").rfind("model.backbone.depth:", 0), 0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "out_indices": [5]})")
                .rfind("model.backbone.out_indices: index 5 is out of range", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "out_indices": [-1]})")
                .rfind("model.backbone.out_indices:", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "num_stages": 2, "out_indices": [3]})")
                .rfind("model.backbone.out_indices:", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "frozen_stages": 5})")
                .rfind("model.backbone.frozen_stages:", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "norm_cfg": {"type": "GN"}})")
                .rfind("model.backbone.norm_cfg.type: expected one of \"BN\", \"SyncBN\", got "
                       "\"GN\"",
                       0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "norm_cfg": {"type": "BN", "x": 1}})")
                .rfind("model.backbone.norm_cfg.x: unknown key", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "stem": "deep"})")
                .rfind("model.backbone.stem:", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "style": "caffe"})")
                .rfind("model.backbone.style:", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "base_channels": 0})")
                .rfind("model.backbone.base_channels:", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "strides": [1, 2]})")
                .rfind("model.backbone.strides:", 0),
            0u);
  EXPECT_EQ(error_of(R"({"type": "ResNet", "depth": 18, "deep_stem": true})")
                .rfind("model.backbone.deep_stem: unknown key", 0),
            0u);
}

// mmselfsup and mmcls: stem_channels=64 whatever base_channels.
TEST(ResNetTest, StemChannelsDefaultTo64WhateverBaseChannels) {
  auto net = make_backbone(
      R"({"type": "ResNet", "depth": 18, "base_channels": 16, "out_indices": [0, 1, 4]})");
  auto params = net->named_parameters();
  EXPECT_EQ(params["conv1.weight"].sizes().vec(), (std::vector<int64_t>{64, 3, 7, 7}));
  EXPECT_EQ(params["layer1.0.conv1.weight"].sizes().vec(), (std::vector<int64_t>{16, 64, 3, 3}));
  EXPECT_EQ(net->out_channels(), (std::vector<int64_t>{64, 16, 128}));
  // The stem-to-stage-1 width change needs a projection, as torch's ResNet does.
  EXPECT_NE(child(*net, "layer1.0.downsample"), nullptr);
  auto stem =
      make_backbone(R"({"type": "ResNet", "depth": 18, "base_channels": 16, "stem_channels": 16})");
  EXPECT_EQ(stem->named_parameters()["conv1.weight"].size(0), 16);
  test::load_plugins();
  EXPECT_EQ(
      Registry::global().find("backbone", "ResNet")->schema.find("stem_channels")->default_value,
      Json(64));
}

// MMSelfSup counts the stem as 0; mmcls (and mmpretrain) count stages from 0.
TEST(ResNetTest, OutIndicesFollowTheScope) {
  torch::manual_seed(0);
  const auto x = torch::randn({1, 3, 32, 32});
  const Shapes stages{{1, 64, 8, 8}, {1, 128, 4, 4}, {1, 256, 2, 2}, {1, 512, 1, 1}};
  for (const char* type : {"mmcls.ResNet", "mmpretrain.ResNet", "backbones.mmcls.ResNet"}) {
    auto net = make_backbone(std::string(R"({"type": ")") + type +
                             R"(", "depth": 18, "out_indices": [0, 1, 2, 3]})");
    net->eval();
    EXPECT_EQ(shapes(net->forward(x)), stages) << type;
    EXPECT_EQ(net->out_channels(), (std::vector<int64_t>{64, 128, 256, 512})) << type;
    auto last = make_backbone(std::string(R"({"type": ")") + type + R"(", "depth": 18})");
    last->eval();
    EXPECT_EQ(shapes(last->forward(x)), (Shapes{{1, 512, 1, 1}})) << type; // default (3,)
  }
  for (const char* type : {"ResNet", "mmselfsup.ResNet", "backbones.ResNet"}) {
    auto net = make_backbone(std::string(R"({"type": ")") + type +
                             R"(", "depth": 18, "out_indices": [0, 1, 2, 3, 4]})");
    net->eval();
    const auto outs = shapes(net->forward(x));
    ASSERT_EQ(outs.size(), 5u) << type;
    EXPECT_EQ(outs[0], (std::vector<int64_t>{1, 64, 16, 16})) << type; // the stem
    EXPECT_EQ(Shapes(outs.begin() + 1, outs.end()), stages) << type;
  }
  // mmcls.ResNet_CIFAR: the CIFAR stem, stages from 0.
  auto cifar = make_backbone(R"({"type": "mmcls.ResNet_CIFAR", "depth": 18, "out_indices": [0]})");
  cifar->eval();
  EXPECT_EQ(shapes(cifar->forward(x)), (Shapes{{1, 64, 32, 32}}));
  EXPECT_TRUE(test::has_substr(
      error_of(R"({"type": "mmcls.ResNet", "depth": 18, "out_indices": [4]})"),
      "model.backbone.out_indices: index 4 is out of range [0, 3] (mmcls: 0..3 = stages)"));
  EXPECT_TRUE(test::has_substr(
      error_of(R"({"type": "mmcls.ResNet", "depth": 18, "num_stages": 2, "out_indices": [2]})"),
      "model.backbone.out_indices: index 2 is out of range [0, 1]"));
  std::ostringstream s;
  make_backbone(R"({"type": "mmcls.ResNet", "depth": 18})")->pretty_print(s);
  EXPECT_TRUE(test::has_substr(s.str(), "scope=mmcls, out_indices=[3], out_channels=[512]"));
}

bool last_norms_zero(const Backbone& net) {
  bool all_zero = true;
  for (const auto& p : net.named_parameters())
    if (p.key().find(".bn2.weight") != std::string::npos)
      all_zero = all_zero && torch::all(p.value() == 0).item<bool>();
  return all_zero;
}

// mmcls defaults zero_init_residual to true; MMSelfSup's ResNet passes false.
TEST(ResNetTest, ZeroInitResidualDefaultFollowsTheScope) {
  EXPECT_TRUE(last_norms_zero(*make_backbone(R"({"type": "mmcls.ResNet", "depth": 18})")));
  EXPECT_TRUE(last_norms_zero(*make_backbone(R"({"type": "mmcls.ResNet_CIFAR", "depth": 18})")));
  EXPECT_TRUE(last_norms_zero(*make_backbone(R"({"type": "mmpretrain.ResNet", "depth": 18})")));
  EXPECT_FALSE(last_norms_zero(*make_backbone(R"({"type": "ResNet", "depth": 18})")));
  EXPECT_FALSE(last_norms_zero(*make_backbone(R"({"type": "mmselfsup.ResNet", "depth": 18})")));
  EXPECT_FALSE(last_norms_zero(*make_backbone(R"({"type": "ResNet_CIFAR", "depth": 18})")));
  EXPECT_FALSE(last_norms_zero(
      *make_backbone(R"({"type": "mmcls.ResNet", "depth": 18, "zero_init_residual": false})")));
  test::load_plugins();
  const auto* mmcls = Registry::global().find("backbone", "mmcls.ResNet");
  ASSERT_NE(mmcls, nullptr);
  EXPECT_EQ(mmcls->name, "mmcls.ResNet");
  EXPECT_EQ(mmcls->schema.find("zero_init_residual")->default_value, Json(true));
  EXPECT_EQ(mmcls->schema.find("out_indices")->default_value, Json::array({3}));
  EXPECT_EQ(Registry::global().find("backbone", "mmselfsup.ResNet")->name, "ResNet");
}

TEST(ResNetTest, SchemaDocumentsEveryKey) {
  test::load_plugins();
  const auto* entry = Registry::global().find("backbone", "ResNet");
  ASSERT_NE(entry, nullptr);
  for (const char* key :
       {"depth", "in_channels", "stem_channels", "base_channels", "num_stages", "out_indices",
        "stem", "style", "frozen_stages", "norm_eval", "zero_init_residual", "norm_cfg"}) {
    const auto* spec = entry->schema.find(key);
    ASSERT_NE(spec, nullptr) << key;
    EXPECT_FALSE(spec->doc.empty()) << key;
  }
  EXPECT_TRUE(entry->schema.find("depth")->required);
  const auto* cifar = Registry::global().find("backbone", "ResNet_CIFAR");
  ASSERT_NE(cifar, nullptr);
  EXPECT_EQ(cifar->schema.find("stem")->default_value.as_string(), "cifar");
}

} // namespace
} // namespace selfsup
