// The `simmim` plugin: SimMIM, SimMIMSwinTransformer, SimMIMNeck, SimMIMHead,
// SimMIMReconstructionLoss and the SimMIMMaskGenerator transform.
#include <selfsup/plugin.h>
#include <selfsup/registry.h>

#include "simmim.h"

namespace selfsup::plugins::simmim {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "SimMIM", [](const Config& cfg) { return std::make_shared<SimMIM>(cfg); }, SimMIM::schema());
  r.add<Backbone>("SimMIMSwinTransformer", &make_simmim_swin,
                  backbones::SwinTransformerOptions::table("simmim").schema());
  r.add<Neck>("SimMIMNeck", &make_simmim_neck, SimMIMNeckOptions::table().schema());
  r.add<Head>("SimMIMHead", &make_simmim_head, SimMIMHeadOptions::table().schema());
  r.add<Loss>("SimMIMReconstructionLoss", &make_simmim_loss,
              SimMIMReconstructionLossOptions::table().schema());
  r.add<Transform>("SimMIMMaskGenerator", &make_simmim_mask_generator,
                   SimMIMMaskGeneratorOptions::table().schema());
}

} // namespace selfsup::plugins::simmim

SELFSUP_PLUGIN("simmim", "0.1.0", selfsup::plugins::simmim::register_types)
