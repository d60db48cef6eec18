#include "swav.h"

#include <string>
#include <utility>

#include <torch/torch.h>

#include <selfsup/dist.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

namespace selfsup::plugins::swav {

// ---- SwAVNeck --------------------------------------------------------------------------

OptionTable<SwAVNeckOptions> SwAVNeckOptions::table() {
  using O = SwAVNeckOptions;
  using namespace selfsup::check;
  return OptionTable<O>("SwAV's projection: pools each crop group's map, concatenates the "
                        "crops, fc-bn-relu-fc, then L2-normalises (MMSelfSup's SwAVNeck); "
                        "modules projection_neck.{0,1,3}",
                        O())
      .required("in_channels", &O::in_channels_, "input features (backbone channels)", gt(0))
      .required("hid_channels", &O::hid_channels_, "hidden width; 0: a single Linear", ge(0))
      .required("out_channels", &O::out_channels_, "output features; 0: no projection", ge(0))
      .optional("with_avg_pool", &O::with_avg_pool_, "global average pooling of each map first")
      .optional("with_l2norm", &O::with_l2norm_, "L2-normalise the output rows")
      .optional("norm_cfg", &O::norm_cfg_, "norm layer (SyncBN acts as BN on one process)");
}

SwAVNeck::SwAVNeck(const SwAVNeckOptions& options_) : options(options_) {
  const auto& o = options;
  if (o.out_channels() == 0) return;
  if (o.hid_channels() == 0) {
    single_ =
        register_module("projection_neck", torch::nn::Linear(o.in_channels(), o.out_channels()));
    return;
  }
  projection_ = register_module(
      "projection_neck",
      torch::nn::Sequential(torch::nn::Linear(o.in_channels(), o.hid_channels()),
                            o.norm_cfg().make_1d(o.hid_channels()), torch::nn::ReLU(),
                            torch::nn::Linear(o.hid_channels(), o.out_channels())));
}

std::vector<torch::Tensor> SwAVNeck::forward(const std::vector<torch::Tensor>& x) {
  TORCH_CHECK(!x.empty(), "SwAVNeck: expected one feature map per crop group, got none");
  std::vector<torch::Tensor> pooled;
  for (const auto& map : x) {
    torch::Tensor h = map;
    if (options.with_avg_pool()) {
      TORCH_CHECK(h.dim() == 4, "SwAVNeck: with_avg_pool needs [N, C, H, W] maps, got ", h.sizes());
      h = torch::adaptive_avg_pool2d(h, {1, 1});
    }
    pooled.push_back(h.reshape({h.size(0), -1}));
  }
  torch::Tensor feat = torch::cat(pooled); // [sum(num_crops) * B, C]
  TORCH_CHECK(options.out_channels() == 0 || feat.size(1) == options.in_channels(),
              "SwAVNeck: expected ", options.in_channels(), " input features, got ", feat.size(1));
  if (!projection_.is_empty()) feat = projection_->forward(feat);
  if (!single_.is_empty()) feat = single_(feat);
  if (options.with_l2norm())
    feat = torch::nn::functional::normalize(
        feat, torch::nn::functional::NormalizeFuncOptions().p(2).dim(1));
  return {feat};
}

void SwAVNeck::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::swav::SwAVNeck(in_channels=" << options.in_channels()
         << ", hid_channels=" << options.hid_channels()
         << ", out_channels=" << options.out_channels() << ")";
}

// ---- SwAVLoss --------------------------------------------------------------------------

OptionTable<SwAVLossOptions> SwAVLossOptions::table() {
  using O = SwAVLossOptions;
  using namespace selfsup::check;
  return OptionTable<O>("SwAV's swapped prediction with Sinkhorn-Knopp assignments and the "
                        "prototypes (MMSelfSup's SwAVLoss)",
                        O())
      .required("feat_dim", &O::feat_dim_, "embedding dimension (the neck's out_channels)", gt(0))
      .optional("sinkhorn_iterations", &O::sinkhorn_iterations_, "Sinkhorn-Knopp iterations", ge(0))
      .optional("epsilon", &O::epsilon_, "Sinkhorn-Knopp regularisation", gt(0))
      .optional("temperature", &O::temperature_, "softmax temperature of the predictions", gt(0))
      .optional("crops_for_assign", &O::crops_for_assign_,
                "ids of the crops whose codes are computed", non_empty(), each(ge(0)))
      .optional("num_crops", &O::num_crops_, "crops per pipeline, e.g. [2, 6]", non_empty(),
                each(gt(0)))
      .optional("num_prototypes", &O::num_prototypes_, "number of prototypes (an int > 0)")
      .as(ArgType::Any)
      .rule([](const O& o, const Config& cfg) {
        const Json& k = o.num_prototypes();
        if (k.is_array())
          cfg.fail_key("num_prototypes",
                       "a list (MultiPrototypes) is not supported: MMSelfSup's SwAVLoss "
                       "re-normalises prototypes.weight, which MultiPrototypes lacks, so it "
                       "fails there too; give one int");
        if (!k.is_int() || k.as_int() <= 0)
          cfg.fail_key("num_prototypes", "expected an int > 0, got " + k.dump());
        int64_t total = 0;
        for (int64_t n : o.num_crops()) total += n;
        for (size_t i = 0; i < o.crops_for_assign().size(); ++i)
          if (o.crops_for_assign()[i] >= total)
            cfg["crops_for_assign"].at(i).fail("crop id " +
                                               std::to_string(o.crops_for_assign()[i]) +
                                               " is not below the number of crops (" +
                                               std::to_string(total) + ", sum of num_crops)");
        if (total < 2) cfg.fail_key("num_crops", "expected at least 2 crops in all");
      });
}

SwAVLoss::SwAVLoss(const SwAVLossOptions& options_) : options(options_) {
  prototypes_ = register_module(
      "prototypes", torch::nn::Linear(torch::nn::LinearOptions(options.feat_dim(),
                                                               options.num_prototypes().as_int())
                                          .bias(false)));
}

torch::Tensor SwAVLoss::forward(const torch::Tensor& pred, const torch::Tensor&) {
  const auto& o = options;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor w = prototypes_->weight.detach().clone();
    w = torch::nn::functional::normalize(w,
                                         torch::nn::functional::NormalizeFuncOptions().p(2).dim(1));
    prototypes_->weight.copy_(w);
  }
  int64_t num_crops = 0;
  for (int64_t n : o.num_crops()) num_crops += n;
  TORCH_CHECK(pred.dim() == 2 && pred.size(1) == o.feat_dim(), "SwAVLoss: expected embeddings [N, ",
              o.feat_dim(), "], got ", pred.sizes());
  TORCH_CHECK(pred.size(0) % num_crops == 0, "SwAVLoss: ", pred.size(0),
              " embeddings are not a multiple of the ", num_crops, " crops (num_crops)");
  const int64_t bs = pred.size(0) / num_crops;
  const torch::Tensor embedding = pred.detach();
  const torch::Tensor output = prototypes_(pred); // [num_crops * bs, K]
  const int64_t world = dist().world_size();

