#include "necks.h"

#include <cmath>

#include <torch/torch.h>

namespace selfsup::plugins::common {

namespace {

/// MMSelfSup's neck input rule: exactly one tensor, or with `vit_backbone` the last one
/// (the cls token of a ViT's [patch_map, cls] output).
torch::Tensor select_input(const std::vector<torch::Tensor>& x, bool vit_backbone,
                           const char* who) {
  if (vit_backbone) {
    TORCH_CHECK(!x.empty(), who, ": expected at least one input tensor, got none");
    return x.back();
  }
  TORCH_CHECK(x.size() == 1, who, ": expected exactly one input tensor, got ", x.size(),
              " (give the backbone a single out_index)");
  return x[0];
}

torch::Tensor pool_and_flatten(torch::Tensor x, bool with_avg_pool, const char* who) {
  if (with_avg_pool) {
    TORCH_CHECK(x.dim() == 4, who, ": with_avg_pool needs a [N, C, H, W] input, got ", x.sizes());
    x = torch::adaptive_avg_pool2d(x, {1, 1});
  }
  TORCH_CHECK(x.dim() >= 1, who, ": expected a batched input, got a scalar");
  return x.reshape({x.size(0), -1});
}

} // namespace

// ---- NonLinearNeck ---------------------------------------------------------------------

OptionTable<LinearKaimingInit> LinearKaimingInit::table() {
  using O = LinearKaimingInit;
  using namespace selfsup::check;
  return OptionTable<O>("MMEngine's KaimingInit of the fc layers (init_cfg)", O())
      .required("type", &O::type, "'Kaiming' (the only init of a neck's fc layers)",
                one_of({"Kaiming"}))
      .optional("layer", &O::layer, "the layer types it initialises: ['Linear']", size(1),
                each(one_of({"Linear"})))
      .optional("a", &O::a, "negative slope of the rectifier (leaky_relu)")
      .optional("mode", &O::mode, "'fan_in' or 'fan_out'", one_of({"fan_in", "fan_out"}))
      .optional("nonlinearity", &O::nonlinearity, "the gain's nonlinearity",
                one_of({"relu", "leaky_relu", "linear"}))
      .optional("bias", &O::bias, "the value of the biases")
      .optional("distribution", &O::distribution, "'normal' or 'uniform'",
                one_of({"normal", "uniform"}));
}

void LinearKaimingInit::apply(torch::nn::Linear& fc) const {
  namespace init = torch::nn::init;
  torch::NoGradGuard no_grad;
  const init::FanModeType fan =
      mode == "fan_in" ? init::FanModeType(torch::kFanIn) : init::FanModeType(torch::kFanOut);
  init::NonlinearityType gain = torch::kReLU;
  if (nonlinearity == "leaky_relu") gain = torch::kLeakyReLU;
  if (nonlinearity == "linear") gain = torch::kLinear;
  if (distribution == "uniform")
    init::kaiming_uniform_(fc->weight, a, fan, gain);
  else
    init::kaiming_normal_(fc->weight, a, fan, gain);
  if (fc->bias.defined()) fc->bias.fill_(bias);
}

OptionTable<NonLinearNeckOptions> NonLinearNeckOptions::table() {
  using O = NonLinearNeckOptions;
  using namespace selfsup::check;
  return OptionTable<O>("MLP projection fc-bn-[relu-fc-bn]*, as MMSelfSup's NonLinearNeck "
                        "(SimCLR, BYOL, SimSiam, MoCo v3, Barlow Twins); modules fc0, bn0, fc1, "
                        "bn1, ...",
                        O())
      .required("in_channels", &O::in_channels_, "input features (backbone channels)", gt(0))
      .required("hid_channels", &O::hid_channels_, "hidden width", gt(0))
      .required("out_channels", &O::out_channels_, "output features (of the last fc)", gt(0))
      .optional("num_layers", &O::num_layers_, "number of fc layers", ge(1))
      .optional("with_bias", &O::with_bias_, "bias in the hidden fc layers")
      .optional("with_last_bn", &O::with_last_bn_, "BN after the last fc")
      .optional("with_last_bn_affine", &O::with_last_bn_affine_,
                "learnable affine in the last BN (false for SimSiam)")
      .optional("with_last_bias", &O::with_last_bias_, "bias in the last fc")
      .optional("with_avg_pool", &O::with_avg_pool_,
                "global average pooling of a [N, C, H, W] input first")
      .optional("vit_backbone", &O::vit_backbone_, "take the last input tensor (a ViT's cls token)")
      .optional("norm_cfg", &O::norm_cfg_, "norm layer (SyncBN acts as BN on one process)")
      .optional("init_cfg", &O::init_cfg_,
                "Kaiming init of the fc layers (MMEngine's KaimingInit on ['Linear'])");
}

NonLinearNeck::NonLinearNeck(const NonLinearNeckOptions& options_) : options(options_) {
  reset();
}

void NonLinearNeck::reset() {
  const auto& o = options;
  fcs_.clear();
  bns_.clear();
  // fc0 / bn0, then for i = 1..L-1: fc_i (hid -> hid, or hid -> out for the last) and bn_i.
  fcs_.push_back(register_module(
      "fc0", torch::nn::Linear(
                 torch::nn::LinearOptions(o.in_channels(), o.hid_channels()).bias(o.with_bias()))));
  bns_.push_back(register_module("bn0", o.norm_cfg().make_1d(o.hid_channels())));
  for (int64_t i = 1; i < o.num_layers(); ++i) {
    const bool last = i == o.num_layers() - 1;
    const int64_t out = last ? o.out_channels() : o.hid_channels();
    const std::string idx = std::to_string(i);
    fcs_.push_back(register_module(
        "fc" + idx, torch::nn::Linear(torch::nn::LinearOptions(o.hid_channels(), out)
                                          .bias(last ? o.with_last_bias() : o.with_bias()))));
    if (!last)
      bns_.push_back(register_module("bn" + idx, o.norm_cfg().make_1d(out)));
    else if (o.with_last_bn())
      bns_.push_back(
          register_module("bn" + idx, o.norm_cfg().make_1d(out, o.with_last_bn_affine())));
    else
      bns_.emplace_back(nullptr);
  }
  if (o.init_cfg())
    for (auto& fc : fcs_) o.init_cfg()->apply(fc);
}

std::vector<torch::Tensor> NonLinearNeck::forward(const std::vector<torch::Tensor>& x) {
  torch::Tensor h = select_input(x, options.vit_backbone(), "NonLinearNeck");
  h = pool_and_flatten(h, options.with_avg_pool(), "NonLinearNeck");
  TORCH_CHECK(h.size(1) == options.in_channels(), "NonLinearNeck: expected ", options.in_channels(),
              " input features, got ", h.size(1), " (input ", h.sizes(), ")");
  h = bns_[0](fcs_[0](h));
  for (size_t i = 1; i < fcs_.size(); ++i) {
    h = fcs_[i](torch::relu(h));
    if (!bns_[i].is_empty()) h = bns_[i](h);
  }
  return {h};
}

void NonLinearNeck::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << "selfsup::plugins::common::NonLinearNeck(in_channels=" << o.in_channels()
         << ", hid_channels=" << o.hid_channels() << ", out_channels=" << o.out_channels()
         << ", num_layers=" << o.num_layers() << ", with_bias=" << o.with_bias()
         << ", with_last_bn=" << o.with_last_bn()
         << ", with_last_bn_affine=" << o.with_last_bn_affine()
         << ", with_last_bias=" << o.with_last_bias() << ", with_avg_pool=" << o.with_avg_pool()
         << ", vit_backbone=" << o.vit_backbone() << ", norm=" << o.norm_cfg().type << ")";
}

