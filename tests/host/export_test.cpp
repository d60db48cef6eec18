// `selfsup export` (issue 10, point 4): a checkpoint's backbone as a plain dict of tensors that
// Debian's python3-torch loads with strict=True into torchvision's resnet18 / resnet50 (the
// pooled features of the same input compared, atol = rtol = 1e-4), and ViT weights under timm's
// names (key set and shapes checked against a table written here: there is no timm package).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <torch/serialize.h>
#include <torch/torch.h>

#include <selfsup/config.h>
#include <selfsup/core/checkpoint.h>
#include <selfsup/core/weight_export.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/registry.h>

#include "test_support.h"
#include "tiny_run.h"

namespace selfsup {
namespace {

namespace fs = std::filesystem;
using core::TensorMap;

std::shared_ptr<Backbone> make_backbone(const std::string& json) {
  test::load_plugins();
  return build<Backbone>(Config(Json::parse(json, "test"), "model.backbone"));
}

// A checkpoint whose state_dict is the backbone's (under backbone.) plus a neck entry, which
// the export must drop. BN weights and running statistics are randomised so that a wrong
// mapping changes the features.
std::string write_checkpoint(torch::nn::Module& backbone, const fs::path& path) {
  torch::manual_seed(3);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : backbone.named_buffers())
      if (item.key().find("running_mean") != std::string::npos)
        item.value().normal_(0.0, 0.1);
      else if (item.key().find("running_var") != std::string::npos)
        item.value().uniform_(0.5, 1.5);
    for (auto& item : backbone.named_parameters())
      if (item.key().find("bn") != std::string::npos ||
          item.key().find("downsample.1") != std::string::npos)
        item.value().uniform_(0.5, 1.5);
  }
  core::Checkpoint ckpt;
  ckpt.meta = Json::object();
  for (const auto& [k, v] : core::module_state(backbone)) ckpt.state_dict["backbone." + k] = v;
  ckpt.state_dict["neck.mlp.0.weight"] = torch::randn({4, 4});
  core::save_checkpoint(path.string(), ckpt);
  return path.string();
}

bool have_torchvision() {
  return std::system("/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1") == 0;
}

class TorchvisionExport : public ::testing::TestWithParam<int> {};

TEST_P(TorchvisionExport, LoadsStrictInTorchvisionAndGivesTheSameFeatures) {
  if (!have_torchvision())
    GTEST_SKIP() << "/usr/bin/python3 with torch and torchvision not found (Debian's "
                    "python3-torch, python3-torchvision)";
  const int depth = GetParam();
  test::TempDir dir;
  auto net = make_backbone(R"({"type": "ResNet", "depth": )" + std::to_string(depth) + "}");
  const std::string ckpt = write_checkpoint(*net, dir.path() / "epoch_1.pth");
  net->eval();
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({2, 3, 64, 64});
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = net->forward(x).back().mean({2, 3});
  }
  c10::Dict<std::string, at::Tensor> io;
  io.insert("x", x);
  io.insert("y", y);
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(io));
  test::write_file(dir.path() / "io.pt", std::string(bytes.data(), bytes.size()));

  const std::string out = (dir.path() / "resnet.pth").string();
  const test::CliResult r =
      test::run_selfsup("export " + ckpt + " --out " + out + " --format torchvision");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("format torchvision"), std::string::npos) << r.output;

  // The file is a plain dict without the neck and without 'backbone.'.
  const c10::IValue loaded = torch::pickle_load([&] {
    std::ifstream in(out, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
  }());
  ASSERT_TRUE(loaded.isGenericDict());
  EXPECT_TRUE(loaded.toGenericDict().contains("conv1.weight"));
  EXPECT_FALSE(loaded.toGenericDict().contains("neck.mlp.0.weight"));

  const std::string arch = "resnet" + std::to_string(depth);
  const test::CliResult py = [&] {
    test::CliResult res;
    const std::string cmd = "/usr/bin/python3 " + std::string(SELFSUP_SOURCE_DIR) +
                            "/tests/fixtures/export/check_torchvision.py " + arch + " " + out +
                            " " + (dir.path() / "io.pt").string() + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) res.output.append(buf, n);
    const int status = pclose(p);
    res.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return res;
  }();
  EXPECT_EQ(py.code, 0) << py.output;
  std::cout << py.output;
}

