#include "simclr.h"

#include <torch/torch.h>

#include <selfsup/dist.h>
#include <selfsup/errors.h>

namespace selfsup::plugins::simclr {

Schema SimCLR::schema() {
  return BaseModel::base_schema(
      "SimCLR: contrastive learning of the two views of each image against all other views "
      "of the batch (NT-Xent through ContrastiveHead).");
}

SimCLR::SimCLR(const Config& cfg) : BaseModel(cfg) {
  if (!neck_) cfg.fail_key("neck", "SimCLR needs a neck (the projection MLP)");
  if (!head_) cfg.fail_key("head", "SimCLR needs a head (ContrastiveHead)");
}

LossMap SimCLR::loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  TORCH_CHECK(inputs.size() == 2, "SimCLR expects 2 views per image, got ", inputs.size());
  const auto& a = inputs[0];
  // [B, 2, C, H, W] -> [2B, C, H, W]: rows 2k and 2k+1 are the two views of image k.
  auto x =
      torch::stack({a, inputs[1]}, 1).reshape({a.size(0) * 2, a.size(1), a.size(2), a.size(3)});
  auto z = neck_->forward(backbone_->forward(x))[0];
  z = z / (z.norm(2, 1, true) + 1e-10);
  // The global batch across ranks (the identity in one process), as MMSelfSup's all_gather.
  z = dist().all_gather_with_grad(z);
  const int64_t n2 = z.size(0);
  auto s = torch::matmul(z, z.t()); // [2N, 2N]

  auto opts = torch::TensorOptions().dtype(torch::kBool).device(s.device());
  auto not_self = torch::eye(n2, opts).logical_not();
  s = s.masked_select(not_self).reshape({n2, n2 - 1}); // drop the diagonal
  // After dropping the diagonal, the partner of rows 2k and 2k+1 sits in column 2k.
  auto rows = torch::arange(n2, torch::TensorOptions().dtype(torch::kLong).device(s.device()));
  auto pos_col = torch::div(rows, 2, "floor") * 2;
  auto positive = s.index({rows, pos_col}).unsqueeze(1); // [2N, 1]
  auto neg_mask = torch::ones({n2, n2 - 1}, opts);
  neg_mask.index_put_({rows, pos_col}, false);
  auto negative = s.masked_select(neg_mask).reshape({n2, n2 - 2}); // [2N, 2N-2]

  return {{"loss", head_->loss({positive, negative}, torch::Tensor())}};
}

void SimCLR::pretty_print(std::ostream& stream) const {
  stream << "selfsup::SimCLR";
}

} // namespace selfsup::plugins::simclr
