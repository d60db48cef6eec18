// SGD (torch.optim.SGD semantics) and LARS (MMSelfSup's LARS), on our ParamGroup model.
#include <torch/torch.h>

#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace selfsup::core {

namespace {

Schema common_schema(std::string doc) {
  return Schema(std::move(doc))
      .required("lr", ArgType::Float, "base learning rate")
      .optional("momentum", ArgType::Float, 0.0, "momentum factor")
      .optional("weight_decay", ArgType::Float, 0.0, "L2 penalty")
      .optional("dampening", ArgType::Float, 0.0, "dampening for momentum")
      .optional("nesterov", ArgType::Bool, false, "Nesterov momentum");
}

class MomentumOptimizer : public Optimizer {
public:
  explicit MomentumOptimizer(const Config& cfg)
      : lr_(cfg.get<double>("lr")), momentum_(cfg.get<double>("momentum")),
        weight_decay_(cfg.get<double>("weight_decay")), dampening_(cfg.get<double>("dampening")),
        nesterov_(cfg.get<bool>("nesterov")) {
    if (lr_ < 0) cfg.fail_key("lr", "expected >= 0, got " + std::to_string(lr_));
    if (momentum_ < 0) cfg.fail_key("momentum", "expected >= 0");
    if (weight_decay_ < 0) cfg.fail_key("weight_decay", "expected >= 0");
    if (nesterov_ && (momentum_ <= 0 || dampening_ != 0))
      cfg.fail_key("nesterov", "needs momentum > 0 and dampening 0");
  }

  ParamGroup defaults() const override {
    ParamGroup g;
    g.lr = g.initial_lr = lr_;
    g.momentum = momentum_;
    g.weight_decay = weight_decay_;
    return g;
  }

  void step() override {
    torch::NoGradGuard no_grad;
    for (size_t gi = 0; gi < groups_.size(); ++gi) {
      auto& g = groups_[gi];
      for (size_t i = 0; i < g.params.size(); ++i) {
        auto& p = g.params[i];
        if (!p.grad().defined()) continue;
        torch::Tensor d = direction(g, p, p.grad());
        if (g.momentum != 0) {
          auto& buf = state_[gi][i]["momentum_buffer"];
          if (!buf.defined()) {
            buf = d.clone();
          } else {
            buf.mul_(g.momentum).add_(d, 1 - dampening_);
          }
          d = nesterov_ ? d.add(buf, g.momentum) : buf;
        }
        p.sub_(d * scale(g));
      }
    }
  }

protected:
  /// The update direction before momentum.
  virtual torch::Tensor direction(const ParamGroup& g, const torch::Tensor& p,
                                  const torch::Tensor& grad) const {
    return g.weight_decay != 0 ? grad.add(p, g.weight_decay) : grad;
  }
  /// The step size applied after momentum.
  virtual double scale(const ParamGroup& g) const { return g.lr; }

  double lr_, momentum_, weight_decay_, dampening_;
  bool nesterov_;
};

class SGD final : public MomentumOptimizer {
public:
  using MomentumOptimizer::MomentumOptimizer;
};

// MMSelfSup's LARS: the trust ratio and the lr are applied before momentum.
class LARS final : public MomentumOptimizer {
public:
  explicit LARS(const Config& cfg)
      : MomentumOptimizer(cfg), eta_(cfg.get<double>("eta")), eps_(cfg.get<double>("eps")) {
    if (eta_ <= 0) cfg.fail_key("eta", "expected > 0");
  }

protected:
  torch::Tensor direction(const ParamGroup& g, const torch::Tensor& p,
                          const torch::Tensor& grad) const override {
    double local_lr = 1.0;
    if (!g.lars_exclude) {
      double w = p.norm().item<double>(), gn = grad.norm().item<double>();
      if (w > 0 && gn > 0) local_lr = eta_ * w / (gn + g.weight_decay * w + eps_);
    }
    torch::Tensor d = g.weight_decay != 0 ? grad.add(p, g.weight_decay) : grad.clone();
    return d.mul_(local_lr * g.lr);
  }
  double scale(const ParamGroup&) const override { return 1.0; }

private:
  double eta_, eps_;
};

} // namespace

void register_optimizers(Registrar& r) {
  r.add<Optimizer>(
      "SGD", [](const Config& c) { return std::make_shared<SGD>(c); },
      common_schema("Stochastic gradient descent (torch.optim.SGD semantics)."));
  r.add<Optimizer>(
      "LARS", [](const Config& c) { return std::make_shared<LARS>(c); },
      common_schema("Layer-wise adaptive rate scaling (MMSelfSup's LARS); groups with "
                    "lars_exclude skip the trust ratio.")
          .optional("eta", ArgType::Float, 0.001, "trust coefficient")
          .optional("eps", ArgType::Float, 1e-8, "added to the denominator"));
}

} // namespace selfsup::core
