#pragma once
// The "optimizer" kind: a registered type that, given the parameter groups the optim wrapper
// made (MMEngine's DefaultOptimWrapperConstructor with paramwise_cfg), builds a LibTorch
// optimizer over them. The engine registers SGD, Adam and AdamW (torch::optim's own) and
// MMSelfSup's LARS; a plugin adds an optimizer the same way:
//
//   class LionFactory final : public selfsup::OptimizerFactory {
//   public:
//     explicit LionFactory(const selfsup::Config& cfg);    // reads lr, betas, weight_decay
//     double lr() const override;
//     double weight_decay() const override;
//     selfsup::Schema group_schema() const override;     // e.g. betas, per group
//     std::unique_ptr<torch::optim::Optimizer> make(
//         std::vector<selfsup::OptimizerGroup> groups) const override;
//   };
//   r.add<selfsup::OptimizerFactory>("Lion", [](const Config& c) {
//     return std::make_shared<LionFactory>(c); }, lion_schema);
//
// The optimizer it returns is a torch::optim::Optimizer whose options and per-parameter state
// classes implement serialize() with PyTorch's key names, as LibTorch's own do ("lr",
// "momentum", "momentum_buffer", "exp_avg"...), and whose save()/load() use LibTorch's
// _TORCH_OPTIM_SERIALIZE_WITH_TEMPLATE_ARG: checkpoints store its state in PyTorch's
// state_dict layout through them. Its options implement get_lr()/set_lr() (the schedulers'
// way in).
#include <memory>
#include <string>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/export.h>
#include <selfsup/schema.h>

namespace selfsup {

/// One parameter group as the optim wrapper hands it to an optimizer type. The wrapper makes
/// one group per parameter, in the model's named_parameters order.
struct OptimizerGroup {
  std::vector<torch::Tensor> params;
  /// The parameters' dotted names (as named_parameters), for messages.
  std::vector<std::string> names;
  /// The optimizer's lr and weight decay times the multipliers the paramwise rules chose.
  double lr = 0.0;
  double weight_decay = 0.0;
  /// The keys of group_schema() that the matching paramwise_cfg.custom_keys entry sets
  /// (checked against that schema; no defaults filled in: a key not set here keeps the
  /// optimizer's value). An empty object when no custom key matched. Its path is the custom
  /// key's, e.g. `optim_wrapper.paramwise_cfg.custom_keys.bn`.
  Config options;
};

/// Builds a LibTorch optimizer from its config. Kind "optimizer", chosen by
/// `optim_wrapper.optimizer.type`; the factory gets the optimizer's config (lr, momentum...).
class SELFSUP_SDK_API OptimizerFactory {
public:
  static constexpr const char* kKind = "optimizer";
  virtual ~OptimizerFactory();

  /// The configured base lr and weight decay, which lr_mult and decay_mult scale per group.
  [[nodiscard]] virtual double lr() const = 0;
  [[nodiscard]] virtual double weight_decay() const = 0;
  /// The keys a group may set in paramwise_cfg.custom_keys besides lr_mult and decay_mult
  /// (MMEngine copies a custom key's options into its param groups): usually the optimizer's
  /// own options but lr and weight_decay, with no defaults (see group_overrides), plus keys that
  /// only a group has, such as LARS's lars_exclude.
  [[nodiscard]] virtual Schema group_schema() const = 0;
  /// The optimizer over `groups` (at least one).
  [[nodiscard]] virtual std::unique_ptr<torch::optim::Optimizer>
  make(std::vector<OptimizerGroup> groups) const = 0;
};

/// `schema` as per-group overrides: every argument but those named in `exclude`, optional
/// and without a default, constraints kept. For OptimizerFactory::group_schema().
SELFSUP_SDK_API Schema group_overrides(const Schema& schema,
                                       const std::vector<std::string>& exclude);

} // namespace selfsup
