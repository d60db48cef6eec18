// VICReg (Bardes, Ponce, LeCun, ICLR 2022) as a selfsup plugin: a new neck (the expander MLP),
// a new loss (variance-invariance-covariance) and a new algorithm that ties them to any
// registered backbone. It uses only the selfsup SDK.
#include <torch/torch.h>

#include <selfsup/sdk.h>

namespace vicreg {

using selfsup::ArgType;
using selfsup::Config;
using selfsup::Json;
using selfsup::Schema;

/// Expander: [avgpool] -> (Linear -> BN -> ReLU) x (num_layers - 1) -> Linear.
class VICRegProjector final : public selfsup::Neck {
public:
  explicit VICRegProjector(const Config& cfg) : with_avg_pool_(cfg.get<bool>("with_avg_pool")) {
    const int64_t in = cfg.get<int64_t>("in_channels"), hid = cfg.get<int64_t>("hid_channels"),
                  out = cfg.get<int64_t>("out_channels"), layers = cfg.get<int64_t>("num_layers");
    if (in <= 0) cfg.fail_key("in_channels", "expected > 0");
    if (hid <= 0) cfg.fail_key("hid_channels", "expected > 0");
    if (out <= 0) cfg.fail_key("out_channels", "expected > 0");
    if (layers < 2) cfg.fail_key("num_layers", "expected >= 2");
    int64_t width = in;
    for (int64_t i = 0; i + 1 < layers; ++i) {
      mlp_->push_back(torch::nn::Linear(width, hid));
      mlp_->push_back(torch::nn::BatchNorm1d(hid));
      mlp_->push_back(torch::nn::ReLU());
      width = hid;
    }
    mlp_->push_back(torch::nn::Linear(width, out));
    register_module("mlp", mlp_);
  }

  static Schema schema() {
    return Schema("VICReg expander: (Linear-BN-ReLU) x (num_layers-1) then Linear")
        .required("in_channels", ArgType::Int, "input features")
        .required("hid_channels", ArgType::Int, "hidden width")
        .required("out_channels", ArgType::Int, "embedding size")
        .optional("num_layers", ArgType::Int, 3, "linear layers")
        .optional("with_avg_pool", ArgType::Bool, true, "global-average-pool a [B,C,H,W] input");
  }

  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override {
    TORCH_CHECK(x.size() == 1, "VICRegProjector expects one input, got ", x.size());
    torch::Tensor h = x[0];
    if (with_avg_pool_ && h.dim() == 4) h = h.mean({2, 3});
    return {mlp_->forward(h.flatten(1))};
  }

private:
  bool with_avg_pool_;
  torch::nn::Sequential mlp_;
};

/// lambda * MSE(za, zb) + mu * [hinge(gamma - std) of each branch] + nu * [off-diagonal
/// covariance^2 / D of each branch].
class VICRegLoss final : public selfsup::Loss {
public:
  explicit VICRegLoss(const Config& cfg)
      : sim_(cfg.get<double>("sim_coeff")), std_(cfg.get<double>("std_coeff")),
        cov_(cfg.get<double>("cov_coeff")), gamma_(cfg.get<double>("gamma")),
        eps_(cfg.get<double>("eps")) {
    if (gamma_ <= 0) cfg.fail_key("gamma", "expected > 0");
  }

  static Schema schema() {
    return Schema("VICReg loss: invariance (MSE) + variance (hinge on std) + covariance")
        .optional("sim_coeff", ArgType::Float, 25.0, "lambda, weight of the invariance term")
        .optional("std_coeff", ArgType::Float, 25.0, "mu, weight of the variance term")
        .optional("cov_coeff", ArgType::Float, 1.0, "nu, weight of the covariance term")
        .optional("gamma", ArgType::Float, 1.0, "target standard deviation")
        .optional("eps", ArgType::Float, 1e-4, "added to the variance before the sqrt");
  }

  torch::Tensor forward(const torch::Tensor& za, const torch::Tensor& zb) override {
    TORCH_CHECK(za.sizes() == zb.sizes() && za.dim() == 2 && za.size(0) > 1,
                "VICRegLoss expects two [N>1, D] embeddings, got ", za.sizes(), " and ",
                zb.sizes());
    const int64_t n = za.size(0), d = za.size(1);
    auto invariance = torch::mse_loss(za, zb);
    auto a = za - za.mean(0), b = zb - zb.mean(0);
    auto std_a = torch::sqrt(a.var(0) + eps_), std_b = torch::sqrt(b.var(0) + eps_);
    auto variance = torch::relu(gamma_ - std_a).mean() / 2 + torch::relu(gamma_ - std_b).mean() / 2;
    auto off_diag_sq = [&](const torch::Tensor& x) {
      auto c = torch::mm(x.t(), x) / double(n - 1);
      return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / double(d);
    };
    auto covariance = off_diag_sq(a) + off_diag_sq(b);
    return sim_ * invariance + std_ * variance + cov_ * covariance;
  }

private:
  double sim_, std_, cov_, gamma_, eps_;
};

/// Each view through backbone and expander separately, then the VICReg loss.
class VICReg final : public selfsup::BaseModel {
public:
  explicit VICReg(const Config& cfg) : BaseModel(cfg) {
    if (!neck_) cfg.fail_key("neck", "VICReg needs a neck (the expander)");
    loss_ = register_module("loss", selfsup::build<selfsup::Loss>(cfg["loss"]));
  }

  static Schema schema() {
    return BaseModel::base_schema("VICReg: variance-invariance-covariance regularisation of "
                                  "the embeddings of two views")
        .required("loss", ArgType::Dict, "the criterion, e.g. VICRegLoss");
  }

  selfsup::LossMap loss(const std::vector<torch::Tensor>& inputs,
                        const selfsup::DataSamples&) override {
    TORCH_CHECK(inputs.size() == 2, "VICReg expects 2 views, got ", inputs.size());
    auto za = neck_->forward(backbone_->forward(inputs[0]))[0];
    auto zb = neck_->forward(backbone_->forward(inputs[1]))[0];
    return {{"loss", loss_->forward(za, zb)}};
  }

private:
  std::shared_ptr<selfsup::Loss> loss_;
};

void register_types(selfsup::Registrar& r) {
  r.add<selfsup::Neck>(
      "VICRegProjector", [](const Config& c) { return std::make_shared<VICRegProjector>(c); },
      VICRegProjector::schema());
  r.add<selfsup::Loss>(
      "VICRegLoss", [](const Config& c) { return std::make_shared<VICRegLoss>(c); },
      VICRegLoss::schema());
  r.add<selfsup::Algorithm>(
      "VICReg", [](const Config& c) { return std::make_shared<VICReg>(c); }, VICReg::schema());
}

} // namespace vicreg

SELFSUP_PLUGIN("vicreg", "0.1.0", vicreg::register_types)
