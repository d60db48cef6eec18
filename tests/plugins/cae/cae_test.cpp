// CAE (cae plugin: CAE, CAEViT, CAENeck, CAEHead, CAELoss, CAEDataPreprocessor, the DALL-E
// encoder): each against an independent formulation written here and against upstream
// MMSelfSup 1.0 (fixture made by tests/fixtures/cae/make_cae_fixture.py; the DALL-E weights
// are a formula both sides compute, written here to a file that the config names), the
// encoder's shape, determinism and freezing, and a few iterations of the shipped
// Fashion-MNIST config.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <torch/serialize.h>
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

const test::TensorDict& reference() {
  static const auto dict = test::load_fixture("tests/fixtures/cae/cae_reference.pt");
  return dict;
}
torch::Tensor fixture(const std::string& key) {
  return test::ref(reference(), key);
}

const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry;
  return registry;
}

// The fixture script's formula weights: the k-th tensor by sorted name is
// sin(0.618 * arange(numel) + 1.3 * k) * amp.
void formula_weights(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> names;
  auto params = m.named_parameters();
  for (const auto& p : params) names.push_back(p.key());
  std::sort(names.begin(), names.end());
  for (size_t k = 0; k < names.size(); ++k) {
    auto t = params[names[k]];
    const int64_t n = t.numel();
    const double amp = t.dim() > 1 ? 1.0 / std::sqrt(double(n) / double(t.size(0))) : 0.1;
    const auto v = torch::sin(torch::arange(n, torch::kFloat) * 0.618 + 1.3 * double(k)) * amp;
    t.copy_(v.reshape(t.sizes()));
  }
}

// Writes the formula weights of `encoder` to `file` as torch.save would (a dict of tensors).
void save_state(torch::nn::Module& encoder, const fs::path& file) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& p : encoder.named_parameters()) dict.insert(p.key(), p.value().detach());
  const auto bytes = torch::pickle_save(c10::IValue(dict));
  std::ofstream out(file, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

Json dalle_json(const std::string& checkpoint) {
  Json j = Json::parse(
      R"({"type": "DALL-E", "n_hid": 64, "n_blk_per_group": 1, "vocab_size": 512})", "t");
  if (!checkpoint.empty())
    j.set("init_cfg", Json::object({{"type", "Pretrained"}, {"checkpoint", checkpoint}}));
  return j;
}

// A weights file of the formula, made once per test binary run.
const fs::path& dalle_weights() {
  static const test::TempDir dir;
  static const fs::path file = [] {
    auto encoder = build<TargetGenerator>(registry().config(dalle_json(""), "tg"));
    formula_weights(*encoder);
    const fs::path f = dir.path() / "dalle_encoder.pth";
    save_state(*encoder, f);
    return f;
  }();
  return file;
}

// The DALL-E encoder written with plain torch calls from its state dict.
torch::Tensor independent_dalle(const torch::Tensor& x,
                                torch::OrderedDict<std::string, torch::Tensor> p) {
  namespace F = torch::nn::functional;
  auto conv = [&](const torch::Tensor& h, const std::string& name) {
    const auto w = p[name + ".w"];
    return F::conv2d(h, w, F::Conv2dFuncOptions().bias(p[name + ".b"]).padding(w.size(2) / 2));
  };
  auto h = conv(x, "blocks.input");
  const double gain = 1.0 / 16.0; // 4 groups x 1 block: 1 / n_layers^2
  for (int g = 1; g <= 4; ++g) {
    const std::string blk = "blocks.group_" + std::to_string(g) + ".block_1";
    auto r = conv(torch::relu(h), blk + ".res_path.conv_1");
    r = conv(torch::relu(r), blk + ".res_path.conv_2");
    r = conv(torch::relu(r), blk + ".res_path.conv_3");
    r = conv(torch::relu(r), blk + ".res_path.conv_4");
    const auto id = p.contains(blk + ".id_path.w") ? conv(h, blk + ".id_path") : h;
    h = id + gain * r;
    if (g < 4) h = torch::max_pool2d(h, 2);
  }
  return conv(torch::relu(h), "blocks.output.conv");
}

const char* kModel = R"({"type": "CAE",
  "backbone": {"type": "CAEViT", "arch": {"embed_dims": 16, "num_layers": 2, "num_heads": 2,
               "feedforward_channels": 32}, "img_size": 16, "patch_size": 4,
               "init_values": 0.1, "qkv_bias": false},
  "neck": {"type": "CAENeck", "patch_size": 4, "embed_dims": 16, "num_heads": 2,
           "regressor_depth": 2, "decoder_depth": 1, "mlp_ratio": 2, "init_values": 0.1,
           "num_classes": 512, "mask_tokens_num": 6},
  "head": {"type": "CAEHead", "loss": {"type": "CAELoss", "lambd": 2}},
  "data_preprocessor": {"type": "CAEDataPreprocessor", "mean": [124, 117, 104],
                        "std": [59, 58, 58], "bgr_to_rgb": true},
  "base_momentum": 0.5})";

