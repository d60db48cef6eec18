// The `common` plugin: necks, heads and losses shared by many algorithms.
#include <selfsup/plugin.h>
#include <selfsup/registry.h>

#include "heads.h"
#include "losses.h"
#include "necks.h"

namespace selfsup::plugins::common {

void register_types(selfsup::Registrar& r) {
  r.add<selfsup::Neck>("NonLinearNeck", &make_nonlinear_neck, nonlinear_neck_schema());
  r.add<selfsup::Neck>("LinearNeck", &make_linear_neck, linear_neck_schema());
  r.add<selfsup::Neck>("AvgPool2dNeck", &make_avgpool2d_neck, avgpool2d_neck_schema());
  r.add<selfsup::Head>("ContrastiveHead", &make_contrastive_head, contrastive_head_schema());
  r.add<selfsup::Head>("ClsHead", &make_cls_head, cls_head_schema());
  r.add<selfsup::Head>("LatentPredictHead", &make_latent_predict_head,
                       latent_predict_head_schema());
  r.add<selfsup::Loss>("CrossEntropyLoss", &make_cross_entropy_loss, cross_entropy_loss_schema());
  r.add<selfsup::Loss>("CosineSimilarityLoss", &make_cosine_similarity_loss,
                       cosine_similarity_loss_schema());
}

} // namespace selfsup::plugins::common

SELFSUP_PLUGIN("common", "0.1.0", selfsup::plugins::common::register_types)