// ---- LinearNeck ------------------------------------------------------------------------

OptionTable<LinearTruncNormalInit> LinearTruncNormalInit::table() {
  using O = LinearTruncNormalInit;
  using namespace selfsup::check;
  return OptionTable<O>("MMEngine's TruncNormalInit of the fc layer (init_cfg)", O())
      .required("type", &O::type, "'TruncNormal'", one_of({"TruncNormal"}))
      .optional("layer", &O::layer, "the layer types it initialises: 'Linear' or ['Linear']")
      .optional("mean", &O::mean, "mean of the normal")
      .optional("std", &O::std, "standard deviation of the normal", gt(0))
      .optional("a", &O::a, "lower cut-off (absolute)")
      .optional("b", &O::b, "upper cut-off (absolute)")
      .optional("bias", &O::bias, "the value of the bias")
      .rule([](const O& o, const Config& cfg) {
        const bool linear = o.layer.is_string() && o.layer.as_string() == "Linear";
        const bool list = o.layer.is_array() && o.layer.size() == 1 && o.layer.at(0).is_string() &&
                          o.layer.at(0).as_string() == "Linear";
        if (!linear && !list)
          cfg.fail_key("layer", "expected 'Linear' or ['Linear'], got " + o.layer.dump());
        if (o.a >= o.b)
          cfg.fail_key("b",
                       "expected b > a (" + std::to_string(o.a) + "), got " + std::to_string(o.b));
      });
}

