#include "hog_generator.h"

#include <cmath>

#include <torch/torch.h>

namespace selfsup::plugins::maskfeat {

OptionTable<HOGGeneratorOptions> HOGGeneratorOptions::table() {
  using O = HOGGeneratorOptions;
  using namespace selfsup::check;
  return OptionTable<O>("HOG target of MaskFeat as MMSelfSup's HOGGenerator: per-channel Sobel "
                        "gradients, Gaussian-weighted magnitudes binned by orientation per "
                        "pool x pool cell, L2-normalised, 2-D cells grouped per patch of a "
                        "14 x 14 grid -> [B, 196, C * nbins * u * u]",
                        O())
      .optional("nbins", &O::nbins_, "orientation bins", gt(0))
      .optional("pool", &O::pool_, "cell size in pixels", gt(0))
      .optional("gaussian_window", &O::gaussian_window_,
                "side of the Gaussian weighting window (sigma = window / 2); 0: none", ge(0));
}

HOGGenerator::HOGGenerator(const HOGGeneratorOptions& options_) : options(options_) {
  // 3 x 3 Sobel kernels, one per RGB channel as upstream's buffers [3, 1, 3, 3]; another
  // channel count repeats the first at forward time.
  auto wx = torch::tensor({1.f, 0.f, -1.f, 2.f, 0.f, -2.f, 1.f, 0.f, -1.f})
                .view({1, 1, 3, 3})
                .repeat({3, 1, 1, 1});
  weight_x = register_buffer("weight_x", wx.contiguous());
  weight_y = register_buffer("weight_y", wx.transpose(2, 3).contiguous());
  const int64_t gw = options.gaussian_window();
  if (gw > 0) {
    // 1-D Gaussian over arange(gw) centred on its mean, sigma = gw // 2; outer product,
    // normalised to sum 1.
    auto n = torch::arange(gw, torch::kFloat);
    n = (n - n.mean()) / double(gw / 2);
    const auto w = torch::exp(-0.5 * n.square());
    auto k = w.unsqueeze(1) * w.unsqueeze(0);
    gaussian_kernel = register_buffer("gaussian_kernel", k / k.sum());
  }
}

torch::Tensor HOGGenerator::cell_histograms(const torch::Tensor& input) const {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(input.dim() == 4, "HOGGenerator: expected images [B, C, H, W], got ", input.sizes());
  const int64_t c = input.size(1), nbins = options.nbins(), pool = options.pool();
  auto x = torch::nn::functional::pad(
      input.to(torch::kFloat),
      torch::nn::functional::PadFuncOptions({1, 1, 1, 1}).mode(torch::kReflect));
  const auto wx = weight_x.narrow(0, 0, 1).to(x.device()).repeat({c, 1, 1, 1});
  const auto wy = weight_y.narrow(0, 0, 1).to(x.device()).repeat({c, 1, 1, 1});
  namespace F = torch::nn::functional;
  const auto gx = F::conv2d(x, wx, F::Conv2dFuncOptions().groups(c));
  const auto gy = F::conv2d(x, wy, F::Conv2dFuncOptions().groups(c));
  auto magnitude = torch::stack({gx, gy}, -1).norm(2, -1);
  const auto phase = torch::atan2(gx, gy) / M_PI * double(nbins); // in [-nbins, nbins]

  const int64_t b = magnitude.size(0), h = magnitude.size(2), w = magnitude.size(3);
  if (gaussian_kernel.defined()) {
    const int64_t gw = options.gaussian_window();
    TORCH_CHECK(h % gw == 0 && w % gw == 0, "HOGGenerator: the image (", h, "x", w,
                ") must tile by gaussian_window ", gw);
    magnitude = magnitude * gaussian_kernel.to(x.device()).repeat({h / gw, w / gw});
  }
  TORCH_CHECK(h % pool == 0 && w % pool == 0, "HOGGenerator: the image (", h, "x", w,
              ") must tile by pool ", pool);
  auto bins = torch::remainder(phase.floor().to(torch::kLong), nbins).view({b, c, 1, h, w});
  auto out = torch::zeros({b, c, nbins, h, w}, magnitude.options());
  out.scatter_add_(2, bins, magnitude.view({b, c, 1, h, w}));
  out = out.unfold(3, pool, pool).unfold(4, pool, pool).sum({-1, -2});
  return F::normalize(out, F::NormalizeFuncOptions().p(2).dim(2));
}

torch::Tensor HOGGenerator::forward(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto hog = cell_histograms(x).flatten(1, 2); // [B, C * nbins, hc, wc]
  const int64_t wc = hog.size(-1);
  const int64_t u = wc / kPatchGrid;
  TORCH_CHECK(u > 0, "HOGGenerator: ", wc, " cells per row are fewer than the ", kPatchGrid,
              " patches of upstream's fixed 14 x 14 grid (image width / pool must be >= 14)");
  hog = hog.permute({0, 2, 3, 1});
  hog = hog.unfold(1, u, u).unfold(2, u, u); // [B, hc/u, wc/u, C*nbins, u, u]
  return hog.flatten(1, 2).flatten(2);
}

void HOGGenerator::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::maskfeat::HOGGenerator(nbins=" << options.nbins()
         << ", pool=" << options.pool() << ", gaussian_window=" << options.gaussian_window() << ")";
}

std::shared_ptr<selfsup::TargetGenerator> make_hog_generator(const Config& cfg) {
  return std::make_shared<HOGGenerator>(HOGGeneratorOptions::table().parse(cfg));
}

} // namespace selfsup::plugins::maskfeat
