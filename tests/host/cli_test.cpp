// End-to-end tests of the selfsup executable on a tiny generated dataset.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <selfsup/core/checkpoint.h>
#include <selfsup/json.h>

#include "tiny_run.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

using test::run_selfsup;
using test::tiny_run_overrides;

std::string config_dir() {
  return std::string(SELFSUP_SOURCE_DIR) + "/configs";
}

} // namespace

TEST(CliTest, HelpAndUsageExitCodes) {
  EXPECT_EQ(run_selfsup("--help").code, 0);
  for (const char* cmd : {"train", "list", "config"}) {
    test::CliResult r = run_selfsup(std::string(cmd) + " --help");
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.output.find("--"), std::string::npos) << r.output;
  }
  EXPECT_EQ(run_selfsup("frobnicate").code, 2);
  EXPECT_EQ(run_selfsup("train").code, 2);
  EXPECT_EQ(run_selfsup("train --no-such-flag x.json").code, 2);
  test::CliResult missing = run_selfsup("train /nonexistent/cfg.json");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.output.find("/nonexistent/cfg.json"), std::string::npos) << missing.output;
}

TEST(CliTest, ListJsonGroupsTypesByKind) {
  test::CliResult r = run_selfsup("list --json");
  ASSERT_EQ(r.code, 0) << r.output;
  Json j = Json::parse(r.output, "list --json");
  ASSERT_TRUE(j.find("plugins") && j.find("types"));
  std::vector<std::string> names;
  for (const auto& p : j.find("plugins")->items()) names.push_back(p.find("name")->as_string());
  for (const char* want : {"backbones", "common", "simclr"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  auto has = [&](const char* kind, const char* type) {
    for (const auto& t : j.find("types")->find(kind)->items())
      if (t.find("name")->as_string() == type) return true;
    return false;
  };
  EXPECT_TRUE(has("algorithm", "SimCLR"));
  EXPECT_TRUE(has("backbone", "ResNet"));
  EXPECT_TRUE(has("dataset", "FashionMNIST"));
  EXPECT_TRUE(has("transform", "RandomResizedCrop"));
  EXPECT_TRUE(has("optimizer", "LARS"));
  test::CliResult v = run_selfsup("list --verbose");
  EXPECT_NE(v.output.find("temperature: float = 0.1  [float > 0]"), std::string::npos);
}

TEST(CliTest, ConfigPrintsMergedConfigWithOverrides) {
  test::CliResult r =
      run_selfsup("config " + config_dir() +
                  "/simclr/simclr_resnet18_fmnist.json"
                  " --cfg-options model.head.temperature=0.2 train_dataloader.batch_size=64");
  ASSERT_EQ(r.code, 0) << r.output;
  Json j = Json::parse(r.output, "config");
  EXPECT_EQ(j.find("model")->find("head")->find("temperature")->as_number(), 0.2);
  EXPECT_EQ(j.find("train_dataloader")->find("batch_size")->as_int(), 64);
  EXPECT_EQ(j.find("model")->find("backbone")->find("depth")->as_int(), 18);
  EXPECT_EQ(j.find("_base_"), nullptr);
}

TEST(CliTest, TrainsResumesAndEvaluatesEndToEnd) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 64, 30);
  const std::string cfg = config_dir() + "/simclr/simclr_resnet18_fmnist.json";
  const fs::path work = tmp.path() / "work";
  test::CliResult r =
      run_selfsup("train " + cfg + " --work-dir " + work.string() + " --threads 2" +
                  tiny_run_overrides(tmp.path() / "data") + " train_cfg.max_epochs=1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(work / "epoch_1.pth"));
  EXPECT_TRUE(fs::exists(work / "simclr_resnet18_fmnist.json"));
  // Continue to epoch 2 from the latest checkpoint.
  r = run_selfsup("train " + cfg + " --work-dir " + work.string() + " --resume auto --threads 2" +
                  tiny_run_overrides(tmp.path() / "data"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("Resumed from"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("kNN (k=5"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(work / "epoch_2.pth"));
  std::ifstream in(work / "knn.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Json knn = Json::parse(text, "knn.json");
  // Training helped: the trained encoder beats the same encoder at random init (same
  // architecture, init and seed), measured by the first run and kept across the resume.
  ASSERT_NE(knn.find("random_init"), nullptr) << text;
  const double trained = knn.find("trained")->find("top1")->as_number();
  const double random = knn.find("random_init")->find("top1")->as_number();
  EXPECT_GT(trained, random) << text;
  EXPECT_NE(r.output.find("random init (measured at the start of the run)"), std::string::npos)
      << r.output;
}

TEST(CliTest, BadConfigExitsTwoNamingThePath) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 32, 10);
  const std::string cfg = config_dir() + "/simclr/simclr_resnet18_fmnist.json";
  test::CliResult r =
      run_selfsup("train " + cfg + " --work-dir " + tmp.str() +
                  tiny_run_overrides(tmp.path() / "data") + " model.neck.hid_channels=oops");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("model.neck.hid_channels: expected int, got \"oops\""), std::string::npos)
      << r.output;
  r = run_selfsup("train " + cfg + " --work-dir " + tmp.str() +
                  tiny_run_overrides(tmp.path() / "data") +
                  " train_dataloader.dataset.data_root=/nonexistent");
  EXPECT_EQ(r.code != 0, true);
  EXPECT_NE(r.output.find("/nonexistent"), std::string::npos) << r.output;
  r = run_selfsup("train " + cfg + " --work-dir " + tmp.str() +
                  tiny_run_overrides(tmp.path() / "data") + " model.backbone.type=ResNett");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("did you mean 'ResNet'"), std::string::npos) << r.output;
}

TEST(CliTest, ListSurvivesAFolderOfBrokenPlugins) {
  test::TempDir dir;
  for (const auto& e : fs::directory_iterator(SELFSUP_TEST_FIXTURE_DIR))
    if (e.path().extension() == ".so") fs::copy_file(e.path(), dir.path() / e.path().filename());
  test::CliResult r = run_selfsup("list --plugin-dir " + dir.str());
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("FixtureInvert"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("SimCLR"), std::string::npos);
  size_t skipped = 0;
  for (size_t pos = 0; (pos = r.output.find("selfsup: skipping plugin ", pos)) != std::string::npos;
       ++pos)
    ++skipped;
  EXPECT_EQ(skipped, 8u) << r.output;
  test::CliResult j = run_selfsup("list --json --plugin-dir " + dir.str());
  ASSERT_EQ(j.code, 0);
  EXPECT_EQ(Json::parse(j.output, "list").find("refused")->size(), 8u);

  // A config naming a type of a refused plugin says which file was refused and why.
  // (The runner checks its own required keys first, then builds the model.)
  test::write_file(dir.path() / "cfg.json", R"({"model": {"type": "SimCLR",
      "backbone": {"type": "FixtureDupFresh"}}, "train_cfg": {"type": "EpochBasedTrainLoop",
      "max_epochs": 1}, "train_dataloader": {"batch_size": 2, "dataset": {"type": "FashionMNIST"}},
      "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1}}})");
  test::CliResult t = run_selfsup("train " + (dir.path() / "cfg.json").string() + " --plugin-dir " +
                                  dir.str() + " --work-dir " + (dir.path() / "w").string());
  EXPECT_EQ(t.code, 2) << t.output;
  EXPECT_NE(t.output.find("libfixture_x_dup_type.so was refused: "), std::string::npos) << t.output;
}

