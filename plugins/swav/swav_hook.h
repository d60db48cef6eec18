#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/schema.h>

namespace selfsup::plugins::swav {

/// MMSelfSup's SwAVHook. From epoch `epoch_queue_starts` on (when queue_length > 0) it gives
/// the model's SwAVLoss a zero feature queue [len(crops_for_assign), queue_length / world_size,
/// feat_dim], which the loss starts using once its last row is filled; `use_queue` is reset at
/// each epoch start. queue_length is first rounded down to a multiple of batch_size *
/// world_size. The queue is saved every `interval` epochs as work_dir/queue.pth (queue<rank>.pth
/// in a distributed run, a dict {'queue': tensor} torch.load reads) and loaded from there at
/// the start of a run. `frozen_layers_cfg` {name: iters}: parameters whose name contains `name`
/// get requires_grad false before iteration `iters` (the prototypes for the recipe's 5005).
class SwAVHook final : public Hook {
public:
  struct Options {
    int64_t batch_size = 0;
    int64_t epoch_queue_starts = 15;
    std::vector<int64_t> crops_for_assign{0, 1};
    int64_t feat_dim = 128;
    int64_t queue_length = 0;
    int64_t interval = 1;
    std::map<std::string, int64_t> frozen_layers_cfg;
    int priority = 50;
  };
  explicit SwAVHook(Options options) : options_(std::move(options)) {}
  static Schema schema();
  static std::shared_ptr<Hook> make(const Config& cfg);

  [[nodiscard]] int priority() const override { return options_.priority; }
  void before_run(RunnerContext& context) override;
  void before_train_epoch(RunnerContext& context) override;
  void before_train_iter(RunnerContext& context) override;
  void after_train_epoch(RunnerContext& context) override;

  [[nodiscard]] const torch::Tensor& queue() const { return queue_; }
  /// The queue length after rounding (valid after before_run).
  [[nodiscard]] int64_t queue_length() const { return queue_length_; }
  [[nodiscard]] const std::string& queue_path() const { return queue_path_; }

private:
  Options options_;
  int64_t queue_length_ = 0;
  std::string queue_path_;
  torch::Tensor queue_;
  std::map<std::string, bool> requires_grad_; // per frozen layer name
};

} // namespace selfsup::plugins::swav
