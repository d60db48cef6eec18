// `selfsup eval linear|knn` and `selfsup extract` on the checkpoint of a tiny run: both
// figures printed, kNN equal to the run's own KNNEvalHook, features that NumPy reads as the
// C++ extraction computes them, and clear errors with a non-zero exit on bad input.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <regex>

#include <torch/torch.h>

#include <selfsup/config.h>
#include <selfsup/core/checkpoint.h>
#include <selfsup/core/data.h>
#include <selfsup/core/knn_eval.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/json.h>
#include <selfsup/registry.h>

#include "test_support.h"
#include "tiny_run.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

class EvalTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const auto r = test::train_tiny_run(dir_->path());
    trained_ok_ = r.code == 0;
    train_output_ = r.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(trained_ok_) << train_output_; }

  static fs::path work() { return dir_->path() / "work"; }
  static std::string config() { return (work() / "simclr_resnet18_fmnist.json").string(); }
  static std::string ckpt() { return (work() / "epoch_2.pth").string(); }

  static test::TempDir* dir_;
  static bool trained_ok_;
  static std::string train_output_;
};
test::TempDir* EvalTest::dir_ = nullptr;
bool EvalTest::trained_ok_ = false;
std::string EvalTest::train_output_;

// The two percentages of a "top-1 X %, top-5 Y %" line starting with `prefix`.
std::pair<double, double> figures(const std::string& output, const std::string& prefix) {
  // The hooks write "top-1 X%", the commands "top-1 X %".
  const std::regex re(prefix + R"([^\n]*top-1 ([0-9.]+) ?%, top-5 ([0-9.]+) ?%)");
  std::smatch m;
  if (!std::regex_search(output, m, re)) {
    ADD_FAILURE() << "no '" << prefix << "... top-1 X %, top-5 Y %' line in:\n" << output;
    return {-1, -1};
  }
  return {std::stod(m[1]), std::stod(m[2])};
}

} // namespace

TEST_F(EvalTest, KnnPrintsBothFiguresAndMatchesTheRunsOwnKnnHook) {
  const auto r =
      test::run_selfsup("eval knn " + config() + " --checkpoint " + ckpt() + " --threads 2");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto [top1, top5] = figures(r.output, "kNN \\(k=5, T=0.07, 64 bank / 30 queries\\)");
  // The KNNEvalHook measured the same weights on the same data after training.
  const Json knn = Json::parse(test::read_text(work() / "knn.json"), "knn.json");
  EXPECT_NEAR(top1, knn.find("trained")->find("top1")->as_number(), 0.005) << r.output;
  EXPECT_NEAR(top5, knn.find("trained")->find("top5")->as_number(), 0.005) << r.output;
  // --k and --temperature override the hook's.
  const auto r1 = test::run_selfsup("eval knn " + config() + " --checkpoint " + ckpt() +
                                    " --k 1 --temperature 0.5 --threads 2");
  ASSERT_EQ(r1.code, 0) << r1.output;
  EXPECT_NE(r1.output.find("kNN (k=1, T=0.5, 64 bank / 30 queries)"), std::string::npos)
      << r1.output;
}