TEST(CliTest, ListShowsProvidersAndMarksANameTwoPluginsProvide) {
  test::TempDir dir;
  for (const char* name : {"libfixture_good.so", "libfixture_shared_type.so"})
    fs::copy_file(std::string(SELFSUP_TEST_FIXTURE_DIR) + "/" + name, dir.path() / name);
  test::CliResult r = run_selfsup("list --plugin-dir " + dir.str());
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* line :
       {"[fixture_good] fixture transform  (*) also in 'fixture_shared_type': write "
        "'fixture_good.FixtureInvert'",
        "[fixture_shared_type] fixture transform  (*) also in 'fixture_good': write "
        "'fixture_shared_type.FixtureInvert'",
        "[fixture_shared_type] fixture transform\n", "(*) a name several plugins provide"})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n in: " << r.output;
  test::CliResult j = run_selfsup("list --json --plugin-dir " + dir.str());
  ASSERT_EQ(j.code, 0) << j.output;
  const Json types = *Json::parse(j.output, "list").find("types");
  std::vector<std::string> shared;
  const Json& transforms = *types.find("transform");
  for (size_t i = 0; i < transforms.size(); ++i)
    if (const Json& t = transforms.at(i); t.find("shared_with")->size() > 0)
      shared.push_back(t.find("plugin")->as_string() + ":" +
                       t.find("shared_with")->at(0).as_string());
  EXPECT_EQ(shared, (std::vector<std::string>{"fixture_good:fixture_shared_type",
                                              "fixture_shared_type:fixture_good"}));
}

