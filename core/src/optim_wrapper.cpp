#include <selfsup/core/optim_wrapper.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include <ATen/autocast_mode.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/dist.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/optimizer.h>
#include <selfsup/registry.h>

namespace selfsup::core {

// ---- AutocastGuard --------------------------------------------------------------------

AutocastGuard::AutocastGuard(torch::Device device, torch::ScalarType dtype)
    : cuda_(device.is_cuda()) {
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    was_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    was_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(was_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(was_dtype_);
  }
}

// ---- Options --------------------------------------------------------------------------

OptionTable<ClipGradOptions> ClipGradOptions::table() {
  using O = ClipGradOptions;
  using namespace check;
  return OptionTable<O>("Gradient clipping (MMEngine's clip_grad)", O())
      .optional("type", &O::type, "'norm' (torch's clip_grad_norm_) or 'value' (clip_grad_value_)",
                one_of({"norm", "value"}))
      .optional("max_norm", &O::max_norm, "largest total gradient norm (type 'norm')", gt(0))
      .optional("norm_type", &O::norm_type, "the p of the p-norm (type 'norm')", gt(0))
      .optional("clip_value", &O::clip_value, "largest gradient magnitude (type 'value')", gt(0))
      .optional("error_if_nonfinite", &O::error_if_nonfinite,
                "torch's: a NaN or Inf total gradient norm stops the run (type 'norm')")
      .rule([](const O& o, const Config& c) {
        if (o.type == "value" && o.error_if_nonfinite)
          c.fail_key("error_if_nonfinite",
                     "only clip_grad of type 'norm' takes error_if_nonfinite");
        if (o.type == "norm" && !o.max_norm) c.fail_key("max_norm", "required key is missing");
        if (o.type == "norm" && o.clip_value)
          c.fail_key("clip_value", "only clip_grad of type 'value' takes a clip_value");
        if (o.type == "value" && !o.clip_value)
          c.fail_key("clip_value", "required key is missing (clip_grad of type 'value')");
        if (o.type == "value" && o.max_norm)
          c.fail_key("max_norm", "only clip_grad of type 'norm' takes a max_norm");
      });
}

OptionTable<ParamwiseOptions> ParamwiseOptions::table() {
  using O = ParamwiseOptions;
  using namespace check;
  return OptionTable<O>("Per-parameter rules (MMEngine's DefaultOptimWrapperConstructor)", O())
      .optional("custom_keys", &O::custom_keys,
                "name substring -> {lr_mult, decay_mult, and the optimizer's own keys}; the "
                "longest matching key wins")
      .optional("norm_decay_mult", &O::norm_decay_mult,
                "weight decay multiplier of normalisation layers' parameters", ge(0))
      .optional("bias_decay_mult", &O::bias_decay_mult,
                "weight decay multiplier of biases (but norm biases when norm_decay_mult is set)",
                ge(0))
      .optional("bias_lr_mult", &O::bias_lr_mult, "lr multiplier of biases but norm layers'", ge(0))
      .optional("dwconv_decay_mult", &O::dwconv_decay_mult,
                "weight decay multiplier of depth-wise convolutions (a Conv2d whose groups "
                "equal its in_channels, as MMEngine tests it), after the norm and bias rules",
                ge(0))
      .optional("flat_decay_mult", &O::flat_decay_mult,
                "weight decay multiplier of other one-dimensional parameters", ge(0))
      .optional("bypass_duplicate", &O::bypass_duplicate,
                "a parameter shared by two modules joins the first one's group only; false: "
                "such a parameter is an error (PyTorch refuses a parameter in two groups)");
}

OptionTable<OptimWrapperOptions> OptimWrapperOptions::table() {
  using O = OptimWrapperOptions;
  using namespace check;
  return OptionTable<O>("The optimizer and what wraps its step (MMEngine's optim wrappers)", O())
      .optional("type", &O::type, "OptimWrapper, or AmpOptimWrapper (bf16 autocast)",
                one_of({"OptimWrapper", "AmpOptimWrapper"}))
      .required("optimizer", &O::optimizer, "the optimizer: a registered type and its options")
      .component("optimizer")
      .optional("paramwise_cfg", &O::paramwise_cfg, "per-parameter lr and weight decay rules")
      .optional("clip_grad", &O::clip_grad, "gradient clipping before each step")
      .optional("accumulative_counts", &O::accumulative_counts,
                "iterations whose gradients add up before each step", ge(1))
      .optional("skip_nonfinite", &O::skip_nonfinite,
                "a NaN or Inf loss skips its step (no backward, no update, the gradients "
                "gathered so far dropped) and is counted (logged, 'nonfinite_skipped' in "
                "scalars.jsonl) instead of stopping the run")
      .optional("dtype", &O::dtype,
                "AmpOptimWrapper's autocast dtype: bfloat16 (the CPU's only one, its default) or "
                "float16 (CUDA's default)",
                one_of({"bfloat16", "float16"}))
      .optional("loss_scale", &O::loss_scale,
                "AmpOptimWrapper's loss scaler on CUDA (torch's GradScaler): \"dynamic\" (the "
                "default), a number > 0 (a static scale) or a dict of init_scale, "
                "growth_factor, backoff_factor, growth_interval, enabled; on the CPU none is "
                "applied (bfloat16 needs none) and the log says so once")
      .rule([](const O& o, const Config& c) {
        if (!o.loss_scale.is_null()) {
          if (o.type != "AmpOptimWrapper")
            c.fail_key("loss_scale", "only AmpOptimWrapper takes a loss_scale");
          (void)LossScaler::options_of(c["loss_scale"]);
        }
        if (o.dtype && o.type != "AmpOptimWrapper")
          c.fail_key("dtype", "only AmpOptimWrapper takes a dtype");
      });
}

// ---- OptimWrapper ---------------------------------------------------------------------

namespace {

bool is_norm_module(const std::string& module_name) {
  return module_name.find("BatchNorm") != std::string::npos ||
         module_name.find("GroupNorm") != std::string::npos ||
         module_name.find("LayerNorm") != std::string::npos ||
         module_name.find("InstanceNorm") != std::string::npos;
}

bool is_dwconv_module(const torch::nn::Module& module) {
  const auto* conv = module.as<torch::nn::Conv2d>();
  return conv && conv->options.groups() == conv->options.in_channels();
}

// One entry of paramwise_cfg.custom_keys: every key goes into the param group, as MMEngine's
// `param_group[k] = v` (lr and weight_decay given outright win over the multipliers).
struct CustomKey {
  std::string key;
  double lr_mult = 1.0;
  double decay_mult = 1.0;
  std::optional<double> lr, weight_decay;
  Config options; // the optimizer's other group keys it sets
};

std::vector<CustomKey> read_custom_keys(const Config& keys, const Schema& group_schema) {
  if (!keys.is_object()) keys.fail("expected a dict of name substring -> options");
  Schema schema =
      Schema("a custom key's options")
          .optional("lr_mult", ArgType::Float, CustomKey{}.lr_mult, "lr multiplier", {check::ge(0)})
          .optional("decay_mult", ArgType::Float, CustomKey{}.decay_mult, "weight decay multiplier",
                    {check::ge(0)})
          .optional("lr", ArgType::Float, Json(), "the group's lr (instead of lr * lr_mult)",
                    {check::ge(0)})
          .optional("weight_decay", ArgType::Float, Json(),
                    "the group's weight decay (instead of weight_decay * decay_mult)",
                    {check::ge(0)})
          .optional("fix_lr", ArgType::Bool, false,
                    "MMSelfSup's SimSiam mark: SimSiamHook holds the lr of the parameters "
                    "named '*predictor*' at its lr (only a key naming the predictor may set it)")
          .extend(group_schema);
  std::vector<CustomKey> out;
  for (const auto& key : keys.keys()) {
    const Config entry = keys[key];
    if (entry.has("type")) entry.fail_key("type", "unknown key (a custom key takes options only)");
    const Json filled = schema.apply(entry);
    Json options = Json::object();
    CustomKey rule;
    rule.key = key;
    for (const auto& k : filled.keys()) {
      const Json& v = *filled.find(k);
      if (k == "lr_mult") {
        rule.lr_mult = v.as_number();
      } else if (k == "decay_mult") {
        rule.decay_mult = v.as_number();
      } else if (k == "lr") {
        if (!v.is_null()) rule.lr = v.as_number();
      } else if (k == "weight_decay") {
        if (!v.is_null()) rule.weight_decay = v.as_number();
      } else if (k == "fix_lr") {
        // Read by SimSiamHook through the parameter names (RunnerContext::param_group_name).
        if (v.as_bool() && key.find("predictor") == std::string::npos)
          entry.fail_key("fix_lr", "SimSiamHook fixes the lr of the parameters named "
                                   "'*predictor*' only; put fix_lr under a key containing "
                                   "'predictor'");
      } else {
        options.set(k, v);
      }
    }
    rule.options = Config(options, entry.path());
    out.push_back(std::move(rule));
  }
  // MMEngine: the longest key wins, ties alphabetically.
  std::stable_sort(out.begin(), out.end(), [](const CustomKey& a, const CustomKey& b) {
    return a.key.size() != b.key.size() ? a.key.size() > b.key.size() : a.key < b.key;
  });
  return out;
}

} // namespace

OptimWrapper::OptimWrapper(const Config& cfg, torch::nn::Module& model,
                           std::optional<torch::Device> device)
    : options_(OptimWrapperOptions::table().parse(cfg)) {
  // Built from the caller's node, so a test's or an embedder's registry is honoured.
  const Config optimizer_cfg = cfg["optimizer"];
  factory_ = build<OptimizerFactory>(optimizer_cfg);
  optimizer_type_ = optimizer_cfg.get<std::string>("type");
  build_groups(model, cfg);
  if (!amp()) return;

  const bool cuda = device ? device->is_cuda() : params_.front().device().is_cuda();
  if (options_.dtype)
    cast_dtype_ = *options_.dtype == "float16" ? torch::kHalf : torch::kBFloat16;
  else
    cast_dtype_ = cuda ? torch::kHalf : torch::kBFloat16; // torch's autocast defaults
  if (!cuda) {
    if (cast_dtype_ == torch::kHalf)
      cfg.fail_key("dtype", "float16 autocast needs CUDA (--device cuda): LibTorch 1.13's CPU "
                            "autocast runs in bfloat16 only; use \"bfloat16\" on the CPU");
    // torch's GradScaler disables itself without CUDA; bfloat16 keeps float32's exponent
    // range and needs no scaling.
    if (!options_.loss_scale.is_null())
      std::cerr << "selfsup: " << cfg.path_of("loss_scale") << " " << options_.loss_scale.dump()
                << ": no loss scaling is applied on the CPU (bfloat16 autocast keeps float32's "
                   "exponent range and needs none)"
                << std::endl;
    return;
  }
  // On CUDA MMEngine always builds a GradScaler, whatever the dtype.
  const Config loss_scale = options_.loss_scale.is_null()
                                ? Config(Json("dynamic"), cfg.path_of("loss_scale"))
                                : cfg["loss_scale"];
  if (LossScaler::options_of(loss_scale).enabled) scaler_ = LossScaler::from_config(loss_scale);
}

OptimWrapper::~OptimWrapper() = default;

void OptimWrapper::build_groups(torch::nn::Module& model, const Config& cfg) {
  const ParamwiseOptions rules = options_.paramwise_cfg.value_or(ParamwiseOptions{});
  const std::string paramwise_path = cfg.path_of("paramwise_cfg");
  const std::vector<CustomKey> custom =
      options_.paramwise_cfg ? read_custom_keys(rules.custom_keys, factory_->group_schema())
                             : std::vector<CustomKey>{};
  const double base_lr = factory_->lr(), base_wd = factory_->weight_decay();

  // One group per parameter, in MMEngine's order (a module's own parameters, then its
  // children's). A module reached twice is visited once (as torch's named_modules); a
  // parameter registered by two modules joins the first one's group only, and without
  // bypass_duplicate it is an error when paramwise_cfg is given (MMEngine hands PyTorch both
  // groups, which refuses them). Without paramwise_cfg MMEngine passes model.parameters(),
  // which lists it once.
  std::vector<OptimizerGroup> groups;
  std::unordered_map<const void*, std::string> seen; // parameter -> its first name
  std::unordered_set<const void*> visited;           // modules
  bool trainable = false;
  // The model itself first (named_modules() can list it only when a shared_ptr holds it).
  std::vector<std::pair<std::string, const torch::nn::Module*>> modules{{"", &model}};
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    modules.emplace_back(item.key(), item.value().get());
  for (const auto& [prefix, module] : modules) {
    if (!visited.insert(module).second) continue;
    const bool norm = is_norm_module(module->name());
    const bool dwconv = is_dwconv_module(*module);
    for (const auto& p : module->named_parameters(/*recurse=*/false)) {
      const std::string pname = prefix.empty() ? p.key() : prefix + "." + p.key();
      if (auto [it, fresh] = seen.emplace(p.value().unsafeGetTensorImpl(), pname); !fresh) {
        if (options_.paramwise_cfg && !rules.bypass_duplicate)
          cfg.fail_key("paramwise_cfg", "parameter " + pname + " is " + it->second +
                                            " (one parameter registered by two modules), "
                                            "which PyTorch refuses in two param groups; set "
                                            "paramwise_cfg.bypass_duplicate: true to give it "
                                            "the first one's group only");
        continue;
      }
      trainable = trainable || p.value().requires_grad();
      const std::string& name = pname;
      const bool bias = p.key() == "bias";
      OptimizerGroup g;
      g.params = {p.value()};
      g.names = {name};
      g.lr = base_lr;
      g.weight_decay = base_wd;
      g.options = Config(Json::object(), paramwise_path);
      auto rule = std::find_if(custom.begin(), custom.end(), [&](const CustomKey& k) {
        return name.find(k.key) != std::string::npos;
      });
      if (!p.value().requires_grad()) {
        // MMEngine: such a parameter gets a plain group, no rule.
      } else if (rule != custom.end()) {
        g.lr = rule->lr.value_or(base_lr * rule->lr_mult);
        g.weight_decay = rule->weight_decay.value_or(base_wd * rule->decay_mult);
        g.options = rule->options;
      } else {
        if (bias && !norm && rules.bias_lr_mult) g.lr = base_lr * *rules.bias_lr_mult;
        if (norm && rules.norm_decay_mult) {
          g.weight_decay = base_wd * *rules.norm_decay_mult;
        } else if (bias && rules.bias_decay_mult) {
          g.weight_decay = base_wd * *rules.bias_decay_mult;
        } else if (dwconv && rules.dwconv_decay_mult) {
          g.weight_decay = base_wd * *rules.dwconv_decay_mult;
        } else if (p.value().dim() == 1 && rules.flat_decay_mult) {
          g.weight_decay = base_wd * *rules.flat_decay_mult;
        }
      }
      names_.push_back(name);
      initial_lrs_.push_back(g.lr);
      params_.push_back(p.value());
      groups.push_back(std::move(g));
    }
  }
  if (!trainable) cfg.fail("the model has no trainable parameters (none requires a gradient)");
  try {
    optimizer_ = factory_->make(std::move(groups));
  } catch (const c10::Error& e) {
    cfg.fail_key("optimizer",
                 "the " + optimizer_type_ +
                     " optimizer refused its parameter groups: " + e.what_without_backtrace());
  }
  if (!optimizer_ || optimizer_->param_groups().size() != names_.size())
    cfg.fail_key("optimizer", "the " + optimizer_type_ +
                                  " optimizer did not make one group per "
                                  "parameter group it was given");
}

std::unique_ptr<AutocastGuard> OptimWrapper::autocast(torch::Device device) const {
  if (!amp()) return nullptr;
  if (!device.is_cuda() && cast_dtype_ != torch::kBFloat16)
    throw ValueError("optim_wrapper.dtype: float16 autocast on the CPU (this wrapper was built "
                     "for CUDA); LibTorch 1.13's CPU autocast runs in bfloat16 only");
  return std::make_unique<AutocastGuard>(device, cast_dtype_);
}

bool OptimWrapper::update_params(const torch::Tensor& loss, int64_t iter, int64_t max_iters,
                                 std::vector<std::pair<std::string, double>>& scalars) {
  // Accumulation as MMEngine: a step every `accumulative_counts` iterations of the whole run
  // and at its end; the last, shorter window is divided by its own length.
  const int64_t counts = options_.accumulative_counts;
  const int64_t tail = max_iters % counts;
  const int64_t window = (tail != 0 && iter >= max_iters - tail) ? tail : counts;
  torch::Tensor scaled = window > 1 ? loss / double(window) : loss;
  if (scaler_) scaled = scaler_->scale_loss(scaled); // the scale holds for the whole window
  scaled.backward();
  if ((iter + 1) % counts != 0 && iter + 1 != max_iters) return false;

  sync_gradients();
  // Unscaled after the sync (the mean of scaled gradients is the scaled mean), before
  // clipping, which sees the true gradients. An Inf or NaN on any rank reached every rank
  // through the sync, so all skip together and keep the same scale.
  if (scaler_) {
    const bool found_inf = scaler_->unscale(params_);
    if (found_inf) {
      scaler_->update(true);
      scalars.emplace_back("loss_scale", scaler_->scale());
      zero_grad();
      return false;
    }
  }
  if (options_.clip_grad) {
    const ClipGradOptions& clip = *options_.clip_grad;
    if (clip.type == "norm") {
      const double norm =
          torch::nn::utils::clip_grad_norm_(params_, *clip.max_norm, clip.norm_type);
      if (clip.error_if_nonfinite && !std::isfinite(norm))
        throw ValueError("optim_wrapper.clip_grad: the total norm of order " +
                         std::to_string(clip.norm_type) + " of the gradients is " +
                         std::to_string(norm) +
                         " (error_if_nonfinite: true); set it to false to clip anyway");
      scalars.emplace_back("grad_norm", norm);
    } else {
      torch::nn::utils::clip_grad_value_(params_, *clip.clip_value);
    }
  }
  optimizer_->step();
  if (scaler_) {
    scaler_->update(false);
    scalars.emplace_back("loss_scale", scaler_->scale());
  }
  zero_grad();
  return true;
}

void OptimWrapper::sync_gradients() {
  Distributed& d = dist();
  const int world = d.world_size();
  if (world <= 1) return;
  torch::NoGradGuard no_grad;
  // As DDP: a parameter that has a gradient on some rank gets the mean over all ranks (zero
  // where a rank has none); one that no rank has a gradient for stays without.
  const torch::Device device = params_.front().device();
  std::vector<float> local(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) local[i] = params_[i].grad().defined() ? 1.f : 0.f;
  torch::Tensor any = torch::tensor(local).to(device);
  d.all_reduce(any, ReduceOp::Sum);
  any = any.cpu();
  const auto has = any.accessor<float, 1>();

  // One all-reduce per (device, dtype) over the flattened gradients.
  std::map<std::pair<std::string, int>, std::vector<torch::Tensor>> buckets;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (has[int64_t(i)] == 0.f) continue;
    torch::Tensor& p = params_[i];
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    const torch::Tensor& g = p.grad();
    buckets[{g.device().str(), int(g.scalar_type())}].push_back(g);
  }
  for (auto& [key, grads] : buckets) {
    std::vector<torch::Tensor> flat_parts;
    flat_parts.reserve(grads.size());
    for (const auto& g : grads) flat_parts.push_back(g.reshape(-1));
    torch::Tensor flat = torch::cat(flat_parts);
    d.all_reduce(flat, ReduceOp::Sum);
    flat.div_(double(world));
    int64_t offset = 0;
    for (auto& g : grads) {
      const int64_t n = g.numel();
      g.copy_(flat.narrow(0, offset, n).view(g.sizes()));
      offset += n;
    }
  }
}