TEST_F(EvalTest, LinearProbePrintsTopOneAndTopFive) {
  const auto r = test::run_selfsup("eval linear " + config() + " --checkpoint " + ckpt() +
                                   " --epochs 30 --threads 2");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto [top1, top5] = figures(r.output, "linear probe:");
  EXPECT_GE(top1, 0);
  EXPECT_LE(top1, top5);
  EXPECT_LE(top5, 100);
  // The settings it used: the lr is scaled to the batch, which is capped to the 64 samples.
  EXPECT_NE(r.output.find("32-dim features, standardised, 10 classes; 64 train / 30 test; 30 "
                          "epochs, batch 64, SGD lr 0.075 cosine, momentum 0.9"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("linear probe epoch 30/30: loss"), std::string::npos) << r.output;
}

TEST_F(EvalTest, BadInputExitsNonZeroNamingTheProblem) {
  // A missing checkpoint.
  const std::string missing = (dir_->path() / "nope.pth").string();
  auto r = test::run_selfsup("eval linear " + config() + " --checkpoint " + missing);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(test::has_substr(r.output, missing));
  // A checkpoint of another model: the same config with a wider backbone.
  r = test::run_selfsup("eval knn " + config() + " --checkpoint " + ckpt() +
                        " --cfg-options model.backbone.base_channels=8");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(test::has_substr(r.output, "does not fit the model of " + config()));
  EXPECT_TRUE(test::has_substr(r.output, "backbone.")) << "names the entries";
  r = test::run_selfsup("extract " + config() + " --checkpoint " + ckpt() + " --out " +
                        (dir_->path() / "x.npy").string() +
                        " --cfg-options model.backbone.base_channels=8");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(test::has_substr(r.output, "does not fit the model"));
  // Usage errors.
  EXPECT_EQ(test::run_selfsup("eval").code, 2);
  EXPECT_EQ(test::run_selfsup("eval frobnicate " + config()).code, 2);
  r = test::run_selfsup("eval linear " + config());
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(test::has_substr(r.output, "--checkpoint CKPT are required"));
  EXPECT_EQ(test::run_selfsup("eval knn " + config() + " --checkpoint " + ckpt() + " --k 0").code,
            2);
  EXPECT_EQ(test::run_selfsup("extract " + config() + " --checkpoint " + ckpt() +
                              " --split val --out /tmp/x.npy")
                .code,
            2);
  // A config without labelled splits (no KNNEvalHook, no test_dataloader).
  r = test::run_selfsup("eval knn " + config() + " --checkpoint " + ckpt() +
                        " --cfg-options custom_hooks=[]");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(test::has_substr(
      r.output, "expected a KNNEvalHook (or LinearProbeHook) with a bank_dataloader"));
  for (const char* cmd : {"eval linear", "eval knn", "extract", "report"})
    EXPECT_EQ(test::run_selfsup(std::string(cmd) + " --help").code, 0) << cmd;
}

TEST_F(EvalTest, ExtractWritesNpyFilesNumpyReadsAsTheExtractionComputes) {
  const fs::path out = dir_->path() / "feats" / "test.npy";
  fs::create_directories(out.parent_path());
  const auto r =
      test::run_selfsup("extract " + config() + " --checkpoint " + ckpt() + " --split test --out " +
                        out.string() + " --threads 2 --precision fp32");
  ASSERT_EQ(r.code, 0) << r.output;
  const fs::path labels_path = dir_->path() / "feats" / "test_labels.npy";
  ASSERT_TRUE(fs::exists(out)) << r.output;
  ASSERT_TRUE(fs::exists(labels_path)) << r.output;

  // The same features computed here through the engine's API.
  test::load_plugins();
  const Json cfg = Json::parse(test::read_text(config()), config());
  const Config root(cfg);
  auto model = build<Algorithm>(root["model"]);
  core::load_module_state(*model, core::load_checkpoint(ckpt()).state_dict, "test");
  auto loader =
      core::DataLoader::from_config(Config(cfg)["custom_hooks"].at(0)["query_dataloader"], 0);
  torch::Tensor labels;
  const auto feats = core::extract_features(*model, *loader, labels, torch::kCPU);
  ASSERT_EQ(feats.sizes(), (std::vector<int64_t>{30, 32}));

  if (std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with numpy (python3-numpy) is not installed: the .npy "
                    "files were written but not read back";
  const fs::path script = dir_->path() / "read.py";
  const fs::path json_out = dir_->path() / "read.json";
  test::write_file(script,
                   "import json, sys, numpy as np\n"
                   "f = np.load(sys.argv[1], allow_pickle=False)\n"
                   "l = np.load(sys.argv[2], allow_pickle=False)\n"
                   "json.dump({'shape': list(f.shape), 'dtype': str(f.dtype),\n"
                   "           'fortran': bool(np.isfortran(f)),\n"
                   "           'labels_shape': list(l.shape), 'labels_dtype': str(l.dtype),\n"
                   "           'values': [float(v) for v in f.ravel()],\n"
                   "           'labels': [int(v) for v in l]}, open(sys.argv[3], 'w'))\n");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script.string() + " " + out.string() + " " +
                         labels_path.string() + " " + json_out.string())
                            .c_str()),
            0);
  const Json got = Json::parse(test::read_text(json_out), json_out.string());
  EXPECT_EQ(got.find("dtype")->as_string(), "float32");
  EXPECT_EQ(got.find("labels_dtype")->as_string(), "int64");
  EXPECT_FALSE(got.find("fortran")->as_bool());
  ASSERT_EQ(got.find("shape")->size(), 2u);
  EXPECT_EQ(got.find("shape")->at(0).as_int(), 30);
  EXPECT_EQ(got.find("shape")->at(1).as_int(), 32);
  ASSERT_EQ(got.find("labels_shape")->size(), 1u);
  EXPECT_EQ(got.find("labels_shape")->at(0).as_int(), 30);
  const auto& values = got.find("values")->items();
  ASSERT_EQ(values.size(), size_t(30 * 32));
  const auto expect = feats.contiguous();
  const float* e = expect.data_ptr<float>();
  for (size_t i = 0; i < values.size(); ++i)
    ASSERT_NEAR(values[i].as_number(), double(e[i]), 1e-6) << "value " << i;
  const auto& got_labels = got.find("labels")->items();
  ASSERT_EQ(got_labels.size(), 30u);
  for (int64_t i = 0; i < 30; ++i) {
    EXPECT_EQ(got_labels[size_t(i)].as_int(), labels[i].item<int64_t>());
    EXPECT_EQ(got_labels[size_t(i)].as_int(), i % 10); // make_fake_fmnist's labels, in order
  }
  // --labels-out names the labels file.
  const fs::path other = dir_->path() / "feats" / "other_labels.npy";
  const auto r2 =
      test::run_selfsup("extract " + config() + " --checkpoint " + ckpt() +
                        " --split train --out " + (dir_->path() / "feats" / "train.npy").string() +
                        " --labels-out " + other.string() + " --threads 2");
  ASSERT_EQ(r2.code, 0) << r2.output;
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(test::has_substr(r2.output, "(64 x 32 float32)"));
}