TEST(CliTest, ConfigPluginsListLoadsFilesRelativeToTheConfig) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 32, 10);
  fs::create_directories(tmp.path() / "mine");
  fs::copy_file(std::string(SELFSUP_TEST_FIXTURE_DIR) + "/libfixture_good.so",
                tmp.path() / "mine" / "libfixture_good.so");
  const std::string base = config_dir() + "/simclr/simclr_resnet18_fmnist.json";
  test::write_file(tmp.path() / "cfg.json", R"({"_base_": ")" + base + R"(",
      "plugins": ["mine/libfixture_good.so"],
      "train_dataloader": {"dataset": {"pipeline": [
        {"type": "FixtureInvert"},
        {"type": "MultiView", "num_views": 2, "transforms": [[{"type": "RandomResizedCrop", "size": 16}]]},
        {"type": "PackSelfSupInputs"}]}}})");
  test::CliResult r = run_selfsup(
      "train " + (tmp.path() / "cfg.json").string() + " --work-dir " + (tmp.path() / "w").string() +
      tiny_run_overrides(tmp.path() / "data") + " train_cfg.max_epochs=1 custom_hooks=[]");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(tmp.path() / "w" / "epoch_1.pth")) << r.output;

  test::write_file(tmp.path() / "missing.json", R"({"_base_": ")" + base + R"(",
      "plugins": ["no_such_plugin"]})");
  r = run_selfsup("train " + (tmp.path() / "missing.json").string() + " --work-dir " + tmp.str());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("plugins[0]: plugin 'no_such_plugin' not found"), std::string::npos)
      << r.output;
}

TEST(CliTest, SigintSavesACheckpointAndResumeContinues) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 64, 10);
  const std::string cfg = config_dir() + "/simclr/simclr_resnet18_fmnist.json";
  const fs::path work = tmp.path() / "w";
  const std::string log = (tmp.path() / "out.log").string();
  const std::string args = "train " + cfg + " --work-dir " + work.string() + " --threads 1" +
                           tiny_run_overrides(tmp.path() / "data") +
                           " train_cfg.max_epochs=200 custom_hooks=[]";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string cmd =
        "exec " + std::string(SELFSUP_TEST_BIN_DIR) + "/selfsup " + args + " > " + log + " 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until training is under way (a line in scalars.jsonl), then interrupt it.
  const fs::path scalars = work / "scalars.jsonl";
  for (int i = 0; i < 1200 && !(fs::exists(scalars) && fs::file_size(scalars) > 0); ++i)
    usleep(50 * 1000);
  ASSERT_TRUE(fs::exists(scalars)) << "training did not start";
  kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::ifstream in(log);
  std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(out.find("stopped by a signal"), std::string::npos) << out;
  std::string saved;
  for (const auto& e : fs::directory_iterator(work))
    if (e.path().filename().string().rfind("iter_", 0) == 0) saved = e.path().string();
  ASSERT_FALSE(saved.empty()) << out;
  // Resume from it for one more epoch boundary: the run picks up where it stopped.
  test::CliResult r = run_selfsup(
      "train " + cfg + " --work-dir " + work.string() + " --resume auto --threads 1" +
      tiny_run_overrides(tmp.path() / "data") + " train_cfg.max_epochs=1 custom_hooks=[]");
  EXPECT_NE(r.output.find("Resumed from " + saved), std::string::npos) << r.output;
  EXPECT_EQ(r.code, 0) << r.output;
}