  torch::Tensor loss = torch::zeros({}, pred.options());
  for (size_t i = 0; i < o.crops_for_assign().size(); ++i) {
    const int64_t crop = o.crops_for_assign()[i];
    torch::Tensor q;
    {
      torch::NoGradGuard no_grad;
      torch::Tensor out = output.slice(0, bs * crop, bs * (crop + 1)).detach();
      if (queue.defined()) {
        TORCH_CHECK(queue.size(1) >= bs, "SwAVLoss: the queue (", queue.size(1),
                    " rows) is shorter than the batch (", bs, ")");
        torch::Tensor qi = queue[int64_t(i)];
        if (use_queue || !qi[-1].eq(0).all().item<bool>()) {
          use_queue = true;
          out = torch::cat({torch::mm(qi, prototypes_->weight.t()), out});
        }
        // Shift the queue down by bs rows and put this crop's embeddings on top.
        qi.slice(0, bs).copy_(qi.slice(0, 0, qi.size(0) - bs).clone());
        qi.slice(0, 0, bs).copy_(embedding.slice(0, crop * bs, (crop + 1) * bs));
      }
      q = distributed_sinkhorn(out, o.sinkhorn_iterations(), world, o.epsilon());
      q = q.slice(0, q.size(0) - bs);
    }
    torch::Tensor subloss = torch::zeros({}, pred.options());
    for (int64_t v = 0; v < num_crops; ++v) {
      if (v == crop) continue;
      const torch::Tensor x = output.slice(0, bs * v, bs * (v + 1)) / o.temperature();
      subloss = subloss - torch::mean(torch::sum(q * torch::log_softmax(x, 1), 1));
    }
    loss = loss + subloss / double(num_crops - 1);
  }
  return loss / double(o.crops_for_assign().size());
}

