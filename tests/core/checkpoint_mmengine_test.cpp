// Checkpoints in mmengine 0.8.4's layout (issue 8, point 6), with Debian's python3-torch and
// python3-torchvision as the oracle: a real ResNet-18 trains two epochs, torch.load reads its
// checkpoint, finds mmengine's keys and PyTorch's optimizer layout, and torchvision's
// resnet18 takes the backbone's weights with strict=True after the documented prefix strip
// ('backbone.'; torchvision's classifier fc.* is no part of a backbone: it is replaced by
// Identity) and computes the same features. Checkpoints of the previous format still resume
// (tests/fixtures/checkpoints/v3_epoch_1.pth, written by the code before this format).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>

#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/config_file.h>
#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

// Debian's interpreter, the one python3-torch installs into (a pyenv or venv python3 on the
// PATH would not see it).
constexpr const char* kPython = "/usr/bin/python3";

bool python_has(const std::string& modules) {
  const std::string cmd = std::string(kPython) + " -c 'import " + modules + "' > /dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

fs::path fixtures() {
  return fs::path(SELFSUP_SOURCE_DIR) / "tests" / "fixtures" / "checkpoints";
}

// A CIFAR-10 root of 16 random 32x32 colour images (five train batches: 4, 4, 4, 2, 2).
void make_fake_cifar10(const fs::path& root) {
  std::mt19937 gen(99);
  const int counts[] = {4, 4, 4, 2, 2};
  for (int b = 0; b < 5; ++b) {
    std::string bytes;
    for (int i = 0; i < counts[b]; ++i) {
      bytes.push_back(char(i % 10));
      for (int p = 0; p < 3 * 32 * 32; ++p) bytes.push_back(char(gen() % 256));
    }
    test::write_file(
        root / "cifar-10-batches-bin" / ("data_batch_" + std::to_string(b + 1) + ".bin"), bytes);
  }
}

// SimCLR on a torchvision-shaped ResNet-18 (3 input channels, the ImageNet stem), 2
// iterations per epoch, 3 epochs; a per-iteration warm-up and a per-epoch cosine.
Json resnet18_config(const fs::path& data_root) {
  Json cfg = Json::parse(R"({
    "model": {"type": "SimCLR",
      "data_preprocessor": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                            "bgr_to_rgb": true},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 3},
      "neck": {"type": "NonLinearNeck", "in_channels": 512, "hid_channels": 64, "out_channels": 16},
      "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}, "temperature": 0.1}},
    "train_dataloader": {"batch_size": 8, "num_workers": 1, "drop_last": true,
      "dataset": {"type": "CIFAR10", "pipeline": [
        {"type": "MultiView", "num_views": [2], "transforms": [[
          {"type": "RandomResizedCrop", "size": 32, "scale": [0.2, 1.0]},
          {"type": "RandomFlip", "prob": 0.5}]]},
        {"type": "PackSelfSupInputs"}]}},
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}},
    "param_scheduler": [
      {"type": "LinearLR", "start_factor": 0.5, "begin": 0, "end": 1, "convert_to_iter_based": true},
      {"type": "CosineAnnealingLR", "T_max": 2, "begin": 1, "end": 3, "by_epoch": true}],
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 3},
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1},
                      "checkpoint": {"type": "CheckpointHook", "interval": 1}},
    "randomness": {"seed": 7}
  })",
                         "t");
  cfg.find("train_dataloader")->find("dataset")->set("data_root", data_root.string());
  return cfg;
}

// What torch.load and torchvision see in epoch_1.pth (after 2 of 6 iterations) and
// epoch_2.pth (after 4); prints the features torchvision's resnet18 computes from the
// checkpoint's backbone weights for a fixed input, after "FORWARD".
constexpr const char* kCheck = R"PY(import json, re, sys, torch, torchvision
c = torch.load(sys.argv[1], map_location="cpu")
assert set(c) == {"meta", "state_dict", "optimizer", "param_schedulers", "message_hub"}, list(c)