// A fault inside training (here a plugin hook's store through a null pointer after iteration
// 6 of 8) ends the run by SIGSEGV as before, after printing the signal, the faulting address
// and the faulting thread's stack, with the plugin's frame in it; epoch 1's checkpoint stays.
TEST(CliTest, AFaultDuringTrainingPrintsWhereAndKeepsTheLastCheckpoint) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 64, 10);
  const fs::path work = tmp.path() / "w";
  const test::CliResult r =
      run_selfsup("train " + config_dir() + "/simclr/simclr_resnet18_fmnist.json --work-dir " +
                  work.string() + " --threads 1 --plugin-dir " + SELFSUP_TEST_FIXTURE_DIR +
                  "/context_probe" + tiny_run_overrides(tmp.path() / "data") +
                  " 'custom_hooks=[{\"type\": \"ContextProbeHook\", \"segfault_after_iter\": 6}]'");
  EXPECT_EQ(r.code, 128 + SIGSEGV) << r.output;
  EXPECT_TRUE(test::has_substr(r.output, "selfsup: fatal signal SIGSEGV at address "
                                         "0x0000000000000000 during training; stack of the "
                                         "faulting thread:\n"))
      << r.output;
  EXPECT_TRUE(test::has_substr(r.output, "libfixture_context_probe.so(")) << r.output;
  EXPECT_TRUE(test::has_substr(r.output, "libselfsup_core.so")) << r.output;
  const core::Checkpoint last = core::load_checkpoint((work / "epoch_1.pth").string());
  EXPECT_EQ(last.meta.find("epoch")->as_int(), 1);
  EXPECT_FALSE(fs::exists(work / "epoch_2.pth"));
}

TEST(CliTest, PluginPathEnvironmentFoldersAreSearched) {
  test::TempDir a, b;
  fs::copy_file(std::string(SELFSUP_TEST_FIXTURE_DIR) + "/libfixture_good.so",
                a.path() / "libfixture_good.so");
  fs::copy_file(std::string(SELFSUP_TEST_FIXTURE_DIR) + "/libfixture_good_twin.so",
                b.path() / "libfixture_good_twin.so");
  test::CliResult r = run_selfsup("list --json");
  ASSERT_EQ(r.code, 0);
  EXPECT_EQ(r.output.find("FixtureInvert"), std::string::npos);
  test::CliResult with =
      run_selfsup("list", "SELFSUP_PLUGIN_PATH=" + a.str() + ":" + b.str() + " ");
  EXPECT_EQ(with.code, 0);
  const std::string& out = with.output;
  EXPECT_NE(out.find("fixture_good 1.2.3"), std::string::npos) << out;
  EXPECT_NE(out.find("FixtureTwinInvert"), std::string::npos) << out;
}

