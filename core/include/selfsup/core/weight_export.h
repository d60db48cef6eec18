#pragma once
// Export of a checkpoint's backbone weights for other frameworks (`selfsup export`): a plain
// {name: tensor} dict in torch.save's container, which Python's torch.load reads and whose keys
// load with strict=True into
//   torchvision  torchvision.models.resnet18/34/50/101/152 built with fc = Identity (the
//                file has no fc: a self-supervised backbone has none) — the ResNet backbone's
//                names are torchvision's, so 'backbone.' is only stripped and the key set is
//                checked;
//   timm         timm's VisionTransformer (global_pool='token', num_classes=0) for a
//                VisionTransformer / MoCoV3ViT backbone, its mmcls names mapped to timm's
//                (patch_embed.projection -> patch_embed.proj, layers.N -> blocks.N, ln1/ln2 ->
//                norm1/norm2, ffn.layers.0.0 / ffn.layers.1 -> mlp.fc1 / mlp.fc2, final ln1 ->
//                norm, avg_token's ln2 -> fc_norm, pre_norm -> norm_pre);
//   selfsup      the backbone's own (mmcls) names, 'backbone.' stripped, unchecked: what
//                mmengine's init_cfg=dict(type='Pretrained', checkpoint=FILE) on an mmcls
//                backbone loads.
#include <string>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/export.h>

namespace selfsup::core {

/// "torchvision" for a ResNet-like state (backbone.conv1.weight), "timm" for a ViT
/// (backbone.patch_embed.projection.weight), else "selfsup".
SELFSUP_CORE_API std::string default_export_format(const TensorMap& model_state);

/// The backbone entries of `model_state` (a checkpoint's state_dict: backbone.*, neck.*,
/// head.*) under the names of `format`. Throws ValueError naming `source` when the state has
/// no backbone, the format is unknown, or a key has no counterpart in the format (named, with
/// what was expected).
SELFSUP_CORE_API TensorMap export_backbone(const TensorMap& model_state, const std::string& format,
                                           const std::string& source);

/// Writes `weights` as a plain dict of CPU tensors (torch.save's zip container, no checksum
/// comment), atomically as a checkpoint. Throws ValueError naming `path` on failure.
SELFSUP_CORE_API void save_weights(const std::string& path, const TensorMap& weights);

/// Reads backbone weights from `path` as initial weights, under the backbone's own (mmcls)
/// names: a file `selfsup export` wrote in any format (timm names mapped back; torchvision's
/// are the backbone's own), a plain {name: tensor} dict or a dict holding one under
/// 'state_dict' (mmcls / mmengine checkpoints: 'backbone.' stripped when present, other
/// prefixes' entries dropped), or a selfsup checkpoint (its backbone.* entries). torchvision's
/// classifier fc.* is dropped. Throws ValueError naming `path` when it is none of these.
SELFSUP_CORE_API TensorMap import_backbone_weights(const std::string& path);

/// Top-level load_from: a selfsup checkpoint loads the whole model (as before); any other file
/// import_backbone_weights() reads loads the model's 'backbone' child, every one of its
/// parameters and buffers required (strict). Throws ValueError naming `path` and the key.
SELFSUP_CORE_API void load_initial_weights(torch::nn::Module& model, const std::string& path);

/// import_backbone_weights(path) loaded into `model`'s 'backbone' child, strictly (every
/// parameter and buffer required, shapes checked); errors name `source`.
SELFSUP_CORE_API void load_pretrained_backbone(torch::nn::Module& model, const std::string& path,
                                               const std::string& source);

/// mmengine's backbone init_cfg=dict(type='Pretrained', checkpoint=FILE[, prefix=...]) in a
/// model config: returns FILE and removes init_cfg from `model`'s backbone (the backbones take
/// no init_cfg themselves), or "" when there is none of type Pretrained. Throws ConfigError
/// naming model.backbone.init_cfg when its keys are not {type, checkpoint[, prefix]}.
SELFSUP_CORE_API std::string take_pretrained_init_cfg(Json& model);

} // namespace selfsup::core
