#include "densecl_hook.h"

#include <typeinfo>

#include <selfsup/errors.h>
#include <selfsup/interfaces/algorithm.h>

#include "densecl.h"

namespace selfsup::plugins::densecl {

OptionTable<DenseCLHookOptions> DenseCLHookOptions::table() {
  using O = DenseCLHookOptions;
  return OptionTable<O>("DenseCL's loss_lambda warm-up: loss_lambda 0 before start_iters, the "
                        "model's value from then on (MMSelfSup's DenseCLHook)",
                        O())
      .optional("start_iters", &O::start_iters_, "iterations with loss_lambda 0", check::ge(0));
}

void DenseCLHook::before_run(RunnerContext& context) {
  model_ = dynamic_cast<DenseCL*>(&context.model());
  if (!model_)
    throw ConfigError("DenseCLHook: the model must be a DenseCL (it sets its loss_lambda), got " +
                      std::string(context.model().name()));
  loss_lambda_ = model_->loss_lambda();
}

void DenseCLHook::before_train_iter(RunnerContext& context) {
  if (!model_) before_run(context);
  model_->set_loss_lambda(context.iter() >= options.start_iters() ? loss_lambda_ : 0.0);
}

} // namespace selfsup::plugins::densecl
