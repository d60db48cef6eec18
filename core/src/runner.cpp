#include <selfsup/core/runner.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/data.h>
#include <selfsup/core/knn_eval.h>
#include <selfsup/core/optim_wrapper.h>
#include <selfsup/core/weight_export.h>
#include <selfsup/dist.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/registry.h>
#include <selfsup/version.h>

#include "dist_c10d.h"
#include "logging.h"
#include "run_setup.h"

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {
std::atomic<bool> g_stop{false};

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

int64_t meta_int(const Checkpoint& c, const std::string& path, const char* key) {
  const Json* v = c.meta.find(key);
  if (!v || !v->is_int())
    throw ValueError(path + ": not a selfsup training checkpoint (meta has no integer '" + key +
                     "')");
  return v->as_int();
}
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

Runner::Runner(Json cfg_json, TrainOptions options)
    : cfg_(std::move(cfg_json)), options_(std::move(options)) {
  const Config raw =
      options_.registry ? Config(cfg_).with_registry(*options_.registry) : Config(cfg_);
  const RunnerKeys keys = RunnerKeys::table().parse(raw);

  work_dir_ = resolve_work_dir(keys, options_);
  ResumePoint resume = resolve_resume(keys, options_, work_dir_);
  for (const auto& note : resume.notes) log(note);
  resume_path_ = resume.path;
  std::optional<Checkpoint>& resume_ckpt = resume.checkpoint;

  // A resumed run keeps its seed.
  seed_ = resolve_seed(keys, options_);
  if (resume_ckpt) {
    const auto saved = uint64_t(meta_int(*resume_ckpt, resume_path_, "seed"));
    if (options_.seed && *options_.seed != saved)
      log("--seed " + std::to_string(*options_.seed) + " ignored: a resumed run keeps its seed " +
          std::to_string(saved));
    seed_ = saved;
  }

  const Environment env = setup_environment(keys, options_);
  device_ = env.device;
  channels_last_ = env.channels_last;
  // The ranks join before anything is built: the model and the data shards see the world.
  std::vector<std::string> dist_notes;
  dist_ = setup_distributed(keys, options_, device_, dist_notes);

  // Model.
  torch::manual_seed(seed_);
  Json model_json = keys.model.json(); // a backbone init_cfg of type Pretrained is ours
  const std::string pretrained = take_pretrained_init_cfg(model_json);
  model_ = build<Algorithm>(pretrained.empty() ? keys.model
                                               : keys.model.derive(model_json, keys.model.path()));
  if (!pretrained.empty())
    load_pretrained_backbone(*model_, pretrained, "model.backbone.init_cfg " + pretrained);
  model_->to(device_);
  if (channels_last_) {
    // NHWC weights and inputs let oneDNN skip layout reorders (1.2-1.3x on a ResNet step).
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }

  // Data, sharded by rank.
  loader_ = DataLoader::from_config(keys.train_dataloader, seed_, rank(), world_size());
  if (loader_->num_batches() == 0)
    throw ConfigError("train_dataloader: the dataset yields no batch (size " +
                      std::to_string(loader_->dataset().size()) + ", batch_size " +
                      std::to_string(loader_->options().batch_size) + ", drop_last)");

  // Loop, optimizer, schedules, hooks.
  loop_ = build<TrainLoop>(keys.train_cfg);
  max_epochs_ = loop_->max_epochs(iters_per_epoch());
  max_iters_ = loop_->max_iters(iters_per_epoch());
  optim_wrapper_ = std::make_unique<OptimWrapper>(keys.optim_wrapper, *model_, device_);
  if (keys.param_scheduler) {
    const Config ps = raw["param_scheduler"];
    if (ps.is_array()) {
      for (size_t i = 0; i < ps.size(); ++i) schedulers_.push_back(build<ParamScheduler>(ps.at(i)));
    } else {
      schedulers_.push_back(build<ParamScheduler>(ps));
    }
    schedule_ = ParamScheduleChain(schedulers_, iters_per_epoch(), max_epochs_, max_iters_);
  }
  HookSet hooks = build_hooks(keys);
  hooks_ = std::move(hooks.hooks);

  if (keys.load_from && !resume_ckpt) { // a resumed run takes its weights from the checkpoint
    const std::string& from = *keys.load_from;
    load_initial_weights(*model_, from); // a checkpoint, or exported backbone weights
  }

  // The scalar log is opened by train(), once the work dir is ready. Only rank 0 logs.
  logger_ =
      std::make_unique<ProgressLogger>(isatty(STDERR_FILENO) != 0, hooks.log_interval, rank() != 0);
  for (const auto& note : dist_notes) log(note);
  if (resume_ckpt) {
    load_module_state(*model_, resume_ckpt->state_dict, "checkpoint " + resume_path_);
    optim_wrapper_->load_state_dict(resume_ckpt->optimizer);
    if (auto it = resume_ckpt->rng.find("torch_cpu"); it != resume_ckpt->rng.end()) {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(it->second);
    }
    check_resumable(*resume_ckpt);
    epoch_ = meta_int(*resume_ckpt, resume_path_, "epoch");
    iter_ = meta_int(*resume_ckpt, resume_path_, "iter");
    if (const Json* n = resume_ckpt->meta.find("nonfinite_skipped"); n && n->is_int())
      nonfinite_skipped_ = n->as_int();
    skip_batches_ = iter_ - epoch_ * iters_per_epoch();
    if (skip_batches_ < 0 || skip_batches_ > iters_per_epoch() || iter_ > max_iters_)
      throw ValueError(resume_path_ + ": its iteration count does not fit this config's data " +
                       "and loop (iter " + std::to_string(iter_) + ", epoch " +
                       std::to_string(epoch_) + ")");
    log("Resumed from " + resume_path_ + " at epoch " + std::to_string(epoch_) + ", iter " +
        std::to_string(iter_));
  }
  if (world_size() > 1) {
    // As DDP at its start: every rank trains from rank 0's parameters and buffers.
    broadcast_module(*model_, 0);
    log("Distributed: rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) +
        "; parameters and buffers broadcast from rank 0; " +
        std::to_string(loader_->sampler().size()) + " samples per rank and epoch");
  }
}

Runner::~Runner() {
  if (model_) model_->set_context(nullptr);
  if (dist_ && &dist() == dist_.get()) set_dist(nullptr);
}

int64_t Runner::iters_per_epoch() const {
  return loader_ ? loader_->num_batches() : 0;
}
torch::optim::Optimizer& Runner::optimizer() {
  return optim_wrapper_->optimizer();
}
const std::string& Runner::param_group_name(size_t group) const {
  return optim_wrapper_->group_name(group);
}
const Dataset& Runner::train_dataset() const {
  return loader_->dataset().raw();
}
Sampler& Runner::train_sampler() {
  return loader_->sampler();
}
int64_t Runner::train_batch_size() const {
  return loader_->options().batch_size;
}
int Runner::rank() const {
  return dist().rank();
}
int Runner::world_size() const {
  return dist().world_size();
}

std::string Runner::latest_checkpoint() const {
  return latest_checkpoint_in(work_dir_);
}

std::string Runner::last_good() const {
  const std::string last = latest_checkpoint();
  return last.empty() ? "No checkpoint was written before." : "The last good checkpoint is " + last;
}

std::string Runner::lr_text() const {
  double lo = optim_wrapper_->lr(0), hi = lo;
  for (size_t g = 1; g < optim_wrapper_->num_groups(); ++g) {
    lo = std::min(lo, optim_wrapper_->lr(g));
    hi = std::max(hi, optim_wrapper_->lr(g));
  }
  return lo == hi ? num(lo) : num(lo) + ".." + num(hi) + " over the param groups";
}

void Runner::check_resumable(const Checkpoint& c) const {
  // A checkpoint's iteration count means something only with its own number of iterations
  // per epoch: another batch size would shift every epoch boundary (and could end an epoch
  // that was never trained).
  const Json* ipe = c.meta.find("iters_per_epoch");
  if (!ipe || !ipe->is_int() || ipe->as_int() == iters_per_epoch()) return;
  const Json* bs = c.meta.find("batch_size");
  const std::string saved_bs =
      bs && bs->is_int() ? " (train_dataloader.batch_size " + std::to_string(bs->as_int()) + ")"
                         : "";
  throw ConfigError("resume: " + resume_path_ + " was written with " +
                    std::to_string(ipe->as_int()) + " iterations per epoch" + saved_bs +
                    "; this config gives " + std::to_string(iters_per_epoch()) +
                    " (train_dataloader.batch_size " + std::to_string(train_batch_size()) +
                    "), which would shift every epoch boundary. Resume with the run's own "
                    "batch size and data, or start a new run from its weights (load_from)");
}

std::string Runner::save_checkpoint(const std::string& filename) {
  if (rank() != 0) return "";
  Checkpoint c;
  c.meta = Json::object({{"epoch", Json(epoch_)}, {"iter", Json(iter_)}});
  c.meta.set("iters_per_epoch", Json(iters_per_epoch()));
  c.meta.set("batch_size", Json(train_batch_size()));
  c.meta.set("world_size", Json(int64_t(world_size())));
  c.meta.set("nonfinite_skipped", Json(nonfinite_skipped_));
  c.meta.set("seed", Json(int64_t(seed_)));
  c.meta.set("selfsup_version", SELFSUP_VERSION_STRING);
  c.meta.set("config", cfg_);
  c.meta.set("max_epochs", Json(max_epochs_));
  c.meta.set("max_iters", Json(max_iters_));
  c.meta.set("experiment_name", options_.config_name);
  c.state_dict = module_state(*model_);
  c.optimizer = optim_wrapper_->state_dict();
  if (!schedulers_.empty()) add_scheduler_states(c);
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    c.rng["torch_cpu"] = gen.get_state();
  }
  const std::string path = (fs::path(work_dir_) / filename).string();
  // Never a diverged model: the last good checkpoint stays the latest.
  if (const std::string bad = first_nonfinite(c.state_dict); !bad.empty())
    throw ValueError(path + ": not written: weight " + bad + " is NaN or Inf after iteration " +
                     std::to_string(iter_) + " (lr " + lr_text() +
                     "; the run diverged: lower the lr or clip gradients). " + last_good());
  core::save_checkpoint(path, c);
  // Relative to the work dir, so the work dir can be moved.
  write_file_atomic((fs::path(work_dir_) / "last_checkpoint").string(), filename + "\n");
  return path;
}

