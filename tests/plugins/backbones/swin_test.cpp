// SwinTransformer (backbones plugin): mmcls's state_dict names, outputs equal to upstream mmcls
// 1.0.0rc6 on the same weights and inputs (fixture made by
// tests/fixtures/simmim/make_simmim_reference.py), the window partition / reverse round trip,
// the shifted-window attention mask and the relative position index against hand-derived
// values, and config errors naming the JSON path.
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

#include "../../../plugins/backbones/swin.h"
#include "plugins/plugin_test_support.h"
#include "test_support.h"

namespace selfsup {
namespace {

namespace bb = selfsup::plugins::backbones;

std::shared_ptr<Backbone> make_swin(const std::string& json) {
  test::load_plugins();
  return build<Backbone>(Config(Json::parse(json, "test"), "model.backbone"));
}

const test::TensorDict& reference() {
  static const auto dict = test::load_fixture("tests/fixtures/simmim/simmim_reference.pt");
  return dict;
}

torch::Tensor fixture(const std::string& key) {
  return test::ref(reference(), key);
}

// Copies '<prefix>.<name>' into every parameter and buffer and checks that the fixture holds
// no other '<prefix>.' weight: the names line up with upstream both ways.
void load_reference(torch::nn::Module& m, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  size_t ours = 0;
  for (auto& p : m.named_parameters()) {
    p.value().copy_(fixture(prefix + "." + p.key()));
    ++ours;
  }
  for (auto& b : m.named_buffers()) {
    b.value().copy_(fixture(prefix + "." + b.key()));
    ++ours;
  }
  size_t theirs = 0;
  for (const auto& item : reference()) {
    const auto key = item.key().toStringRef();
    const bool input = key == prefix + ".x" || key == prefix + ".x_odd" ||
                       key == prefix + ".mask" || key.rfind(prefix + ".out", 0) == 0;
    if (key.rfind(prefix + ".", 0) == 0 && !input) ++theirs;
  }
  EXPECT_EQ(ours, theirs) << prefix << ": upstream's state_dict has another number of entries";
}

const char* kTinyArch = R"("arch": {"embed_dims": 8, "depths": [2, 2, 2], "num_heads": [2, 2, 4]})";

} // namespace

TEST(SwinTransformerTest, OutputsEqualMmclsOnTheSameWeights) {
  auto swin = make_swin(std::string(R"({"type": "SwinTransformer", )") + kTinyArch +
                        R"(, "img_size": 18, "patch_size": 2, "window_size": 3,
      "drop_path_rate": 0.0, "out_indices": [0, 1, 2]})");
  load_reference(*swin, "swin_a");
  swin->eval();
  EXPECT_EQ(swin->out_channels(), (std::vector<int64_t>{8, 16, 32}));
  auto outs = swin->forward(fixture("swin_a.x"));
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(outs[0].sizes(), (std::vector<int64_t>{2, 8, 9, 9}));
  EXPECT_EQ(outs[2].sizes(), (std::vector<int64_t>{2, 32, 3, 3}));
  for (size_t i = 0; i < 3; ++i)
    test::expect_allclose(outs[i], fixture("swin_a.out." + std::to_string(i)), 1e-5, 1e-6,
                          "swin_a out " + std::to_string(i));
  // 22x26: 11x13 tokens padded to whole windows, odd sizes merged with corner padding.
  auto odd = swin->forward(fixture("swin_a.x_odd"));
  ASSERT_EQ(odd.size(), 3u);
  EXPECT_EQ(odd[2].sizes(), (std::vector<int64_t>{2, 32, 3, 4}));
  for (size_t i = 0; i < 3; ++i)
    test::expect_allclose(odd[i], fixture("swin_a.out_odd." + std::to_string(i)), 1e-5, 1e-6,
                          "swin_a odd out " + std::to_string(i));
}

