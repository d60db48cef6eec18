// `selfsup config --check --no-data` on the masked-image-modelling recipes (MAE, SimMIM, CAE,
// MaskFeat: ImageNet recipes and Fashion-MNIST configs), and what --no-data means for weight
// files a run reads at start (load_from, Pretrained init_cfg checkpoints): not required, not
// read, their keys still checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "host/tiny_run.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

using selfsup::test::has_substr;
using selfsup::test::run_selfsup;

std::string config(const std::string& rel) {
  return std::string(SELFSUP_SOURCE_DIR) + "/configs/" + rel;
}

TEST(ConfigCheckTest, EveryMimRecipePassesWithoutData) {
  std::vector<fs::path> files;
  for (const char* family : {"mae", "simmim", "cae", "maskfeat"})
    for (const auto& e : fs::directory_iterator(config(family)))
      if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  EXPECT_GE(files.size(), 23u); // 9 MAE, 6 SimMIM, 5 CAE, 3 MaskFeat
  for (const auto& file : files) {
    const auto r = run_selfsup("config " + file.string() + " --check --no-data");
    EXPECT_EQ(r.code, 0) << file << ":\n" << r.output;
    EXPECT_TRUE(has_substr(r.output, "config OK")) << file << ":\n" << r.output;
  }
}

TEST(ConfigCheckTest, NoDataNeedsNoWeightFilesButChecksTheirKeys) {
  selfsup::test::TempDir tmp;
  selfsup::test::make_fake_fmnist(tmp.path() / "data", 32, 8);
  const std::string root = (tmp.path() / "data").string();
  const std::string data = " --cfg-options train_dataloader.dataset.data_root=" + root +
                           " custom_hooks.0.bank_dataloader.dataset.data_root=" + root +
                           " custom_hooks.0.query_dataloader.dataset.data_root=" + root +
                           " train_dataloader.batch_size=8";
  const std::string gone = (tmp.path() / "gone.pth").string();

  // CAE's DALL-E weights (a target generator's init_cfg): read when there, with data.
  const std::string cae = config("cae/cae_vit-tiny-p4_fmnist.json");
  const std::string dalle = " model.target_generator.init_cfg.checkpoint=";
  auto r = run_selfsup("config " + cae + " --check" + data + dalle + gone);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has_substr(r.output, "model.target_generator.init_cfg.checkpoint: cannot open the "
                                   "DALL-E weights '" +
                                       gone + "'"))
      << r.output;
  r = run_selfsup("config " + cae + " --check --no-data" + data + dalle + gone);
  EXPECT_EQ(r.code, 0) << r.output;
  // ... but its keys are still checked without data.
  r = run_selfsup("config " + cae + " --check --no-data" + data + dalle +
                  "https://example.org/dalle.pth");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has_substr(r.output, "model.target_generator.init_cfg.checkpoint: expected a local "
                                   "file, got the URL"))
      << r.output;
  r = run_selfsup("config " + cae + " --check --no-data" + data + dalle + gone +
                  " model.target_generator.init_cfg.type=Pretrainedd");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has_substr(r.output, "model.target_generator.init_cfg.type")) << r.output;

  // load_from and a backbone's Pretrained init_cfg, the same.
  const std::string mae = config("mae/mae_vit-tiny-p4_fmnist.json");
  const std::string weights = " load_from=" + gone + " model.backbone.init_cfg.type=Pretrained" +
                              " model.backbone.init_cfg.checkpoint=" + gone;
  r = run_selfsup("config " + mae + " --check" + data + weights);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has_substr(r.output, "load_from: expected an existing file")) << r.output;
  EXPECT_TRUE(has_substr(r.output, "model.backbone.init_cfg.checkpoint: no such file")) << r.output;
  r = run_selfsup("config " + mae + " --check --no-data" + data + weights);
  EXPECT_EQ(r.code, 0) << r.output;
  r = run_selfsup("config " + mae + " --check --no-data" + data + weights +
                  " model.backbone.init_cfg.map_location=cpu");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has_substr(r.output, "model.backbone.init_cfg.map_location")) << r.output;
}

} // namespace
