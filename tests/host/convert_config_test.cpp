// Issue 8, point 7: MMSelfSup's .py configs as they are. `selfsup convert-config` against
// mmengine 0.8.4's own Config.fromfile (expected files it wrote, and, where /work/anchors has
// mmengine and MMSelfSup 1.0, every real MMSelfSup config read by both); its errors; and
// `selfsup config --check` listing every fault at once, naming the plugin a missing type needs.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <selfsup/core/builtins.h>
#include <selfsup/core/config_file.h>
#include <selfsup/core/preflight.h>
#include <selfsup/json.h>
#include <selfsup/registry.h>

#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;
using selfsup::test::has_substr;

namespace {

struct Result {
  int code = -1;
  std::string output; // stdout and stderr
};

Result run_command(const std::string& cmd) {
  Result r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

Result run_selfsup(const std::string& args) {
  return run_command(std::string(SELFSUP_TEST_BIN_DIR) + "/selfsup " + args);
}

fs::path fixtures() {
  return fs::path(SELFSUP_SOURCE_DIR) / "tests" / "fixtures" / "pyconfigs";
}

Json read_json(const fs::path& path) {
  return Json::parse(test::read_text(path), path.string());
}

// The first key path where two JSON values differ ("" when equal), for failure messages.
std::string first_difference(const Json& a, const Json& b, const std::string& path = "") {
  if (a.type() != b.type() && !(a.is_number() && b.is_number()))
    return path + ": " + a.type_name() + " vs " + b.type_name();
  if (a.is_object()) {
    if (a.keys() != b.keys()) return path + ": keys " + a.dump() + " vs " + b.dump();
    for (size_t i = 0; i < a.size(); ++i) {
      std::string d = first_difference(a.at(i), b.at(i), path + "." + a.keys()[i]);
      if (!d.empty()) return d;
    }
    return "";
  }
  if (a.is_array()) {
    if (a.size() != b.size()) return path + ": lengths " + a.dump() + " vs " + b.dump();
    for (size_t i = 0; i < a.size(); ++i) {
      std::string d = first_difference(a.at(i), b.at(i), path + "[" + std::to_string(i) + "]");
      if (!d.empty()) return d;
    }
    return "";
  }
  return a == b ? "" : path + ": " + a.dump() + " vs " + b.dump();
}

} // namespace

// ---- the converter -------------------------------------------------------------------------

TEST(ConvertConfigTest, ABaseChainConvertsAsMmengineReadsIt) {
  // child.py -> middle.py -> four bases: _base_ lists and chains, dict merges, _delete_,
  // lists replaced, {{_base_.x}}, _base_.x, variables, tuples, arithmetic, an f-string with a
  // file-name variable, list + list and a comprehension. The expected files are mmengine's.
  test::TempDir tmp;
  for (const char* name : {"child", "middle"}) {
    const fs::path out = tmp.path() / (std::string(name) + ".json");
    const Result r =
        run_selfsup("convert-config " + (fixtures() / (std::string(name) + ".py")).string() +
                    " -o " + out.string());
    ASSERT_EQ(r.code, 0) << r.output;
    const Json got = read_json(out);
    const Json want = read_json(fixtures() / (std::string(name) + ".expected.json"));
    EXPECT_EQ(got, want) << name << ": " << first_difference(got, want);
    // Module-level variables that are not config keys are left out, and named.
    EXPECT_TRUE(has_substr(r.output, "left out module-level variables that are not selfsup "
                                     "config keys"));
    EXPECT_TRUE(has_substr(r.output, "data_root, num_views, view_pipeline, train_pipeline"));
  }
  // A few values spelled out, so a wrong expected file would show.
  const Json child = read_json(tmp.path() / "child.json");
  const Config c(child);
  EXPECT_EQ(c["model"]["backbone"]["depth"].as<int64_t>(), 50);                // middle.py
  EXPECT_EQ(c["model"]["neck"]["out_channels"].as<int64_t>(), 128);            // model.py
  EXPECT_DOUBLE_EQ(c["model"]["head"]["temperature"].as<double>(), 0.2);       // 0.1 * 2
  EXPECT_EQ(c["optim_wrapper"]["optimizer"]["type"].as<std::string>(), "SGD"); // _delete_
  EXPECT_FALSE(c["optim_wrapper"]["optimizer"].has("eta"));
  EXPECT_DOUBLE_EQ(c["optim_wrapper"]["optimizer"]["lr"].as<double>(), 0.03 * 64 / 256);
  EXPECT_EQ(c["param_scheduler"].size(), 1u); // a list replaces, never merges
  EXPECT_EQ(c["train_dataloader"]["dataset"]["ann_file"].as<std::string>(), "meta/child_64.txt");
  EXPECT_EQ(c["train_dataloader"]["dataset"]["pipeline"].at(1)["transforms"].at(0).size(), 3u);
  EXPECT_EQ(c["train_dataloader"]["dataset"]["pipeline"].at(2)["pad"].json().dump(),
            "[104,116,124]");
  EXPECT_EQ(c["train_cfg"]["max_epochs"].as<int64_t>(), 34);
  EXPECT_FALSE(child.find("_base_"));
}

TEST(ConvertConfigTest, KeepVariablesAndStandardOutput) {
  const Result r =
      run_selfsup("convert-config " + (fixtures() / "child.py").string() + " --keep-variables");
  ASSERT_EQ(r.code, 0) << r.output;
  const Json j = Json::parse(r.output, "stdout");
  ASSERT_TRUE(j.find("data_root"));
  EXPECT_EQ(j.find("data_root")->as_string(), "data/imagenet/");
  EXPECT_EQ(j.find("neck_channels")->as_int(), 128); // {{_base_.model.neck.out_channels}}
  EXPECT_EQ(*j.find("bgr_mean"), Json::parse("[103.53, 116.28, 123.675]", "want")); // [::-1]
}

TEST(ConvertConfigTest, WhatCannotBeConvertedNamesFileLineAndExpression) {
  test::TempDir tmp;
  test::write_file(tmp.path() / "base.py", "model = 1\nnum = 3\n");
  test::write_file(tmp.path() / "base2.py", "num = 4\n");
  struct Case {
    const char* text;
    std::vector<std::string> expected;
  };
  const Case cases[] = {
      {"x = 1\nimport torch\n", {"bad.py:2:", "`import torch`", "imports are not supported"}},
      {"optimizer = dict(\n    type=torch.optim.SGD, lr=0.1)\n",
       {"bad.py:2:", "`torch.optim.SGD`", "name 'torch' is not defined",
        "Python objects such as modules, classes and functions cannot be written to JSON"}},
      {"def f():\n    return 1\n", {"bad.py:1:", "FunctionDef statements are not supported"}},
      {"a = dict(b=1)\na.b = 2\n", {"bad.py:2:", "`a.b = 2`", "only names are assigned"}},
      {"x = {1, 2}\n", {"bad.py:1:", "`{1, 2}`", "a set is not a JSON value"}},
      {"x = open('f')\n", {"bad.py:1:", "`open('f')`", "only dict(), list(), tuple()"}},
      {"x = 'a' - 1\n", {"bad.py:1:", "operator Sub on str and int"}},
      {"x = float('inf')\n", {"bad.py:1:", "`float('inf')`", "not a finite number"}},
      {"_base_ = 'base.py'\nx = {{_base_.num}} + 1\n",
       {"bad.py:2:", "{{_base_.num}} must be a whole value", "compute with _base_.num instead"}},
      {"_base_ = 'base.py'\nx = _base_.nums\n",
       {"bad.py:2:", "`_base_.nums`", "no key 'nums' (keys: model, num)"}},
      {"_base_ = 'base.py'\nx = {{_base_.model.depth}}\n",
       {"bad.py:2:", "_base_.model has no 'depth' (it is a int)"}},
      {"x = {{_base_.num}}\n", {"bad.py:1:", "in a file without _base_"}},
      {"_base_ = 'base.py'\nmodel = dict(depth=50)\n",
       {"bad.py", "'model' is a dict here but a int in the _base_ files",
        "set _delete_=True in it to replace the inherited value"}},
      {"_base_ = ['base.py', 'base2.py']\n",
       {"bad.py:1:", "_base_ files base.py and base2.py both define 'num'"}},
      {"_base_ = ['missing.py']\n", {"missing.py: cannot read (a _base_ of ", "bad.py)"}},
      {"_base_ = ['mmcls::_base_/default_runtime.py']\n",
       {"bad.py:1:", "is a config of the package 'mmcls': name its configs folder with "
                     "--package mmcls=DIR"}},
      {"work_dir = '{{ $HOME }}'\n", {"bad.py:1:", "cannot convert the template `{{ $HOME }}`"}},
      {"x = (1,\n", {"bad.py:", "syntax error"}},
      {"_base_ = 'bad.py'\n", {"_base_ files include each other", "bad.py -> "}},
  };
  for (const auto& c : cases) {
    const fs::path file = tmp.path() / "bad.py";
    test::write_file(file, c.text);
    const Result r = run_selfsup("convert-config " + file.string() + " -o " +
                                 (tmp.path() / "out.json").string());
    EXPECT_EQ(r.code, 2) << c.text << r.output;
    EXPECT_TRUE(has_substr(r.output, "selfsup convert-config: ")) << r.output;
    for (const auto& e : c.expected) EXPECT_TRUE(has_substr(r.output, e)) << c.text;
    EXPECT_FALSE(fs::exists(tmp.path() / "out.json")) << c.text; // nothing half-written
  }
  // A file that is not there, and usage errors.
  Result r = run_selfsup("convert-config " + (tmp.path() / "nope.py").string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has_substr(r.output, "nope.py: cannot read"));
  EXPECT_EQ(run_selfsup("convert-config").code, 2);
  EXPECT_EQ(run_selfsup("convert-config --help").code, 0);
  r = run_selfsup("convert-config " + (fixtures() / "child.py").string() +
                  " --python /nonexistent/python3");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has_substr(r.output, "cannot run /nonexistent/python3")) << r.output;
}

