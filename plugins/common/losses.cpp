#include "losses.h"

#include <sstream>

#include <torch/torch.h>

namespace selfsup::plugins::common {

namespace {

std::string str(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

torch::Tensor reduce(const torch::Tensor& per_sample, const std::string& reduction) {
  if (reduction == "mean") return per_sample.mean();
  if (reduction == "sum") return per_sample.sum();
  return per_sample;
}

} // namespace

// ---- CrossEntropyLoss ------------------------------------------------------------------

OptionTable<CrossEntropyLossOptions> CrossEntropyLossOptions::table() {
  using O = CrossEntropyLossOptions;
  using namespace selfsup::check;
  return OptionTable<O>("softmax cross-entropy with mmcls semantics: class_weight scales each "
                        "sample by w[y] and the mean is not renormalised",
                        O())
      .optional("use_sigmoid", &O::use_sigmoid_, "false only (sigmoid is not ported)",
                one_of({false}))
      .optional("use_soft", &O::use_soft_, "soft labels: the target is [N, C] class probabilities")
      .optional("reduction", &O::reduction_, "how per-sample losses are reduced",
                one_of({"mean", "sum", "none"}))
      .optional("loss_weight", &O::loss_weight_, "multiplies the loss")
      .optional("class_weight", &O::class_weight_, "one weight per class (optional)", non_empty());
}

CrossEntropyLoss::CrossEntropyLoss(const CrossEntropyLossOptions& options_) : options(options_) {
  if (options.class_weight())
    class_weight_ = torch::tensor(*options.class_weight(), torch::kFloat64);
}

torch::Tensor CrossEntropyLoss::forward(const torch::Tensor& logits, const torch::Tensor& target) {
  TORCH_CHECK(logits.dim() >= 2, "CrossEntropyLoss: expected logits [N, C], got ", logits.sizes());
  const int64_t num_classes = logits.size(1);
  torch::Tensor weight;
  if (class_weight_.defined()) {
    TORCH_CHECK(class_weight_.numel() == num_classes, "CrossEntropyLoss: class_weight has ",
                class_weight_.numel(), " entries but the logits have ", num_classes, " classes");
    weight = class_weight_.to(logits.device(), logits.scalar_type());
  }
  torch::Tensor per_sample;
  if (options.use_soft()) {
    TORCH_CHECK(logits.dim() == 2 && target.sizes() == logits.sizes(),
                "CrossEntropyLoss (use_soft): expected logits [N, C] and target of the same "
                "shape, got ",
                logits.sizes(), " and ", target.sizes());
    torch::Tensor loss = -target.to(logits.scalar_type()) * torch::log_softmax(logits, -1);
    if (weight.defined()) loss = loss * weight;
    per_sample = loss.sum(-1);
  } else {
    TORCH_CHECK(!torch::isFloatingType(target.scalar_type()) && target.dim() == logits.dim() - 1 &&
                    target.size(0) == logits.size(0),
                "CrossEntropyLoss: expected integer labels [N] for logits ", logits.sizes(),
                ", got ", target.scalar_type(), " ", target.sizes(),
                " (use_soft=true takes class probabilities)");
    namespace F = torch::nn::functional;
    auto opts = F::CrossEntropyFuncOptions().reduction(torch::kNone);
    if (weight.defined()) opts.weight(weight);
    // Per element w[y] * CE; ignore_index (-100) gives 0 and still counts in the mean, as
    // in mmcls.
    per_sample = F::cross_entropy(logits, target.to(torch::kLong), opts);
  }
  return reduce(per_sample, options.reduction()) * options.loss_weight();
}

void CrossEntropyLoss::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::CrossEntropyLoss(reduction=" << options.reduction()
         << ", loss_weight=" << options.loss_weight();
  if (options.use_soft()) stream << ", use_soft=true";
  if (options.class_weight())
    stream << ", class_weight=[" << options.class_weight()->size() << " values]";
  stream << ")";
}

// ---- CosineSimilarityLoss --------------------------------------------------------------

OptionTable<CosineSimilarityLossOptions> CosineSimilarityLossOptions::table() {
  using O = CosineSimilarityLossOptions;
  return OptionTable<O>("mean of shift - scale * cos(pred, target), cosine over the last dim "
                        "(BYOL, SimSiam)",
                        O())
      .optional("shift_factor", &O::shift_factor_, "constant added to every sample")
      .optional("scale_factor", &O::scale_factor_, "multiplies the cosine");
}

torch::Tensor CosineSimilarityLoss::forward(const torch::Tensor& pred,
                                            const torch::Tensor& target) {
  TORCH_CHECK(pred.dim() >= 1 && pred.sizes() == target.sizes(),
              "CosineSimilarityLoss: pred and target must have the same shape, got ", pred.sizes(),
              " and ", target.sizes());
  namespace F = torch::nn::functional;
  const auto nopt = F::NormalizeFuncOptions().dim(-1);
  const torch::Tensor cos = (F::normalize(pred, nopt) * F::normalize(target, nopt)).sum(-1);
  return (options.shift_factor() - options.scale_factor() * cos).mean();
}

void CosineSimilarityLoss::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::common::CosineSimilarityLoss(shift_factor="
         << str(options.shift_factor()) << ", scale_factor=" << str(options.scale_factor()) << ")";
}

// ---- registration ----------------------------------------------------------------------

std::shared_ptr<selfsup::Loss> make_cross_entropy_loss(const Config& cfg) {
  return std::make_shared<CrossEntropyLoss>(CrossEntropyLossOptions::table().parse(cfg));
}

std::shared_ptr<selfsup::Loss> make_cosine_similarity_loss(const Config& cfg) {
  return std::make_shared<CosineSimilarityLoss>(CosineSimilarityLossOptions::table().parse(cfg));
}

} // namespace selfsup::plugins::common
