// ResNet's fused BatchNorm + residual + ReLU (backbones plugin, fast_norm.h): the output, the
// gradients of x, weight, bias and the residual, and the running statistics, against a float64
// formulation written here and against torch's BatchNorm; used exactly when it should be.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <selfsup/bricks/norm.h>

#include "../../../plugins/backbones/fast_norm.h"

namespace selfsup::plugins::backbones {
namespace {

constexpr double kEps = 1e-5;

struct Reference {
  torch::Tensor y, dx, dw, db, dres, mean, var_unbiased;
};

// act((x - mean) / sqrt(var + eps) * w + b + r) in float64 with the batch's mean and biased
// variance, its gradients for the upstream gradient `gy` by autograd over these elementary ops.
Reference reference(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                    const torch::Tensor& r, bool relu, const torch::Tensor& gy) {
  const torch::Tensor x64 = x.to(torch::kDouble).detach().requires_grad_();
  const torch::Tensor w64 = w.to(torch::kDouble).detach().requires_grad_();
  const torch::Tensor b64 = b.to(torch::kDouble).detach().requires_grad_();
  const torch::Tensor r64 =
      r.defined() ? r.to(torch::kDouble).detach().requires_grad_() : torch::Tensor();
  const torch::Tensor mean = x64.mean({0, 2, 3}, /*keepdim=*/true);
  const torch::Tensor var = (x64 - mean).pow(2).mean({0, 2, 3}, /*keepdim=*/true);
  torch::Tensor y =
      (x64 - mean) / (var + kEps).sqrt() * w64.view({1, -1, 1, 1}) + b64.view({1, -1, 1, 1});
  if (r64.defined()) y = y + r64;
  if (relu) y = y.clamp_min(0);
  std::vector<torch::Tensor> inputs{x64, w64, b64};
  if (r64.defined()) inputs.push_back(r64);
  const auto grads = torch::autograd::grad({y}, inputs, {gy.to(torch::kDouble)});
  const double n = double(x.numel() / x.size(1));
  return {y.detach(),
          grads[0],
          grads[1],
          grads[2],
          r64.defined() ? grads[3] : torch::Tensor(),
          mean.flatten().detach(),
          var.flatten().detach() * n / (n - 1)};
}

// |a - b| <= rel |b| + abs_scale max|b| elementwise.
void expect_close(const torch::Tensor& a, const torch::Tensor& b, double rel, double abs_scale,
                  const char* what) {
  const torch::Tensor a64 = a.to(torch::kDouble), b64 = b.to(torch::kDouble);
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = b64.abs().max().item<double>();
  const torch::Tensor excess = (a64 - b64).abs() - (b64.abs() * rel + scale * abs_scale);
  EXPECT_LE(excess.max().item<double>(), 0)
      << what << ": max |a - b| " << (a64 - b64).abs().max().item<double>() << " of max " << scale;
}

bricks::BatchNorm2d trained_norm(int64_t channels) {
  bricks::BatchNorm2d bn = bricks::NormCfg{}.make_2d(channels);
  torch::NoGradGuard no_grad;
  bn->weight.uniform_(0.5, 1.5);
  bn->bias.uniform_(-0.5, 0.5);
  bn->running_mean.uniform_(-1, 1);
  bn->running_var.uniform_(0.5, 2);
  bn->train();
  return bn;
}

struct Case {
  bool channels_last, residual, relu;
  torch::ScalarType dtype;
};

TEST(FusedBatchNormTest, MatchesFloat64AndTorchBatchNormInBothLayoutsAndDtypes) {
  torch::manual_seed(5);
  for (const Case c :
       {Case{false, false, true, torch::kFloat}, Case{false, true, true, torch::kFloat},
        Case{true, true, true, torch::kFloat}, Case{true, false, false, torch::kFloat},
        Case{false, true, false, torch::kFloat}, Case{true, true, true, torch::kBFloat16},
        Case{true, false, true, torch::kBFloat16}, Case{false, false, false, torch::kBFloat16}}) {
    SCOPED_TRACE(std::string(c.channels_last ? "channels-last" : "NCHW") +
                 (c.residual ? " residual" : "") + (c.relu ? " relu " : " ") +
                 c10::toString(c.dtype));
    const auto format =
        c.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    // A mean far from zero (the variance must not be lost to it) and 37 channels, which no
    // vector width divides.
    const torch::Tensor x =
        (torch::randn({40, 37, 9, 11}) * 3 + 40).to(c.dtype).contiguous(format).requires_grad_();
    const torch::Tensor r =
        c.residual ? torch::randn({40, 37, 9, 11}).to(c.dtype).contiguous(format).requires_grad_()
                   : torch::Tensor();
    const torch::Tensor gy = torch::randn({40, 37, 9, 11}).to(c.dtype).contiguous(format);
    bricks::BatchNorm2d bn = trained_norm(37);
    const auto torch_bn = std::dynamic_pointer_cast<bricks::BatchNorm2dImpl>(bn->clone());
    const torch::Tensor mean0 = bn->running_mean.clone(), var0 = bn->running_var.clone();
    ASSERT_TRUE(uses_fused_norm(bn, x, r));

    const torch::Tensor y = batch_norm_act(bn, x, r, c.relu);
    EXPECT_EQ(y.scalar_type(), c.dtype);
    EXPECT_EQ(y.strides(), x.strides());
    std::vector<torch::Tensor> inputs{x, bn->weight, bn->bias};
    if (c.residual) inputs.push_back(r);
    const auto grads = torch::autograd::grad({y}, inputs, {gy});
    const Reference ref = reference(x, bn->weight, bn->bias, r, c.relu, gy);

    const bool bf16 = c.dtype == torch::kBFloat16;
    // fp32: summation order only; bf16: the rounding of each stored value (2^-9 relative).
    const double rel = bf16 ? 1.0 / 128 : 1e-5, abs = bf16 ? 1.0 / 256 : 1e-5;
    expect_close(y, ref.y, rel, abs, "y");
    expect_close(grads[0], ref.dx, rel, abs, "dx");
    expect_close(grads[1], ref.dw, bf16 ? 1.0 / 64 : 1e-5, abs, "dweight");
    expect_close(grads[2], ref.db, bf16 ? 1.0 / 64 : 1e-5, abs, "dbias");
    if (c.residual) {
      EXPECT_EQ(grads[3].scalar_type(), c.dtype);
      expect_close(grads[3], ref.dres, rel, abs, "dresidual");
    }

    // The running statistics: as torch's BatchNorm updates them from the same batch.
    torch::Tensor stock = torch_bn->forward(x.detach());
    EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
    EXPECT_EQ(torch_bn->num_batches_tracked.item<int64_t>(), 1);
    // (torch's channels-last kernel sums in float: 1e-5 against it, 1e-6 against float64.)
    expect_close(bn->running_mean, torch_bn->running_mean, 1e-5, 1e-6, "running_mean");
    expect_close(bn->running_var, torch_bn->running_var, bf16 ? 1e-3 : 1e-5, 1e-6, "running_var");
    expect_close(bn->running_mean, 0.9 * mean0 + 0.1 * ref.mean, 1e-6, 1e-6,
                 "running_mean (float64)");
    expect_close(bn->running_var, 0.9 * var0 + 0.1 * ref.var_unbiased, 1e-6, 1e-6,
                 "running_var (float64)");
    if (!c.residual && !c.relu) expect_close(y, stock, rel, abs, "y against torch's BatchNorm");
  }
}

TEST(FusedBatchNormTest, WithoutMomentumTheRunningStatisticsAreTheCumulativeAverage) {
  torch::manual_seed(6);
  bricks::BatchNorm2d bn = trained_norm(8);
  bn->options.momentum(c10::nullopt);
  const auto torch_bn = std::dynamic_pointer_cast<bricks::BatchNorm2dImpl>(bn->clone());
  for (int step = 0; step < 3; ++step) {
    const torch::Tensor x = torch::randn({4, 8, 3, 3}) * (step + 1) + step;
    ASSERT_TRUE(uses_fused_norm(bn, x, {}));
    (void)batch_norm_act(bn, x, {}, /*relu=*/true);
    (void)torch_bn->forward(x);
  }
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 3);
  expect_close(bn->running_mean, torch_bn->running_mean, 1e-6, 1e-6, "running_mean");
  expect_close(bn->running_var, torch_bn->running_var, 1e-5, 1e-6, "running_var");
}

TEST(FusedBatchNormTest, UsedOnlyInTrainingOnContiguousCpuFloatTensors) {
  torch::manual_seed(7);
  bricks::BatchNorm2d bn = trained_norm(8);
  const torch::Tensor x = torch::randn({4, 8, 3, 3});
  EXPECT_TRUE(uses_fused_norm(bn, x, {}));
  EXPECT_TRUE(uses_fused_norm(bn, x.contiguous(at::MemoryFormat::ChannelsLast), {}));
  EXPECT_TRUE(uses_fused_norm(bn, x.to(torch::kBFloat16), {}));
  EXPECT_FALSE(uses_fused_norm(bn, x.to(torch::kDouble), {}));
  EXPECT_FALSE(uses_fused_norm(bn, x.transpose(2, 3), {})); // neither layout
  EXPECT_FALSE(uses_fused_norm(bn, x, x.contiguous(at::MemoryFormat::ChannelsLast)));
  EXPECT_FALSE(uses_fused_norm(bn, x, x.to(torch::kBFloat16)));
  EXPECT_FALSE(uses_fused_norm(bn, torch::randn({1, 8, 1, 1}), {})); // one value per channel
  bricks::BatchNorm2d sync = bricks::NormCfg{"SyncBN"}.make_2d(8);
  EXPECT_TRUE(uses_fused_norm(sync, x, {})); // one process: plain BN

  // In eval mode the module's own forward runs (running statistics, nothing updated).
  bn->eval();
  EXPECT_FALSE(uses_fused_norm(bn, x, {}));
  const torch::Tensor before = bn->running_mean.clone();
  const torch::Tensor r = torch::randn({4, 8, 3, 3});
  const torch::Tensor y = batch_norm_act(bn, x, r, /*relu=*/true);
  EXPECT_TRUE(torch::equal(y, (bn->forward(x) + r).relu()));
  EXPECT_TRUE(torch::equal(bn->running_mean, before));
}

} // namespace
} // namespace selfsup::plugins::backbones