TEST(ConvertConfigTest, EveryRealMmselfsupConfigConvertsAsMmengineReadsIt) {
  // MMSelfSup 1.0's own configs under /work/anchors (with mmengine 0.8.4 as the oracle).
  const fs::path anchors = "/work/anchors";
  const fs::path configs = anchors / "mmselfsup" / "configs" / "selfsup";
  if (!fs::is_directory(configs) || !fs::exists(anchors / "env.sh"))
    GTEST_SKIP() << "MMSelfSup 1.0 and mmengine are not at " << anchors;
  const std::string env = ". " + (anchors / "env.sh").string() + " && ";
  if (run_command(env + "/usr/bin/python3 -c 'import mmengine.config'").code != 0)
    GTEST_SKIP() << "mmengine does not import";
  // Every config (mmengine cannot read the fine-tuning ones whose bases are mmcls's package
  // configs, `mmcls::...`, without an installed mmcls: the oracle gives null for those).
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(configs)) {
    const std::string p = e.path().string();
    if (e.path().extension() != ".py" || p.find("/_base_/") != std::string::npos) continue;
    files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 50u);
  test::TempDir tmp;
  std::string cmd = env + "/usr/bin/python3 " + (fixtures() / "mmengine_oracle.py").string() + " " +
                    (tmp.path() / "oracle.json").string();
  for (const auto& f : files) cmd += " " + f;
  const Result oracle = run_command(cmd);
  ASSERT_EQ(oracle.code, 0) << oracle.output;
  const Json want = read_json(tmp.path() / "oracle.json");
  size_t same = 0, compared = 0;
  for (const auto& f : files) {
    const Json* expected = want.find(f);
    ASSERT_TRUE(expected) << f;
    if (expected->is_null()) continue;
    ++compared;
    const fs::path out = tmp.path() / "out.json";
    const Result r = run_selfsup("convert-config " + f + " --keep-variables -o " + out.string());
    ASSERT_EQ(r.code, 0) << f << ": " << r.output;
    const Json got = read_json(out);
    EXPECT_EQ(got, *expected) << f << ": " << first_difference(got, *expected);
    same += got == *expected;
  }
  EXPECT_GE(compared, 55u); // 60 of the 70 in MMSelfSup 1.0
  EXPECT_EQ(same, compared);
}

