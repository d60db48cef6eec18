#include <selfsup/core/runner.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/data.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/registry.h>
#include <selfsup/version.h>

#include "logging.h"

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {
std::atomic<bool> g_stop{false};

void check_keys(const Config& cfg, const std::vector<std::string>& allowed) {
  for (const auto& k : cfg.keys())
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      cfg.fail_key(k, "unknown key (accepted: " + list + ")");
    }
}

void expect_type(const Config& cfg, const std::vector<std::string>& types) {
  if (!cfg.has("type")) cfg.fail_key("type", "required key is missing");
  auto t = cfg.get<std::string>("type");
  if (std::find(types.begin(), types.end(), t) == types.end()) {
    std::string list;
    for (const auto& a : types) list += (list.empty() ? "" : ", ") + a;
    cfg.fail_key("type", "expected one of " + list + ", got '" + t + "'");
  }
}

bool is_norm_module(const std::string& module_name) {
  return module_name.find("BatchNorm") != std::string::npos ||
         module_name.find("GroupNorm") != std::string::npos ||
         module_name.find("LayerNorm") != std::string::npos ||
         module_name.find("InstanceNorm") != std::string::npos;
}
// bf16 autocast on the model's device for the forward pass; restores the previous state.
class AutocastScope {
public:
  AutocastScope(bool enabled, torch::Device device) : enabled_(enabled), cuda_(device.is_cuda()) {
    if (!enabled_) return;
    if (cuda_) {
      was_on_ = at::autocast::is_enabled();
      was_dtype_ = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
      at::autocast::set_enabled(true);
    } else {
      was_on_ = at::autocast::is_cpu_enabled();
      was_dtype_ = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      at::autocast::set_cpu_enabled(true);
    }
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    if (cuda_) {
      at::autocast::set_enabled(was_on_);
      at::autocast::set_autocast_gpu_dtype(was_dtype_);
    } else {
      at::autocast::set_cpu_enabled(was_on_);
      at::autocast::set_autocast_cpu_dtype(was_dtype_);
    }
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

private:
  bool enabled_, cuda_, was_on_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

} // namespace

void request_stop() {
  g_stop.store(true);
}
bool stop_requested() {
  return g_stop.load();
}
void clear_stop_request() {
  g_stop.store(false);
}

Interrupted::Interrupted(const std::string& what) : Error(what) {}
Interrupted::~Interrupted() = default;

const std::vector<std::string>& runner_config_keys() {
  static const std::vector<std::string> keys{
      "model",         "train_dataloader", "train_cfg",  "optim_wrapper", "param_scheduler",
      "default_hooks", "custom_hooks",     "randomness", "work_dir",      "resume",
      "load_from",     "plugins",          "env_cfg"};
  return keys;
}

Runner::Runner(Json cfg_json, TrainOptions options)
    : cfg_(std::move(cfg_json)), options_(std::move(options)) {
  const Config cfg(cfg_);
  check_keys(cfg, runner_config_keys());

  // Work dir.
  work_dir_ = !options_.work_dir.empty() ? options_.work_dir
              : cfg.has("work_dir")      ? cfg.get<std::string>("work_dir")
                                         : "work_dirs/" + options_.config_name;

  // Resume: read the checkpoint first, its seed wins.
  std::optional<Checkpoint> resume_ckpt;
  std::string resume = options_.resume;
  if (resume.empty() && cfg.has("resume")) {
    const Config r = cfg["resume"];
    if (r.json().is_bool()) {
      if (r.as<bool>()) resume = "auto";
    } else {
      resume = r.as<std::string>();
    }
  }
  if (resume == "auto") {
    resume = latest_checkpoint();
    if (resume.empty()) log("resume=auto: no checkpoint in " + work_dir_ + ", starting afresh");
  }
  if (!resume.empty()) resume_ckpt = load_checkpoint(resume);

  // Randomness.
  if (cfg.has("randomness")) {
    const Config r = cfg["randomness"];
    check_keys(r, {"seed", "deterministic", "diff_rank_seed"});
    if (r.has("seed")) seed_ = uint64_t(r.get<int64_t>("seed"));
    // Type-checked only: CPU kernels here are deterministic, and there is one rank.
    (void)r.get<bool>("deterministic", false);
    (void)r.get<bool>("diff_rank_seed", false);
  }
  if (options_.seed) seed_ = *options_.seed;
  auto meta_int = [&](const char* key) {
    const Json* v = resume_ckpt->meta.find(key);
    if (!v || !v->is_int())
      throw ValueError(resume + ": not a selfsup training checkpoint (meta has no integer '" + key +
                       "')");
    return v->as_int();
  };
  if (resume_ckpt) {
    const auto saved = uint64_t(meta_int("seed"));
    if (options_.seed && *options_.seed != saved)
      log("--seed " + std::to_string(*options_.seed) + " ignored: a resumed run keeps its seed " +
          std::to_string(saved));
    seed_ = saved;
  }

  // Environment.
  if (cfg.has("env_cfg")) {
    const Config env = cfg["env_cfg"];
    check_keys(env, {"channels_last"});
    channels_last_ = env.get<bool>("channels_last", false);
  }

  // Device and threads.
  if (options_.device == "cuda") {
    if (!torch::cuda::is_available())
      throw ConfigError("--device cuda: CUDA is not available in this LibTorch build or machine");
    device_ = torch::Device(torch::kCUDA);
  } else if (options_.device != "cpu") {
    throw ConfigError("--device: expected cpu or cuda, got '" + options_.device + "'");
  }
  int threads = options_.threads > 0 ? options_.threads : int(std::thread::hardware_concurrency());
  torch::set_num_threads(std::max(1, threads));

  // Schedule.
  if (!cfg.has("train_cfg")) throw ConfigError("train_cfg: required key is missing");
  const Config tc = cfg["train_cfg"];
  check_keys(tc, {"type", "max_epochs"});
  expect_type(tc, {"EpochBasedTrainLoop"});
  max_epochs_ = tc.get<int64_t>("max_epochs");
  if (max_epochs_ <= 0) tc.fail_key("max_epochs", "expected > 0");

  // Model, data.
  torch::manual_seed(seed_);
  if (!cfg.has("model")) throw ConfigError("model: required key is missing");
  model_ = build<Algorithm>(cfg["model"]);
  model_->to(device_);
  if (channels_last_) {
    // NHWC weights and inputs let oneDNN skip layout reorders (1.2-1.3x on a ResNet step).
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
  if (!cfg.has("train_dataloader")) throw ConfigError("train_dataloader: required key is missing");
  loader_ = DataLoader::from_config(cfg["train_dataloader"], seed_);
  if (loader_->num_batches() == 0)
    throw ConfigError("train_dataloader: the dataset yields no batch (size " +
                      std::to_string(loader_->dataset().size()) + ", batch_size " +
                      std::to_string(loader_->options().batch_size) + ", drop_last)");

  if (!cfg.has("optim_wrapper")) throw ConfigError("optim_wrapper: required key is missing");
  build_optimizer(cfg["optim_wrapper"]);

  if (cfg.has("param_scheduler")) {
    const Config ps = cfg["param_scheduler"];
    if (ps.is_array()) {
      for (size_t i = 0; i < ps.size(); ++i) schedulers_.push_back(build<ParamScheduler>(ps.at(i)));
    } else {
      schedulers_.push_back(build<ParamScheduler>(ps));
    }
    for (auto& s : schedulers_) s->bind(iters_per_epoch(), max_epochs_);
  }

  // Hooks.
  int64_t log_interval = 50;
  if (cfg.has("default_hooks")) {
    const Config dh = cfg["default_hooks"];
    check_keys(dh, {"runtime_info", "timer", "logger", "param_scheduler", "checkpoint",
                    "sampler_seed", "visualization"});
    // Behaviours the runner always has; their entries are checked, not configurable.
    const std::vector<std::pair<std::string, std::string>> fixed{
        {"runtime_info", "RuntimeInfoHook"},
        {"timer", "IterTimerHook"},
        {"param_scheduler", "ParamSchedulerHook"},
        {"sampler_seed", "DistSamplerSeedHook"},
        {"visualization", "VisualizationHook"}};
    for (const auto& [key, type] : fixed) {
      if (!dh.has(key)) continue;
      check_keys(dh[key], {"type"});
      expect_type(dh[key], {type});
    }
    if (dh.has("logger")) {
      const Config lg = dh["logger"];
      check_keys(lg, {"type", "interval"});
      expect_type(lg, {"LoggerHook"});
      log_interval = lg.get<int64_t>("interval", 50);
      if (log_interval <= 0) lg.fail_key("interval", "expected > 0");
    }
    if (dh.has("checkpoint")) hooks_.push_back(build<Hook>(dh["checkpoint"]));
  }
  if (cfg.has("custom_hooks")) {
    const Config ch = cfg["custom_hooks"];
    if (!ch.is_array()) ch.fail("expected a list of hook dicts");
    for (size_t i = 0; i < ch.size(); ++i) hooks_.push_back(build<Hook>(ch.at(i)));
  }
  std::stable_sort(hooks_.begin(), hooks_.end(),
                   [](const auto& a, const auto& b) { return a->priority() < b->priority(); });

  if (cfg.has("load_from")) {
    const std::string from = cfg.get<std::string>("load_from");
    Checkpoint c = load_checkpoint(from);
    load_module_state(*model_, c.state_dict, "load_from " + from);
  }

  fs::create_directories(work_dir_);
  logger_ = std::make_unique<ProgressLogger>(isatty(STDERR_FILENO) != 0, log_interval,
                                             (fs::path(work_dir_) / "scalars.jsonl").string());

  if (resume_ckpt) {
    load_module_state(*model_, resume_ckpt->state_dict, "checkpoint " + resume);
    optimizer_->load_state_dict(resume_ckpt->optimizer);
    if (auto it = resume_ckpt->rng.find("torch_cpu"); it != resume_ckpt->rng.end()) {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(it->second);
    }
    epoch_ = meta_int("epoch");
    iter_ = meta_int("iter");
    skip_batches_ = iter_ - epoch_ * iters_per_epoch();
    if (skip_batches_ < 0 || skip_batches_ > iters_per_epoch())
      throw ValueError(resume +
                       ": its iteration count does not fit this config's data "
                       "(iter " +
                       std::to_string(iter_) + ", epoch " + std::to_string(epoch_) + ")");
    log("Resumed from " + resume + " at epoch " + std::to_string(epoch_) + ", iter " +
        std::to_string(iter_));
  }
}

Runner::~Runner() = default;

int64_t Runner::iters_per_epoch() const {
  return loader_ ? loader_->num_batches() : 0;
}

void Runner::build_optimizer(const Config& ow) {
  check_keys(ow,
             {"type", "optimizer", "paramwise_cfg", "clip_grad", "accumulative_counts", "dtype"});
  expect_type(ow, {"OptimWrapper", "AmpOptimWrapper"});
  const bool amp = ow.get<std::string>("type") == "AmpOptimWrapper";
  if (ow.has("dtype")) {
    if (!amp) ow.fail_key("dtype", "only AmpOptimWrapper takes a dtype");
    auto dt = ow.get<std::string>("dtype");
    if (dt != "bfloat16")
      ow.fail_key("dtype", "expected 'bfloat16', got '" + dt +
                               "' (float16 needs a loss scaler, which LibTorch's C++ API lacks)");
  }
  amp_bf16_ = amp;
  accumulate_ = ow.get<int64_t>("accumulative_counts", 1);
  if (accumulate_ < 1) ow.fail_key("accumulative_counts", "expected >= 1");
  if (ow.has("clip_grad")) {
    const Config cg = ow["clip_grad"];
    check_keys(cg, {"max_norm", "norm_type"});
    clip_max_norm_ = cg.get<double>("max_norm");
    if (cg.get<double>("norm_type", 2.0) != 2.0) cg.fail_key("norm_type", "only 2 is supported");
    if (clip_max_norm_ <= 0) cg.fail_key("max_norm", "expected > 0");
  }
  if (!ow.has("optimizer")) ow.fail_key("optimizer", "required key is missing");
  optimizer_ = build<Optimizer>(ow["optimizer"]);

  struct KeyRule {
    std::string key;
    double lr_mult = 1, decay_mult = 1;
    bool lars_exclude = false;
  };
  std::vector<KeyRule> rules;
  std::optional<double> norm_decay_mult, bias_decay_mult; // applied only when set
  if (ow.has("paramwise_cfg")) {
    const Config pc = ow["paramwise_cfg"];
    check_keys(pc, {"custom_keys", "norm_decay_mult", "bias_decay_mult"});
    if (pc.has("norm_decay_mult")) norm_decay_mult = pc.get<double>("norm_decay_mult");
    if (pc.has("bias_decay_mult")) bias_decay_mult = pc.get<double>("bias_decay_mult");
    if (pc.has("custom_keys")) {
      const Config ck = pc["custom_keys"];
      if (!ck.is_object()) ck.fail("expected a dict of name substring -> options");
      for (const auto& key : ck.keys()) {
        const Config o = ck[key];
        check_keys(o, {"lr_mult", "decay_mult", "lars_exclude"});
        rules.push_back({key, o.get<double>("lr_mult", 1.0), o.get<double>("decay_mult", 1.0),
                         o.get<bool>("lars_exclude", false)});
      }
      // MMEngine: the longest matching key wins (ties: alphabetical).
      std::stable_sort(rules.begin(), rules.end(), [](const KeyRule& a, const KeyRule& b) {
        return a.key.size() != b.key.size() ? a.key.size() > b.key.size() : a.key < b.key;
      });
    }
  }
  // One group per parameter, as MMEngine's DefaultOptimWrapperConstructor does with
  // paramwise options.
  const ParamGroup defaults = optimizer_->defaults();
  for (const auto& item : model_->named_modules()) {
    const std::string& prefix = item.key();
    const bool norm = is_norm_module(item.value()->name());
    for (const auto& p : item.value()->named_parameters(false)) {
      if (!p.value().requires_grad()) continue;
      const std::string name = prefix.empty() ? p.key() : prefix + "." + p.key();
      ParamGroup g = defaults;
      g.params = {p.value()};
      g.names = {name};
      const KeyRule* rule = nullptr;
      for (const auto& r : rules)
        if (name.find(r.key) != std::string::npos) {
          rule = &r;
          break;
        }
      if (rule) {
        g.lr *= rule->lr_mult;
        g.weight_decay *= rule->decay_mult;
        g.lars_exclude = rule->lars_exclude;
      } else if (norm && norm_decay_mult) { // MMEngine's order: norm rule, then bias rule
        g.weight_decay *= *norm_decay_mult;
      } else if (p.key() == "bias" && bias_decay_mult) {
        g.weight_decay *= *bias_decay_mult;
      }
      g.initial_lr = g.lr;
      optimizer_->add_param_group(std::move(g));
    }
  }
  if (optimizer_->param_groups().empty())
    throw ConfigError("optim_wrapper: the model has no trainable parameters");
}

std::string Runner::latest_checkpoint() const {
  std::ifstream in(fs::path(work_dir_) / "last_checkpoint");
  std::string path;
  if (in && std::getline(in, path) && fs::is_regular_file(path)) return path;
  return "";
}

std::string Runner::save_checkpoint_as(const std::string& name) {
  Checkpoint c;
  c.meta = Json::object({{"epoch", Json(epoch_)}, {"iter", Json(iter_)}});
  c.meta.set("seed", Json(int64_t(seed_)));
  c.meta.set("selfsup_version", SELFSUP_VERSION_STRING);
  c.meta.set("config", cfg_);
  c.state_dict = module_state(*model_);
  c.optimizer = optimizer_->state_dict();
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    c.rng["torch_cpu"] = gen.get_state();
  }
  const std::string path = (fs::path(work_dir_) / name).string();
  save_checkpoint(path, c);
  write_file_atomic((fs::path(work_dir_) / "last_checkpoint").string(), path + "\n");
  return path;
}

void Runner::log_scalar(const std::string& name, double value) {
  if (in_iteration_ || !logger_) {
    pending_scalars_.emplace_back(name, value);
    return;
  }
  Json rec = Json::object({{"iter", Json(iter_)}, {"epoch", Json(epoch_)}});
  rec.set(name, value);
  logger_->record(rec.dump());
}

void Runner::log(const std::string& message) {
  if (logger_) {
    logger_->message(message);
  } else {
    std::cout << message << std::endl;
  }
}

void Runner::apply_schedules() {
  for (auto& g : optimizer_->param_groups()) {
    double v = g.initial_lr;
    for (const auto& s : schedulers_) v = s->apply(iter_, v);
    g.lr = v;
  }
}

void Runner::run_iteration(Batch& batch) {
  std::vector<torch::Tensor> views;
  views.reserve(batch.views.size());
  for (auto& v : batch.views) views.push_back(v.to(device_));
  DataSamples samples = to_data_samples(batch, device_);

  LossMap losses;
  {
    auto inputs = model_->preprocess(views);
    AutocastScope autocast(amp_bf16_, device_);
    if (channels_last_)
      for (auto& x : inputs)
        if (x.dim() == 4) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
    losses = model_->loss(inputs, samples);
  }
  torch::Tensor total;
  std::vector<std::pair<std::string, double>> scalars;
  for (const auto& [name, value] : losses) {
    if (name.find("loss") != std::string::npos) {
      torch::Tensor v = value.to(torch::kFloat32);
      if (v.dim() > 0) v = v.mean();
      total = total.defined() ? total + v : v;
    }
    scalars.emplace_back(name, value.detach().to(torch::kFloat64).mean().item<double>());
  }
  if (!total.defined())
    throw ValueError("the algorithm returned no loss (no key containing 'loss')");
  const double total_value = total.item<double>();
  if (!std::isfinite(total_value))
    throw ValueError("iteration " + std::to_string(iter_ + 1) + ": loss is not finite (" +
                     std::to_string(total_value) + "); stopping. The last checkpoint is " +
                     (latest_checkpoint().empty() ? std::string("none") : latest_checkpoint()));
  if (losses.size() > 1) scalars.emplace_back("loss", total_value);

  // Gradient accumulation as MMEngine: step every `accumulative_counts` iterations of the
  // whole run and once at its end; the last, shorter window is divided by its own length.
  const int64_t max_iters = max_epochs_ * iters_per_epoch();
  const int64_t tail = max_iters % accumulate_;
  const int64_t window = (tail != 0 && iter_ >= max_iters - tail) ? tail : accumulate_;
  (window > 1 ? total / double(window) : total).backward();
  if ((iter_ + 1) % accumulate_ == 0 || iter_ + 1 == max_iters) {
    if (clip_max_norm_ > 0) {
      std::vector<torch::Tensor> params;
      for (auto& g : optimizer_->param_groups())
        for (auto& p : g.params) params.push_back(p);
      double norm = torch::nn::utils::clip_grad_norm_(params, clip_max_norm_);
      scalars.emplace_back("grad_norm", norm);
    }
    optimizer_->step();
    optimizer_->zero_grad();
  }
  pending_scalars_ = std::move(scalars);
}

void Runner::train() {
  fs::create_directories(work_dir_);
  write_file_atomic((fs::path(work_dir_) / (options_.config_name + ".json")).string(),
                    cfg_.dump(4) + "\n");
  log("Work dir: " + work_dir_ + "; seed " + std::to_string(seed_) + "; " +
      std::to_string(torch::get_num_threads()) + " threads; " + std::to_string(iters_per_epoch()) +
      " iterations per epoch");

  optimizer_->zero_grad();
  for (auto& h : hooks_) h->before_run(*this);
  const int64_t ipe = iters_per_epoch();
  while (epoch_ < max_epochs_) {
    model_->train();
    loader_->start_epoch(epoch_);
    for (auto& h : hooks_) h->before_train_epoch(*this);
    logger_->begin_epoch(epoch_, max_epochs_, ipe, iter_);
    int64_t done = 0;
    for (; done < skip_batches_; ++done)
      if (!loader_->next()) break;
    skip_batches_ = 0;
    while (auto batch = loader_->next()) {
      apply_schedules();
      in_iteration_ = true;
      for (auto& h : hooks_) h->before_train_iter(*this);
      run_iteration(*batch);
      ++iter_;
      ++done;
      auto scalars = std::move(pending_scalars_);
      pending_scalars_.clear();
      for (auto& h : hooks_) h->after_train_iter(*this);
      for (auto& s : pending_scalars_) scalars.push_back(s);
      pending_scalars_.clear();
      in_iteration_ = false;
      const double lr = optimizer_->param_groups().front().lr;
      logger_->after_iter(done, iter_, max_epochs_ * ipe - iter_, lr, scalars);
      if (stop_requested()) {
        logger_->end_epoch();
        const std::string path = save_checkpoint_as("iter_" + std::to_string(iter_) + ".pth");
        throw Interrupted("stopped by a signal at iteration " + std::to_string(iter_) + "; saved " +
                          path + " (continue with --resume auto)");
      }
    }
    logger_->end_epoch();
    ++epoch_;
    for (auto& h : hooks_) h->after_train_epoch(*this);
  }
  for (auto& h : hooks_) h->after_run(*this);
}

} // namespace selfsup::core
