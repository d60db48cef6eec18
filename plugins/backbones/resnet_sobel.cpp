#include "resnet_sobel.h"

#include <string>

#include <torch/torch.h>

namespace selfsup::plugins::backbones {

SobelImpl::SobelImpl() {
  torch::nn::Conv2d grey(torch::nn::Conv2dOptions(3, 1, 1));
  torch::nn::Conv2d derivatives(torch::nn::Conv2dOptions(1, 2, 3).padding(1));
  {
    torch::NoGradGuard no_grad;
    grey->weight.fill_(1.0 / 3.0);
    grey->bias.zero_();
    derivatives->weight[0][0].copy_(
        torch::tensor({1.f, 0.f, -1.f, 2.f, 0.f, -2.f, 1.f, 0.f, -1.f}).view({3, 3}));
    derivatives->weight[1][0].copy_(
        torch::tensor({1.f, 2.f, 1.f, 0.f, 0.f, 0.f, -1.f, -2.f, -1.f}).view({3, 3}));
    derivatives->bias.zero_();
  }
  sobel_ = register_module("sobel", torch::nn::Sequential(grey, derivatives));
  for (auto& p : sobel_->parameters()) p.set_requires_grad(false);
}

torch::Tensor SobelImpl::forward(const torch::Tensor& x) {
  return sobel_->forward(x);
}

OptionTable<ResNetOptions> ResNetSobel::table() {
  return ResNetOptions::table("imagenet").rule([](const ResNetOptions& o, const Config& cfg) {
    if (o.in_channels() != 3)
      cfg.fail_key("in_channels", "expected 3: the Sobel layer reads 3-channel images and feeds "
                                  "the ResNet its 2 channels, got " +
                                      std::to_string(o.in_channels()));
  });
}

ResNetSobel::ResNetSobel(const ResNetOptions& options_) : ResNet(options_) {
  TORCH_CHECK(options.in_channels() == 2, "ResNetSobel: the ResNet must take 2 channels, got ",
              options.in_channels());
  sobel_layer_ = register_module("sobel_layer", Sobel());
}

std::vector<torch::Tensor> ResNetSobel::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "ResNetSobel: expected input [N, 3, H, W], got ",
              x.sizes());
  return ResNet::forward(sobel_layer_->forward(x));
}

void ResNetSobel::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::backbones::ResNetSobel(sobel 3->2, ";
  ResNet::pretty_print(stream);
  stream << ")";
}

std::shared_ptr<selfsup::Backbone> make_resnet_sobel(const Config& cfg) {
  ResNetOptions o = ResNetSobel::table().parse(cfg);
  o.in_channels(2);
  return std::make_shared<ResNetSobel>(o);
}

} // namespace selfsup::plugins::backbones