// ---- config --check ------------------------------------------------------------------------

TEST(ConfigCheckTest, ListsEveryFaultAtOnceWithItsPath) {
  // Three independent faults the schemas find (an unknown transform in a hook's pipeline, a
  // scheduler key that does not exist, an optimizer type that does not exist) and one that only
  // building the data loader finds (a batch larger than the dataset, with drop_last): all four
  // listed.
  test::TempDir tmp;
  test::make_fake_fmnist(tmp.path() / "data", 20, 10);
  const std::string cfg =
      std::string(SELFSUP_SOURCE_DIR) + "/configs/simclr/simclr_resnet18_fmnist.json";
  const std::string root = (tmp.path() / "data").string();
  const std::string data =
      " train_dataloader.batch_size=4 train_dataloader.dataset.data_root=" + root +
      " custom_hooks.0.bank_dataloader.dataset.data_root=" + root +
      " custom_hooks.0.query_dataloader.dataset.data_root=" + root;
  Result r = run_selfsup("config " + cfg + " --check --cfg-options" + data);
  ASSERT_EQ(r.code, 0) << r.output; // the shipped config on the fake data is fine
  EXPECT_TRUE(has_substr(r.output, "config OK"));

  r = run_selfsup("config " + cfg + " --check --cfg-options" + data +
                  " custom_hooks.0.bank_dataloader.dataset.pipeline.0.type=PackSelfSupInputz"
                  " param_scheduler.0.start_factr=0.1 optim_wrapper.optimizer.type=SGDD"
                  " train_dataloader.batch_size=64 train_dataloader.drop_last=true");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has_substr(r.output, ": 4 problems (found by building each part without "
                                   "training):"));
  for (const char* want :
       {"\n  custom_hooks[0].bank_dataloader.dataset.pipeline[0].type: unknown transform type "
        "'PackSelfSupInputz'; did you mean 'PackSelfSupInputs'?",
        "\n  param_scheduler[0].start_factr: unknown key",
        "\n  optim_wrapper.optimizer.type: unknown optimizer type 'SGDD'; did you mean 'SGD'?",
        "\n  train_dataloader: no batch in an epoch: the dataset has 20 samples, fewer than "
        "batch_size 64"})
    EXPECT_TRUE(has_substr(r.output, want)) << r.output;
  EXPECT_FALSE(has_substr(r.output, "config OK"));
}