void OptimWrapper::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) p.mutable_grad().reset();
}

double OptimWrapper::lr(size_t group) const {
  return optimizer_->param_groups().at(group).options().get_lr();
}

void OptimWrapper::set_lr(size_t group, double lr) {
  optimizer_->param_groups().at(group).options().set_lr(lr);
}

c10::IValue OptimWrapper::state_dict() const {
  c10::impl::GenericDict state = optimizer_state_dict(*optimizer_);
  auto groups = state.at("param_groups").toList();
  for (size_t i = 0; i < groups.size(); ++i)
    groups.get(i).toGenericDict().insert_or_assign("initial_lr", initial_lrs_[i]);
  if (scaler_) state.insert_or_assign("loss_scaler", scaler_->state_dict());
  return state;
}

void OptimWrapper::load_state_dict(const c10::IValue& state) {
  const std::string source = "optimizer state (" + optimizer_type_ + ")";
  // "initial_lr" is the schedulers' key in a group, not the optimizer's: take it out first.
  c10::IValue stripped = state;
  // MMEngine's AmpOptimWrapper keeps the scaler's state beside the optimizer's. Read into a
  // copy, so that nothing changes unless everything loads.
  std::optional<LossScaler> scaler = scaler_;
  if (state.isGenericDict() && state.toGenericDict().contains("loss_scaler")) {
    c10::impl::GenericDict top = state.toGenericDict().copy();
    if (scaler) scaler->load_state_dict(top.at("loss_scaler"), source + ": loss_scaler");
    (void)top.erase("loss_scaler");
    stripped = top;
  }
  std::vector<std::optional<double>> initial(num_groups());
  if (stripped.isGenericDict() && stripped.toGenericDict().contains("param_groups") &&
      stripped.toGenericDict().at("param_groups").isList()) {
    c10::impl::GenericDict top = stripped.toGenericDict().copy();
    c10::impl::GenericList groups(c10::AnyType::get());
    const auto saved = top.at("param_groups").toList();
    for (size_t i = 0; i < saved.size(); ++i) {
      c10::IValue g = saved.get(i);
      if (g.isGenericDict() && g.toGenericDict().contains("initial_lr")) {
        c10::impl::GenericDict copy = g.toGenericDict().copy();
        const c10::IValue v = copy.at("initial_lr");
        if (!v.isDouble())
          throw ValueError(source + ": param_groups[" + std::to_string(i) +
                           "].initial_lr is not a float");
        if (i < initial.size()) initial[i] = v.toDouble();
        (void)copy.erase("initial_lr"); // the count: 1, checked above
        g = copy;
      }
      groups.push_back(g);
    }
    top.insert_or_assign("param_groups", groups);
    stripped = top;
  }
  load_optimizer_state_dict(*optimizer_, stripped, source);
  for (size_t i = 0; i < initial.size(); ++i)
    if (initial[i]) initial_lrs_[i] = *initial[i];
  scaler_ = scaler;
}

std::string enable_amp(Json& cfg) {
  Json* wrapper = cfg.find("optim_wrapper");
  if (!wrapper || !wrapper->is_object())
    throw ConfigError("optim_wrapper: --amp needs an optim_wrapper dict (OptimWrapper or "
                      "AmpOptimWrapper), got " +
                      (wrapper ? wrapper->dump() : std::string("none")));
  const Json* type = wrapper->find("type");
  const std::string name = type && type->is_string() ? type->as_string() : "OptimWrapper";
  if (type && !type->is_string())
    throw ConfigError("optim_wrapper.type: expected a string, got " + type->dump());
  if (name != "OptimWrapper" && name != "AmpOptimWrapper")
    throw ConfigError("optim_wrapper.type: --amp turns an OptimWrapper into an "
                      "AmpOptimWrapper, got '" +
                      name + "'");
  if (!wrapper->find("loss_scale")) wrapper->set("loss_scale", "dynamic");
  if (name == "AmpOptimWrapper")
    return "--amp: optim_wrapper.type is already AmpOptimWrapper (mixed precision on)";
  wrapper->set("type", "AmpOptimWrapper");
  return "";
}

} // namespace selfsup::core
