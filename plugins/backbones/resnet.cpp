#include "resnet.h"

#include <algorithm>
#include <sstream>

#include <torch/torch.h>

#include <selfsup/errors.h>

#include "fast_norm.h"

namespace selfsup::plugins::backbones {

namespace {

struct Arch {
  int64_t depth;
  bool bottleneck;
  std::vector<int64_t> blocks;
};

const std::vector<Arch>& archs() {
  static const std::vector<Arch> kArchs{{18, false, {2, 2, 2, 2}},
                                        {34, false, {3, 4, 6, 3}},
                                        {50, true, {3, 4, 6, 3}},
                                        {101, true, {3, 4, 23, 3}},
                                        {152, true, {3, 8, 36, 3}}};
  return kArchs;
}

const Arch* find_arch(int64_t depth) {
  for (const auto& a : archs())
    if (a.depth == depth) return &a;
  return nullptr;
}

std::string join(const std::vector<int64_t>& v) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

} // namespace

// ---- options ---------------------------------------------------------------------------

OptionTable<ResNetOptions> ResNetOptions::table(const std::string& default_stem,
                                                const std::string& scope) {
  using O = ResNetOptions;
  using namespace selfsup::check;
  const bool cifar = default_stem == "cifar";
  const bool mmcls = scope == "mmcls";
  O prototype;
  prototype.stem(default_stem);
  prototype.scope(scope);
  if (mmcls) {
    prototype.out_indices({3});
    prototype.zero_init_residual(true);
  }
  std::string doc = cifar ? "ResNet with a CIFAR stem (3x3 stride-1 conv, no max-pool), as "
                            "mmcls ResNet_CIFAR; torchvision parameter names"
                          : "ResNet, 'pytorch' style, torchvision parameter names (conv1, bn1, "
                            "layer1.0.conv1, ...; no fc)";
  doc += mmcls ? "; mmcls 1.0 semantics (out_indices 0..3 = stages, zero_init_residual true)"
               : "; MMSelfSup semantics (out_indices 0 = stem, 1..4 = stages)";
  const std::string indices_doc =
      mmcls ? "outputs, in ascending order: 0..num_stages-1 = stage outputs (mmcls)"
            : "outputs, in ascending order: 0 = stem (after ReLU, before max-pool), "
              "1..num_stages = stage outputs (MMSelfSup)";
  return OptionTable<O>(doc, prototype)
      .required("depth", &O::depth_, "18 or 34 (BasicBlock), 50, 101 or 152 (Bottleneck)",
                one_of({18, 34, 50, 101, 152}))
      .optional("in_channels", &O::in_channels_, "channels of the input image", gt(0))
      .optional("stem_channels", &O::stem_channels_, "output channels of the stem conv", gt(0))
      .optional("base_channels", &O::base_channels_,
                "width of stage 1; stage i has base*2^(i-1) (x4 for Bottleneck)", gt(0))
      .optional("num_stages", &O::num_stages_, "number of residual stages", in(1, 4))
      .optional("strides", &O::strides_,
                "stride of each stage (default [1, 2, 2, 2], first num_stages)", each(ge(1)))
      .optional("dilations", &O::dilations_,
                "dilation of each stage (default [1, 1, 1, 1], first num_stages)", each(ge(1)))
      .optional("out_indices", &O::out_indices_, indices_doc, non_empty())
      .optional("stem", &O::stem_,
                "'imagenet' (7x7/2 conv + 3x3/2 max-pool) or 'cifar' (3x3/1 conv, no max-pool)",
                one_of({"imagenet", "cifar"}))
      .optional("style", &O::style_, "'pytorch' only (stride on the 3x3 conv of a Bottleneck)",
                one_of({"pytorch"}))
      .optional("frozen_stages", &O::frozen_stages_,
                "-1: none; >= 0 freezes the stem, n also stages 1..n (no grad, BN in eval)", ge(-1))
      .optional("norm_eval", &O::norm_eval_, "keep every BatchNorm in eval mode during training")
      .optional("zero_init_residual", &O::zero_init_residual_,
                "zero-init the last BN weight of each residual block")
      .optional("norm_cfg", &O::norm_cfg_, "norm layer (SyncBN acts as BN on one process)")
      .rule([mmcls](const O& o, const Config& cfg) {
        const auto n = static_cast<size_t>(o.num_stages());
        for (const char* key : {"strides", "dilations"}) {
          const auto& v = std::string(key) == "strides" ? o.strides() : o.dilations();
          if (v && v->size() != n)
            cfg.fail_key(key, "expected " + std::to_string(n) +
                                  " values (one per stage, num_stages = " + std::to_string(n) +
                                  "), got " + join(*v));
        }
        const int64_t last = mmcls ? o.num_stages() - 1 : o.num_stages();
        for (auto i : o.out_indices())
          if (i < 0 || i > last)
            cfg.fail_key("out_indices",
                         "index " + std::to_string(i) + " is out of range [0, " +
                             std::to_string(last) + "] (" +
                             (mmcls ? "mmcls: 0.." + std::to_string(last) + " = stages"
                                    : "0 = stem, 1.." + std::to_string(n) + " = stages") +
                             "), got " + join(o.out_indices()));
        auto sorted = o.out_indices();
        std::sort(sorted.begin(), sorted.end());
        if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
          cfg.fail_key("out_indices", "duplicate index in " + join(o.out_indices()));
        if (o.frozen_stages() > o.num_stages())
          cfg.fail_key("frozen_stages", "expected an int in [-1, " + std::to_string(n) +
                                            "] (num_stages), got " +
                                            std::to_string(o.frozen_stages()));
      });
}

// ---- module ----------------------------------------------------------------------------

ResNet::ResNet(const ResNetOptions& options_) : options(options_) {
  reset();
}

void ResNet::reset() {
  const Arch* arch = find_arch(options.depth());
  if (!arch) throw ValueError("ResNet: unsupported depth " + std::to_string(options.depth()));
  bottleneck_ = arch->bottleneck;
  const int64_t expansion = bottleneck_ ? Bottleneck::kExpansion : BasicBlock::kExpansion;
  const int64_t stem = options.stem_channels();
  const auto n = static_cast<size_t>(options.num_stages());
  const auto strides = options.strides().value_or(
      std::vector<int64_t>(std::begin(ResNetOptions::kStrides), std::end(ResNetOptions::kStrides)));
  const auto dilations = options.dilations().value_or(std::vector<int64_t>(
      std::begin(ResNetOptions::kDilations), std::end(ResNetOptions::kDilations)));
  TORCH_CHECK(n >= 1 && n <= 4 && strides.size() >= n && dilations.size() >= n,
              "ResNet: num_stages must be in [1, 4] with one stride and dilation per stage");

  // Registration order = torchvision's state_dict order: conv1, bn1, layer1..layer4.
  const bool cifar = options.stem() == "cifar";
  conv1_ = register_module("conv1", cifar ? make_conv(options.in_channels(), stem, 3, 1)
                                          : make_conv(options.in_channels(), stem, 7, 2));
  bn1_ = register_module("bn1", options.norm_cfg().make_2d(stem));

  layers_.clear();
  std::vector<int64_t> stage_channels;
  int64_t inplanes = stem;
  for (size_t i = 0; i < n; ++i) {
    const int64_t planes = options.base_channels() << i;
    layers_.push_back(register_module("layer" + std::to_string(i + 1),
                                      ResLayer(bottleneck_, inplanes, planes, arch->blocks[i],
                                               strides[i], dilations[i], options.norm_cfg())));
    inplanes = planes * expansion;
    stage_channels.push_back(inplanes);
  }

  if (options.zero_init_residual()) {
    torch::NoGradGuard no_grad;
    for (const auto& layer : layers_)
      for (const auto& block : layer->blocks()) {
        block->last_norm()->weight.zero_();
        block->last_norm()->bias.zero_();
      }
  }

  // Internally 0 = stem and i = stage i; mmcls counts stages from 0.
  const bool mmcls = options.scope() == "mmcls";
  out_indices_.clear();
  for (auto idx : options.out_indices()) out_indices_.push_back(mmcls ? idx + 1 : idx);
  std::sort(out_indices_.begin(), out_indices_.end());
  out_indices_.erase(std::unique(out_indices_.begin(), out_indices_.end()), out_indices_.end());
  out_channels_.clear();
  for (auto idx : out_indices_) {
    TORCH_CHECK(idx >= (mmcls ? 1 : 0) && idx <= options.num_stages(), "ResNet: out index ",
                mmcls ? idx - 1 : idx, " is out of range for ", options.num_stages(),
                " stages (scope ", options.scope(), ")");
    out_channels_.push_back(idx == 0 ? stem : stage_channels[idx - 1]);
  }

  freeze_stages();
}

void ResNet::freeze_stages() {
  if (options.frozen_stages() < 0) return;
  std::vector<torch::nn::Module*> frozen{conv1_.get(), bn1_.get()};
  for (int64_t i = 0; i < options.frozen_stages() && i < int64_t(layers_.size()); ++i)
    frozen.push_back(layers_[i].get());
  for (auto* m : frozen) {
    m->eval();
    for (auto& p : m->parameters()) p.set_requires_grad(false);
  }
}

void ResNet::train(bool on) {
  torch::nn::Module::train(on);
  freeze_stages();
  if (on && options.norm_eval())
    for (const auto& m : modules(/*include_self=*/false))
      if (auto* bn = m->as<torch::nn::BatchNorm2d>()) bn->eval();
}

std::vector<torch::Tensor> ResNet::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.in_channels(), "ResNet: expected input [N, ",
              options.in_channels(), ", H, W], got ", x.sizes());
  std::vector<torch::Tensor> outs;
  auto wanted = [&](int64_t i) {
    return std::binary_search(out_indices_.begin(), out_indices_.end(), i);
  };
  torch::Tensor h = batch_norm_act(bn1_, conv1_(x), {}, /*relu=*/true);
  if (wanted(0)) outs.push_back(h);
  if (options.stem() != "cifar")
    h = torch::max_pool2d(h, /*kernel_size=*/{3, 3}, /*stride=*/{2, 2}, /*padding=*/{1, 1});
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->forward(h);
    if (wanted(int64_t(i) + 1)) outs.push_back(h);
  }
  return outs;
}

