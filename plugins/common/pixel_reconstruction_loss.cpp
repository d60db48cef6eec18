#include "pixel_reconstruction_loss.h"

#include <torch/torch.h>

namespace selfsup::plugins::common {

OptionTable<PixelReconstructionLossOptions> PixelReconstructionLossOptions::table() {
  using O = PixelReconstructionLossOptions;
  using namespace selfsup::check;
  return OptionTable<O>("L1 or L2 reconstruction penalty, mean over the last dim of a 3-D "
                        "input then over everything, as MMSelfSup's PixelReconstructionLoss "
                        "(MaskFeat)",
                        O())
      .required("criterion", &O::criterion_, "'L1' or 'L2'", one_of({"L1", "L2"}))
      .optional("channel", &O::channel_,
                "divisor of a masked loss (upstream); null here: masking heads select the "
                "masked rows and refuse it",
                gt(0));
}

torch::Tensor PixelReconstructionLoss::forward(const torch::Tensor& pred,
                                               const torch::Tensor& target) {
  TORCH_CHECK(pred.sizes() == target.sizes(),
              "PixelReconstructionLoss: pred and target must have the same shape, got ",
              pred.sizes(), " and ", target.sizes());
  const auto diff = pred - target;
  auto loss = options.criterion() == "L1" ? diff.abs() : diff.square();
  if (loss.dim() == 3) loss = loss.mean(-1);
  return loss.mean();
}

void PixelReconstructionLoss::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::PixelReconstructionLoss(criterion=" << options.criterion()
         << ")";
}

std::shared_ptr<selfsup::Loss> make_pixel_reconstruction_loss(const Config& cfg) {
  return std::make_shared<PixelReconstructionLoss>(
      PixelReconstructionLossOptions::table().parse(cfg));
}

} // namespace selfsup::plugins::common