TEST(ConfigCheckTest, NoDataSkipsFilesButBuildsPipelines) {
  test::TempDir tmp;
  const std::string cfg =
      std::string(SELFSUP_SOURCE_DIR) + "/configs/simclr/simclr_resnet18_fmnist.json";
  const std::string gone = (tmp.path() / "no_data").string();
  const std::string data = " --cfg-options train_dataloader.dataset.data_root=" + gone +
                           " custom_hooks.0.bank_dataloader.dataset.data_root=" + gone +
                           " custom_hooks.0.query_dataloader.dataset.data_root=" + gone;
  Result r = run_selfsup("config " + cfg + " --check" + data);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has_substr(r.output, "train_dataloader.dataset.data_root: expected an existing "
                                   "folder, got \"" +
                                       gone))
      << r.output;
  r = run_selfsup("config " + cfg + " --check --no-data" + data);
  EXPECT_EQ(r.code, 0) << r.output;
  // Pipelines are still built: a transform's value only its factory refuses.
  r = run_selfsup("config " + cfg + " --check --no-data" + data +
                  " custom_hooks.0.query_dataloader.dataset.pipeline.0.type=ResizeShorterSide");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has_substr(r.output,
                         "custom_hooks[0].query_dataloader.dataset.pipeline[0].type: unknown "
                         "transform type 'ResizeShorterSide'"))
      << r.output;
}

