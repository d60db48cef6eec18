// The `maskfeat` plugin: MaskFeat, MaskFeatViT, MaskFeatPretrainHead and HOGGenerator.
#include <selfsup/plugin.h>
#include <selfsup/registry.h>

#include "hog_generator.h"
#include "maskfeat.h"

namespace selfsup::plugins::maskfeat {

void register_types(selfsup::Registrar& r) {
  r.add<selfsup::Algorithm>(
      "MaskFeat", [](const Config& cfg) { return std::make_shared<MaskFeat>(cfg); },
      MaskFeat::schema());
  r.add<selfsup::Backbone>("MaskFeatViT", &make_maskfeat_vit,
                           backbones::VisionTransformerOptions::table("mmcls").schema());
  r.add<selfsup::Head>("MaskFeatPretrainHead", &make_maskfeat_pretrain_head,
                       MaskFeatPretrainHeadOptions::table().schema());
  r.add<selfsup::TargetGenerator>("HOGGenerator", &make_hog_generator,
                                  HOGGeneratorOptions::table().schema());
}

} // namespace selfsup::plugins::maskfeat

SELFSUP_PLUGIN("maskfeat", "0.1.0", selfsup::plugins::maskfeat::register_types)
