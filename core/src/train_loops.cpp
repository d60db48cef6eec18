// MMEngine's train loops: EpochBasedTrainLoop (max_epochs) and IterBasedTrainLoop (max_iters).
// A loop only decides when epochs begin and end and when the run is over; the runner
// (TrainLoop::Driver) runs the iterations, hooks, logging and checkpoints.
#include <algorithm>

#include <selfsup/interfaces/training.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace selfsup::core {

namespace {

using namespace selfsup::check;

// MMEngine's validation keys, accepted at their defaults only: selfsup has no validation
// loop (KNNEvalHook evaluates).
template <class O> OptionTable<O> with_val_keys(OptionTable<O> table) {
  const O d;
  const char* doc = "accepted for MMEngine configs at its default (no validation loop; use "
                    "KNNEvalHook)";
  return table.optional("val_begin", &O::val_begin, doc, one_of({Json(d.val_begin)}))
      .optional("val_interval", &O::val_interval, doc, one_of({Json(d.val_interval)}));
}

struct EpochBasedOptions {
  int64_t max_epochs = 0;
  int64_t val_begin = 1;
  int64_t val_interval = 1;
  static OptionTable<EpochBasedOptions> table() {
    using O = EpochBasedOptions;
    return with_val_keys(OptionTable<O>("Trains for max_epochs passes over the data (MMEngine's "
                                        "EpochBasedTrainLoop).",
                                        O())
                             .required("max_epochs", &O::max_epochs, "epochs to train", gt(0)));
  }
};

struct IterBasedOptions {
  int64_t max_iters = 0;
  int64_t val_begin = 1;
  int64_t val_interval = 1000;
  static OptionTable<IterBasedOptions> table() {
    using O = IterBasedOptions;
    return with_val_keys(
        OptionTable<O>("Trains for max_iters iterations, cycling over the data (MMEngine's "
                       "IterBasedTrainLoop); epochs still order the data and run epoch hooks.",
                       O())
            .required("max_iters", &O::max_iters, "iterations to train", gt(0)));
  }
};

class EpochBasedTrainLoop final : public TrainLoop {
public:
  explicit EpochBasedTrainLoop(const EpochBasedOptions& o) : max_epochs_(o.max_epochs) {}
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
  explicit IterBasedTrainLoop(const IterBasedOptions& o) : max_iters_(o.max_iters) {}
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
      [](const Config& c) {
        return std::make_shared<EpochBasedTrainLoop>(EpochBasedOptions::table().parse(c));
      },
      EpochBasedOptions::table().schema());
  r.add<TrainLoop>(
      "IterBasedTrainLoop",
      [](const Config& c) {
        return std::make_shared<IterBasedTrainLoop>(IterBasedOptions::table().parse(c));
      },
      IterBasedOptions::table().schema());
}

} // namespace selfsup::core