m = c["meta"]
assert m["epoch"] == 1 and m["iter"] == 2, (m["epoch"], m["iter"])
assert m["seed"] == 7 and m["mmengine_version"] == "0.8.4", m
assert m["selfsup_format"] == "selfsup-checkpoint-4", m["selfsup_format"]
assert re.fullmatch(r"\d{8}_\d{6}", m["time"]), m["time"]
assert isinstance(m["experiment_name"], str) and m["experiment_name"]
assert json.loads(m["cfg"])["model"]["backbone"]["depth"] == 18
assert (m["iters_per_epoch"], m["max_epochs"], m["max_iters"]) == (2, 3, 6), m
assert "config" not in m  # mmengine's resume would parse a meta.config as Python

sd = c["state_dict"]
assert all(k.split(".")[0] in ("backbone", "neck", "head") for k in sd), sorted(sd)
buffers = ("running_mean", "running_var", "num_batches_tracked")
n_params = sum(1 for k in sd if not k.endswith(buffers))

# PyTorch's optimizer layout: parameters numbered in order, one momentum buffer each.
o = c["optimizer"]
assert set(o) == {"state", "param_groups"}, list(o)
ids = [i for g in o["param_groups"] for i in g["params"]]
assert ids == list(range(n_params)), (len(ids), n_params)
assert sorted(o["state"]) == ids
# Without a paramwise_cfg mmengine builds one group over model.parameters(): so does the file.
assert len(o["param_groups"]) == 1, len(o["param_groups"])
for g in o["param_groups"]:
    assert g["momentum"] == 0.9 and g["initial_lr"] == 0.1, g
    # mmengine saves after its schedulers stepped: the lr of the next iteration (iteration 2:
    # the warm-up is over, the cosine has not moved yet).
    assert abs(g["lr"] - 0.1) < 1e-12, g["lr"]

# torchvision's resnet18 under the documented rule: strip "backbone.", replace fc by Identity.
backbone = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
net = torchvision.models.resnet18()
assert set(net.state_dict()) - set(backbone) == {"fc.weight", "fc.bias"}
assert set(backbone) - set(net.state_dict()) == set()
net.fc = torch.nn.Identity()
net.load_state_dict(backbone, strict=True)
# The backbone's parameters come first, in torchvision's order: the momentum buffers fit.
tv_params = list(net.parameters())
for i, p in enumerate(tv_params):
    assert o["state"][i]["momentum_buffer"].shape == p.shape, (i, p.shape)
shapes = sorted(tuple(v.shape) for k, v in sd.items() if not k.endswith(buffers))
assert shapes == sorted(tuple(s["momentum_buffer"].shape) for s in o["state"].values())

# mmengine's scheduler states: a per-iteration warm-up over iterations [0, 2) stepped after
# each of the 2 iterations, a per-epoch cosine over epochs [1, 3) stepped after epoch 0.
s = c["param_schedulers"]
assert len(s) == 2, s
n_groups = len(o["param_groups"])
want = [dict(begin=0, end=2, by_epoch=False, last_step=1, _global_step=2),
        dict(begin=1, end=3, by_epoch=True, last_step=0, _global_step=1)]
for got, w in zip(s, want):
    assert {k: got[k] for k in w} == w, got
    assert got["param_name"] == "lr" and got["verbose"] is False
    assert got["base_values"] == [0.1] * n_groups and len(got["_last_value"]) == n_groups

h = c["message_hub"]
assert set(h) == {"log_scalars", "runtime_info", "resumed_keys"}, list(h)
info = h["runtime_info"]
# RuntimeInfoHook's values during the last iteration trained: epoch 0, iteration 1.
assert (info["epoch"], info["iter"], info["max_epochs"], info["max_iters"]) == (0, 1, 3, 6), info
assert set(h["resumed_keys"]) == set(info) and all(h["resumed_keys"].values())

