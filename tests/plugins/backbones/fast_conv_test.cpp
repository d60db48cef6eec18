// The matrix-product weight gradient of ResNet's small-map bf16 convolutions (backbones plugin,
// fast_conv.h): the same gradient as a float64 computation and as oneDNN's direct kernel, to
// bf16's rounding, in channels-last order; used exactly when it should be, and through a
// convolution under autocast it changes nothing else.
#include <gtest/gtest.h>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "../../../plugins/backbones/fast_conv.h"

namespace selfsup::plugins::backbones {
namespace {

// |a - b| <= 2^-7 |b| + 2^-9 max|b| elementwise: bf16 output rounding (2^-9 relative) with room
// for the two sides' different fp32 summation orders.
void expect_close_to_bf16(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor a64 = a.to(torch::kDouble), b64 = b.to(torch::kDouble);
  const double scale = b64.abs().max().item<double>();
  ASSERT_GT(scale, 0);
  const torch::Tensor excess = (a64 - b64).abs() - (b64.abs() / 128 + scale / 512);
  EXPECT_LE(excess.max().item<double>(), 0) << "max |a - b| " << (a64 - b64).abs().max();
}

struct Shape {
  int64_t h, kernel, stride, padding;
};

TEST(SmallConvTest, WeightGradByMatmulMatchesFloat64AndTheDirectKernel) {
  torch::manual_seed(3);
  for (const Shape s : {Shape{4, 3, 1, 1}, Shape{8, 3, 2, 1}, Shape{4, 1, 1, 0}, Shape{8, 1, 2, 0},
                        Shape{5, 3, 2, 0}}) {
    SCOPED_TRACE("h " + std::to_string(s.h) + " kernel " + std::to_string(s.kernel) + " stride " +
                 std::to_string(s.stride) + " padding " + std::to_string(s.padding));
    const int64_t out = (s.h + 2 * s.padding - s.kernel) / s.stride + 1;
    const auto cl = at::MemoryFormat::ChannelsLast;
    const torch::Tensor x = torch::randn({6, 24, s.h, s.h}).to(torch::kBFloat16).contiguous(cl);
    const torch::Tensor w =
        torch::randn({40, 24, s.kernel, s.kernel}).to(torch::kBFloat16).contiguous(cl);
    const torch::Tensor g = torch::randn({6, 40, out, out}).to(torch::kBFloat16).contiguous(cl);
    const torch::Tensor got = conv2d_weight_grad_matmul(
        x, g, {s.kernel, s.kernel}, {s.stride, s.stride}, {s.padding, s.padding});
    EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(got.sizes(), w.sizes());
    EXPECT_TRUE(got.is_contiguous(cl));

    // float64 through autograd's own convolution.
    const torch::Tensor w64 = w.to(torch::kDouble).requires_grad_();
    torch::conv2d(x.to(torch::kDouble), w64, {}, s.stride, s.padding)
        .backward(g.to(torch::kDouble));
    expect_close_to_bf16(got, w64.grad());
    // oneDNN's direct bf16 backward-weights kernel.
    const torch::Tensor direct = std::get<1>(at::convolution_backward(
        g, x, w, c10::nullopt, {s.stride, s.stride}, {s.padding, s.padding}, {1, 1}, false, {0, 0},
        1, {false, true, false}));
    expect_close_to_bf16(got, direct.to(torch::kDouble));
  }
}

torch::nn::Conv2d small_conv(int64_t stride) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(16, 32, 3).stride(stride).padding(1).bias(false));
  conv->weight.set_data(conv->weight.contiguous(at::MemoryFormat::ChannelsLast));
  return conv;
}

TEST(SmallConvTest, UsedForBf16SmallMapsWithGradientsOnly) {
  const auto cl = at::MemoryFormat::ChannelsLast;
  torch::nn::Conv2d conv = small_conv(1);
  const torch::Tensor x4 = torch::randn({2, 16, 4, 4}).contiguous(cl);
  const torch::Tensor x8 = torch::randn({2, 16, 8, 8}).contiguous(cl);
  EXPECT_FALSE(uses_matmul_weight_grad(conv, x4));                      // fp32, no autocast
  EXPECT_FALSE(uses_matmul_weight_grad(conv, x4.to(torch::kBFloat16))); // fp32 weight
  {
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(torch::kBFloat16);
    EXPECT_TRUE(uses_matmul_weight_grad(conv, x4));
    EXPECT_FALSE(uses_matmul_weight_grad(conv, x8));              // 64 output pixels
    EXPECT_TRUE(uses_matmul_weight_grad(small_conv(2), x8));      // 8x8 stride 2: 16
    EXPECT_FALSE(uses_matmul_weight_grad(conv, x4.contiguous())); // NCHW
    {
      torch::NoGradGuard no_grad;
      EXPECT_FALSE(uses_matmul_weight_grad(conv, x4));
    }
    conv->weight.requires_grad_(false); // a frozen stage
    EXPECT_FALSE(uses_matmul_weight_grad(conv, x4));
    conv->weight.requires_grad_(true);
    torch::nn::Conv2d biased(torch::nn::Conv2dOptions(16, 32, 3).padding(1));
    EXPECT_FALSE(uses_matmul_weight_grad(biased, x4));
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }
  torch::nn::Conv2d bf16 = small_conv(1);
  bf16->to(torch::kBFloat16);
  bf16->weight.set_data(bf16->weight.contiguous(cl));
  EXPECT_TRUE(uses_matmul_weight_grad(bf16, x4.to(torch::kBFloat16)));
}