TEST(SwinTransformerTest, AbsolutePositionAndOutAfterDownsampleEqualMmcls) {
  auto swin = make_swin(R"({"type": "SwinTransformer",
      "arch": {"embed_dims": 8, "depths": [2, 2], "num_heads": [2, 4]}, "img_size": 16,
      "patch_size": 4, "window_size": 2, "drop_path_rate": 0.0, "out_indices": [1],
      "use_abs_pos_embed": true, "out_after_downsample": true, "in_channels": 1})");
  load_reference(*swin, "swin_b");
  swin->eval();
  auto outs = swin->forward(fixture("swin_b.x"));
  ASSERT_EQ(outs.size(), 1u);
  test::expect_allclose(outs[0], fixture("swin_b.out.0"), 1e-5, 1e-6, "swin_b");
}

TEST(SwinTransformerTest, StateDictNamesAreMmclsOnes) {
  auto swin = make_swin(std::string(R"({"type": "SwinTransformer", )") + kTinyArch +
                        R"(, "img_size": 18, "patch_size": 2, "window_size": 3,
      "out_indices": [2]})");
  auto params = swin->named_parameters();
  for (const char* name :
       {"patch_embed.projection.weight", "patch_embed.norm.weight",
        "stages.0.blocks.1.attn.w_msa.relative_position_bias_table",
        "stages.0.blocks.0.attn.w_msa.qkv.weight", "stages.0.blocks.0.ffn.layers.0.0.weight",
        "stages.0.blocks.0.ffn.layers.1.bias", "stages.1.downsample.norm.weight",
        "stages.1.downsample.reduction.weight", "norm2.weight"})
    EXPECT_TRUE(params.contains(name)) << name;
  EXPECT_FALSE(params.contains("stages.1.downsample.reduction.bias"));
  EXPECT_FALSE(params.contains("norm0.weight")); // a norm per out index only
  EXPECT_TRUE(
      swin->named_buffers().contains("stages.2.blocks.1.attn.w_msa.relative_position_index"));
}

TEST(SwinTransformerTest, WindowPartitionAndReverseRoundTrip) {
  torch::manual_seed(0);
  auto x = torch::randn({2, 6, 9, 5});
  auto windows = bb::window_partition(x, 3);
  EXPECT_EQ(windows.sizes(), (std::vector<int64_t>{12, 3, 3, 5}));
  EXPECT_TRUE(torch::equal(bb::window_reverse(windows, 6, 9, 3), x));
  // Windows are row-major per image: window 1 of image 0 is rows 0..2, columns 3..5; window 3
  // is rows 3..5, columns 0..2; image 1 starts at window 6.
  using torch::indexing::Slice;
  EXPECT_TRUE(torch::equal(windows[1], x.index({0, Slice(0, 3), Slice(3, 6)})));
  EXPECT_TRUE(torch::equal(windows[3], x.index({0, Slice(3, 6), Slice(0, 3)})));
  EXPECT_TRUE(torch::equal(windows[6], x.index({1, Slice(0, 3), Slice(0, 3)})));
}

TEST(SwinTransformerTest, ShiftedWindowMaskOnASmallGridByHand) {
  // 4x4 grid, window 2, shift 1. After the roll, the three bands of each axis are [0, 2),
  // [2, 3), [3, 4); region label = 3 * row band + column band:
  //   0 0 1 2
  //   0 0 1 2
  //   3 3 4 5
  //   6 6 7 8
  // Window 0 is one region (no mask); window 1 holds labels [1, 2, 1, 2]; window 2
  // [3, 3, 6, 6]; window 3 four regions. Tokens of different regions get -100.
  auto mask = bb::shifted_window_attn_mask({4, 4}, 2, 1);
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{4, 4, 4}));
  const std::vector<std::vector<int>> labels{
      {0, 0, 0, 0}, {1, 2, 1, 2}, {3, 3, 6, 6}, {4, 5, 7, 8}};
  for (int w = 0; w < 4; ++w)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        const double expected = labels[w][i] == labels[w][j] ? 0.0 : -100.0;
        EXPECT_EQ(mask[w][i][j].item<double>(), expected) << w << " " << i << " " << j;
      }
  EXPECT_FALSE(bb::shifted_window_attn_mask({4, 4}, 2, 0).defined()); // no shift: no mask
  // Upstream's get_attn_mask on two other grids.
  test::expect_allclose(bb::shifted_window_attn_mask({8, 8}, 4, 2), fixture("attn_mask_8_4_2"), 0,
                        0, "mask 8/4/2");
  test::expect_allclose(bb::shifted_window_attn_mask({6, 6}, 3, 1), fixture("attn_mask_6_3_1"), 0,
                        0, "mask 6/3/1");
}

