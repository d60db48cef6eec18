#pragma once
// Helpers shared by the algorithm-family tests (tests/plugins/<family>/*_test.cpp): upstream
// fixtures, tensor comparison, pass-through test modules and a run that only counts iterations.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <selfsup/core/runner.h>
#include <selfsup/sdk.h>

#include "local_registry.h"
#include "test_support.h"

namespace selfsup::test {

/// A plain dict of tensors as upstream's `torch.save` wrote it.
using TensorDict = c10::Dict<c10::IValue, c10::IValue>;

/// Reads the fixture at `relative` (a path under the source tree, e.g.
/// "tests/fixtures/moco/moco_reference.pt"); a file that does not open is a test failure.
TensorDict load_fixture(const std::string& relative);

/// The tensor `key` of a fixture; a missing key is a test failure naming it.
torch::Tensor ref(const TensorDict& d, const std::string& key);

/// Expects equal shapes and torch::allclose(ours, theirs, rtol, atol) in double precision; the
/// failure names `what` and the largest absolute difference.
void expect_allclose(const torch::Tensor& ours, const torch::Tensor& theirs, double rtol,
                     double atol, const std::string& what = "");

/// Each row divided by its L2 norm.
torch::Tensor l2_rows(const torch::Tensor& x);

/// A backbone that returns its input, so an algorithm sees exactly the features a test feeds.
class PassBackbone final : public Backbone {
public:
  std::vector<torch::Tensor> forward(const torch::Tensor& x) override { return {x}; }
  std::vector<int64_t> out_channels() const override { return {0}; }
};

/// A neck that flattens the last map to [N, C*H*W].
class FlattenNeck final : public Neck {
public:
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override {
    return {x.back().flatten(1)};
  }
};

/// Registers PassBackbone as "TestPassBackbone".
void add_pass_backbone(Registrar& r);

/// Registers FlattenNeck as "TestFlattenNeck".
void add_flatten_neck(Registrar& r);

/// A run seen by an algorithm outside a runner: only the iteration and the length of the run
/// are answered (max_iters = iters_per_epoch = `total`, one epoch); the rest throws.
class FakeRun final : public RunnerContext {
public:
  explicit FakeRun(int64_t iteration = 0, int64_t total = 100)
      : iteration(iteration), total(total) {}
  int64_t iteration, total;
  int64_t epoch() const override { return 0; }
  int64_t iter() const override { return iteration; }
  int64_t inner_iter() const override { return iteration; }
  int64_t max_epochs() const override { return 1; }
  int64_t max_iters() const override { return total; }
  int64_t iters_per_epoch() const override { return total; }
  Algorithm& model() override;
  torch::optim::Optimizer& optimizer() override;
  const std::string& param_group_name(size_t) const override;
  const Dataset& train_dataset() const override;
  Sampler& train_sampler() override;
  int64_t train_batch_size() const override { return 0; }
  const std::string& work_dir() const override { return dir_; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  uint64_t seed() const override { return 0; }
  std::string save_checkpoint(const std::string&) override { return ""; }
  void log_scalar(const std::string&, double) override {}
  void log(const std::string&) override {}

private:
  std::string dir_;
};

/// What building `cfg` as the Algorithm at "model" from `registry` throws: the ConfigError's
/// message (another exception type is a test failure, see message_of), or "<no exception>".
std::string model_config_error(const LocalRegistry& registry, const Json& cfg);

/// The train_dataloader of the tiny family runs: batches of 16 (2 workers, drop_last) of the
/// FashionMNIST train split under `data_root`, two views of a 16-pixel RandomResizedCrop
/// (scale 0.2..1) and a RandomFlip (0.5), packed by PackSelfSupInputs.
Json two_view_fmnist_loader(const std::filesystem::path& data_root);

/// A fresh temp folder holding a generated Fashion-MNIST (`data`, make_fake_fmnist with
/// `n_train` / `n_test` images) and the training options of a run in it (work_dir `run`,
/// 2 threads).
struct TinyFmnistRun {
  TinyFmnistRun(int n_train, int n_test);
  TempDir root;
  std::filesystem::path data;
  core::TrainOptions options;
};

} // namespace selfsup::test