void LinearTruncNormalInit::apply(torch::nn::Linear& fc) const {
  torch::NoGradGuard no_grad;
  // Inverse-CDF sampling as PyTorch's trunc_normal_: U in [cdf(a), cdf(b)] -> erfinv.
  auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  const double l = cdf((a - mean) / std), u = cdf((b - mean) / std);
  auto& w = fc->weight;
  w.uniform_(2 * l - 1, 2 * u - 1);
  w.erfinv_();
  w.mul_(std * std::sqrt(2.0));
  w.add_(mean);
  w.clamp_(a, b);
  if (fc->bias.defined()) fc->bias.fill_(bias);
}

OptionTable<LinearNeckOptions> LinearNeckOptions::table() {
  using O = LinearNeckOptions;
  using namespace selfsup::check;
  return OptionTable<O>("[avgpool] -> fc, as MMSelfSup's LinearNeck (MoCo v1, NPID)", O())
      .required("in_channels", &O::in_channels_, "input features (backbone channels)", gt(0))
      .required("out_channels", &O::out_channels_, "output features", gt(0))
      .optional("with_avg_pool", &O::with_avg_pool_,
                "global average pooling of a [N, C, H, W] input first")
      .optional("vit_backbone", &O::vit_backbone_, "take the last input tensor (a ViT's cls token)")
      .optional("init_cfg", &O::init_cfg_,
                "TruncNormal init of the fc (MMEngine's TruncNormalInit on 'Linear')");
}

LinearNeck::LinearNeck(const LinearNeckOptions& options_) : options(options_) {
  reset();
}

void LinearNeck::reset() {
  fc_ = register_module("fc", torch::nn::Linear(options.in_channels(), options.out_channels()));
  if (options.init_cfg()) options.init_cfg()->apply(fc_);
}

std::vector<torch::Tensor> LinearNeck::forward(const std::vector<torch::Tensor>& x) {
  torch::Tensor h = select_input(x, options.vit_backbone(), "LinearNeck");
  h = pool_and_flatten(h, options.with_avg_pool(), "LinearNeck");
  TORCH_CHECK(h.size(1) == options.in_channels(), "LinearNeck: expected ", options.in_channels(),
              " input features, got ", h.size(1), " (input ", h.sizes(), ")");
  return {fc_(h)};
}

void LinearNeck::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::LinearNeck(in_channels=" << options.in_channels()
         << ", out_channels=" << options.out_channels()
         << ", with_avg_pool=" << options.with_avg_pool()
         << ", vit_backbone=" << options.vit_backbone() << ")";
}

// ---- AvgPool2dNeck ---------------------------------------------------------------------

OptionTable<AvgPool2dNeckOptions> AvgPool2dNeckOptions::table() {
  using O = AvgPool2dNeckOptions;
  return OptionTable<O>("adaptive average pooling of the backbone map, as MMSelfSup's "
                        "AvgPool2dNeck",
                        O())
      .optional("output_size", &O::output_size_, "output height and width", check::gt(0));
}

std::vector<torch::Tensor> AvgPool2dNeck::forward(const std::vector<torch::Tensor>& x) {
  TORCH_CHECK(x.size() == 1, "AvgPool2dNeck: expected exactly one input tensor, got ", x.size());
  TORCH_CHECK(x[0].dim() == 4 || x[0].dim() == 3,
              "AvgPool2dNeck: expected a [N, C, H, W] input, got ", x[0].sizes());
  return {torch::adaptive_avg_pool2d(x[0], {options.output_size(), options.output_size()})};
}

void AvgPool2dNeck::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::AvgPool2dNeck(output_size=" << options.output_size() << ")";
}

// ---- registration ----------------------------------------------------------------------

std::shared_ptr<selfsup::Neck> make_nonlinear_neck(const Config& cfg) {
  return std::make_shared<NonLinearNeck>(NonLinearNeckOptions::table().parse(cfg));
}

std::shared_ptr<selfsup::Neck> make_linear_neck(const Config& cfg) {
  return std::make_shared<LinearNeck>(LinearNeckOptions::table().parse(cfg));
}

std::shared_ptr<selfsup::Neck> make_avgpool2d_neck(const Config& cfg) {
  return std::make_shared<AvgPool2dNeck>(AvgPool2dNeckOptions::table().parse(cfg));
}

} // namespace selfsup::plugins::common
