#pragma once
// The pretext transforms: RotationWithLabels and RandomPatchWithLabels (MMSelfSup's names).
#include <cstdint>
#include <memory>

#include <selfsup/config.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/options.h>

namespace selfsup::plugins::pretext {

/// The image rotated clockwise by 90 * k degrees (k in 0..3), as mmcv.imrotate(img, 90 * k)
/// on a square image. 90 and 270 need a square image (mmcv would crop and pad otherwise).
Image rotate_clockwise(const Image& img, int k);

/// MMSelfSup's RotationWithLabels: the views [img, rot 90, rot 180, rot 270] (clockwise) and
/// `rot_label` = [0, 1, 2, 3] (int64).
class RotationWithLabels final : public Transform {
public:
  void apply(Sample& sample, Rng& rng) const override;
};

struct RandomPatchWithLabelsOptions {
  int64_t split_per_side = 3;
  int64_t patch_jitter = 21;
  static OptionTable<RandomPatchWithLabelsOptions> table();
};

/// MMSelfSup's RandomPatchWithLabels: the image is cut into split x split cells (cell (i, j),
/// index 3i + j, spans x in [i * h_grid, (i + 1) * h_grid] and y in [j * w_grid, (j + 1) *
/// w_grid], both ends included and clipped to the image, exactly as upstream passes
/// (i * h_grid, j * w_grid, ...) to mmcv.imcrop as (x1, y1, x2, y2): index 3i + j is column i,
/// row j); from each cell a random (h_grid - jitter) x (w_grid - jitter) patch. Views: the
/// centre patch (index 4), then the 8 others in index order; `patch_label` [1, 8] = 0..7,
/// `patch_box` [1, 9, 4] (x1, y1, x2, y2 in the image, inclusive, by index), `unpatched_img`
/// [1, H, W, C] uint8. split_per_side and patch_jitter are fixed (3, 21) upstream; here they
/// are options with those defaults, so small images can be used.
class RandomPatchWithLabels final : public Transform {
public:
  explicit RandomPatchWithLabels(const RandomPatchWithLabelsOptions& options) : options_(options) {}
  void apply(Sample& sample, Rng& rng) const override;

private:
  RandomPatchWithLabelsOptions options_;
};

std::shared_ptr<Transform> make_rotation_with_labels(const Config& cfg);
std::shared_ptr<Transform> make_random_patch_with_labels(const Config& cfg);

} // namespace selfsup::plugins::pretext