INSTANTIATE_TEST_SUITE_P(Depths, TorchvisionExport, ::testing::Values(18, 50));

TEST(Export, TorchvisionRefusesWhatTorchvisionCannotLoad) {
  auto cifar = make_backbone(R"({"type": "ResNet", "depth": 18, "stem": "cifar"})");
  TensorMap state;
  for (const auto& [k, v] : core::module_state(*cifar)) state["backbone." + k] = v;
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { core::export_backbone(state, "torchvision", "c"); }),
      "7x7 stem"));
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { core::export_backbone(state, "onnx", "c"); }),
      "unknown export format 'onnx'"));
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] {
                         core::export_backbone({{"neck.w", torch::ones(1)}}, "selfsup", "c");
                       }),
                       "no 'backbone.' entries"));
  // A key torchvision's ResNet lacks (as a deep stem's) is named.
  auto resnet = make_backbone(R"({"type": "ResNet", "depth": 18})");
  TensorMap extra;
  for (const auto& [k, v] : core::module_state(*resnet)) extra["backbone." + k] = v;
  extra["backbone.stem.0.weight"] = torch::ones({32, 3, 3, 3});
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { core::export_backbone(extra, "torchvision", "c"); }),
      "c: backbone.stem.0.weight has no counterpart in torchvision's ResNet"));
}

// timm's VisionTransformer(img_size=32, patch_size=16, embed_dim=192, depth=12, num_heads=3,
// num_classes=0, global_pool='token') state_dict, written out from timm's naming.
std::map<std::string, std::vector<int64_t>> timm_vit_table(int64_t d, int64_t depth, int64_t hidden,
                                                           int64_t tokens) {
  std::map<std::string, std::vector<int64_t>> t = {
      {"cls_token", {1, 1, d}},
      {"pos_embed", {1, tokens, d}},
      {"patch_embed.proj.weight", {d, 3, 16, 16}},
      {"patch_embed.proj.bias", {d}},
      {"norm.weight", {d}},
      {"norm.bias", {d}},
  };
  for (int64_t i = 0; i < depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    t[b + "norm1.weight"] = {d};
    t[b + "norm1.bias"] = {d};
    t[b + "attn.qkv.weight"] = {3 * d, d};
    t[b + "attn.qkv.bias"] = {3 * d};
    t[b + "attn.proj.weight"] = {d, d};
    t[b + "attn.proj.bias"] = {d};
    t[b + "norm2.weight"] = {d};
    t[b + "norm2.bias"] = {d};
    t[b + "mlp.fc1.weight"] = {hidden, d};
    t[b + "mlp.fc1.bias"] = {hidden};
    t[b + "mlp.fc2.weight"] = {d, hidden};
    t[b + "mlp.fc2.bias"] = {d};
  }
  return t;
}

TEST(Export, VisionTransformerUnderTimmNames) {
  auto vit = make_backbone(
      R"({"type": "VisionTransformer", "arch": "deit-tiny", "img_size": 32, "patch_size": 16})");
  TensorMap state;
  for (const auto& [k, v] : core::module_state(*vit)) state["backbone." + k] = v;
  state["head.fc.weight"] = torch::ones({2, 2});
  EXPECT_EQ(core::default_export_format(state), "timm");
  const TensorMap timm = core::export_backbone(state, "timm", "vit.pth");
  std::map<std::string, std::vector<int64_t>> got;
  for (const auto& [k, v] : timm) got[k] = v.sizes().vec();
  EXPECT_EQ(got, timm_vit_table(192, 12, 768, 4 + 1));
  // The tensors are the backbone's own, moved to their new names.
  EXPECT_TRUE(timm.at("blocks.3.mlp.fc1.weight")
                  .equal(state.at("backbone.layers.3.ffn.layers.0.0.weight")));
  EXPECT_TRUE(timm.at("norm.bias").equal(state.at("backbone.ln1.bias")));

  // Through the command: the file holds the same keys.
  test::TempDir dir;
  core::Checkpoint ckpt;
  ckpt.state_dict = state;
  core::save_checkpoint((dir.path() / "vit.pth").string(), ckpt);
  const std::string out = (dir.path() / "timm.pth").string();
  const test::CliResult r =
      test::run_selfsup("export " + (dir.path() / "vit.pth").string() + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("format timm"), std::string::npos) << r.output;

  // A ResNet has no timm names.
  auto resnet = make_backbone(R"({"type": "ResNet", "depth": 18})");
  TensorMap rs;
  for (const auto& [k, v] : core::module_state(*resnet)) rs["backbone." + k] = v;
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { core::export_backbone(rs, "timm", "r.pth"); }),
      "r.pth: backbone.patch_embed.projection.weight missing"));
}