TEST(CliTest, TerminalGetsAProgressBarPipesGetPlainLines) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 64, 10);
  const std::string args =
      "train " + config_dir() + "/simclr/simclr_resnet18_fmnist.json" +
      tiny_run_overrides(tmp.path() / "data") +
      " train_cfg.max_epochs=1 custom_hooks=[] default_hooks.logger.interval=2";
  // Under a pseudo-terminal (util-linux `script`): one bar redrawn in place with it/s and ETA.
  const std::string exe = std::string(SELFSUP_TEST_BIN_DIR) + "/selfsup";
  const std::string cmd = "script -qec \"" + exe + " " + args + " --work-dir " +
                          (tmp.path() / "tty").string() + "\" /dev/null 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string tty;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) tty.append(buf.data(), n);
  ASSERT_EQ(pclose(p), 0) << tty;
  EXPECT_NE(tty.find("\rEpoch 1/1 ["), std::string::npos) << tty;
  EXPECT_NE(tty.find("4/4"), std::string::npos) << tty;
  EXPECT_NE(tty.find(" it/s ETA "), std::string::npos) << tty;
  EXPECT_NE(tty.find("loss: "), std::string::npos) << tty;
  EXPECT_EQ(tty.find("Epoch(train)"), std::string::npos) << tty;
  // Through a pipe: plain lines every `interval` iterations.
  test::CliResult plain = run_selfsup(args + " --work-dir " + (tmp.path() / "pipe").string());
  ASSERT_EQ(plain.code, 0) << plain.output;
  EXPECT_NE(plain.output.find("Epoch(train) [1][2/4] lr: "), std::string::npos) << plain.output;
  EXPECT_NE(plain.output.find("Epoch(train) [1][4/4] lr: "), std::string::npos) << plain.output;
  EXPECT_EQ(plain.output.find("it/s"), std::string::npos) << plain.output;
}

// ---- pre-flight (issue 7, point 3) and the loader's refusals (point 8) ----------------------

namespace {

// `dir` does not exist, or holds nothing but log files (`*.log`).
::testing::AssertionResult holds_at_most_a_log(const fs::path& dir) {
  if (!fs::exists(dir)) return ::testing::AssertionSuccess();
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (!e.is_regular_file() || e.path().extension() != ".log")
      return ::testing::AssertionFailure() << dir << " holds " << e.path();
  return ::testing::AssertionSuccess();
}

// Six different mistakes at once.
std::string six_mistakes(const fs::path& missing_root) {
  return " --cfg-options model.backbone.type=ResNett model.neck.hid_channel=3"
         " model.head.temperature=hot train_dataloader.batch_size=0"
         " train_dataloader.dataset.data_root=" +
         missing_root.string() + " train_cfg.max_epochs=null custom_hooks=[]";
}

void expect_six_mistakes(const std::string& output) {
  for (const char* want :
       {"6 problems (found ",
        "\n  model.backbone.type: unknown backbone type 'ResNett'; did you mean 'ResNet'?",
        "\n  model.neck.hid_channel: unknown key (accepted: in_channels, hid_channels,",
        "; did you mean 'hid_channels'?", "\n  model.head.temperature: expected float, got \"hot\"",
        "\n  train_dataloader.batch_size: expected int > 0, got 0",
        "\n  train_dataloader.dataset.data_root: expected an existing folder, got \"",
        "\n  train_cfg.max_epochs: required key is missing (int: epochs to train)"})
    EXPECT_NE(output.find(want), std::string::npos) << want << "\n in: " << output;
}

} // namespace

TEST(CliTest, ConfigCheckListsEveryProblemAndExitsTwo) {
  test::TempDir tmp;
  test::CliResult r =
      run_selfsup("config " + config_dir() + "/simclr/simclr_resnet18_fmnist.json --check" +
                  six_mistakes(tmp.path() / "no_data"));
  EXPECT_EQ(r.code, 2) << r.output;
  expect_six_mistakes(r.output);
  EXPECT_EQ(r.output.find("config OK"), std::string::npos) << r.output;
}

