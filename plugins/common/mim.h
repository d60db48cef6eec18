#pragma once
// Shared pieces of masked image modelling (MAE, SimMIM, CAE, MaskFeat).
//
// For the MIM plugins (agents of issue 12): this header and mim.cpp are plain functions, no
// registered types. A plugin outside `common` compiles ../common/mim.cpp into itself (as
// transformer_layers.cpp is shared: by source, never by linking another plugin), e.g.
//   selfsup_add_plugin(selfsup_simmim SOURCES ${SOURCES} ../common/mim.cpp)
// and includes "../common/mim.h".
//
// `selfsup visualize` (host/src/cmd_visualize.cpp) calls the SDK virtual
//   Reconstruction Algorithm::reconstruct(const std::vector<Tensor>& inputs,
//                                         const DataSamples& samples)
// (sdk/include/selfsup/interfaces/algorithm.h): `inputs` are the preprocessed views as the
// runner passes them to loss(); return {original, mask, reconstruction}, original and
// reconstruction [B, C, H, W] in the model's input space (the host undoes the data
// preprocessor's mean/std), mask [B, 1, H, W] float, 1 where the model hid the input. The
// default throws ValueError. `patch_mask_to_pixels` below turns a per-patch mask into it.
//
// The 2-D sin-cos position embedding is plugins/backbones/transformer_layers.h's
// build_2d_sincos_position_embedding (compile ../backbones/transformer_layers.cpp in).
#include <cstdint>

#include <torch/types.h>

namespace selfsup::plugins::common {

/// MMSelfSup's patchify (MAEPretrainHead): images [B, C, h*p, w*p] -> patches [B, h*w, p*p*C],
/// patches in row-major grid order, each flattened as (row in patch, column in patch,
/// channel), i.e. 'nchpwq->nhwpqc'. Upstream fixes C = 3 and a square image; here any C, and
/// H, W multiples of p.
torch::Tensor patchify(const torch::Tensor& imgs, int64_t patch_size);

/// The inverse of patchify: [B, h*w, p*p*C] -> [B, C, h*p, w*p]. `grid_h` 0 means a square
/// grid (h = w = sqrt(L), as upstream's unpatchify).
torch::Tensor unpatchify(const torch::Tensor& patches, int64_t patch_size, int64_t channels,
                         int64_t grid_h = 0);

/// MAE's normalised-pixel target: each patch (last dim) minus its mean, divided by
/// sqrt(unbiased variance + eps).
torch::Tensor norm_pix_target(const torch::Tensor& patches, double eps = 1e-6);

/// A per-patch mask [B, L] (1 = hidden) on a grid of `grid_h` rows (0: square) -> a pixel
/// mask [B, 1, grid_h*p, grid_w*p] float.
torch::Tensor patch_mask_to_pixels(const torch::Tensor& mask, int64_t patch_size,
                                   int64_t grid_h = 0);

} // namespace selfsup::plugins::common
