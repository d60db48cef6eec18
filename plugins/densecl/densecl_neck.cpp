#include "densecl_neck.h"

#include <torch/torch.h>

namespace selfsup::plugins::densecl {

OptionTable<DenseCLNeckOptions> DenseCLNeckOptions::table() {
  using O = DenseCLNeckOptions;
  using namespace selfsup::check;
  return OptionTable<O>("DenseCL's neck: a global branch (avgpool, fc-relu-fc) and a dense "
                        "branch (1x1 conv-relu-conv on the map, plus its average), as "
                        "MMSelfSup's DenseCLNeck",
                        O())
      .required("in_channels", &O::in_channels_, "channels of the backbone map", gt(0))
      .required("hid_channels", &O::hid_channels_, "hidden width of both branches", gt(0))
      .required("out_channels", &O::out_channels_, "output features of both branches", gt(0))
      .optional("num_grid", &O::num_grid_,
                "pool the map to num_grid x num_grid before the dense branch (absent: no pooling)",
                gt(0));
}

DenseCLNeck::DenseCLNeck(const DenseCLNeckOptions& options_) : options(options_) {
  const auto& o = options;
  mlp_ = register_module(
      "mlp",
      torch::nn::Sequential(torch::nn::Linear(o.in_channels(), o.hid_channels()), torch::nn::ReLU(),
                            torch::nn::Linear(o.hid_channels(), o.out_channels())));
  mlp2_ = register_module(
      "mlp2",
      torch::nn::Sequential(
          torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), o.hid_channels(), 1)),
          torch::nn::ReLU(),
          torch::nn::Conv2d(torch::nn::Conv2dOptions(o.hid_channels(), o.out_channels(), 1))));
}

std::vector<torch::Tensor> DenseCLNeck::forward(const std::vector<torch::Tensor>& xs) {
  TORCH_CHECK(xs.size() == 1, "DenseCLNeck: expected exactly one input map, got ", xs.size(),
              " (give the backbone a single out_index)");
  auto x = xs[0];
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.in_channels(), "DenseCLNeck: expected a [N, ",
              options.in_channels(), ", H, W] map, got ", x.sizes());
  const int64_t n = x.size(0);
  auto global = mlp_->forward(torch::adaptive_avg_pool2d(x, {1, 1}).view({n, -1}));
  if (options.num_grid())
    x = torch::adaptive_avg_pool2d(x, {*options.num_grid(), *options.num_grid()});
  auto dense = mlp2_->forward(x);                                        // [N, out, s, s]
  auto pooled = torch::adaptive_avg_pool2d(dense, {1, 1}).view({n, -1}); // [N, out]
  return {global, dense.view({n, dense.size(1), -1}), pooled};
}

void DenseCLNeck::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::densecl::DenseCLNeck(in_channels=" << options.in_channels()
         << ", hid_channels=" << options.hid_channels()
         << ", out_channels=" << options.out_channels() << ", num_grid=";
  if (options.num_grid())
    stream << *options.num_grid();
  else
    stream << "None";
  stream << ")";
}

} // namespace selfsup::plugins::densecl
