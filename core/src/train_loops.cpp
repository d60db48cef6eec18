// MMEngine's train loops: EpochBasedTrainLoop (max_epochs) and IterBasedTrainLoop (max_iters).
// A loop only decides when epochs begin and end and when the run is over; the runner
// (TrainLoop::Driver) runs the iterations, hooks, logging and checkpoints.
#include <algorithm>

#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace selfsup::core {

namespace {

class EpochBasedTrainLoop final : public TrainLoop {
public:
  explicit EpochBasedTrainLoop(const Config& cfg) : max_epochs_(cfg.get<int64_t>("max_epochs")) {
    if (max_epochs_ <= 0)
      cfg.fail_key("max_epochs", "expected an int > 0, got " + std::to_string(max_epochs_));
    if (cfg.get<int64_t>("val_begin") != 1 || cfg.get<int64_t>("val_interval") != 1)
      cfg.fail("val_begin/val_interval: selfsup has no validation loop (use KNNEvalHook)");
  }
  int64_t max_epochs(int64_t) const override { return max_epochs_; }
  int64_t max_iters(int64_t ipe) const override { return max_epochs_ * ipe; }
  void run(Driver& d) override {
    RunnerContext& ctx = d.context();
    while (ctx.epoch() < max_epochs_) {
      d.begin_epoch();
      while (d.run_iteration()) {
      }
      d.end_epoch();
    }
  }

private:
  int64_t max_epochs_;
};

class IterBasedTrainLoop final : public TrainLoop {
public:
  explicit IterBasedTrainLoop(const Config& cfg) : max_iters_(cfg.get<int64_t>("max_iters")) {
    if (max_iters_ <= 0)
      cfg.fail_key("max_iters", "expected an int > 0, got " + std::to_string(max_iters_));
    if (cfg.get<int64_t>("val_begin") != 1 || cfg.get<int64_t>("val_interval") != 1000)
      cfg.fail("val_begin/val_interval: selfsup has no validation loop (use KNNEvalHook)");
  }
  int64_t max_epochs(int64_t ipe) const override {
    return (max_iters_ + std::max<int64_t>(1, ipe) - 1) / std::max<int64_t>(1, ipe);
  }
  int64_t max_iters(int64_t) const override { return max_iters_; }
  void run(Driver& d) override {
    RunnerContext& ctx = d.context();
    // Epochs stay the unit of data order and of epoch hooks; the last one ends early.
    while (ctx.iter() < max_iters_) {
      d.begin_epoch();
      while (ctx.iter() < max_iters_ && d.run_iteration()) {
      }
      d.end_epoch();
    }
  }

private:
  int64_t max_iters_;
};

} // namespace

void register_train_loops(Registrar& r) {
  r.add<TrainLoop>(
      "EpochBasedTrainLoop",
      [](const Config& c) { return std::make_shared<EpochBasedTrainLoop>(c); },
      Schema("Trains for max_epochs passes over the data (MMEngine's EpochBasedTrainLoop).")
          .required("max_epochs", ArgType::Int, "epochs to train, > 0")
          .optional("val_begin", ArgType::Int, 1, "accepted for MMEngine configs; must stay 1")
          .optional("val_interval", ArgType::Int, 1,
                    "accepted for MMEngine configs; must stay 1 (no validation loop)"));
  r.add<TrainLoop>(
      "IterBasedTrainLoop", [](const Config& c) { return std::make_shared<IterBasedTrainLoop>(c); },
      Schema("Trains for max_iters iterations, cycling over the data (MMEngine's "
             "IterBasedTrainLoop); epochs still order the data and run epoch hooks.")
          .required("max_iters", ArgType::Int, "iterations to train, > 0")
          .optional("val_begin", ArgType::Int, 1, "accepted for MMEngine configs; must stay 1")
          .optional("val_interval", ArgType::Int, 1000,
                    "accepted for MMEngine configs; must stay 1000 (no validation loop)"));
}

} // namespace selfsup::core