TEST(Export, SelfsupFormatKeepsTheBackboneNames) {
  const TensorMap state = {{"backbone.layers.0.ln1.weight", torch::ones(3)},
                           {"neck.fc.weight", torch::ones(3)}};
  const TensorMap out = core::export_backbone(state, "selfsup", "s");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out.count("layers.0.ln1.weight"));
}

// A model with a 'backbone' child, as an algorithm has.
struct Holder : torch::nn::Module {
  explicit Holder(std::shared_ptr<Backbone> b) : backbone(register_module("backbone", b)) {
    neck = register_module("neck", torch::nn::Linear(2, 2));
  }
  std::shared_ptr<Backbone> backbone;
  torch::nn::Linear neck{nullptr};
};

bool same_state(const torch::nn::Module& a, const torch::nn::Module& b) {
  const TensorMap sa = core::module_state(a), sb = core::module_state(b);
  if (sa.size() != sb.size()) return false;
  for (const auto& [k, v] : sa)
    if (!sb.count(k) || !v.equal(sb.at(k))) return false;
  return true;
}

class ImportExported : public ::testing::TestWithParam<const char*> {};

// Every format loads back as initial weights (load_from, init_cfg Pretrained): the backbone
// gets the exported tensors, the rest of the model keeps its own.
TEST_P(ImportExported, LoadsIntoTheBackbone) {
  const std::string format = GetParam();
  const std::string json = format == "timm" ? R"({"type": "VisionTransformer", "arch": "deit-tiny",
                                                  "img_size": 32, "patch_size": 16})"
                                            : R"({"type": "ResNet", "depth": 18})";
  torch::manual_seed(1);
  Holder src(make_backbone(json));
  torch::manual_seed(2);
  Holder dst(make_backbone(json));
  ASSERT_FALSE(same_state(*src.backbone, *dst.backbone));
  const torch::Tensor neck_before = dst.neck->weight.clone();
  TensorMap state;
  for (const auto& [k, v] : core::module_state(src)) state[k] = v;
  test::TempDir dir;
  const std::string file = (dir.path() / "w.pth").string();
  core::save_weights(file, core::export_backbone(state, format, "src"));
  core::load_initial_weights(dst, file);
  EXPECT_TRUE(same_state(*src.backbone, *dst.backbone));
  EXPECT_TRUE(dst.neck->weight.equal(neck_before));

  // A file that does not fit the backbone is refused, naming the source and the key.
  Holder other(make_backbone(R"({"type": "ResNet", "depth": 34})"));
  const std::string msg = test::message_of<ValueError>(
      [&] { core::load_pretrained_backbone(other, file, "model.backbone.init_cfg w.pth"); });
  EXPECT_TRUE(test::has_substr(msg, "model.backbone.init_cfg w.pth")) << msg;
}

INSTANTIATE_TEST_SUITE_P(Formats, ImportExported,
                         ::testing::Values("torchvision", "timm", "selfsup"));

TEST(Export, LoadFromACheckpointStillLoadsTheWholeModel) {
  torch::manual_seed(1);
  Holder src(make_backbone(R"({"type": "ResNet", "depth": 18})"));
  torch::manual_seed(2);
  Holder dst(make_backbone(R"({"type": "ResNet", "depth": 18})"));
  test::TempDir dir;
  core::Checkpoint ckpt;
  ckpt.state_dict = core::module_state(src);
  core::save_checkpoint((dir.path() / "epoch_1.pth").string(), ckpt);
  core::load_initial_weights(dst, (dir.path() / "epoch_1.pth").string());
  EXPECT_TRUE(same_state(src, dst));
  // Its backbone alone is what init_cfg Pretrained takes from it.
  torch::manual_seed(3);
  Holder third(make_backbone(R"({"type": "ResNet", "depth": 18})"));
  core::load_pretrained_backbone(third, (dir.path() / "epoch_1.pth").string(), "init_cfg");
  EXPECT_TRUE(same_state(*src.backbone, *third.backbone));
  EXPECT_FALSE(third.neck->weight.equal(src.neck->weight));
}

