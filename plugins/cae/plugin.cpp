// The `cae` plugin: CAE, CAEViT, CAENeck, CAEHead, CAELoss, CAEDataPreprocessor and the
// DALL-E encoder target generator.
#include <selfsup/plugin.h>
#include <selfsup/registry.h>

#include "cae.h"
#include "dalle_encoder.h"

namespace selfsup::plugins::cae {

void register_types(selfsup::Registrar& r) {
  r.add<selfsup::Algorithm>(
      "CAE", [](const Config& cfg) { return std::make_shared<CAE>(cfg); }, CAE::schema());
  r.add<selfsup::Backbone>("CAEViT", &make_cae_vit, cae_vit_schema());
  r.add<selfsup::Neck>("CAENeck", &make_cae_neck, CAENeckOptions::table().schema());
  r.add<selfsup::Head>("CAEHead", &make_cae_head, CAEHeadOptions::table().schema());
  r.add<selfsup::Loss>("CAELoss", &make_cae_loss, CAELossOptions::table().schema());
  r.add<selfsup::TargetGenerator>("DALL-E", &make_dalle_encoder,
                                  DalleEncoderOptions::table().schema());
  r.add<selfsup::DataPreprocessor>(
      "CAEDataPreprocessor",
      [](const Config& cfg) -> std::shared_ptr<selfsup::DataPreprocessor> {
        return std::make_shared<CAEDataPreprocessor>(
            SelfSupDataPreprocessorOptions::table().parse(cfg));
      },
      SelfSupDataPreprocessorOptions::table().schema());
}

} // namespace selfsup::plugins::cae

SELFSUP_PLUGIN("cae", "0.1.0", selfsup::plugins::cae::register_types)
