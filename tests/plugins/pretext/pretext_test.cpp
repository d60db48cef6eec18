// RelativeLoc and RotationPred (plugins/pretext): the rotation and patch transforms on
// hand-made images (labels, positions, against upstream's outputs), the data preprocessors,
// RelativeLocNeck, the algorithms' losses and gradients against upstream MMSelfSup 1.0
// (tests/fixtures/pretext/make_pretext_reference.py), predict, and a few training
// iterations of the shipped Fashion-MNIST configs on generated data.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/core/config_file.h>
#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "local_registry.h"
#include "plugins/plugin_test_support.h"
#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

using test::ref;
using Dict = test::TensorDict;

const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry("pretext_test",
                                            [](Registrar& r) { test::add_pass_backbone(r); });
  return registry;
}

Dict reference() {
  return test::load_fixture("tests/fixtures/pretext/pretext_reference.pt");
}

void expect_close(const torch::Tensor& ours, const torch::Tensor& theirs, const std::string& what,
                  double rtol = 1e-5, double atol = 1e-9) {
  test::expect_allclose(ours, theirs, rtol, atol, what);
}

std::shared_ptr<Transform> transform(const std::string& json) {
  return build<Transform>(registry().config(Json::parse(json, "t"), "pipeline[0]"));
}

Image image_of(const torch::Tensor& hwc) {
  const auto t = hwc.contiguous();
  Image img(int(t.size(0)), int(t.size(1)), int(t.size(2)));
  std::copy_n(t.data_ptr<uint8_t>(), t.numel(), img.data.begin());
  return img;
}

torch::Tensor tensor_of(const Image& img) {
  return torch::from_blob(const_cast<uint8_t*>(img.data.data()),
                          {img.height, img.width, img.channels}, torch::kUInt8)
      .clone();
}

/// img[y1 : y2 + 1, x1 : x2 + 1] for a box (x1, y1, x2, y2).
torch::Tensor at_box(const torch::Tensor& img, const torch::Tensor& box) {
  const auto b = box.to(torch::kLong);
  return img.slice(0, b[1].item<int64_t>(), b[3].item<int64_t>() + 1)
      .slice(1, b[0].item<int64_t>(), b[2].item<int64_t>() + 1);
}

void load_init(Algorithm& model, const Dict& d, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  auto params = model.named_parameters(), buffers = model.named_buffers();
  size_t n = 0;
  for (const auto& item : d) {
    const std::string key = item.key().toStringRef();
    if (key.rfind(prefix, 0) != 0) continue;
    const std::string name = key.substr(prefix.size());
    torch::Tensor* dst = params.find(name);
    if (!dst) dst = buffers.find(name);
    ASSERT_NE(dst, nullptr) << key;
    dst->copy_(item.value().toTensor());
    ++n;
  }
  EXPECT_EQ(n, params.size() + buffers.size());
}

std::shared_ptr<Algorithm> make_relative_loc() {
  return build<Algorithm>(registry().config(
      Json::parse(R"({"type": "RelativeLoc", "backbone": {"type": "TestPassBackbone"},
      "data_preprocessor": {"type": "mmselfsup.RelativeLocDataPreprocessor",
                            "mean": [124, 117, 104], "std": [59, 58, 58], "bgr_to_rgb": true},
      "neck": {"type": "RelativeLocNeck", "in_channels": 3, "out_channels": 6},
      "head": {"type": "ClsHead", "loss": {"type": "mmcls.CrossEntropyLoss"},
               "with_avg_pool": false, "in_channels": 6, "num_classes": 8,
               "init_cfg": [{"type": "Normal", "std": 0.005, "layer": "Linear"},
                            {"type": "Constant", "val": 1, "layer": ["_BatchNorm"]}]}})",
                  "t"),
      "model"));
}

std::shared_ptr<Algorithm> make_rotation_pred() {
  return build<Algorithm>(registry().config(
      Json::parse(R"({"type": "RotationPred", "backbone": {"type": "TestPassBackbone"},
      "data_preprocessor": {"type": "mmselfsup.RotationPredDataPreprocessor",
                            "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                            "bgr_to_rgb": true},
      "head": {"type": "ClsHead", "loss": {"type": "mmcls.CrossEntropyLoss"},
               "with_avg_pool": true, "in_channels": 3, "num_classes": 4}})",
                  "t"),
      "model"));
}

} // namespace

