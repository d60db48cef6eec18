// The `mae` plugin: MAE, MAEViT, MAEPretrainDecoder, MAEPretrainHead, MAEReconstructionLoss.
#include <selfsup/plugin.h>
#include <selfsup/registry.h>

#include "mae.h"

namespace selfsup::plugins::mae {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "MAE", [](const Config& cfg) { return std::make_shared<MAE>(cfg); }, MAE::schema());
  r.add<Backbone>("MAEViT", &make_mae_vit, MAEViTOptions::table().schema());
  r.add<Neck>("MAEPretrainDecoder", &make_mae_pretrain_decoder,
              MAEPretrainDecoderOptions::table().schema());
  r.add<Head>("MAEPretrainHead", &make_mae_pretrain_head, MAEPretrainHeadOptions::table().schema());
  r.add<Loss>(
      "MAEReconstructionLoss",
      [](const Config&) { return std::make_shared<MAEReconstructionLoss>(); },
      Schema("MAE's loss: mean squared error per patch, averaged over the masked patches"));
}

} // namespace selfsup::plugins::mae

SELFSUP_PLUGIN("mae", "0.1.0", selfsup::plugins::mae::register_types)