TEST(LinearProbeHookTest, RunsAfterTrainingLogsAndWritesItsFigures) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 64, 30);
  const std::string data = tmp.path().string() + "/data";
  const std::string loader = R"({"batch_size": 32, "num_workers": 1,
      "sampler": {"type": "DefaultSampler", "shuffle": false},
      "dataset": {"type": "FashionMNIST", "data_root": ")" +
                             data + R"(", "split": "SPLIT",
                  "pipeline": [{"type": "PackSelfSupInputs", "algorithm_keys": ["gt_label"]}]}})";
  auto split = [&](const std::string& s) {
    return std::regex_replace(loader, std::regex("SPLIT"), s);
  };
  const fs::path cfg = tmp.path() / "probe.json";
  test::write_file(cfg, "{\"_base_\": \"" + std::string(SELFSUP_SOURCE_DIR) +
                            "/configs/simclr/simclr_resnet18_fmnist.json\",\n"
                            "\"custom_hooks\": [{\"type\": \"LinearProbeHook\", \"epochs\": 5, "
                            "\"bank_dataloader\": " +
                            split("train") + ", \"query_dataloader\": " + split("test") + "}]}\n");
  const std::string overrides =
      " --cfg-options train_dataloader.dataset.data_root=" + data +
      " train_dataloader.batch_size=16 train_cfg.max_epochs=1"
      " model.backbone.stem_channels=4 model.backbone.base_channels=4"
      " model.neck.in_channels=32 model.neck.hid_channels=32"
      " param_scheduler.0.end=1 param_scheduler.1.begin=1 param_scheduler.1.end=2"
      " param_scheduler.1.T_max=1";
  const fs::path work = tmp.path() / "work";
  const auto r = test::run_selfsup("train " + cfg.string() + " --work-dir " + work.string() +
                                   " --threads 2" + overrides);
  ASSERT_EQ(r.code, 0) << r.output;
  const auto [top1, top5] = figures(r.output, "Linear probe \\(5 epochs, batch 64, lr 0.075; 64 "
                                              "train / 30 test\\) trained:");
  (void)top1;
  (void)top5;
  // The same numbers as `eval linear` on the checkpoint with the same settings and seed.
  const Json out = Json::parse(test::read_text(work / "linear.json"), "linear.json");
  const auto e =
      test::run_selfsup("eval linear " + (work / "probe.json").string() + " --checkpoint " +
                        (work / "epoch_1.pth").string() + " --epochs 5 --threads 2");
  ASSERT_EQ(e.code, 0) << e.output;
  const auto [etop1, etop5] = figures(e.output, "linear probe:");
  EXPECT_NEAR(etop1, out.find("top1")->as_number(), 0.005) << e.output;
  EXPECT_NEAR(etop5, out.find("top5")->as_number(), 0.005) << e.output;
  // The scalars reach the scalar log, hence the report.
  const std::string log = test::read_text(work / "scalars.jsonl");
  EXPECT_NE(log.find("\"linear/top1\""), std::string::npos);
  EXPECT_NE(log.find("\"linear/top5\""), std::string::npos);
  // A bad option is a config error naming its path.
  const auto bad =
      test::run_selfsup("train " + cfg.string() + " --work-dir " + (tmp.path() / "bad").string() +
                        overrides + " custom_hooks.0.epochs=0");
  EXPECT_EQ(bad.code, 2) << bad.output;
  EXPECT_TRUE(test::has_substr(bad.output, "custom_hooks[0].epochs")) << bad.output;
}