TEST(PretextTest, RotationWithLabelsRotatesClockwiseAsUpstream) {
  const Dict d = reference();
  Sample s;
  s.img = image_of(ref(d, "rot.img"));
  Rng rng(0);
  transform(R"({"type": "RotationWithLabels"})")->apply(s, rng);
  ASSERT_EQ(s.views.size(), 4u);
  for (int k = 0; k < 4; ++k)
    EXPECT_TRUE(torch::equal(tensor_of(s.views[size_t(k)]), ref(d, "rot.view" + std::to_string(k))))
        << "rotation " << k;
  EXPECT_TRUE(torch::equal(s.tensors.at("rot_label"), ref(d, "rot.label")));
  EXPECT_TRUE(torch::equal(s.tensors.at("rot_label"), torch::arange(4, torch::kInt64)));
  // Hand-made 2x2 image: clockwise 90 puts the bottom-left pixel top-left.
  Sample t;
  t.img = Image(2, 2, 1);
  t.img.data = {1, 2, 3, 4}; // [[1, 2], [3, 4]]
  transform(R"({"type": "RotationWithLabels"})")->apply(t, rng);
  EXPECT_EQ(t.views[1].data, (std::vector<uint8_t>{3, 1, 4, 2}));
  EXPECT_EQ(t.views[2].data, (std::vector<uint8_t>{4, 3, 2, 1}));
  EXPECT_EQ(t.views[3].data, (std::vector<uint8_t>{2, 4, 1, 3}));
  Sample wide;
  wide.img = Image(2, 3, 1);
  EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] {
                                 transform(R"({"type": "RotationWithLabels"})")->apply(wide, rng);
                               }),
                               "needs a square image"));
}

TEST(PretextTest, RandomPatchWithLabelsCutsTheGridAsUpstream) {
  const Dict d = reference();
  // Upstream's own output: each view is the image at its box, read as (x1, y1, x2, y2); box
  // index 3i + j lies in column cell i, row cell j (upstream's imcrop argument order).
  const torch::Tensor big = ref(d, "patch.img");
  const torch::Tensor ubox = ref(d, "patch.box")[0];
  const int order[9] = {4, 0, 1, 2, 3, 5, 6, 7, 8};
  for (int v = 0; v < 9; ++v)
    EXPECT_TRUE(torch::equal(ref(d, "patch.view" + std::to_string(v)), at_box(big, ubox[order[v]])))
        << "upstream view " << v;
  EXPECT_TRUE(torch::equal(ref(d, "patch.label")[0], torch::arange(8, torch::kInt64)));

  // Ours on a hand-made image whose pixel value names its cell: 10 * row cell + column cell.
  for (const auto& [size, jitter] : std::vector<std::pair<int, int>>{{27, 2}, {96, 21}}) {
    Image img(size, size, 1);
    const int grid = size / 3;
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        img.data[size_t(y * size + x)] =
            uint8_t(10 * std::min(y / grid, 2) + std::min(x / grid, 2));
    for (uint64_t seed = 0; seed < 5; ++seed) {
      Sample s;
      s.img = img;
      Rng rng(seed);
      transform(R"({"type": "RandomPatchWithLabels", "patch_jitter": )" + std::to_string(jitter) +
                "}")
          ->apply(s, rng);
      ASSERT_EQ(s.views.size(), 9u);
      const torch::Tensor box = s.tensors.at("patch_box")[0];
      EXPECT_TRUE(
          torch::equal(s.tensors.at("patch_label"), torch::arange(8, torch::kInt64).unsqueeze(0)));
      EXPECT_TRUE(torch::equal(s.tensors.at("unpatched_img")[0], tensor_of(img)));
      for (int v = 0; v < 9; ++v) {
        const int k = order[v];
        const torch::Tensor view = tensor_of(s.views[size_t(v)]);
        EXPECT_EQ(view.size(0), grid - jitter);
        EXPECT_EQ(view.size(1), grid - jitter);
        EXPECT_TRUE(torch::equal(view, at_box(tensor_of(img), box[k]))) << "view " << v;
        // Index k = 3i + j: column cell i, row cell j; a patch may reach one pixel into the
        // next cell (upstream's cells include their end), so check its top-left pixel.
        EXPECT_EQ(int(view[0][0][0].item<uint8_t>()), 10 * (k % 3) + k / 3)
            << "view " << v << " (label " << (v == 0 ? -1 : v - 1) << ")";
      }
    }
  }
  Sample small;
  small.img = Image(27, 27, 1);
  Rng rng(0);
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] {
                         transform(R"({"type": "RandomPatchWithLabels"})")->apply(small, rng);
                       }),
                       "no larger than patch_jitter 21"));
}

