// The `backbones` plugin: image encoders (ResNet, ResNet_CIFAR, ResNetSobel, VisionTransformer,
// MoCoV3ViT, SwinTransformer).
#include <string>

#include <selfsup/plugin.h>
#include <selfsup/registry.h>

#include "resnet.h"
#include "resnet_sobel.h"
#include "swin.h"
#include "vit.h"

namespace selfsup::plugins::backbones {

void register_types(selfsup::Registrar& r) {
  r.add<selfsup::Backbone>("ResNet", &make_resnet, ResNetOptions::table("imagenet").schema());
  r.add<selfsup::Backbone>("ResNet_CIFAR", &make_resnet_cifar,
                           ResNetOptions::table("cifar").schema());
  r.add<selfsup::Backbone>("ResNetSobel", &make_resnet_sobel, ResNetSobel::table().schema());
  // Scope variants (sdk/include/selfsup/registry.h): mmcls 1.0 numbers out_indices by stage
  // from 0 and zero-inits the residual branches; mmpretrain 1.x kept both.
  for (const char* scope : {"mmcls", "mmpretrain"}) {
    r.add<selfsup::Backbone>(std::string(scope) + ".ResNet", &make_mmcls_resnet,
                             ResNetOptions::table("imagenet", "mmcls").schema());
    r.add<selfsup::Backbone>(std::string(scope) + ".ResNet_CIFAR", &make_mmcls_resnet_cifar,
                             ResNetOptions::table("cifar", "mmcls").schema());
  }
  r.add<selfsup::Backbone>("SwinTransformer", &make_swin_transformer,
                           SwinTransformerOptions::table("mmcls").schema());
  r.add<selfsup::Backbone>("VisionTransformer", &make_vision_transformer,
                           VisionTransformerOptions::table("mmcls").schema());
  r.add<selfsup::Backbone>("MoCoV3ViT", &make_mocov3_vit,
                           VisionTransformerOptions::table("mocov3").schema());
}

} // namespace selfsup::plugins::backbones

SELFSUP_PLUGIN("backbones", "0.1.0", selfsup::plugins::backbones::register_types)
