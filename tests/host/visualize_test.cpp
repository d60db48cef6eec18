// `selfsup visualize`: tiny MAE and SimMIM runs of the shipped Fashion-MNIST configs, then their
// reconstructions as PNG files (one strip of four panels per image and the grid of all),
// and the errors for a bad command line.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "host/tiny_run.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

// Width and height from a PNG's IHDR chunk; {0, 0} when the file is not a PNG.
std::array<uint32_t, 2> png_size(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::array<unsigned char, 24> head{};
  in.read(reinterpret_cast<char*>(head.data()), head.size());
  const std::array<unsigned char, 8> magic{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!in || !std::equal(magic.begin(), magic.end(), head.begin())) return {0, 0};
  auto be32 = [&](int at) {
    return uint32_t(head[at]) << 24 | uint32_t(head[at + 1]) << 16 | uint32_t(head[at + 2]) << 8 |
           uint32_t(head[at + 3]);
  };
  return {be32(16), be32(20)};
}

std::string tiny_mae_overrides(const fs::path& data) {
  const std::string root = data.string();
  return " --cfg-options train_dataloader.dataset.data_root=" + root +
         " custom_hooks.0.bank_dataloader.dataset.data_root=" + root +
         " custom_hooks.0.query_dataloader.dataset.data_root=" + root +
         " custom_hooks.0.bank_dataloader.dataset.indices=16"
         " custom_hooks.0.query_dataloader.dataset.indices=8"
         " train_dataloader.batch_size=16 train_cfg.max_epochs=1"
         " model.backbone.arch.embed_dims=24 model.backbone.arch.num_layers=1"
         " model.backbone.arch.feedforward_channels=48 model.neck.embed_dim=24"
         " model.neck.decoder_embed_dim=16 model.neck.decoder_depth=1"
         " param_scheduler.0.end=1 param_scheduler.1.begin=1 param_scheduler.1.end=2"
         " param_scheduler.1.T_max=1 custom_hooks.0.k=5 default_hooks.checkpoint.interval=1";
}

} // namespace

TEST(Visualize, WritesMaeReconstructionsAsPng) {
  selfsup::test::TempDir dir;
  selfsup::test::make_fake_fmnist(dir.path() / "data", 48, 8);
  const std::string cfg =
      std::string(SELFSUP_SOURCE_DIR) + "/configs/mae/mae_vit-tiny-p4_fmnist.json";
  const fs::path work = dir.path() / "work";
  const auto overrides = tiny_mae_overrides(dir.path() / "data");
  auto r = selfsup::test::run_selfsup("train " + cfg + " --work-dir " + work.string() +
                                      " --threads 2" + overrides);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string ckpt = (work / "epoch_1.pth").string();
  ASSERT_TRUE(fs::exists(ckpt)) << r.output;

  const fs::path out = dir.path() / "vis";
  r = selfsup::test::run_selfsup("visualize " + cfg + " --checkpoint " + ckpt + " --out " +
                                 out.string() + " --num 3" + overrides);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(selfsup::test::has_substr(r.output, "Wrote 3 reconstructions"));
  // 28x28 images upscaled 4x (to >= 112 pixels): four panels of 112 and three 2-pixel gaps.
  const uint32_t strip_w = 4 * 112 + 3 * 2 * 4, strip_h = 112;
  for (int i = 0; i < 3; ++i) {
    const auto size = png_size(out / ("sample_" + std::to_string(i) + ".png"));
    EXPECT_EQ(size[0], strip_w) << i;
    EXPECT_EQ(size[1], strip_h) << i;
  }
  const auto grid = png_size(out / "reconstructions.png");
  EXPECT_EQ(grid[0], strip_w);
  EXPECT_EQ(grid[1], 3 * strip_h + 2 * 4);
  EXPECT_FALSE(fs::exists(out / "sample_3.png"));

  // The training split (its pipeline) works too.
  r = selfsup::test::run_selfsup("visualize " + cfg + " --checkpoint " + ckpt + " --out " +
                                 (dir.path() / "vis_train").string() +
                                 " --num 2 --split train --scale 1" + overrides);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(png_size(dir.path() / "vis_train" / "sample_0.png")[1], 28u);
}

TEST(Visualize, WritesSimMimReconstructionsAsPng) {
  // The shipped SimMIM Fashion-MNIST config (Swin, 32x32, 3 channels), one tiny epoch.
  selfsup::test::TempDir dir;
  selfsup::test::make_fake_fmnist(dir.path() / "data", 32, 8);
  const std::string cfg =
      std::string(SELFSUP_SOURCE_DIR) + "/configs/simmim/simmim_swin-tiny-p2-w4_fmnist.json";
  const fs::path work = dir.path() / "work";
  const std::string root = (dir.path() / "data").string();
  const std::string overrides =
      " --cfg-options train_dataloader.dataset.data_root=" + root +
      " custom_hooks.0.bank_dataloader.dataset.data_root=" + root +
      " custom_hooks.0.query_dataloader.dataset.data_root=" + root +
      " custom_hooks.0.bank_dataloader.dataset.indices=16"
      " custom_hooks.0.query_dataloader.dataset.indices=8 custom_hooks.0.k=5"
      " train_dataloader.batch_size=16 train_cfg.max_epochs=1"
      " model.backbone.arch.embed_dims=8 model.neck.in_channels=16"
      " param_scheduler.0.end=1 param_scheduler.1.begin=1 param_scheduler.1.end=2"
      " param_scheduler.1.T_max=1 default_hooks.checkpoint.interval=1";
  auto r = selfsup::test::run_selfsup("train " + cfg + " --work-dir " + work.string() +
                                      " --threads 2" + overrides);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string ckpt = (work / "epoch_1.pth").string();
  ASSERT_TRUE(fs::exists(ckpt)) << r.output;
  const fs::path out = dir.path() / "vis";
  r = selfsup::test::run_selfsup("visualize " + cfg + " --checkpoint " + ckpt + " --out " +
                                 out.string() + " --num 2 --scale 1 --split train" +
                                 overrides); // SimMIM's masks come from the training pipeline
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(selfsup::test::has_substr(r.output, "Wrote 2 reconstructions"));
  // 32x32 panels at scale 1: four panels and three 2-pixel gaps per strip.
  for (int i = 0; i < 2; ++i) {
    const auto size = png_size(out / ("sample_" + std::to_string(i) + ".png"));
    EXPECT_EQ(size[0], 4u * 32u + 3u * 2u) << i;
    EXPECT_EQ(size[1], 32u) << i;
  }
  EXPECT_EQ(png_size(out / "reconstructions.png")[1], 2u * 32u + 4u); // a 4-pixel gap
}

TEST(Visualize, RefusesAnIncompleteCommandLine) {
  auto r = selfsup::test::run_selfsup("visualize config.json --out /tmp/nowhere");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(selfsup::test::has_substr(r.output, "--checkpoint CKPT"));
  r = selfsup::test::run_selfsup("visualize config.json --checkpoint c.pth --out d --split val");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(selfsup::test::has_substr(r.output, "--split"));
}