# After epoch 2 (iterations 0..3) the cosine has stepped once more: the next lr is
# 0.1 * (1 + cos(pi / 2)) / 2, while iteration 3 ran at 0.1.
c2 = torch.load(sys.argv[2], map_location="cpu")
assert all(abs(g["lr"] - 0.05) < 1e-12 for g in c2["optimizer"]["param_groups"])
cos = c2["param_schedulers"][1]
assert (cos["_global_step"], cos["last_step"]) == (2, 1), cos
assert all(abs(v - 0.05) < 1e-12 for v in cos["_last_value"]), cos["_last_value"]

net.eval()
x = torch.sin(torch.arange(2 * 3 * 32 * 32, dtype=torch.float32) * 0.01).reshape(2, 3, 32, 32)
with torch.no_grad():
    y = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    y = net.layer4(net.layer3(net.layer2(net.layer1(y))))
print("FORWARD", " ".join("%.9g" % v for v in y.flatten().tolist()))
)PY";

class CheckpointMmengineTest : public ::testing::Test {
protected:
  void SetUp() override { test::load_plugins(); }
  test::TempDir dir_;
};

} // namespace

TEST_F(CheckpointMmengineTest, TorchLoadFindsMmengineLayoutAndTorchvisionResNet18LoadsTheBackbone) {
  if (!python_has("torch, torchvision"))
    GTEST_SKIP() << kPython
                 << " cannot import torch and torchvision (Debian packages python3-torch, "
                    "python3-torchvision)";
  make_fake_cifar10(dir_.path() / "data");
  const Json cfg = resnet18_config(dir_.path() / "data");
  core::TrainOptions o;
  o.work_dir = (dir_.path() / "work").string();
  o.threads = 2;
  core::Runner(cfg, o).train();
  const fs::path ckpt = dir_.path() / "work" / "epoch_1.pth";
  ASSERT_TRUE(fs::exists(ckpt));

  const fs::path script = dir_.path() / "check.py";
  std::ofstream(script) << kCheck;
  const std::string out = run(std::string(kPython) + " " + script.string() + " " + ckpt.string() +
                              " " + (dir_.path() / "work" / "epoch_2.pth").string() + " 2>&1");
  const size_t at = out.find("FORWARD ");
  ASSERT_NE(at, std::string::npos) << out;
  std::istringstream values(out.substr(at + 8));
  std::vector<float> python;
  for (float v; values >> v;) python.push_back(v);

  // The same features from our ResNet with the same weights.
  auto backbone = build<Backbone>(Config(*cfg.find("model")->find("backbone"), "model.backbone"));
  core::TensorMap weights;
  for (const auto& [name, t] : core::load_checkpoint(ckpt.string()).state_dict)
    if (name.rfind("backbone.", 0) == 0) weights[name.substr(9)] = t;
  core::load_module_state(*backbone, weights, ckpt.string());
  backbone->eval();
  torch::NoGradGuard no_grad;
  const auto x =
      torch::sin(torch::arange(2 * 3 * 32 * 32, torch::kFloat32) * 0.01).reshape({2, 3, 32, 32});
  const auto ours = backbone->forward(x).back().flatten();
  ASSERT_EQ(python.size(), size_t(ours.numel())) << out;
  const auto theirs = torch::tensor(python);
  EXPECT_TRUE(torch::allclose(ours, theirs, 1e-4, 1e-4))
      << "max difference " << (ours - theirs).abs().max().item<float>();

  // mmengine's own Runner resumes the file (with MMSelfSup 1.0 importable, e.g. after
  // `source /work/anchors/env.sh`): it continues from epoch 1, iteration 2 with the learning
  // rates of our own run.
  if (!python_has("mmselfsup, mmengine, mmcv")) {
    std::cout << "[ SKIPPED  ] mmengine's Runner.resume: " << kPython
              << " cannot import mmselfsup, mmengine and mmcv\n";
    return;
  }
  const std::string resumed =
      run(std::string(kPython) + " " + (fixtures() / "mmengine_resume.py").string() + " " +
          ckpt.string() + " " + (dir_.path() / "mmengine").string() + " 2>&1");
  std::map<int64_t, double> our_lr; // by 0-based iteration
  std::istringstream scalars(test::read_text(dir_.path() / "work" / "scalars.jsonl"));
  for (std::string line; std::getline(scalars, line);) {
    const Json rec = Json::parse(line, "scalars.jsonl");
    our_lr[rec.find("iter")->as_int() - 1] = rec.find("lr")->as_number();
  }
  std::istringstream lines(resumed);
  std::vector<int64_t> iters;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("mmengine iter ", 0) != 0) continue;
    std::istringstream fields(line.substr(14));
    int64_t iter = -1, epoch = -1;
    std::string word;
    double lr = -1;
    char bracket;
    fields >> iter >> word >> epoch >> word >> bracket >> lr;
    iters.push_back(iter);
    EXPECT_NEAR(lr, our_lr[iter], 1e-12) << line;
  }
  EXPECT_EQ(iters, (std::vector<int64_t>{2, 3, 4, 5})) << resumed;
}