void ResNet::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::backbones::ResNet(depth=" << options.depth()
         << ", block=" << (bottleneck_ ? "Bottleneck" : "BasicBlock") << ", stem=" << options.stem()
         << ", in_channels=" << options.in_channels()
         << ", base_channels=" << options.base_channels() << ", num_stages=" << options.num_stages()
         << ", stem_channels=" << options.stem_channels() << ", scope=" << options.scope()
         << ", out_indices=" << join(options.out_indices())
         << ", out_channels=" << join(out_channels_) << ", norm=" << options.norm_cfg().type;
  if (options.frozen_stages() >= 0) stream << ", frozen_stages=" << options.frozen_stages();
  if (options.norm_eval()) stream << ", norm_eval=true";
  if (options.zero_init_residual()) stream << ", zero_init_residual=true";
  stream << ")";
}

// ---- registration ----------------------------------------------------------------------

std::shared_ptr<selfsup::Backbone> make_resnet(const Config& cfg) {
  return std::make_shared<ResNet>(ResNetOptions::table("imagenet").parse(cfg));
}

std::shared_ptr<selfsup::Backbone> make_resnet_cifar(const Config& cfg) {
  return std::make_shared<ResNet>(ResNetOptions::table("cifar").parse(cfg));
}

std::shared_ptr<selfsup::Backbone> make_mmcls_resnet(const Config& cfg) {
  return std::make_shared<ResNet>(ResNetOptions::table("imagenet", "mmcls").parse(cfg));
}

std::shared_ptr<selfsup::Backbone> make_mmcls_resnet_cifar(const Config& cfg) {
  return std::make_shared<ResNet>(ResNetOptions::table("cifar", "mmcls").parse(cfg));
}

} // namespace selfsup::plugins::backbones
