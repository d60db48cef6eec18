// The engine's optimizers: torch::optim's SGD, Adam and AdamW as they are, and MMSelfSup's
// LARS as a torch::optim::Optimizer. Each registered type reads its options from one table,
// whose defaults are LibTorch's own (and MMSelfSup's for LARS).
#include <selfsup/core/optimizers.h>

#include <tuple>

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/archive.h>

#include <selfsup/interfaces/optimizer.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace selfsup::core {

// ---- LARS -----------------------------------------------------------------------------

LARSOptions::LARSOptions(double lr) : lr_(lr) {}
LARSOptions::~LARSOptions() = default;

void LARSOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(dampening);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(nesterov);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eta);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lars_exclude);
}

void LARSOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, momentum);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, dampening);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, nesterov);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eta);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, lars_exclude);
}

double LARSOptions::get_lr() const {
  return lr();
}

void LARSOptions::set_lr(double lr) {
  this->lr(lr);
}

LARSParamState::~LARSParamState() = default;

void LARSParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum_buffer);
}

void LARSParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, momentum_buffer);
}

LARS::LARS(std::vector<torch::optim::OptimizerParamGroup> param_groups, LARSOptions defaults)
    : Optimizer(std::move(param_groups), std::make_unique<LARSOptions>(defaults)) {
  TORCH_CHECK(defaults.lr() >= 0, "Invalid learning rate: ", defaults.lr());
  TORCH_CHECK(defaults.momentum() >= 0, "Invalid momentum value: ", defaults.momentum());
  TORCH_CHECK(defaults.weight_decay() >= 0,
              "Invalid weight_decay value: ", defaults.weight_decay());
  TORCH_CHECK(defaults.eta() >= 0, "Invalid LARS coefficient value: ", defaults.eta());
  TORCH_CHECK(!defaults.nesterov() || (defaults.momentum() > 0 && defaults.dampening() == 0),
              "Nesterov momentum requires a momentum and zero dampening");
}

LARS::~LARS() = default;

torch::Tensor LARS::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const LARSOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      double local_lr = 1.0;
      if (!o.lars_exclude()) {
        // One device sync for both norms (MMSelfSup reads each with .item()).
        const torch::Tensor norms = torch::stack({p.norm(), grad.norm()}).cpu();
        const double w = norms[0].item<double>(), g = norms[1].item<double>();
        if (w != 0 && g != 0) local_lr = o.eta() * w / (g + o.weight_decay() * w + o.eps());
      }
      torch::Tensor d = grad.add(p, o.weight_decay()).mul(local_lr * o.lr());
      if (o.momentum() != 0) {
        const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
        auto it = state_.find(key);
        torch::Tensor buf;
        if (it == state_.end()) {
          buf = d.clone().detach();
          auto state = std::make_unique<LARSParamState>();
          state->momentum_buffer(buf);
          state_[key] = std::move(state);
        } else {
          buf = static_cast<LARSParamState&>(*it->second).momentum_buffer();
          buf.mul_(o.momentum()).add_(d, 1 - o.dampening());
        }
        d = o.nesterov() ? d.add(buf, o.momentum()) : buf;
      }
      p.sub_(d);
    }
  }
  return loss;
}

void LARS::save(torch::serialize::OutputArchive& archive) const {
  serialize(*this, archive);
}

void LARS::load(torch::serialize::InputArchive& archive) {
  serialize(*this, archive);
}

// ---- Registered types -----------------------------------------------------------------

namespace {

using check::ge;
using check::in;
using check::lt;

template <class O> void check_nesterov(const O& o, const Config& c) {
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
    c.fail_key("nesterov", "Nesterov momentum needs momentum > 0 and dampening 0");
}

// The config side of each optimizer: its options as a table (defaults from LibTorch's own
// options struct), converted to LibTorch's options for a group.
struct SgdArgs {
  using Optimizer = torch::optim::SGD;
  using Options = torch::optim::SGDOptions;
  double lr = 0, momentum, dampening, weight_decay;
  bool nesterov;

