#include "necks.h"

#include <torch/torch.h>

namespace selfsup::plugins::common {

namespace {

int64_t positive_int(const Config& cfg, const char* key) {
  const auto v = cfg.get<int64_t>(key);
  if (v <= 0) cfg.fail_key(key, "expected an int > 0, got " + std::to_string(v));
  return v;
}

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

NonLinearNeckOptions NonLinearNeckOptions::from_config(const Config& cfg) {
  NonLinearNeckOptions o(positive_int(cfg, "in_channels"), positive_int(cfg, "hid_channels"),
                         positive_int(cfg, "out_channels"));
  o.num_layers(cfg.get<int64_t>("num_layers", 2));
  if (o.num_layers() < 1)
    cfg.fail_key("num_layers", "expected an int >= 1, got " + std::to_string(o.num_layers()));
  o.with_bias(cfg.get<bool>("with_bias", false));
  o.with_last_bn(cfg.get<bool>("with_last_bn", true));
  o.with_last_bn_affine(cfg.get<bool>("with_last_bn_affine", true));
  o.with_last_bias(cfg.get<bool>("with_last_bias", false));
  o.with_avg_pool(cfg.get<bool>("with_avg_pool", true));
  o.vit_backbone(cfg.get<bool>("vit_backbone", false));
  if (cfg.has("norm_cfg")) o.norm_cfg(NormCfg::from_config(cfg["norm_cfg"]));
  return o;
}

NonLinearNeckImpl::NonLinearNeckImpl(const NonLinearNeckOptions& options_) : options(options_) {
  reset();
}

void NonLinearNeckImpl::reset() {
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
}

std::vector<torch::Tensor> NonLinearNeckImpl::forward(const std::vector<torch::Tensor>& x) {
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

void NonLinearNeckImpl::pretty_print(std::ostream& stream) const {
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

LinearNeckOptions LinearNeckOptions::from_config(const Config& cfg) {
  LinearNeckOptions o(positive_int(cfg, "in_channels"), positive_int(cfg, "out_channels"));
  o.with_avg_pool(cfg.get<bool>("with_avg_pool", true));
  o.vit_backbone(cfg.get<bool>("vit_backbone", false));
  return o;
}

LinearNeckImpl::LinearNeckImpl(const LinearNeckOptions& options_) : options(options_) {
  reset();
}

void LinearNeckImpl::reset() {
  fc_ = register_module("fc", torch::nn::Linear(options.in_channels(), options.out_channels()));
}

std::vector<torch::Tensor> LinearNeckImpl::forward(const std::vector<torch::Tensor>& x) {
  torch::Tensor h = select_input(x, options.vit_backbone(), "LinearNeck");
  h = pool_and_flatten(h, options.with_avg_pool(), "LinearNeck");
  TORCH_CHECK(h.size(1) == options.in_channels(), "LinearNeck: expected ", options.in_channels(),
              " input features, got ", h.size(1), " (input ", h.sizes(), ")");
  return {fc_(h)};
}

void LinearNeckImpl::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::LinearNeck(in_channels=" << options.in_channels()
         << ", out_channels=" << options.out_channels()
         << ", with_avg_pool=" << options.with_avg_pool()
         << ", vit_backbone=" << options.vit_backbone() << ")";
}

// ---- AvgPool2dNeck ---------------------------------------------------------------------

AvgPool2dNeckOptions AvgPool2dNeckOptions::from_config(const Config& cfg) {
  AvgPool2dNeckOptions o;
  o.output_size(cfg.get<int64_t>("output_size", 1));
  if (o.output_size() <= 0)
    cfg.fail_key("output_size", "expected an int > 0, got " + std::to_string(o.output_size()));
  return o;
}

std::vector<torch::Tensor> AvgPool2dNeckImpl::forward(const std::vector<torch::Tensor>& x) {
  TORCH_CHECK(x.size() == 1, "AvgPool2dNeck: expected exactly one input tensor, got ", x.size());
  TORCH_CHECK(x[0].dim() == 4 || x[0].dim() == 3,
              "AvgPool2dNeck: expected a [N, C, H, W] input, got ", x[0].sizes());
  return {torch::adaptive_avg_pool2d(x[0], {options.output_size(), options.output_size()})};
}

void AvgPool2dNeckImpl::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::AvgPool2dNeck(output_size=" << options.output_size() << ")";
}

// ---- registration ----------------------------------------------------------------------

selfsup::Schema nonlinear_neck_schema() {
  using selfsup::ArgType;
  using selfsup::Json;
  return selfsup::Schema(
             "MLP projection fc-bn-[relu-fc-bn]*, as MMSelfSup's NonLinearNeck (SimCLR, BYOL, "
             "SimSiam, MoCo v3, Barlow Twins); modules fc0, bn0, fc1, bn1, ...")
      .required("in_channels", ArgType::Int, "input features (backbone channels)")
      .required("hid_channels", ArgType::Int, "hidden width")
      .required("out_channels", ArgType::Int, "output features (of the last fc)")
      .optional("num_layers", ArgType::Int, Json(2), "number of fc layers, >= 1")
      .optional("with_bias", ArgType::Bool, Json(false), "bias in the hidden fc layers")
      .optional("with_last_bn", ArgType::Bool, Json(true), "BN after the last fc")
      .optional("with_last_bn_affine", ArgType::Bool, Json(true),
                "learnable affine in the last BN (false for SimSiam)")
      .optional("with_last_bias", ArgType::Bool, Json(false), "bias in the last fc")
      .optional("with_avg_pool", ArgType::Bool, Json(true),
                "global average pooling of a [N, C, H, W] input first")
      .optional("vit_backbone", ArgType::Bool, Json(false),
                "take the last input tensor (a ViT's cls token)")
      .optional("norm_cfg", ArgType::Dict, Json::object({{"type", Json("SyncBN")}}),
                "norm layer: {type: 'BN' | 'SyncBN' (BN on one process), requires_grad, eps, "
                "momentum}");
}

selfsup::Schema linear_neck_schema() {
  using selfsup::ArgType;
  using selfsup::Json;
  return selfsup::Schema("[avgpool] -> fc, as MMSelfSup's LinearNeck (MoCo v1, NPID)")
      .required("in_channels", ArgType::Int, "input features (backbone channels)")
      .required("out_channels", ArgType::Int, "output features")
      .optional("with_avg_pool", ArgType::Bool, Json(true),
                "global average pooling of a [N, C, H, W] input first")
      .optional("vit_backbone", ArgType::Bool, Json(false),
                "take the last input tensor (a ViT's cls token)");
}

selfsup::Schema avgpool2d_neck_schema() {
  using selfsup::ArgType;
  using selfsup::Json;
  return selfsup::Schema("adaptive average pooling of the backbone map, as MMSelfSup's "
                         "AvgPool2dNeck")
      .optional("output_size", ArgType::Int, Json(1), "output height and width");
}

std::shared_ptr<selfsup::Neck> make_nonlinear_neck(const Config& cfg) {
  return std::make_shared<NonLinearNeckImpl>(NonLinearNeckOptions::from_config(cfg));
}

std::shared_ptr<selfsup::Neck> make_linear_neck(const Config& cfg) {
  return std::make_shared<LinearNeckImpl>(LinearNeckOptions::from_config(cfg));
}

std::shared_ptr<selfsup::Neck> make_avgpool2d_neck(const Config& cfg) {
  return std::make_shared<AvgPool2dNeckImpl>(AvgPool2dNeckOptions::from_config(cfg));
}

} // namespace selfsup::plugins::common