void Runner::add_scheduler_states(Checkpoint& c) {
  // As mmengine's Runner leaves them at a checkpoint: every scheduler has stepped after the
  // last iteration (and epoch), so the groups hold the values of the next iteration.
  std::vector<double> bases(optim_wrapper_->num_groups());
  for (size_t g = 0; g < bases.size(); ++g) bases[g] = optim_wrapper_->initial_lr(g);
  const std::vector<double> next = schedule_.values(iter_, bases);
  auto groups = c.optimizer.toGenericDict().at("param_groups").toList();
  for (size_t g = 0; g < groups.size() && g < next.size(); ++g)
    groups.get(g).toGenericDict().insert_or_assign("lr", next[g]);
  c10::impl::GenericList states(c10::AnyType::get());
  for (const auto& s : schedulers_) {
    const auto* chained = dynamic_cast<const ChainedParamScheduler*>(s.get());
    // A plugin's scheduler (closed form only): counted in iterations over the whole run.
    const bool per_iter = !chained || chained->steps_per_iteration();
    const auto begin = chained ? int64_t(std::ceil(chained->begin_step())) : int64_t(0);
    const auto end = chained ? int64_t(std::ceil(chained->end_step())) : max_iters_;
    states.push_back(mmengine_scheduler_state(s->param_name(), begin, end, !per_iter,
                                              per_iter ? iter_ : epoch_, bases, next));
  }
  c.param_schedulers = states;
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

torch::Tensor Runner::extract_features(const Config& dataloader) {
  auto loader = DataLoader::from_config(dataloader, seed_);
  torch::Tensor labels;
  return core::extract_features(*model_, *loader, labels, device_);
}

void Runner::emit(RunEvent event, void (Hook::*method)(RunnerContext&)) {
  model_->on_run_event(event, *this);
  for (auto& h : hooks_) ((*h).*method)(*this);
}

void Runner::apply_schedules() {
  std::vector<double> bases(optim_wrapper_->num_groups());
  for (size_t g = 0; g < bases.size(); ++g) bases[g] = optim_wrapper_->initial_lr(g);
  const std::vector<double> values = schedule_.values(iter_, bases);
  for (size_t g = 0; g < values.size(); ++g) optim_wrapper_->set_lr(g, values[g]);
}

void Runner::train_step(Batch& batch) {
  std::vector<torch::Tensor> views;
  views.reserve(batch.views.size());
  for (auto& v : batch.views) views.push_back(v.to(device_));
  DataSamples samples = to_data_samples(batch, device_);

  LossMap losses;
  {
    auto inputs = model_->preprocess(views, samples);
    auto autocast = optim_wrapper_->autocast(device_);
    if (channels_last_)
      for (auto& x : inputs)
        if (x.dim() == 4) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
    losses = model_->forward(inputs, samples, ForwardMode::Loss).losses;
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
  double total_value = total.item<double>();
  if (world_size() > 1) {
    // The logged figures are the means over the ranks, and a non-finite loss on any rank
    // skips (or stops) the step on all of them, so no rank waits for a gradient sync alone.
    std::vector<double> v;
    for (const auto& s : scalars) v.push_back(s.second);
    v.push_back(std::isfinite(total_value) ? 0.0 : 1.0);
    v.push_back(total_value);
    torch::Tensor t = torch::tensor(v, torch::kFloat64);
    dist().all_reduce(t, ReduceOp::Sum);
    const auto a = t.accessor<double, 1>();
    for (size_t i = 0; i < scalars.size(); ++i)
      scalars[i].second = a[int64_t(i)] / double(world_size());
    if (a[int64_t(scalars.size())] > 0 && std::isfinite(total_value))
      total_value = std::numeric_limits<double>::quiet_NaN(); // another rank's is not finite
    else if (std::isfinite(total_value))
      total_value = a[int64_t(scalars.size()) + 1] / double(world_size());
  }
  // Each term of the algorithm's loss dict, then the total (for a non-finite loss).
  std::string terms;
  if (!std::isfinite(total_value)) {
    for (const auto& [name, v] : scalars)
      terms += (terms.empty() ? "" : ", ") + name + " " + num(v);
    if (losses.size() > 1) terms += "; total " + num(total_value);
  }
  if (losses.size() > 1) scalars.emplace_back("loss", total_value);
  if (!std::isfinite(total_value)) {
    const std::string what = "iteration " + std::to_string(iter_ + 1) +
                             ": the loss is not finite (" + terms + "; lr " + lr_text() + ")";
    if (!optim_wrapper_->skip_nonfinite())
      throw ValueError(what + "; stopping (optim_wrapper.skip_nonfinite: true skips such steps). " +
                       last_good());
    // Skipped: no backward, no step; the gradients gathered so far are dropped.
    optim_wrapper_->zero_grad();
    ++nonfinite_skipped_;
    log(what + "; step skipped (optim_wrapper.skip_nonfinite; " +
        std::to_string(nonfinite_skipped_) + " so far)");
    scalars.emplace_back("nonfinite_skipped", double(nonfinite_skipped_));
    pending_scalars_ = std::move(scalars);
    ++iter_;
    ++inner_iter_;
    return;
  }
  if (nonfinite_skipped_ > 0) scalars.emplace_back("nonfinite_skipped", double(nonfinite_skipped_));
  const bool stepped = optim_wrapper_->update_params(total, iter_, max_iters_, scalars);
  pending_scalars_ = std::move(scalars);
  ++iter_;
  ++inner_iter_;
  if (stepped) emit(RunEvent::AfterOptimizerStep, &Hook::after_optimizer_step);
}

void Runner::begin_epoch() {
  model_->train();
  loader_->start_epoch(epoch_);
  inner_iter_ = 0;
  emit(RunEvent::BeforeTrainEpoch, &Hook::before_train_epoch);
  logger_->begin_epoch(epoch_, max_epochs_, iters_per_epoch(), iter_);
  for (; inner_iter_ < skip_batches_; ++inner_iter_)
    if (!loader_->next()) break;
  skip_batches_ = 0;
}

bool Runner::run_iteration() {
  auto batch = loader_->next();
  if (!batch) return false;
  apply_schedules();
  in_iteration_ = true;
  pending_scalars_.clear();
  emit(RunEvent::BeforeTrainIter, &Hook::before_train_iter);
  auto early = std::move(pending_scalars_); // logged by before_train_iter hooks
  train_step(*batch);
  auto scalars = std::move(pending_scalars_);
  scalars.insert(scalars.begin(), early.begin(), early.end());
  pending_scalars_.clear();
  emit(RunEvent::AfterTrainIter, &Hook::after_train_iter);
  for (auto& s : pending_scalars_) scalars.push_back(s);
  pending_scalars_.clear();
  in_iteration_ = false;
  logger_->after_iter(inner_iter_, iter_, max_iters_ - iter_, optim_wrapper_->lr(0), scalars);
  // Every rank stops after the same iteration (a signal reaches them at different times).
  if (world_size() > 1 ? any_rank(stop_requested()) : stop_requested()) {
    logger_->end_epoch();
    const std::string path = save_checkpoint("iter_" + std::to_string(iter_) + ".pth");
    throw Interrupted("stopped by a signal at iteration " + std::to_string(iter_) + "; " +
                      (path.empty() ? "rank 0 saves the checkpoint" : "saved " + path) +
                      " (continue with --resume auto)");
  }
  return true;
}

void Runner::end_epoch() {
  logger_->end_epoch();
  ++epoch_;
  emit(RunEvent::AfterTrainEpoch, &Hook::after_train_epoch);
}

void Runner::train() {
  if (rank() == 0) {
    const std::string merged = merged_config_name(work_dir_, options_);
    const auto resumed = resume_path_.empty() ? std::nullopt : std::optional<int64_t>(iter_);
    for (const auto& note : prepare_work_dir(work_dir_, resumed, merged)) log(note);
    logger_->open_scalars((fs::path(work_dir_) / "scalars.jsonl").string());
    write_file_atomic((fs::path(work_dir_) / merged).string(), cfg_.dump(4) + "\n");
  }
  log("Work dir: " + work_dir_ + "; seed " + std::to_string(seed_) + "; " +
      std::to_string(torch::get_num_threads()) + " threads; " + std::to_string(iters_per_epoch()) +
      " iterations per epoch");

  model_->set_context(this);
  optim_wrapper_->zero_grad();
  emit(RunEvent::BeforeRun, &Hook::before_run);
  loop_->run(*this);
  emit(RunEvent::AfterRun, &Hook::after_run);
}

} // namespace selfsup::core
