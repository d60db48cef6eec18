#include "odc_neck.h"

#include <torch/torch.h>

namespace selfsup::plugins::odc {

OptionTable<ODCNeckOptions> ODCNeckOptions::table() {
  using O = ODCNeckOptions;
  using namespace selfsup::check;
  return OptionTable<O>("fc-BN-ReLU-dropout-fc-ReLU projection, as MMSelfSup's ODCNeck", O())
      .required("in_channels", &O::in_channels, "input features", gt(0))
      .required("hid_channels", &O::hid_channels, "hidden features", gt(0))
      .required("out_channels", &O::out_channels, "output features", gt(0))
      .optional("with_avg_pool", &O::with_avg_pool, "global average pooling of a map first")
      .optional("norm_cfg", &O::norm_cfg,
                "norm of the hidden layer (its momentum is 0.001 and it has no affine, as "
                "upstream)")
      .rule([](const O& o, const Config& cfg) {
        // Upstream's dict(**norm_cfg, momentum=0.001) refuses any momentum of the user's. The
        // config seen here has the defaults filled in: an absent norm_cfg arrives as the
        // prototype's, momentum 0.001 included, so that value passes (an explicit 0.001 too:
        // it changes nothing).
        if (cfg.has("norm_cfg") && cfg["norm_cfg"].has("momentum") &&
            cfg["norm_cfg"]["momentum"].as<double>() != 0.001)
          cfg["norm_cfg"].fail_key("momentum", "ODCNeck fixes the momentum at 0.001 (upstream "
                                               "refuses a second momentum too)");
        (void)o;
      });
}

ODCNeck::ODCNeck(const ODCNeckOptions& options_) : options(options_) {
  fc0_ = register_module("fc0", torch::nn::Linear(options.in_channels, options.hid_channels));
  bricks::NormCfg norm = options.norm_cfg;
  norm.momentum = 0.001;
  bn0_ = register_module("bn0", norm.make_1d(options.hid_channels, /*affine=*/false));
  fc1_ = register_module("fc1", torch::nn::Linear(options.hid_channels, options.out_channels));
  dropout_ = register_module("dropout", torch::nn::Dropout(0.5));
}

std::vector<torch::Tensor> ODCNeck::forward(const std::vector<torch::Tensor>& x) {
  TORCH_CHECK(x.size() == 1, "ODCNeck: expected exactly one input tensor, got ", x.size());
  torch::Tensor h = x[0];
  if (options.with_avg_pool) {
    TORCH_CHECK(h.dim() == 4, "ODCNeck: with_avg_pool needs a [N, C, H, W] input, got ", h.sizes());
    h = torch::adaptive_avg_pool2d(h, {1, 1});
  }
  h = h.reshape({h.size(0), -1});
  h = dropout_(torch::relu(bn0_(fc0_(h))));
  return {torch::relu(fc1_(h))};
}

void ODCNeck::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::odc::ODCNeck(" << options.in_channels << " -> "
         << options.hid_channels << " -> " << options.out_channels
         << ", with_avg_pool=" << options.with_avg_pool << ")";
}

} // namespace selfsup::plugins::odc