// tests/fixtures/checkpoints/v3_epoch_1.pth was written by selfsup-checkpoint-3's code (see
// make_fixtures.sh): it resumes, with its weights, counters and optimizer state, and the
// resumed run writes the current format.
TEST_F(CheckpointMmengineTest, AFormat3CheckpointStillResumes) {
  const fs::path fixture = fixtures() / "v3_epoch_1.pth";
  test::make_fake_fmnist(dir_.path() / "data", 32, 4);
  Json cfg = core::load_config_file((fixtures() / "tiny_simclr.json").string());
  cfg.find("train_dataloader")->find("dataset")->set("data_root", (dir_.path() / "data").string());
  cfg.find("train_cfg")->set("max_epochs", Json(2));
  core::TrainOptions o;
  o.work_dir = (dir_.path() / "work").string();
  o.resume = fixture.string();
  o.threads = 1;

  const core::Checkpoint old = core::load_checkpoint(fixture.string());
  EXPECT_FALSE(old.meta.find("selfsup_format")); // format 3 kept it at the top level
  core::Runner runner(cfg, o);
  EXPECT_EQ(runner.epoch(), 1);
  EXPECT_EQ(runner.iter(), 2);
  const core::TensorMap resumed = core::module_state(runner.model());
  ASSERT_EQ(resumed.size(), old.state_dict.size());
  for (const auto& [name, t] : old.state_dict)
    EXPECT_TRUE(torch::equal(resumed.at(name), t)) << name;
  runner.train();

  const core::Checkpoint now =
      core::load_checkpoint((dir_.path() / "work" / "epoch_2.pth").string());
  EXPECT_EQ(now.meta.find("iter")->as_int(), 4);
  ASSERT_TRUE(now.meta.find("selfsup_format"));
  EXPECT_EQ(now.meta.find("selfsup_format")->as_string(), core::kCheckpointFormat);
  EXPECT_EQ(now.meta.find("seed")->as_int(), 5); // the resumed run kept the file's seed

  // The current format resumes too: its one param group (the config has no paramwise_cfg)
  // comes back as one group per parameter, with the momentum buffers.
  cfg.find("train_cfg")->set("max_epochs", Json(3));
  o.resume = (dir_.path() / "work" / "epoch_2.pth").string();
  core::Runner again(cfg, o);
  EXPECT_EQ(again.iter(), 4);
  const auto saved = now.optimizer.toGenericDict();
  EXPECT_EQ(saved.at("param_groups").toList().size(),
            size_t(again.optimizer().param_groups().size()));
  again.train();
  EXPECT_EQ(core::load_checkpoint((dir_.path() / "work" / "epoch_3.pth").string())
                .meta.find("iter")
                ->as_int(),
            6);
}