TEST(CliTest, ConfigCheckPassesTheShippedConfigsQuickly) {
  if (!fs::is_directory("/usr/share/datasets/fashion-mnist"))
    GTEST_SKIP() << "the shipped configs read /usr/share/datasets/fashion-mnist";
  for (const char* name : {"simclr_resnet18_fmnist.json", "simclr_resnet18_fmnist_demo.json"}) {
    test::CliResult r = run_selfsup("config " + config_dir() + "/simclr/" + name + " --check");
    ASSERT_EQ(r.code, 0) << name << ": " << r.output;
    const auto at = r.output.find("config OK: ");
    ASSERT_NE(at, std::string::npos) << r.output;
    // "(checked in N ms)": plugins loaded, config merged and walked, then each part built
    // (ResNet-18, the Fashion-MNIST loaders): no training step.
    const auto ms_at = r.output.find("(checked in ", at);
    ASSERT_NE(ms_at, std::string::npos) << r.output;
    EXPECT_LT(std::stol(r.output.substr(ms_at + 12)), 5000) << r.output;
  }
}

TEST(CliTest, TrainChecksTheWholeConfigBeforeTouchingTheWorkDir) {
  test::TempDir tmp;
  const fs::path work = tmp.path() / "work";
  test::CliResult r =
      run_selfsup("train " + config_dir() + "/simclr/simclr_resnet18_fmnist.json --work-dir " +
                  work.string() + six_mistakes(tmp.path() / "no_data"));
  EXPECT_EQ(r.code, 2) << r.output;
  expect_six_mistakes(r.output);
  EXPECT_FALSE(fs::exists(work)) << r.output;
  // A --resume checkpoint that is not there is found before anything is written, too.
  r = run_selfsup("train " + config_dir() + "/simclr/simclr_resnet18_fmnist.json --work-dir " +
                  work.string() + " --resume " + (tmp.path() / "gone.pth").string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--resume: expected an existing checkpoint file or \"auto\", got \"" +
                          (tmp.path() / "gone.pth").string() + "\""),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(work)) << r.output;
}

TEST(CliTest, BatchSizeZeroOrNoBatchPerEpochExitsTwoWritingNothingButALog) {
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 10, 4);
  const std::string cfg = config_dir() + "/simclr/simclr_resnet18_fmnist.json";
  const fs::path work = tmp.path() / "work";
  test::CliResult r =
      run_selfsup("train " + cfg + " --work-dir " + work.string() +
                  tiny_run_overrides(tmp.path() / "data") + " train_dataloader.batch_size=0");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("train_dataloader.batch_size: expected int > 0, got 0"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(holds_at_most_a_log(work));
  // 10 samples, batch_size 16 and drop_last (the shipped config's): no iteration at all.
  r = run_selfsup("train " + cfg + " --work-dir " + work.string() +
                  tiny_run_overrides(tmp.path() / "data"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("train_dataloader: no batch in an epoch: the dataset has 10 samples, "
                          "fewer than batch_size 16, and drop_last is true"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(holds_at_most_a_log(work));
}

TEST(CliTest, BadDataExitsTwoNamingTheFileWritingNothingButALog) {
  test::TempDir tmp;
  const std::string cfg = config_dir() + "/simclr/simclr_resnet18_fmnist.json";
  const fs::path work = tmp.path() / "work";
  // A truncated labels file.
  test::make_fake_fmnist(tmp.path() / "data", 40, 4);
  const fs::path labels = tmp.path() / "data" / "train-labels-idx1-ubyte.gz";
  test::write_idx(labels, {40}, std::vector<uint8_t>(20, 1));
  test::CliResult r = run_selfsup("train " + cfg + " --work-dir " + work.string() +
                                  tiny_run_overrides(tmp.path() / "data"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(labels.string() + ": truncated IDX payload"), std::string::npos)
      << r.output;
  EXPECT_TRUE(holds_at_most_a_log(work));
  // An image folder with no image in it.
  fs::create_directories(tmp.path() / "images");
  r = run_selfsup("train " + config_dir() + "/simclr/simclr_resnet18_imagefolder.json --work-dir " +
                  work.string() + " --cfg-options train_dataloader.dataset.data_root=" +
                  (tmp.path() / "images").string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find((tmp.path() / "images").string() + ": no images"), std::string::npos)
      << r.output;
  EXPECT_TRUE(holds_at_most_a_log(work));
}