TEST(PretextTest, RelativeLocMatchesUpstream) {
  const Dict d = reference();
  auto model = make_relative_loc();
  std::vector<torch::Tensor> views;
  for (int k = 0; k < 9; ++k) views.push_back(ref(d, "rl.view" + std::to_string(k)));
  DataSamples samples;
  samples.pseudo_label["patch_label"] = ref(d, "rl.patch_label");
  const auto pre = model->preprocess(views, samples);
  ASSERT_EQ(pre.size(), 2u);
  expect_close(pre[0], ref(d, "rl.pre0"), "neighbours", 1e-6, 1e-6);
  expect_close(pre[1], ref(d, "rl.pre1"), "centres", 1e-6, 1e-6);
  // One view (an image to evaluate, e.g. by the kNN hook) is only normalised.
  const auto single = model->preprocess({views[0]}, samples);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_TRUE(torch::allclose(
      single[0].index({torch::indexing::Slice(), 0}),
      (views[0].index({torch::indexing::Slice(), 2}).to(torch::kFloat) - 124) / 59, 1e-5, 1e-5))
      << "bgr_to_rgb then (x - mean) / std";

  model->to(torch::kDouble);
  model->train();
  load_init(*model, d, "rl.init.");
  model->named_children()["neck"]->named_children()["dropout"]->eval();
  std::vector<torch::Tensor> x{ref(d, "rl.pre0").to(torch::kDouble).requires_grad_(true),
                               ref(d, "rl.pre1").to(torch::kDouble).requires_grad_(true)};
  auto losses = model->loss(x, samples);
  expect_close(losses["loss"], ref(d, "rl.loss"), "loss");
  losses["loss"].backward();
  expect_close(x[0].grad(), ref(d, "rl.grad.in0"), "grad of the neighbours");
  expect_close(x[1].grad(), ref(d, "rl.grad.in1"), "grad of the centres");
  auto params = model->named_parameters();
  for (const char* name :
       {"neck.fc.weight", "neck.bn.weight", "head.fc_cls.weight", "head.fc_cls.bias"})
    expect_close(params[name].grad(), ref(d, std::string("rl.grad.") + name), name);
  auto buffers = model->named_buffers();
  expect_close(buffers["neck.bn.running_mean"], ref(d, "rl.neck.bn.running_mean"),
               "BN running mean (momentum 0.003)");
  expect_close(buffers["neck.bn.running_var"], ref(d, "rl.neck.bn.running_var"), "BN running var");
  // The pretext accuracy is the batch's top-1 of the logits, reported beside the loss.
  const auto logits = ref(d, "rl.logits");
  const auto labels = ref(d, "rl.patch_label").flatten();
  EXPECT_NEAR(losses["accuracy"].item<double>(),
              logits.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>() * 100, 1e-4);
  // predict: the class scores per sample, [B, 8 patches, 8 classes] (softmax of the logits).
  model->eval();
  torch::NoGradGuard no_grad;
  const auto pred = model->forward(x, samples, ForwardMode::Predict).tensors;
  ASSERT_EQ(pred.size(), 1u);
  EXPECT_EQ(pred[0].sizes(), (std::vector<int64_t>{3, 8, 8}));
  EXPECT_TRUE(torch::allclose(pred[0].sum(2), torch::ones({3, 8}, torch::kDouble), 1e-9, 1e-9));
}