TEST(ConfigCheckTest, AMissingTypeNamesThePluginThatProvidesIt) {
  // The engine's types only: no plugin is loaded.
  Registry registry;
  core::register_builtins(registry);
  core::TrainOptions options;
  options.registry = &registry;
  const Json cfg = core::load_config_file(std::string(SELFSUP_SOURCE_DIR) +
                                          "/configs/simclr/simclr_resnet18_fmnist.json");
  const auto problems = core::preflight(cfg, options);
  std::string text;
  for (const auto& p : problems) text += p + "\n";
  EXPECT_TRUE(has_substr(text, "model.type: unknown algorithm type 'SimCLR': 'SimCLR' is "
                               "provided by the plugin 'simclr', which is not loaded (build the "
                               "target selfsup_simclr, or put its libselfsup_simclr.so in a "
                               "plugin folder"));
  EXPECT_TRUE(has_substr(text, "below it, also missing: ResNet (plugin 'backbones'), "
                               "NonLinearNeck (plugin 'common'), ContrastiveHead (plugin "
                               "'common')"));
  EXPECT_TRUE(has_substr(text, "mmcls.CrossEntropyLoss (plugin 'common')"));

  EXPECT_EQ(core::zoo_plugin("MoCo"), "moco");
  EXPECT_EQ(core::zoo_plugin("mmselfsup.BYOL"), "byol");
  EXPECT_EQ(core::zoo_plugin("MAE"), "mae");
  EXPECT_EQ(core::zoo_plugin("SwAV"), "swav");
  EXPECT_EQ(core::zoo_plugin("DeepCluster"), "deepcluster");
  EXPECT_EQ(core::zoo_plugin("ODC"), "odc");
  EXPECT_EQ(core::zoo_plugin("RelativeLoc"), "pretext");
  EXPECT_EQ(core::zoo_plugin("RotationPred"), "pretext");
  EXPECT_EQ(core::zoo_plugin("SimMIM"), "simmim");
  EXPECT_EQ(core::zoo_plugin("CAE"), "cae");
  EXPECT_EQ(core::zoo_plugin("MaskFeat"), "maskfeat");
  EXPECT_EQ(core::zoo_plugin("BEiT"), "beit");
  EXPECT_EQ(core::zoo_plugin("MixMIM"), "mixmim");
  EXPECT_EQ(core::zoo_plugin("EVA"), "eva");
  EXPECT_EQ(core::zoo_plugin("MILAN"), "milan");
  EXPECT_EQ(core::zoo_plugin("MoCoV3ViT"), "backbones");
  EXPECT_EQ(core::zoo_plugin("Frobnicator"), "");

  // A name in neither the registry nor the zoo: MMSelfSup's nearest names.
  Json typo = cfg;
  core::apply_overrides(typo, {"model.type=MoCoo"});
  std::string typo_text;
  for (const auto& p : core::preflight(typo, options)) typo_text += p + "\n";
  EXPECT_TRUE(has_substr(typo_text, "model.type: unknown algorithm type 'MoCoo'"));
  EXPECT_TRUE(has_substr(typo_text, "MMSelfSup's nearest: 'MoCo' (plugin 'moco', not loaded)"));
}
