// `selfsup train --amp` (MMSelfSup's tools/train.py --amp): the tiny SimCLR run of the shipped
// Fashion-MNIST config trains with an AmpOptimWrapper, which its merged config records.
#include <gtest/gtest.h>

#include <filesystem>

#include <selfsup/json.h>

#include "tiny_run.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

std::string simclr_config() {
  return std::string(SELFSUP_SOURCE_DIR) + "/configs/simclr/simclr_resnet18_fmnist.json";
}

} // namespace

TEST(AmpCliTest, AmpMakesTheRunAnAmpOptimWrapperAndSaysSoWhenItAlreadyIs) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 64, 30);
  const fs::path work = tmp.path() / "work";
  test::CliResult r = test::run_selfsup(
      "train " + simclr_config() + " --amp --work-dir " + work.string() + " --threads 2" +
      test::tiny_run_overrides(tmp.path() / "data") + " train_cfg.max_epochs=1");
  ASSERT_EQ(r.code, 0) << r.output;
  const Json merged =
      Json::parse(test::read_text(work / "simclr_resnet18_fmnist.json"), "merged config");
  const Json* wrapper = merged.find("optim_wrapper");
  ASSERT_NE(wrapper, nullptr);
  EXPECT_EQ(wrapper->find("type")->as_string(), "AmpOptimWrapper");
  EXPECT_EQ(wrapper->find("loss_scale")->as_string(), "dynamic");
  // On the CPU: bfloat16 autocast, no scaler, and the log says why.
  EXPECT_TRUE(test::has_substr(r.output, "optim_wrapper.loss_scale \"dynamic\": no loss scaling "
                                         "is applied on the CPU"));
  EXPECT_EQ(r.output.find("already AmpOptimWrapper"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(work / "epoch_1.pth"));

  // A config that already is one: the log says so (stopped early by a missing data root).
  r = test::run_selfsup("train " + simclr_config() + " --amp --work-dir " +
                        (tmp.path() / "work2").string() +
                        test::tiny_run_overrides(tmp.path() / "data") +
                        " optim_wrapper.type=AmpOptimWrapper"
                        " train_dataloader.dataset.data_root=/nonexistent");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(test::has_substr(
      r.output, "--amp: optim_wrapper.type is already AmpOptimWrapper (mixed precision on)"));

  // float16 on the CPU: an error naming the key, before anything is written.
  r = test::run_selfsup(
      "train " + simclr_config() + " --amp --work-dir " + (tmp.path() / "work3").string() +
      test::tiny_run_overrides(tmp.path() / "data") + " optim_wrapper.dtype=float16");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(test::has_substr(r.output, "optim_wrapper.dtype: float16 autocast needs CUDA"));
  EXPECT_FALSE(fs::exists(tmp.path() / "work3" / "epoch_1.pth"));
}