TEST_F(CheckpointMmengineTest, SaveAndLoadKeepMetaConfigRngAndSchedulers) {
  core::Checkpoint c;
  c.meta.set("epoch", Json(int64_t(2)));
  c.meta.set("iter", Json(int64_t(8)));
  c.meta.set("config",
             Json::parse(R"({"model": {"type": "SimCLR"}, "lr": [0.5, null, true]})", "t"));
  c.state_dict["w"] = torch::arange(6, torch::kFloat32);
  c.rng["torch_cpu"] = torch::arange(5, torch::kUInt8);
  c10::impl::GenericList schedulers(c10::AnyType::get());
  schedulers.push_back(core::mmengine_scheduler_state("lr", 1, 5, true, 3, {0.1}, {0.05}));
  c.param_schedulers = schedulers;
  const std::string path = (dir_.path() / "c.pth").string();
  core::save_checkpoint(path, c);

  const core::Checkpoint back = core::load_checkpoint(path);
  EXPECT_EQ(back.meta.find("iter")->as_int(), 8);
  EXPECT_EQ(*back.meta.find("config"), *c.meta.find("config"));
  EXPECT_EQ(back.meta.find("mmengine_version")->as_string(), core::kMmengineLayoutVersion);
  EXPECT_TRUE(torch::equal(back.rng.at("torch_cpu"), c.rng.at("torch_cpu")));
  EXPECT_TRUE(back.optimizer.isNone()); // none given: no 'optimizer' key, as mmengine
  ASSERT_TRUE(back.param_schedulers.isList());
  const auto s = back.param_schedulers.toList().get(0).toGenericDict();
  // Steps 0..3 taken; 1, 2 and 3 inside [1, 5): last_step 2.
  EXPECT_EQ(s.at("last_step").toInt(), 2);
  EXPECT_EQ(s.at("_global_step").toInt(), 3);
  EXPECT_EQ(core::mmengine_scheduler_state("lr", 4, 6, true, 2, {}, {}).at("last_step").toInt(),
            -1);
  EXPECT_EQ(core::mmengine_scheduler_state("lr", 0, 3, false, 9, {}, {}).at("last_step").toInt(),
            2);
}

// A format this version does not know, and a foreign mmengine file, are refused by name.
TEST_F(CheckpointMmengineTest, AnUnknownFormatIsAnErrorNamingTheFileAndTheFormat) {
  auto save = [&](const std::string& name, const c10::impl::GenericDict& top) {
    const std::vector<char> bytes = torch::pickle_save(top);
    test::write_file(dir_.path() / name, std::string(bytes.data(), bytes.size()));
    return (dir_.path() / name).string();
  };
  auto dict = [] { return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()); };
  auto weights = dict();
  weights.insert("w", torch::ones({2}));

  auto old = dict();
  old.insert("format", std::string("selfsup-checkpoint-9"));
  old.insert("meta", std::string("{}"));
  old.insert("state_dict", weights);
  const std::string v9 = save("v9.pth", old);
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { (void)core::load_checkpoint(v9); }),
                       v9 + ": checkpoint format 'selfsup-checkpoint-9' is not known"));

  auto meta = dict();
  meta.insert("selfsup_format", std::string("selfsup-checkpoint-7"));
  auto newer = dict();
  newer.insert("meta", meta);
  newer.insert("state_dict", weights);
  const std::string v7 = save("v7.pth", newer);
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { (void)core::load_checkpoint(v7); }),
                       v7 + ": checkpoint format 'selfsup-checkpoint-7' is not known"));

  auto mm_meta = dict();
  mm_meta.insert("epoch", int64_t(1));
  auto mmengine = dict();
  mmengine.insert("meta", mm_meta);
  mmengine.insert("state_dict", weights);
  const std::string mm = save("mm.pth", mmengine);
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { (void)core::load_checkpoint(mm); }),
                       mm + ": not a selfsup checkpoint (meta has no selfsup_format"));

  // The current format without its checksum (cut off or rewritten) is refused too.
  meta.insert_or_assign("selfsup_format", std::string(core::kCheckpointFormat));
  const std::string bare = save("bare.pth", newer);
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { (void)core::load_checkpoint(bare); }),
                       "selfsup-checkpoint-4 without its checksum"));
}
