// Interop with Python's PyTorch (Debian's python3-torch as the oracle): a checkpoint is read
// by torch.load, its weights load into the same torch.nn module and its optimizer state into
// torch.optim.SGD, whose next step then equals ours.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <torch/torch.h>

#include <selfsup/core/builtins.h>
#include <selfsup/core/checkpoint.h>
#include <selfsup/core/optim_wrapper.h>
#include <selfsup/registry.h>

#include "test_support.h"

using namespace selfsup;

namespace {

// Debian's interpreter, the one python3-torch installs into (a pyenv or venv python3 on the
// PATH would not see it).
constexpr const char* kPython = "/usr/bin/python3";

bool python_has_torch() {
  const std::string cmd = std::string(kPython) + " -c 'import torch' > /dev/null 2>&1";
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

} // namespace

TEST(CheckpointInteropTest, TorchLoadReadsWeightsAndOptimizerStateAsPyTorchWritesThem) {
  if (!python_has_torch())
    GTEST_SKIP() << kPython << " cannot import torch (Debian package python3-torch)";
  Registry registry;
  core::register_builtins(registry);
  torch::manual_seed(11);
  torch::nn::Linear lin(3, 2);
  core::OptimWrapper wrapper(Config(Json::parse(R"({"type": "OptimWrapper",
          "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}})",
                                                "test"),
                                    "optim_wrapper")
                                 .with_registry(registry),
                             *lin);
  const auto x = torch::tensor({{1.0f, 2.0f, 3.0f}, {0.5f, -1.0f, 2.0f}});
  std::vector<std::pair<std::string, double>> scalars;
  auto step = [&](int64_t i) { wrapper.update_params(lin(x).pow(2).sum(), i, 3, scalars); };
  step(0);
  step(1); // the momentum buffers now hold two steps

  test::TempDir dir;
  const std::string path = (dir.path() / "ckpt.pth").string();
  core::Checkpoint c;
  c.meta.set("iter", Json(int64_t(2)));
  c.state_dict = core::module_state(*lin);
  c.optimizer = wrapper.state_dict();
  core::save_checkpoint(path, c);
  step(2);

  const std::string script = dir.path() / "check.py";
  std::ofstream(script) << R"(import sys, torch
c = torch.load(sys.argv[1])
assert set(c) >= {"state_dict", "optimizer", "meta"}, list(c)
lin = torch.nn.Linear(3, 2)
lin.load_state_dict(c["state_dict"])
o = c["optimizer"]
assert set(o) == {"state", "param_groups"}, list(o)
assert [g["params"] for g in o["param_groups"]] == [[0], [1]], o["param_groups"]
assert sorted(o["state"]) == [0, 1] and set(o["state"][0]) == {"momentum_buffer"}
# One group per parameter, as selfsup's wrapper makes them.
opt = torch.optim.SGD([{"params": [lin.weight]}, {"params": [lin.bias]}], lr=1.0)
opt.load_state_dict(o)
assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.9
x = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
lin(x).pow(2).sum().backward()
opt.step()
print(" ".join("%.9g" % v for v in torch.cat([lin.weight.detach().flatten(), lin.bias.detach()])))
)";
  std::istringstream out(run(std::string(kPython) + " " + script + " " + path + " 2>&1"));
  std::vector<double> python;
  for (double v; out >> v;) python.push_back(v);
  const auto ours = torch::cat({lin->weight.detach().flatten(), lin->bias.detach()});
  ASSERT_EQ(python.size(), size_t(ours.numel())) << out.str();
  for (int64_t i = 0; i < ours.numel(); ++i)
    EXPECT_NEAR(python[size_t(i)], ours[i].item<double>(), 1e-5) << i;
}
