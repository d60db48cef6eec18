// The `common` plugin: necks, heads and losses shared by many algorithms.
#include <selfsup/plugin.h>
#include <selfsup/registry.h>

#include "beit_mask_generator.h"
#include "cross_correlation_loss.h"
#include "heads.h"
#include "latent_cross_correlation_head.h"
#include "losses.h"
#include "mocov2_neck.h"
#include "necks.h"
#include "pixel_reconstruction_loss.h"

namespace selfsup::plugins::common {

void register_types(selfsup::Registrar& r) {
  r.add<selfsup::Neck>("NonLinearNeck", &make_nonlinear_neck,
                       NonLinearNeckOptions::table().schema());
  r.add<selfsup::Neck>("LinearNeck", &make_linear_neck, LinearNeckOptions::table().schema());
  r.add<selfsup::Neck>("MoCoV2Neck", &make_mocov2_neck, MoCoV2NeckOptions::table().schema());
  r.add<selfsup::Neck>("AvgPool2dNeck", &make_avgpool2d_neck,
                       AvgPool2dNeckOptions::table().schema());
  r.add<selfsup::Head>("ContrastiveHead", &make_contrastive_head,
                       ContrastiveHeadOptions::table().schema());
  r.add<selfsup::Head>("ClsHead", &make_cls_head, ClsHeadOptions::table().schema());
  r.add<selfsup::Head>("LatentPredictHead", &make_latent_predict_head,
                       LatentPredictHeadOptions::table().schema());
  r.add<selfsup::Head>("LatentCrossCorrelationHead", &make_latent_cross_correlation_head,
                       LatentCrossCorrelationHeadOptions::table().schema());
  r.add<selfsup::Loss>("CrossEntropyLoss", &make_cross_entropy_loss,
                       CrossEntropyLossOptions::table().schema());
  r.add<selfsup::Loss>("CosineSimilarityLoss", &make_cosine_similarity_loss,
                       CosineSimilarityLossOptions::table().schema());
  r.add<selfsup::Loss>("CrossCorrelationLoss", &make_cross_correlation_loss,
                       CrossCorrelationLossOptions::table().schema());
  r.add<selfsup::Loss>("PixelReconstructionLoss", &make_pixel_reconstruction_loss,
                       PixelReconstructionLossOptions::table().schema());
  r.add<selfsup::Transform>("BEiTMaskGenerator", &make_beit_mask_generator,
                            BEiTMaskGeneratorOptions::table().schema());
}

} // namespace selfsup::plugins::common

SELFSUP_PLUGIN("common", "0.1.0", selfsup::plugins::common::register_types)
