// The `backbones` plugin: image encoders (ResNet, ResNet_CIFAR).
#include <selfsup/plugin.h>
#include <selfsup/registry.h>

#include "resnet.h"

namespace selfsup::plugins::backbones {

void register_types(selfsup::Registrar& r) {
  r.add<selfsup::Backbone>("ResNet", &make_resnet, ResNetOptions::table("imagenet").schema());
  r.add<selfsup::Backbone>("ResNet_CIFAR", &make_resnet_cifar,
                           ResNetOptions::table("cifar").schema());
}

} // namespace selfsup::plugins::backbones

SELFSUP_PLUGIN("backbones", "0.1.0", selfsup::plugins::backbones::register_types)