std::shared_ptr<Algorithm> make_model() {
  Json cfg = Json::parse(kModel, "t");
  cfg.set("target_generator", dalle_json(dalle_weights().string()));
  return build<Algorithm>(registry().config(cfg, "model"));
}

void load_reference_model(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters())
    if (p.key().rfind("target_generator.", 0) != 0) p.value().copy_(fixture("model." + p.key()));
}

DataSamples with_mask(const torch::Tensor& mask) {
  DataSamples s;
  s.data["mask"] = mask;
  return s;
}

} // namespace

// ---- DALL-E ----------------------------------------------------------------------------

TEST(DalleEncoderTest, WeightsFromTheConfigFileMatchUpstream) {
  test::load_plugins();
  auto encoder =
      build<TargetGenerator>(registry().config(dalle_json(dalle_weights().string()), "tg"));
  const auto x = fixture("dalle.x");
  const auto logits = encoder->forward(x);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{1, 512, 4, 4}));
  test::expect_allclose(logits, fixture("dalle.logits"), 1e-5, 1e-6, "DALL-E vs upstream");
  test::expect_allclose(logits, independent_dalle(x, encoder->named_parameters()), 1e-5, 1e-6,
                        "DALL-E vs plain convolutions");
  // Deterministic, frozen, no autograd.
  EXPECT_TRUE(torch::equal(logits, encoder->forward(x)));
  EXPECT_FALSE(logits.requires_grad());
  for (const auto& p : encoder->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(DalleEncoderTest, OutputShapeOfTheDefaultArchitecture) {
  test::load_plugins();
  auto encoder = build<TargetGenerator>(
      registry().config(Json::parse(R"({"type": "DALL-E", "n_hid": 64})", "t"), "tg"));
  const auto params = encoder->named_parameters();
  EXPECT_EQ(params["blocks.input.w"].sizes(), (std::vector<int64_t>{64, 3, 7, 7}));
  EXPECT_EQ(params["blocks.group_4.block_2.res_path.conv_4.w"].sizes(),
            (std::vector<int64_t>{512, 128, 1, 1}));
  EXPECT_EQ(params["blocks.output.conv.w"].sizes(), (std::vector<int64_t>{8192, 512, 1, 1}));
  EXPECT_FALSE(params.contains("blocks.group_1.block_1.id_path.w"));
  EXPECT_TRUE(params.contains("blocks.group_2.block_1.id_path.w"));
  const auto logits = encoder->forward(torch::rand({2, 3, 24, 16}));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 8192, 3, 2}));
}