TEST(PretextTest, RotationPredMatchesUpstream) {
  const Dict d = reference();
  auto model = make_rotation_pred();
  std::vector<torch::Tensor> views;
  for (int k = 0; k < 4; ++k) views.push_back(ref(d, "rp.view" + std::to_string(k)));
  DataSamples samples;
  samples.pseudo_label["rot_label"] = ref(d, "rp.rot_label");
  const auto pre = model->preprocess(views, samples);
  ASSERT_EQ(pre.size(), 1u);
  expect_close(pre[0], ref(d, "rp.pre0"), "rotated views", 1e-6, 1e-6);
  model->to(torch::kDouble);
  model->train();
  load_init(*model, d, "rp.init.");
  auto x = ref(d, "rp.pre0").to(torch::kDouble).requires_grad_(true);
  auto losses = model->loss({x}, samples);
  expect_close(losses["loss"], ref(d, "rp.loss"), "loss");
  losses["loss"].backward();
  expect_close(x.grad(), ref(d, "rp.grad.in0"), "grad of the images");
  expect_close(model->named_parameters()["head.fc_cls.weight"].grad(),
               ref(d, "rp.grad.head.fc_cls.weight"), "grad of fc_cls");
  // The loss is CE of ClsHead's logits against the flattened labels (sample-major).
  {
    torch::NoGradGuard no_grad;
    auto params = model->named_parameters();
    const auto logits =
        torch::addmm(params["head.fc_cls.bias"], x.mean({2, 3}), params["head.fc_cls.weight"].t());
    const auto labels = ref(d, "rp.rot_label").flatten();
    EXPECT_NEAR(losses["loss"].item<double>(),
                torch::nll_loss(torch::log_softmax(logits, 1), labels).item<double>(), 1e-10);
    EXPECT_NEAR(losses["accuracy"].item<double>(),
                logits.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>() * 100, 1e-9);
  }
  torch::NoGradGuard no_grad;
  const auto pred = model->forward({x}, samples, ForwardMode::Predict).tensors;
  EXPECT_EQ(pred.at(0).sizes(), (std::vector<int64_t>{3, 4, 4}));
}

TEST(PretextTest, ConfigErrorsNameThePath) {
  Json bad = Json::parse(R"({"type": "RelativeLoc", "backbone": {"type": "TestPassBackbone"},
      "neck": {"type": "RelativeLocNeck", "in_channels": 3, "out_channels": 6,
               "norm_cfg": {"type": "GN"}},
      "head": {"type": "ClsHead", "in_channels": 6, "num_classes": 8}})",
                         "t");
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), bad), "model.neck.norm_cfg"));
  bad.find("neck")->erase("norm_cfg");
  bad.find("head")->set("init_cfg", Json::parse(R"({"type": "Xavier"})", "t"));
  EXPECT_TRUE(test::has_substr(test::model_config_error(registry(), bad),
                               "model.head.init_cfg.type: expected 'Normal' or 'Constant'"));
  EXPECT_TRUE(test::has_substr(test::message_of<ConfigError>([] {
                                 (void)transform(
                                     R"({"type": "RandomPatchWithLabels", "split_per_side": 4})");
                               }),
                               "split_per_side"));
}

namespace {

void train_tiny(const std::string& config, int batch) {
  test::load_plugins();
  test::TinyFmnistRun tiny(32, 8);
  Json cfg = core::load_config_file(std::string(SELFSUP_SOURCE_DIR) + "/configs/" + config);
  Json* loader = cfg.find("train_dataloader");
  loader->set("batch_size", batch);
  loader->set("num_workers", 1);
  loader->find("dataset")->set("data_root", tiny.data.string());
  cfg.find("model")->find("backbone")->set("base_channels", 8);
  cfg.find("model")->find("backbone")->set("stem_channels", 8);
  if (Json* neck = cfg.find("model")->find("neck"))
    neck->set("in_channels", 64);
  else
    cfg.find("model")->find("head")->set("in_channels", 64);
  cfg.erase("custom_hooks");
  cfg.set("train_cfg", Json::parse(R"({"type": "EpochBasedTrainLoop", "max_epochs": 1})", "t"));
  core::Runner runner(cfg, tiny.options);
  runner.train();
  const auto scalars = test::read_text(fs::path(tiny.options.work_dir) / "scalars.jsonl");
  EXPECT_NE(scalars.find("\"loss\""), std::string::npos) << config;
  EXPECT_NE(scalars.find("\"accuracy\""), std::string::npos) << config;
  EXPECT_EQ(scalars.find("nan"), std::string::npos) << config;
}

} // namespace

TEST(PretextTest, TrainsTheFashionMnistConfigsOnTinyData) {
  train_tiny("rotation_pred/rotation-pred_resnet18_fmnist.json", 8);
  train_tiny("relative_loc/relative-loc_resnet18_fmnist.json", 8);
}