  static SgdArgs prototype() {
    const Options d(0.0);
    return {0.0, d.momentum(), d.dampening(), d.weight_decay(), d.nesterov()};
  }
  static OptionTable<SgdArgs> table() {
    using O = SgdArgs;
    return OptionTable<O>("Stochastic gradient descent (torch.optim.SGD; LibTorch's)", prototype())
        .required("lr", &O::lr, "learning rate", ge(0))
        .optional("momentum", &O::momentum, "momentum factor", ge(0))
        .optional("dampening", &O::dampening, "dampening of the momentum")
        .optional("weight_decay", &O::weight_decay, "L2 penalty", ge(0))
        .optional("nesterov", &O::nesterov, "Nesterov momentum")
        .rule(check_nesterov<O>);
  }
  static void add_group_keys(Schema&) {}
  void read_group_keys(const Config&) {}
  [[nodiscard]] Options options() const {
    return Options(lr)
        .momentum(momentum)
        .dampening(dampening)
        .weight_decay(weight_decay)
        .nesterov(nesterov);
  }
};

template <class TorchOptimizer, class TorchOptions, class Doc> struct AdamLikeArgs {
  using Optimizer = TorchOptimizer;
  using Options = TorchOptions;
  double lr, eps, weight_decay;
  std::vector<double> betas;
  bool amsgrad;

  static AdamLikeArgs prototype() {
    const Options d;
    return {d.lr(),
            d.eps(),
            d.weight_decay(),
            {std::get<0>(d.betas()), std::get<1>(d.betas())},
            d.amsgrad()};
  }
  static OptionTable<AdamLikeArgs> table() {
    using O = AdamLikeArgs;
    return OptionTable<O>(Doc::kText, prototype())
        .optional("lr", &O::lr, "learning rate", ge(0))
        .optional("betas", &O::betas,
                  "coefficients of the running averages of the gradient and "
                  "of its square",
                  check::size(2), check::each(ge(0)), check::each(lt(1)))
        .optional("eps", &O::eps, "added to the denominator", ge(0))
        .optional("weight_decay", &O::weight_decay, "weight decay", ge(0))
        .optional("amsgrad", &O::amsgrad, "the AMSGrad variant");
  }
  static void add_group_keys(Schema&) {}
  void read_group_keys(const Config&) {}
  [[nodiscard]] Options options() const {
    return Options(lr)
        .betas(std::make_tuple(betas.at(0), betas.at(1)))
        .eps(eps)
        .weight_decay(weight_decay)
        .amsgrad(amsgrad);
  }
};

struct AdamDoc {
  static constexpr const char* kText =
      "Adam (torch.optim.Adam; LibTorch's): L2 penalty added to the gradient";
};
struct AdamWDoc {
  static constexpr const char* kText =
      "AdamW (torch.optim.AdamW; LibTorch's): decoupled weight decay";
};
using AdamArgs = AdamLikeArgs<torch::optim::Adam, torch::optim::AdamOptions, AdamDoc>;
using AdamWArgs = AdamLikeArgs<torch::optim::AdamW, torch::optim::AdamWOptions, AdamWDoc>;

struct LarsArgs {
  using Optimizer = LARS;
  using Options = LARSOptions;
  double lr = 0, momentum, dampening, weight_decay, eta, eps;
  bool nesterov, lars_exclude;

  static LarsArgs prototype() {
    const Options d(0.0);
    return {0.0,     d.momentum(), d.dampening(), d.weight_decay(),
            d.eta(), d.eps(),      d.nesterov(),  d.lars_exclude()};
  }
  static OptionTable<LarsArgs> table() {
    using O = LarsArgs;
    return OptionTable<O>("Layer-wise adaptive rate scaling (MMSelfSup's LARS); groups with "
                          "lars_exclude (paramwise_cfg.custom_keys) skip the trust ratio",
                          prototype())
        .required("lr", &O::lr, "base learning rate", ge(0))
        .optional("momentum", &O::momentum, "momentum factor", ge(0))
        .optional("dampening", &O::dampening, "dampening of the momentum")
        .optional("weight_decay", &O::weight_decay, "L2 penalty", ge(0))
        .optional("eta", &O::eta, "trust coefficient", ge(0))
        .optional("eps", &O::eps, "added to the trust ratio's denominator", ge(0))
        .optional("nesterov", &O::nesterov, "Nesterov momentum")
        .rule(check_nesterov<O>);
  }
  static void add_group_keys(Schema& s) {
    s.optional("lars_exclude", ArgType::Bool, Json(prototype().lars_exclude),
               "skip the trust ratio (local lr 1) for this group");
  }
  void read_group_keys(const Config& c) {
    lars_exclude = c.get<bool>("lars_exclude", prototype().lars_exclude);
  }
  [[nodiscard]] Options options() const {
    return Options(lr)
        .momentum(momentum)
        .dampening(dampening)
        .weight_decay(weight_decay)
        .nesterov(nesterov)
        .eta(eta)
        .eps(eps)
        .lars_exclude(lars_exclude);
  }
};

/// An optimizer type on one of the Args above.
template <class Args> class TorchOptimizerFactory final : public OptimizerFactory {
public:
  explicit TorchOptimizerFactory(const Config& cfg) : args_(Args::table().parse(cfg)) {}

  double lr() const override { return args_.lr; }
  double weight_decay() const override { return args_.weight_decay; }
  Schema group_schema() const override {
    Schema s = group_overrides(Args::table().schema(), {"lr", "weight_decay"});
    Args::add_group_keys(s);
    return s;
  }

  std::unique_ptr<torch::optim::Optimizer> make(std::vector<OptimizerGroup> groups) const override {
    std::vector<torch::optim::OptimizerParamGroup> torch_groups;
    torch_groups.reserve(groups.size());
    for (auto& g : groups) {
      Args a = g.options.size() == 0 ? args_ : with_group_keys(g.options);
      a.lr = g.lr;
      a.weight_decay = g.weight_decay;
      torch_groups.emplace_back(std::move(g.params),
                                std::make_unique<typename Args::Options>(a.options()));
    }
    return std::make_unique<typename Args::Optimizer>(std::move(torch_groups), args_.options());
  }

private:
  /// The optimizer's options with a group's own keys in place, checked again as a whole (a
  /// rule such as Nesterov's sees the group's values); errors name the custom key.
  Args with_group_keys(const Config& group) const {
    const auto table = Args::table();
    Json merged = table.to_json(args_);
    for (const auto& key : group.keys())
      if (table.schema().find(key)) merged.set(key, *group.json().find(key));
    Args a = table.parse(Config(merged, group.path()));
    a.read_group_keys(group);
    return a;
  }

  Args args_;
};

template <class Args> void add_optimizer(Registrar& r, const std::string& name) {
  r.add<OptimizerFactory>(
      name, [](const Config& c) { return std::make_shared<TorchOptimizerFactory<Args>>(c); },
      Args::table().schema());
}

} // namespace

void register_optimizers(Registrar& r) {
  add_optimizer<SgdArgs>(r, "SGD");
  add_optimizer<AdamArgs>(r, "Adam");
  add_optimizer<AdamWArgs>(r, "AdamW");
  add_optimizer<LarsArgs>(r, "LARS");
}

} // namespace selfsup::core