// Under autocast: the same output and input gradient as the convolution module itself (the
// same oneDNN kernels), a float32 weight gradient within bf16 rounding of the module's.
TEST(SmallConvTest, UnderAutocastOnlyTheWeightGradientsSummationDiffers) {
  torch::manual_seed(5);
  const auto cl = at::MemoryFormat::ChannelsLast;
  for (int64_t stride : {1, 2}) {
    torch::nn::Conv2d conv = small_conv(stride);
    const int64_t h = 4 * stride;
    const torch::Tensor x = torch::randn({8, 16, h, h}).contiguous(cl);
    const torch::Tensor r = torch::randn({8, 32, 4, 4});
    auto run = [&](bool ours) {
      const torch::Tensor xi = x.clone().requires_grad_();
      conv->zero_grad();
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(torch::kBFloat16);
      EXPECT_EQ(uses_matmul_weight_grad(conv, xi), true);
      const torch::Tensor y = ours ? conv2d(conv, xi) : conv->forward(xi);
      at::autocast::set_cpu_enabled(false);
      at::autocast::clear_cache();
      (y.to(torch::kFloat) * r).sum().backward();
      return std::make_tuple(y.detach(), xi.grad(), conv->weight.grad().clone());
    };
    const auto [y_ours, gx_ours, gw_ours] = run(true);
    const auto [y_ref, gx_ref, gw_ref] = run(false);
    EXPECT_EQ(y_ours.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(y_ours.equal(y_ref));
    EXPECT_EQ(gx_ours.scalar_type(), torch::kFloat);
    EXPECT_TRUE(gx_ours.equal(gx_ref));
    EXPECT_EQ(gw_ours.scalar_type(), torch::kFloat);
    expect_close_to_bf16(gw_ours, gw_ref);
  }
}

// Winograd's transforms cost some fp32 accuracy: |a - b| <= 2e-5 max|b| (direct fp32
// convolution is near 1e-6 here).
void expect_close_to_fp32_winograd(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor a64 = a.to(torch::kDouble), b64 = b.to(torch::kDouble);
  const double scale = b64.abs().max().item<double>();
  ASSERT_GT(scale, 0);
  EXPECT_LE((a64 - b64).abs().max().item<double>(), 2e-5 * scale);
}

TEST(WinogradConvTest, OutputAndGradientsMatchFloat64InEitherMemoryFormat) {
  torch::manual_seed(7);
  struct Case {
    int64_t n, c, o, h, w;
    bool channels_last;
  };
  for (const Case k : {Case{4, 16, 32, 8, 8, false}, Case{4, 16, 32, 8, 8, true},
                       Case{3, 32, 16, 5, 7, true}, Case{2, 64, 64, 4, 4, false},
                       // 4 MB per image: oneDNN is called on 2 images at a time, the last call on 1
                       Case{11, 16, 16, 256, 256, true}}) {
    SCOPED_TRACE("c " + std::to_string(k.c) + " h " + std::to_string(k.h) + " w " +
                 std::to_string(k.w) + (k.channels_last ? " channels-last" : " NCHW"));
    const auto format =
        k.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(k.c, k.o, 3).padding(1).bias(false));
    conv->weight.set_data(conv->weight.contiguous(format));
    const torch::Tensor x = torch::randn({k.n, k.c, k.h, k.w}).contiguous(format).requires_grad_();
    const torch::Tensor r = torch::randn({k.n, k.o, k.h, k.w});
    ASSERT_TRUE(uses_winograd(conv, x));
    const torch::Tensor y = conv2d(conv, x);
    (y * r).sum().backward();
    EXPECT_TRUE(y.is_contiguous(format));
    EXPECT_TRUE(x.grad().is_contiguous(format));
    EXPECT_TRUE(conv->weight.grad().is_contiguous(format));

    const torch::Tensor x64 = x.detach().to(torch::kDouble).requires_grad_();
    const torch::Tensor w64 = conv->weight.detach().to(torch::kDouble).requires_grad_();
    const torch::Tensor y64 = torch::conv2d(x64, w64, {}, 1, 1);
    (y64 * r.to(torch::kDouble)).sum().backward();
    expect_close_to_fp32_winograd(y.detach(), y64.detach());
    expect_close_to_fp32_winograd(x.grad(), x64.grad());
    expect_close_to_fp32_winograd(conv->weight.grad(), w64.grad());
  }
}

TEST(WinogradConvTest, UsedForFp32ThreeByThreeStrideOneTrainingOnly) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(16, 16, 3).padding(1).bias(false));
  const torch::Tensor x = torch::randn({2, 16, 8, 8});
  EXPECT_TRUE(uses_winograd(conv, x));
  {
    torch::NoGradGuard no_grad; // evaluation and feature extraction keep the direct kernels
    EXPECT_FALSE(uses_winograd(conv, x));
  }
  torch::nn::Conv2d strided(torch::nn::Conv2dOptions(16, 16, 3).stride(2).padding(1).bias(false));
  EXPECT_FALSE(uses_winograd(strided, x));
  torch::nn::Conv2d pointwise(torch::nn::Conv2dOptions(16, 16, 1).bias(false));
  EXPECT_FALSE(uses_winograd(pointwise, x));
  torch::nn::Conv2d biased(torch::nn::Conv2dOptions(16, 16, 3).padding(1));
  EXPECT_FALSE(uses_winograd(biased, x));
  at::autocast::set_cpu_enabled(true);
  EXPECT_FALSE(uses_winograd(conv, x));
  at::autocast::set_cpu_enabled(false);
  conv->weight.requires_grad_(false);
  EXPECT_FALSE(uses_winograd(conv, x));
}

} // namespace
} // namespace selfsup::plugins::backbones
