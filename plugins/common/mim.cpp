#include "mim.h"

#include <cmath>
#include <utility>

#include <torch/torch.h>

namespace selfsup::plugins::common {

namespace {

// The grid (h, w) of L patches: h = grid_h or sqrt(L) when 0.
std::pair<int64_t, int64_t> grid_of(int64_t num_patches, int64_t grid_h, const char* what) {
  int64_t h = grid_h;
  if (h <= 0) h = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(num_patches))));
  TORCH_CHECK(h > 0 && num_patches % h == 0 && (grid_h > 0 || h * h == num_patches), what, ": ",
              num_patches, " patches do not make a ",
              grid_h > 0 ? "grid with that many rows" : "square grid");
  return {h, num_patches / h};
}

} // namespace

torch::Tensor patchify(const torch::Tensor& imgs, int64_t patch_size) {
  TORCH_CHECK(imgs.dim() == 4, "patchify: expected images [B, C, H, W], got ", imgs.sizes());
  const int64_t p = patch_size, b = imgs.size(0), c = imgs.size(1);
  TORCH_CHECK(p > 0 && imgs.size(2) % p == 0 && imgs.size(3) % p == 0, "patchify: image size ",
              imgs.size(2), "x", imgs.size(3), " is not a multiple of the patch size ", p);
  const int64_t h = imgs.size(2) / p, w = imgs.size(3) / p;
  return imgs.reshape({b, c, h, p, w, p})
      .permute({0, 2, 4, 3, 5, 1})
      .reshape({b, h * w, p * p * c});
}

torch::Tensor unpatchify(const torch::Tensor& patches, int64_t patch_size, int64_t channels,
                         int64_t grid_h) {
  TORCH_CHECK(patches.dim() == 3, "unpatchify: expected patches [B, L, D], got ", patches.sizes());
  const int64_t p = patch_size, c = channels, b = patches.size(0);
  TORCH_CHECK(p > 0 && c > 0 && patches.size(2) == p * p * c, "unpatchify: patch length ",
              patches.size(2), " is not patch_size^2 * channels = ", p * p * c);
  const auto [h, w] = grid_of(patches.size(1), grid_h, "unpatchify");
  return patches.reshape({b, h, w, p, p, c})
      .permute({0, 5, 1, 3, 2, 4})
      .reshape({b, c, h * p, w * p});
}

torch::Tensor norm_pix_target(const torch::Tensor& patches, double eps) {
  const auto mean = patches.mean(-1, true);
  const auto var = patches.var(-1, /*unbiased=*/true, /*keepdim=*/true);
  return (patches - mean) / (var + eps).sqrt();
}

torch::Tensor patch_mask_to_pixels(const torch::Tensor& mask, int64_t patch_size, int64_t grid_h) {
  TORCH_CHECK(mask.dim() == 2, "patch_mask_to_pixels: expected a mask [B, L], got ", mask.sizes());
  const auto [h, w] = grid_of(mask.size(1), grid_h, "patch_mask_to_pixels");
  const int64_t p = patch_size;
  return mask.to(torch::kFloat)
      .reshape({mask.size(0), 1, h, 1, w, 1})
      .expand({mask.size(0), 1, h, p, w, p})
      .reshape({mask.size(0), 1, h * p, w * p});
}

} // namespace selfsup::plugins::common
