#include "mocov2_neck.h"

#include <torch/torch.h>

namespace selfsup::plugins::common {

OptionTable<MoCoV2NeckOptions> MoCoV2NeckOptions::table() {
  using O = MoCoV2NeckOptions;
  using namespace selfsup::check;
  return OptionTable<O>("[avgpool] -> fc -> relu -> fc, as MMSelfSup's MoCoV2Neck (MoCo v2); "
                        "modules mlp.0, mlp.2",
                        O())
      .required("in_channels", &O::in_channels_, "input features (backbone channels)", gt(0))
      .required("hid_channels", &O::hid_channels_, "hidden width", gt(0))
      .required("out_channels", &O::out_channels_, "output features", gt(0))
      .optional("with_avg_pool", &O::with_avg_pool_,
                "global average pooling of a [N, C, H, W] input first");
}

MoCoV2Neck::MoCoV2Neck(const MoCoV2NeckOptions& options_) : options(options_) {
  reset();
}

void MoCoV2Neck::reset() {
  mlp_ = register_module(
      "mlp",
      torch::nn::Sequential(torch::nn::Linear(options.in_channels(), options.hid_channels()),
                            torch::nn::ReLU(),
                            torch::nn::Linear(options.hid_channels(), options.out_channels())));
}

std::vector<torch::Tensor> MoCoV2Neck::forward(const std::vector<torch::Tensor>& x) {
  TORCH_CHECK(x.size() == 1, "MoCoV2Neck: expected exactly one input tensor, got ", x.size(),
              " (give the backbone a single out_index)");
  torch::Tensor h = x[0];
  if (options.with_avg_pool()) {
    TORCH_CHECK(h.dim() == 4, "MoCoV2Neck: with_avg_pool needs a [N, C, H, W] input, got ",
                h.sizes());
    h = torch::adaptive_avg_pool2d(h, {1, 1});
  }
  h = h.reshape({h.size(0), -1});
  TORCH_CHECK(h.size(1) == options.in_channels(), "MoCoV2Neck: expected ", options.in_channels(),
              " input features, got ", h.size(1));
  return {mlp_->forward(h)};
}

void MoCoV2Neck::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::MoCoV2Neck(in_channels=" << options.in_channels()
         << ", hid_channels=" << options.hid_channels()
         << ", out_channels=" << options.out_channels()
         << ", with_avg_pool=" << options.with_avg_pool() << ")";
}

std::shared_ptr<selfsup::Neck> make_mocov2_neck(const Config& cfg) {
  return std::make_shared<MoCoV2Neck>(MoCoV2NeckOptions::table().parse(cfg));
}

} // namespace selfsup::plugins::common