void SwAVLoss::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::swav::SwAVLoss(feat_dim=" << options.feat_dim()
         << ", num_prototypes=" << options.num_prototypes().as_int()
         << ", epsilon=" << options.epsilon() << ", temperature=" << options.temperature() << ")";
}

// ---- SwAVHead --------------------------------------------------------------------------

OptionTable<SwAVHeadOptions> SwAVHeadOptions::table() {
  using O = SwAVHeadOptions;
  return OptionTable<O>("The SwAV head: its loss (SwAVLoss) of the embeddings", O())
      .required("loss", &O::loss_, "loss config, e.g. {type: 'SwAVLoss', feat_dim: 128}")
      .component("loss");
}

SwAVHead::SwAVHead(std::shared_ptr<selfsup::Loss> loss)
    : loss_(register_module("loss", std::move(loss))) {}

torch::Tensor SwAVHead::loss(const std::vector<torch::Tensor>& inputs, const torch::Tensor&) {
  TORCH_CHECK(inputs.size() == 1, "SwAVHead: expected inputs {embeddings}, got ", inputs.size(),
              " tensors");
  return loss_->forward(inputs[0], torch::Tensor());
}

void SwAVHead::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::swav::SwAVHead";
}

// ---- SwAV ------------------------------------------------------------------------------

Schema SwAV::schema() {
  return BaseModel::base_schema(
      "SwAV: multi-crop swapped prediction of online cluster assignments (Sinkhorn-Knopp "
      "codes over learnable prototypes).");
}

SwAV::SwAV(const Config& cfg) : BaseModel(cfg) {
  if (!neck_) cfg.fail_key("neck", "SwAV needs a neck (SwAVNeck)");
  if (!head_) cfg.fail_key("head", "SwAV needs a head (SwAVHead with a SwAVLoss)");
}

torch::Tensor SwAV::embed(const std::vector<torch::Tensor>& inputs) {
  TORCH_CHECK(!inputs.empty(), "SwAV: expected at least one crop, got none");
  std::vector<torch::Tensor> maps;
  size_t start = 0;
  while (start < inputs.size()) {
    size_t end = start + 1;
    while (end < inputs.size() && inputs[end].size(-1) == inputs[start].size(-1)) ++end;
    const std::vector<torch::Tensor> group(inputs.begin() + int64_t(start),
                                           inputs.begin() + int64_t(end));
    maps.push_back(backbone_->forward(torch::cat(group))[0]);
    start = end;
  }
  return neck_->forward(maps)[0];
}

LossMap SwAV::loss(const std::vector<torch::Tensor>& inputs, const DataSamples&) {
  return {{"loss", head_->loss({embed(inputs)}, torch::Tensor())}};
}

SwAVLoss& SwAV::swav_loss() const {
  auto* head = dynamic_cast<SwAVHead*>(head_.get());
  SwAVLoss* loss = head ? head->swav_loss() : nullptr;
  if (!loss) throw ValueError("SwAV: the head is not a SwAVHead with a SwAVLoss");
  return *loss;
}

void SwAV::pretty_print(std::ostream& stream) const {
  stream << "selfsup::SwAV";
}

// ---- factories -------------------------------------------------------------------------

std::shared_ptr<selfsup::Neck> make_swav_neck(const Config& cfg) {
  return std::make_shared<SwAVNeck>(SwAVNeckOptions::table().parse(cfg));
}

std::shared_ptr<selfsup::Loss> make_swav_loss(const Config& cfg) {
  return std::make_shared<SwAVLoss>(SwAVLossOptions::table().parse(cfg));
}

std::shared_ptr<selfsup::Head> make_swav_head(const Config& cfg) {
  const auto o = SwAVHeadOptions::table().parse(cfg);
  return std::make_shared<SwAVHead>(selfsup::build<selfsup::Loss>(o.loss()));
}

} // namespace selfsup::plugins::swav