TEST(DalleEncoderTest, BadWeightFilesAreNamed) {
  test::load_plugins();
  auto message = [](const Json& cfg) {
    try {
      (void)build<TargetGenerator>(registry().config(cfg, "model.target_generator"));
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("<no exception>");
  };
  EXPECT_NE(message(dalle_json("/nonexistent/dalle.pth")).find("/nonexistent/dalle.pth"),
            std::string::npos);
  EXPECT_NE(message(dalle_json("https://download.openmmlab.com/x/dalle_encoder.pth"))
                .find("model.target_generator.init_cfg.checkpoint"),
            std::string::npos);
  // Weights of another size.
  Json wrong = dalle_json(dalle_weights().string());
  wrong.set("vocab_size", 1024);
  EXPECT_NE(message(wrong).find("blocks.output.conv"), std::string::npos) << message(wrong);
}

// ---- CAELoss and CAEHead ---------------------------------------------------------------

TEST(CAELossTest, MatchesUpstreamAndTheFormula) {
  test::load_plugins();
  auto head = build<Head>(registry().config(
      Json::parse(R"({"type": "CAEHead", "loss": {"type": "CAELoss", "lambd": 2}})", "t"),
      "model.head"));
  const auto logits = fixture("loss.logits"), target = fixture("loss.target");
  const auto lp = fixture("loss.latent_pred"), lt = fixture("loss.latent_target");
  // Through the head: DALL-E logits whose argmax at the masked cells is `target`.
  auto dalle_logits = torch::zeros({1, 10, 2, 4});
  auto mask = torch::zeros({1, 8}, torch::kBool);
  for (int64_t i = 0; i < 6; ++i) {
    mask[0][i + 1] = true;
    dalle_logits.index_put_({0, target[i].item<int64_t>(), (i + 1) / 4, (i + 1) % 4}, 5.0);
  }
  const auto total = head->loss({logits, lp, lt, mask}, dalle_logits);
  const double main_loss = fixture("loss.main").item<double>(),
               align_loss = fixture("loss.align").item<double>();
  EXPECT_NEAR(total.item<double>(), main_loss + align_loss, 1e-5 * (main_loss + align_loss));
  // Independent: mean cross-entropy and 2 * mean squared error.
  const auto lsm = torch::log_softmax(logits.to(torch::kDouble), 1);
  const double ce = -lsm.gather(1, target.unsqueeze(1)).mean().item<double>();
  const double mse = 2.0 * (lp - lt).to(torch::kDouble).square().mean().item<double>();
  EXPECT_NEAR(main_loss, ce, 1e-5 * ce);
  EXPECT_NEAR(align_loss, mse, 1e-5 * mse);
  // The loss is not usable alone.
  auto loss = build<Loss>(
      registry().config(Json::parse(R"({"type": "CAELoss", "lambd": 2})", "t"), "loss"));
  EXPECT_THROW((void)loss->forward(logits, target), ValueError);
}

// ---- CAEDataPreprocessor ---------------------------------------------------------------

TEST(CAEDataPreprocessorTest, MatchesUpstream) {
  test::load_plugins();
  auto model = make_model();
  DataSamples samples;
  const auto out = model->preprocess({fixture("pre.u0"), fixture("pre.u1")}, samples);
  ASSERT_EQ(out.size(), 2u);
  test::expect_allclose(out[0], fixture("pre.out0"), 1e-6, 1e-6, "view 0");
  test::expect_allclose(out[1], fixture("pre.out1"), 1e-6, 1e-6, "view 1");
}

// ---- CAEViT, CAENeck, CAE --------------------------------------------------------------

TEST(CAETest, BackboneLossAndTeacherUpdateMatchUpstream) {
  test::load_plugins();
  auto model = make_model();
  load_reference_model(*model);
  model->train();
  const auto img = fixture("model.img"), img2 = fixture("model.img2");
  const auto mask = fixture("model.mask");
  const auto losses = model->loss({img, img2}, with_mask(mask));
  ASSERT_EQ(losses.size(), 3u);
  test::expect_allclose(losses.at("loss"), fixture("model.loss"), 1e-5, 0, "loss");
  test::expect_allclose(losses.at("main"), fixture("model.main"), 1e-5, 0, "main");
  test::expect_allclose(losses.at("align"), fixture("model.align"), 1e-5, 0, "align");
  // The teacher moved half-way to the online encoder, as upstream's.
  const auto params = model->named_parameters();
  for (const auto& p : params)
    if (p.key().rfind("teacher.", 0) == 0) {
      test::expect_allclose(p.value(), fixture("after." + p.key()), 1e-5, 1e-7, p.key());
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
    }
  // Gradients reach the encoder and the neck, not the teacher nor the tokenizer.
  losses.at("loss").backward();
  EXPECT_GT(params["backbone.layers.0.attn.q_bias"].grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(params["neck.mask_token"].grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(params["teacher.layers.0.attn.qkv.weight"].grad().defined());
  EXPECT_FALSE(params["target_generator.blocks.input.w"].grad().defined());
  EXPECT_FALSE(params["backbone.pos_embed"].requires_grad());
}

TEST(CAETest, PositionEmbeddingIsTheFixedSinCosOne) {
  test::load_plugins();
  auto model = make_model();
  const auto params = model->named_parameters();
  // The upstream model's pos_embed was the same fixed table before any training.
  test::expect_allclose(params["backbone.pos_embed"], fixture("model.backbone.pos_embed"), 1e-6,
                        1e-7, "pos_embed");
  EXPECT_EQ(params["backbone.layers.0.gamma_1"].sizes(), (std::vector<int64_t>{16}));
  EXPECT_NEAR(params["backbone.layers.0.gamma_1"][0].item<double>(), 0.1, 1e-7);
  // The plain forward (evaluation): [patch map, class token].
  const auto feats = model->extract_feat({torch::randn({2, 3, 16, 16})});
  ASSERT_EQ(feats.size(), 2u);
  EXPECT_EQ(feats[0].sizes(), (std::vector<int64_t>{2, 16, 4, 4}));
}

TEST(CAETest, ConfigErrorsNameThePlace) {
  test::load_plugins();
  Json cfg = Json::parse(kModel, "t");
  cfg.set("target_generator", dalle_json(dalle_weights().string()));
  Json bad = cfg;
  bad.find("head")->set("loss", Json::parse(R"({"type": "CrossEntropyLoss"})", "t"));
  EXPECT_NE(test::model_config_error(registry(), bad).find("model.head"), std::string::npos);
  Json no_target = cfg;
  no_target.erase("target_generator");
  EXPECT_NE(test::model_config_error(registry(), no_target).find("target_generator"),
            std::string::npos);
}

// ---- the shipped configs ---------------------------------------------------------------

TEST(CAETest, TrainsOnTinyFashionMnistWithTheShippedConfig) {
  test::load_plugins();
  test::TinyFmnistRun tiny(48, 8);
  Json cfg = core::load_config_file(std::string(SELFSUP_SOURCE_DIR) +
                                    "/configs/cae/cae_vit-tiny-p4_fmnist.json");
  Json* loader = cfg.find("train_dataloader");
  loader->set("batch_size", 16);
  loader->find("dataset")->set("data_root", tiny.data.string());
  cfg.set("custom_hooks", Json::array());
  cfg.set("train_cfg", Json::parse(R"({"type": "EpochBasedTrainLoop", "max_epochs": 1})", "t"));
  // The shipped config names a weights file made by scripts; here the test's own.
  const fs::path weights = tiny.root.path() / "dalle_fmnist.pth";
  {
    Json tg = *cfg.find("model")->find("target_generator");
    tg.erase("init_cfg");
    auto encoder = build<TargetGenerator>(registry().config(tg, "tg"));
    save_state(*encoder, weights);
  }
  cfg.find("model")
      ->find("target_generator")
      ->find("init_cfg")
      ->set("checkpoint", weights.string());
  core::Runner runner(cfg, tiny.options);
  auto& model = runner.model();
  const auto qkv0 = model.named_parameters()["backbone.layers.0.attn.qkv.weight"].clone();
  const auto t0 = model.named_parameters()["teacher.layers.0.attn.qkv.weight"].clone();
  runner.train();
  EXPECT_FALSE(torch::equal(qkv0, model.named_parameters()["backbone.layers.0.attn.qkv.weight"]));
  EXPECT_FALSE(torch::equal(t0, model.named_parameters()["teacher.layers.0.attn.qkv.weight"]));
}