TEST(SwinTransformerTest, RelativePositionIndexByHand) {
  // Entry (i, j) indexes the bias of the offset (dh, dw) = position i - position j in a
  // (2w-1) x (2w-1) table: (dh + w - 1) * (2w - 1) + (dw + w - 1).
  const int64_t w = 3;
  auto idx = bb::relative_position_index(w, w);
  ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{9, 9}));
  for (int64_t i = 0; i < 9; ++i)
    for (int64_t j = 0; j < 9; ++j) {
      const int64_t dh = i / w - j / w, dw = i % w - j % w;
      EXPECT_EQ(idx[i][j].item<int64_t>(), (dh + w - 1) * (2 * w - 1) + (dw + w - 1));
    }
}

TEST(SwinTransformerTest, ShiftedBlocksMixAcrossWindowsAndGradientsFlow) {
  torch::manual_seed(3);
  auto swin = make_swin(R"({"type": "SwinTransformer",
      "arch": {"embed_dims": 8, "depths": [2], "num_heads": [2]}, "img_size": 16,
      "patch_size": 2, "window_size": 4, "drop_path_rate": 0.0, "out_indices": [0]})");
  swin->eval();
  // A change in one window's pixels reaches the tokens of another window only through the
  // shifted block: token (0, 4) (window 1) sees a change at token (0, 3) (window 0).
  auto x = torch::randn({1, 3, 16, 16});
  auto y = x.clone();
  y.index_put_(
      {0, torch::indexing::Slice(), torch::indexing::Slice(0, 2), torch::indexing::Slice(6, 8)},
      0.0);
  auto a = swin->forward(x)[0], b = swin->forward(y)[0];
  EXPECT_GT(
      (a.index({0, torch::indexing::Slice(), 0, 4}) - b.index({0, torch::indexing::Slice(), 0, 4}))
          .abs()
          .max()
          .item<double>(),
      1e-6);
  // ... but not a token far away in window 3 of the unshifted and shifted partitions.
  EXPECT_LT(
      (a.index({0, torch::indexing::Slice(), 7, 7}) - b.index({0, torch::indexing::Slice(), 7, 7}))
          .abs()
          .max()
          .item<double>(),
      1e-6);
  swin->train();
  swin->forward(x)[0].sum().backward();
  for (const auto& p : swin->named_parameters())
    if (p.value().requires_grad()) {
      EXPECT_TRUE(p.value().grad().defined()) << p.key();
    }
}

TEST(SwinTransformerTest, ConfigErrorsNameThePath) {
  test::load_plugins();
  auto error = [](const std::string& extra) {
    return test::message_of<ConfigError>([&] {
      (void)build<Backbone>(Config(
          Json::parse(std::string(R"({"type": "SwinTransformer", "img_size": 32)") + extra + "}",
                      "test"),
          "model.backbone"));
    });
  };
  EXPECT_NE(error(R"(, "arch": "huge")").find("model.backbone.arch: unknown arch 'huge'"),
            std::string::npos);
  EXPECT_NE(error(R"(, "with_cp": true)").find("model.backbone.with_cp"), std::string::npos);
  EXPECT_NE(error(R"(, "out_indices": [4])").find("model.backbone.out_indices"), std::string::npos);
  EXPECT_NE(error(R"(, "stage_cfgs": {"downsample_cfg": {"kernel_size": 3}})")
                .find("model.backbone.stage_cfgs.downsample_cfg"),
            std::string::npos);
  EXPECT_NE(error(R"(, "stage_cfgs": {"block_cfgs": {"shift": true}})")
                .find("model.backbone.stage_cfgs.block_cfgs.shift"),
            std::string::npos);
  EXPECT_NE(error(R"(, "arch": {"embed_dims": 8, "depths": [2, 2], "num_heads": [3, 2]})")
                .find("model.backbone.arch.num_heads"),
            std::string::npos);
}

} // namespace selfsup
