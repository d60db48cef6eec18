// VICReg (Bardes, Ponce, LeCun, ICLR 2022) as a selfsup plugin: a new neck (the expander MLP),
// a new loss (variance-invariance-covariance) and a new algorithm that ties them to any
// registered backbone. It uses only the selfsup SDK.
#include <torch/torch.h>

#include <selfsup/sdk.h>

namespace vicreg {

using selfsup::Config;
using selfsup::OptionTable;
using namespace selfsup::check;

// Each type declares its options once: the member with its default, and one table row with
// the key, the doc and the constraints. The schema (`selfsup list --verbose`, the checks
// before training) and the parsing both come from the table.

struct VICRegProjectorOptions {
  int64_t in_channels, hid_channels, out_channels; // required
  int64_t num_layers = 3;
  bool with_avg_pool = true;

  static OptionTable<VICRegProjectorOptions> table() {
    using O = VICRegProjectorOptions;
    return OptionTable<O>("VICReg expander: (Linear-BN-ReLU) x (num_layers-1) then Linear", O())
        .required("in_channels", &O::in_channels, "input features", gt(0))
        .required("hid_channels", &O::hid_channels, "hidden width", gt(0))
        .required("out_channels", &O::out_channels, "embedding size", gt(0))
        .optional("num_layers", &O::num_layers, "linear layers", ge(2))
        .optional("with_avg_pool", &O::with_avg_pool, "global-average-pool a [B,C,H,W] input");
  }
};

/// Expander: [avgpool] -> (Linear -> BN -> ReLU) x (num_layers - 1) -> Linear.
class VICRegProjector final : public selfsup::Neck {
public:
  explicit VICRegProjector(const VICRegProjectorOptions& o) : options_(o) {
    int64_t width = o.in_channels;
    for (int64_t i = 0; i + 1 < o.num_layers; ++i) {
      mlp_->push_back(torch::nn::Linear(width, o.hid_channels));
      mlp_->push_back(torch::nn::BatchNorm1d(o.hid_channels));
      mlp_->push_back(torch::nn::ReLU());
      width = o.hid_channels;
    }
    mlp_->push_back(torch::nn::Linear(width, o.out_channels));
    register_module("mlp", mlp_);
  }

  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x) override {
    TORCH_CHECK(x.size() == 1, "VICRegProjector expects one input, got ", x.size());
    torch::Tensor h = x[0];
    if (options_.with_avg_pool && h.dim() == 4) h = h.mean({2, 3});
    return {mlp_->forward(h.flatten(1))};
  }

private:
  VICRegProjectorOptions options_;
  torch::nn::Sequential mlp_;
};

struct VICRegLossOptions {
  double sim_coeff = 25.0;
  double std_coeff = 25.0;
  double cov_coeff = 1.0;
  double gamma = 1.0;
  double eps = 1e-4;

  static OptionTable<VICRegLossOptions> table() {
    using O = VICRegLossOptions;
    return OptionTable<O>("VICReg loss: invariance (MSE) + variance (hinge on std) + covariance",
                          O())
        .optional("sim_coeff", &O::sim_coeff, "lambda, weight of the invariance term", ge(0))
        .optional("std_coeff", &O::std_coeff, "mu, weight of the variance term", ge(0))
        .optional("cov_coeff", &O::cov_coeff, "nu, weight of the covariance term", ge(0))
        .optional("gamma", &O::gamma, "target standard deviation", gt(0))
        .optional("eps", &O::eps, "added to the variance before the sqrt", ge(0));
  }
};

/// lambda * MSE(za, zb) + mu * [hinge(gamma - std) of each branch] + nu * [off-diagonal
/// covariance^2 / D of each branch].
class VICRegLoss final : public selfsup::Loss {
public:
  explicit VICRegLoss(const VICRegLossOptions& o) : o_(o) {}

  torch::Tensor forward(const torch::Tensor& za, const torch::Tensor& zb) override {
    TORCH_CHECK(za.sizes() == zb.sizes() && za.dim() == 2 && za.size(0) > 1,
                "VICRegLoss expects two [N>1, D] embeddings, got ", za.sizes(), " and ",
                zb.sizes());
    const int64_t n = za.size(0), d = za.size(1);
    auto invariance = torch::mse_loss(za, zb);
    auto a = za - za.mean(0), b = zb - zb.mean(0);
    auto std_a = torch::sqrt(a.var(0) + o_.eps), std_b = torch::sqrt(b.var(0) + o_.eps);
    auto variance =
        torch::relu(o_.gamma - std_a).mean() / 2 + torch::relu(o_.gamma - std_b).mean() / 2;
    auto off_diag_sq = [&](const torch::Tensor& x) {
      auto c = torch::mm(x.t(), x) / double(n - 1);
      return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / double(d);
    };
    auto covariance = off_diag_sq(a) + off_diag_sq(b);
    return o_.sim_coeff * invariance + o_.std_coeff * variance + o_.cov_coeff * covariance;
  }

private:
  VICRegLossOptions o_;
};

struct VICRegOptions {
  Config loss; // required: built by type name

  /// BaseModel reads backbone, neck, head and data_preprocessor; this table adds `loss`.
  static OptionTable<VICRegOptions> table() {
    return OptionTable<VICRegOptions>("VICReg: variance-invariance-covariance regularisation "
                                      "of the embeddings of two views",
                                      VICRegOptions())
        .inherit(selfsup::BaseModel::base_schema(""))
        .required("loss", &VICRegOptions::loss, "the criterion, e.g. VICRegLoss");
  }
};

/// Each view through backbone and expander separately, then the VICReg loss.
class VICReg final : public selfsup::BaseModel {
public:
  explicit VICReg(const Config& cfg) : BaseModel(cfg) {
    if (!neck_) cfg.fail_key("neck", "VICReg needs a neck (the expander)");
    const auto options = VICRegOptions::table().parse(cfg);
    loss_ = register_module("loss", selfsup::build<selfsup::Loss>(options.loss));
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
      "VICRegProjector",
      [](const Config& c) {
        return std::make_shared<VICRegProjector>(VICRegProjectorOptions::table().parse(c));
      },
      VICRegProjectorOptions::table().schema());
  r.add<selfsup::Loss>(
      "VICRegLoss",
      [](const Config& c) {
        return std::make_shared<VICRegLoss>(VICRegLossOptions::table().parse(c));
      },
      VICRegLossOptions::table().schema());
  r.add<selfsup::Algorithm>(
      "VICReg", [](const Config& c) { return std::make_shared<VICReg>(c); },
      VICRegOptions::table().schema());
}

} // namespace vicreg

SELFSUP_PLUGIN("vicreg", "0.1.0", vicreg::register_types)