TEST(Export, PretrainedInitCfgIsTakenFromTheBackbone) {
  Json model = Json::parse(R"({"type": "SimCLR", "backbone": {"type": "ResNet", "depth": 18,
      "init_cfg": {"type": "Pretrained", "checkpoint": "r18.pth", "prefix": "backbone."}}})",
                           "test");
  EXPECT_EQ(core::take_pretrained_init_cfg(model), "r18.pth");
  EXPECT_EQ(model.find("backbone")->find("init_cfg"), nullptr);
  EXPECT_EQ(core::take_pretrained_init_cfg(model), "");
  Json other = Json::parse(
      R"({"backbone": {"init_cfg": {"type": "Pretrained", "checkpoint": "a", "map_location": "cpu"}}})",
      "test");
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([&] { core::take_pretrained_init_cfg(other); }),
      "model.backbone.init_cfg.map_location: not supported"));
  Json no_file = Json::parse(R"({"backbone": {"init_cfg": {"type": "Pretrained"}}})", "test");
  EXPECT_TRUE(test::has_substr(
      test::message_of<ConfigError>([&] { core::take_pretrained_init_cfg(no_file); }),
      "model.backbone.init_cfg.checkpoint"));
}

// Through `selfsup train`: init_cfg Pretrained on the backbone of the shipped SimCLR recipe
// (tiny, frozen_stages=4 so the weights stay as loaded) starts from the file's weights, and a file
// that does not fit fails before training, naming init_cfg; load_from the same.
TEST(Export, TrainStartsFromPretrainedInitCfgAndLoadFrom) {
  test::TempDir dir;
  test::make_fake_fmnist(dir.path() / "data", 64, 30);
  torch::manual_seed(11);
  auto tiny = make_backbone(R"({"type": "ResNet", "depth": 18, "in_channels": 1,
                                "stem": "cifar", "stem_channels": 4, "base_channels": 4})");
  TensorMap state;
  for (const auto& [k, v] : core::module_state(*tiny)) state["backbone." + k] = v;
  const std::string file = (dir.path() / "tiny_backbone.pth").string();
  core::save_weights(file, core::export_backbone(state, "selfsup", "tiny"));
  const std::string cfg =
      std::string(SELFSUP_SOURCE_DIR) + "/configs/simclr/simclr_resnet18_fmnist.json";
  auto train = [&](const std::string& work, const std::string& extra) {
    return test::run_selfsup("train " + cfg + " --work-dir " + (dir.path() / work).string() +
                             " --threads 2" + test::tiny_run_overrides(dir.path() / "data") +
                             " model.backbone.frozen_stages=4" + extra);
  };
  const test::CliResult r = train("init", " model.backbone.init_cfg.type=Pretrained"
                                          " model.backbone.init_cfg.checkpoint=" +
                                              file);
  ASSERT_EQ(r.code, 0) << r.output;
  const core::Checkpoint after = core::load_checkpoint((dir.path() / "init/epoch_2.pth").string());
  for (const auto& [name, t] : state) EXPECT_TRUE(after.state_dict.at(name).equal(t)) << name;

  const test::CliResult from = train("from", " load_from=" + file);
  ASSERT_EQ(from.code, 0) << from.output;
  const core::Checkpoint after2 = core::load_checkpoint((dir.path() / "from/epoch_2.pth").string());
  for (const auto& [name, t] : state) EXPECT_TRUE(after2.state_dict.at(name).equal(t)) << name;

  // A ResNet-34's weights do not fit the ResNet-18.
  auto r34 = make_backbone(R"({"type": "ResNet", "depth": 34, "in_channels": 1,
                               "stem": "cifar", "stem_channels": 4, "base_channels": 4})");
  TensorMap s34;
  for (const auto& [k, v] : core::module_state(*r34)) s34["backbone." + k] = v;
  const std::string bad = (dir.path() / "r34.pth").string();
  core::save_weights(bad, core::export_backbone(s34, "selfsup", "r34"));
  const test::CliResult refused = train("bad", " model.backbone.init_cfg.type=Pretrained"
                                               " model.backbone.init_cfg.checkpoint=" +
                                                   bad);
  EXPECT_NE(refused.code, 0);
  EXPECT_TRUE(test::has_substr(refused.output, "model.backbone.init_cfg " + bad)) << refused.output;
}

} // namespace
} // namespace selfsup
