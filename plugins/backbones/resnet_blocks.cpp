#include "resnet_blocks.h"

#include <torch/torch.h>

#include "fast_conv.h"
#include "fast_norm.h"

namespace selfsup::plugins::backbones {

torch::nn::Conv2d make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                            int64_t dilation) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(in, out, kernel)
                             .stride(stride)
                             .padding(dilation * (kernel / 2))
                             .dilation(dilation)
                             .bias(false));
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
  return conv;
}

namespace {

torch::nn::Sequential make_downsample(int64_t in, int64_t out, int64_t stride,
                                      const NormCfg& norm) {
  // torchvision: Sequential(conv1x1(in, out, stride), norm) -> downsample.0, downsample.1.
  return torch::nn::Sequential(make_conv(in, out, 1, stride), norm.make_2d(out));
}

void print_block(std::ostream& s, const char* name, int64_t inplanes, int64_t planes,
                 int64_t expansion, int64_t stride, int64_t dilation, bool downsample) {
  s << "selfsup::plugins::backbones::" << name << "(in=" << inplanes << ", planes=" << planes
    << ", out=" << planes * expansion << ", stride=" << stride;
  if (dilation != 1) s << ", dilation=" << dilation;
  if (downsample) s << ", downsample";
  s << ")";
}

// The shortcut: x, or downsample's conv and norm (through the fast paths, which its
// Sequential's forward would bypass).
torch::Tensor shortcut(const torch::nn::Sequential& downsample, const torch::Tensor& x) {
  if (!downsample) return x;
  const torch::nn::Conv2d conv(downsample->ptr<torch::nn::Conv2dImpl>(0));
  const bricks::BatchNorm2d norm(downsample->ptr<bricks::BatchNorm2dImpl>(1));
  return batch_norm_act(norm, conv2d(conv, x), {}, /*relu=*/false);
}

} // namespace

// ---- BasicBlock ------------------------------------------------------------------------

BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, int64_t dilation,
                       const NormCfg& norm) {
  // Registration order = torchvision's state_dict order: conv1, bn1, conv2, bn2, downsample.
  conv1_ = register_module("conv1", make_conv(inplanes, planes, 3, stride, dilation));
  bn1_ = register_module("bn1", norm.make_2d(planes));
  conv2_ = register_module("conv2", make_conv(planes, planes, 3, 1));
  bn2_ = register_module("bn2", norm.make_2d(planes));
  if (stride != 1 || inplanes != planes * kExpansion)
    downsample_ =
        register_module("downsample", make_downsample(inplanes, planes * kExpansion, stride, norm));
}

torch::Tensor BasicBlock::forward(const torch::Tensor& x) {
  const torch::Tensor out = batch_norm_act(bn1_, conv2d(conv1_, x), {}, /*relu=*/true);
  return batch_norm_act(bn2_, conv2d(conv2_, out), shortcut(downsample_, x), /*relu=*/true);
}

void BasicBlock::pretty_print(std::ostream& stream) const {
  print_block(stream, "BasicBlock", conv1_->options.in_channels(), conv1_->options.out_channels(),
              kExpansion, conv1_->options.stride()->at(0), conv1_->options.dilation()->at(0),
              !downsample_.is_empty());
}

// ---- Bottleneck ------------------------------------------------------------------------

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, int64_t dilation,
                       const NormCfg& norm) {
  conv1_ = register_module("conv1", make_conv(inplanes, planes, 1, 1));
  bn1_ = register_module("bn1", norm.make_2d(planes));
  conv2_ = register_module("conv2", make_conv(planes, planes, 3, stride, dilation));
  bn2_ = register_module("bn2", norm.make_2d(planes));
  conv3_ = register_module("conv3", make_conv(planes, planes * kExpansion, 1, 1));
  bn3_ = register_module("bn3", norm.make_2d(planes * kExpansion));
  if (stride != 1 || inplanes != planes * kExpansion)
    downsample_ =
        register_module("downsample", make_downsample(inplanes, planes * kExpansion, stride, norm));
}

torch::Tensor Bottleneck::forward(const torch::Tensor& x) {
  torch::Tensor out = batch_norm_act(bn1_, conv2d(conv1_, x), {}, /*relu=*/true);
  out = batch_norm_act(bn2_, conv2d(conv2_, out), {}, /*relu=*/true);
  return batch_norm_act(bn3_, conv2d(conv3_, out), shortcut(downsample_, x), /*relu=*/true);
}

void Bottleneck::pretty_print(std::ostream& stream) const {
  print_block(stream, "Bottleneck", conv1_->options.in_channels(), conv1_->options.out_channels(),
              kExpansion, conv2_->options.stride()->at(0), conv2_->options.dilation()->at(0),
              !downsample_.is_empty());
}

// ---- ResLayer --------------------------------------------------------------------------

ResLayerImpl::ResLayerImpl(bool bottleneck, int64_t inplanes, int64_t planes, int64_t num_blocks,
                           int64_t stride, int64_t dilation, const NormCfg& norm) {
  const int64_t expansion = bottleneck ? Bottleneck::kExpansion : BasicBlock::kExpansion;
  for (int64_t i = 0; i < num_blocks; ++i) {
    const int64_t in = i == 0 ? inplanes : planes * expansion;
    const int64_t s = i == 0 ? stride : 1;
    std::shared_ptr<ResBlock> block;
    if (bottleneck)
      block = std::make_shared<Bottleneck>(in, planes, s, dilation, norm);
    else
      block = std::make_shared<BasicBlock>(in, planes, s, dilation, norm);
    blocks_.push_back(register_module(std::to_string(i), block));
  }
}

torch::Tensor ResLayerImpl::forward(torch::Tensor x) {
  for (const auto& block : blocks_) x = block->forward(x);
  return x;
}

void ResLayerImpl::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::backbones::ResLayer(blocks=" << blocks_.size() << ")";
}

} // namespace selfsup::plugins::backbones
