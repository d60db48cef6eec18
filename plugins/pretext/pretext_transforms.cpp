#include "pretext_transforms.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::pretext {

namespace {

void require_image(const Image& img, const char* who) {
  if (img.empty())
    throw ValueError(std::string(who) + ": the sample has no image (it must come before "
                                        "MultiView / PackSelfSupInputs)");
}

/// img[y0 : y0 + h, x0 : x0 + w].
Image crop(const Image& img, int x0, int y0, int w, int h) {
  Image out(h, w, img.channels);
  const size_t row = size_t(w) * size_t(img.channels);
  for (int y = 0; y < h; ++y)
    std::copy_n(img.data.begin() +
                    int64_t((size_t(y0 + y) * size_t(img.width) + size_t(x0)) * img.channels),
                row, out.data.begin() + int64_t(size_t(y) * row));
  return out;
}

} // namespace

Image rotate_clockwise(const Image& img, int k) {
  k = ((k % 4) + 4) % 4;
  if (k == 0) return img;
  if (k != 2 && img.height != img.width)
    throw ValueError(
        "RotationWithLabels: rotating by 90 or 270 degrees needs a square image, got " +
        std::to_string(img.height) + "x" + std::to_string(img.width) +
        " (crop it square first, e.g. RandomResizedCrop)");
  const int h = img.height, w = img.width, c = img.channels;
  Image out(k == 2 ? h : w, k == 2 ? w : h, c);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      int sy = 0, sx = 0;
      if (k == 1) { // clockwise: the top row becomes the right column
        sy = h - 1 - x;
        sx = y;
      } else if (k == 2) {
        sy = h - 1 - y;
        sx = w - 1 - x;
      } else {
        sy = x;
        sx = w - 1 - y;
      }
      std::copy_n(img.data.begin() + int64_t((size_t(sy) * size_t(w) + size_t(sx)) * c), c,
                  out.data.begin() + int64_t((size_t(y) * size_t(out.width) + size_t(x)) * c));
    }
  return out;
}

void RotationWithLabels::apply(Sample& s, Rng&) const {
  require_image(s.img, "RotationWithLabels");
  const Image src = std::move(s.img);
  s.img = Image();
  s.views.clear();
  for (int k = 0; k < 4; ++k) s.views.push_back(rotate_clockwise(src, k));
  s.tensors["rot_label"] = torch::arange(4, torch::kInt64);
}

OptionTable<RandomPatchWithLabelsOptions> RandomPatchWithLabelsOptions::table() {
  using O = RandomPatchWithLabelsOptions;
  using namespace selfsup::check;
  return OptionTable<O>("Relative patch location: the centre patch and its 8 neighbours of a "
                        "3x3 grid as 9 views, with patch_label 0..7, patch_box and "
                        "unpatched_img (MMSelfSup's RandomPatchWithLabels)",
                        O())
      .optional("split_per_side", &O::split_per_side,
                "cells per side (fixed 3 upstream; only 3 gives 8 neighbours)", one_of({3}))
      .optional("patch_jitter", &O::patch_jitter,
                "a patch is this much smaller than its cell (fixed 21 upstream)", ge(0));
}

void RandomPatchWithLabels::apply(Sample& s, Rng& rng) const {
  require_image(s.img, "RandomPatchWithLabels");
  const Image img = std::move(s.img);
  s.img = Image();
  const int split = int(options_.split_per_side);
  const int h_grid = img.height / split, w_grid = img.width / split;
  const int h_patch = h_grid - int(options_.patch_jitter);
  const int w_patch = w_grid - int(options_.patch_jitter);
  if (h_patch <= 0 || w_patch <= 0)
    throw ValueError("RandomPatchWithLabels: a " + std::to_string(img.height) + "x" +
                     std::to_string(img.width) + " image gives cells of " + std::to_string(h_grid) +
                     "x" + std::to_string(w_grid) + ", no larger than patch_jitter " +
                     std::to_string(options_.patch_jitter) +
                     " (resize the image up or lower patch_jitter)");
  std::vector<Image> patches;
  torch::Tensor boxes = torch::empty({1, split * split, 4}, torch::kInt64);
  auto box = boxes.accessor<int64_t, 3>();
  for (int i = 0; i < split; ++i)
    for (int j = 0; j < split; ++j) {
      // Upstream's (x1, y1, x2, y2) = (i h_grid, j w_grid, (i+1) h_grid, (j+1) w_grid),
      // inclusive and clipped to the image (mmcv.imcrop).
      const int x1 = std::min(i * h_grid, img.width - 1);
      const int y1 = std::min(j * w_grid, img.height - 1);
      const int x2 = std::min((i + 1) * h_grid, img.width - 1);
      const int y2 = std::min((j + 1) * w_grid, img.height - 1);
      const int cell_w = x2 - x1 + 1, cell_h = y2 - y1 + 1;
      if (cell_h < h_patch || cell_w < w_patch)
        throw ValueError("RandomPatchWithLabels: cell " + std::to_string(3 * i + j) + " (" +
                         std::to_string(cell_h) + "x" + std::to_string(cell_w) +
                         ") is smaller than the patch (" + std::to_string(h_patch) + "x" +
                         std::to_string(w_patch) + "); the image must be about square");
      // mmselfsup RandomCrop.get_params: the whole cell when it has the patch's size.
      int ymin = 0, xmin = 0;
      if (!(cell_w == w_patch && cell_h == h_patch)) {
        ymin = int(rng.randint(0, cell_h - h_patch));
        xmin = int(rng.randint(0, cell_w - w_patch));
      }
      patches.push_back(crop(img, x1 + xmin, y1 + ymin, w_patch, h_patch));
      const int k = split * i + j;
      box[0][k][0] = i * h_grid + xmin;
      box[0][k][1] = j * w_grid + ymin;
      box[0][k][2] = i * h_grid + xmin + w_patch - 1;
      box[0][k][3] = j * w_grid + ymin + h_patch - 1;
    }
  const int centre = (split * split) / 2;
  s.views.clear();
  s.views.push_back(patches[size_t(centre)]);
  for (int k = 0; k < split * split; ++k)
    if (k != centre) s.views.push_back(std::move(patches[size_t(k)]));
  s.tensors["patch_label"] = torch::arange(split * split - 1, torch::kInt64).unsqueeze(0);
  s.tensors["patch_box"] = boxes;
  s.tensors["unpatched_img"] =
      torch::from_blob(const_cast<uint8_t*>(img.data.data()),
                       {1, img.height, img.width, img.channels}, torch::kUInt8)
          .clone();
}

std::shared_ptr<Transform> make_rotation_with_labels(const Config& cfg) {
  for (const auto& key : cfg.keys())
    if (key != "type") cfg.fail_key(key, "unknown key: RotationWithLabels takes no options");
  return std::make_shared<RotationWithLabels>();
}

std::shared_ptr<Transform> make_random_patch_with_labels(const Config& cfg) {
  return std::make_shared<RandomPatchWithLabels>(RandomPatchWithLabelsOptions::table().parse(cfg));
}

} // namespace selfsup::plugins::pretext
