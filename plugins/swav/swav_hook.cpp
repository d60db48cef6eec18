#include "swav_hook.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include <torch/serialize.h>
#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/interfaces/algorithm.h>

#include "swav.h"

namespace selfsup::plugins::swav {

namespace {

/// MMEngine's priority names.
const std::map<std::string, int>& priorities() {
  static const std::map<std::string, int> names{
      {"HIGHEST", 0},       {"VERY_HIGH", 10}, {"HIGH", 30},
      {"ABOVE_NORMAL", 40}, {"NORMAL", 50},    {"BELOW_NORMAL", 60},
      {"LOW", 70},          {"VERY_LOW", 90},  {"LOWEST", 100}};
  return names;
}

int parse_priority(const Config& cfg) {
  const Json& v = cfg["priority"].json();
  if (v.is_int() && v.as_int() >= 0 && v.as_int() <= 100) return int(v.as_int());
  if (v.is_string()) {
    const auto it = priorities().find(v.as_string());
    if (it != priorities().end()) return it->second;
  }
  std::string names;
  for (const auto& [name, value] : priorities()) names += (names.empty() ? "" : ", ") + name;
  cfg.fail_key("priority", "expected an int in [0, 100] or one of " + names + ", got " + v.dump());
}

SwAV& swav_of(RunnerContext& context) {
  auto* model = dynamic_cast<SwAV*>(&context.model());
  if (!model)
    throw ConfigError("SwAVHook: the model must be a SwAV (the hook keeps its loss's queue), got " +
                      std::string(context.model().name()));
  return *model;
}

} // namespace

Schema SwAVHook::schema() {
  using namespace selfsup::check;
  return Schema("SwAV's feature queue from a given epoch and the frozen prototypes of the "
                "first iterations (MMSelfSup's SwAVHook)")
      .required("batch_size", ArgType::Int, "samples per batch and process", {gt(0)})
      .optional("epoch_queue_starts", ArgType::Int, 15, "the epoch the queue starts at", {ge(0)})
      .optional("crops_for_assign", ArgType::IntList, Json::array({Json(0), Json(1)}),
                "the crops whose embeddings are queued (the loss's crops_for_assign)",
                {non_empty(), each(ge(0))})
      .optional("feat_dim", ArgType::Int, 128, "embedding dimension", {gt(0)})
      .optional("queue_length", ArgType::Int, 0, "queue rows in all processes (0: no queue)",
                {ge(0)})
      .optional("interval", ArgType::Int, 1, "save the queue every this many epochs", {gt(0)})
      .optional("frozen_layers_cfg", ArgType::Dict, Json::object(),
                "{parameter-name substring: iterations frozen}, e.g. {prototypes: 5005}")
      .optional("priority", ArgType::Any, "NORMAL",
                "MMEngine's hook priority: a name (HIGHEST ... LOWEST) or an int in [0, 100]");
}

std::shared_ptr<Hook> SwAVHook::make(const Config& cfg) {
  Options o;
  o.batch_size = cfg.get<int64_t>("batch_size");
  o.epoch_queue_starts = cfg.get<int64_t>("epoch_queue_starts");
  o.crops_for_assign = cfg.get<std::vector<int64_t>>("crops_for_assign");
  o.feat_dim = cfg.get<int64_t>("feat_dim");
  o.queue_length = cfg.get<int64_t>("queue_length");
  o.interval = cfg.get<int64_t>("interval");
  const Config frozen = cfg["frozen_layers_cfg"];
  for (const auto& name : frozen.keys()) {
    const auto iters = frozen.get<int64_t>(name);
    if (iters < 0)
      frozen[name].fail("expected frozen iterations >= 0, got " + std::to_string(iters));
    o.frozen_layers_cfg[name] = iters;
  }
  o.priority = parse_priority(cfg);
  return std::make_shared<SwAVHook>(std::move(o));
}

void SwAVHook::before_run(RunnerContext& context) {
  SwAV& model = swav_of(context);
  namespace fs = std::filesystem;
  const std::string file =
      context.world_size() > 1 ? "queue" + std::to_string(context.rank()) + ".pth" : "queue.pth";
  queue_path_ = (fs::path(context.work_dir()) / file).string();
  if (fs::is_regular_file(queue_path_)) {
    std::ifstream in(queue_path_, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    const c10::IValue value = torch::pickle_load(bytes);
    if (!value.isGenericDict())
      throw ValueError("SwAVHook: " + queue_path_ + " is not a dict {'queue': tensor}");
    const auto dict = value.toGenericDict();
    if (!dict.contains("queue") || !dict.at("queue").isTensor())
      throw ValueError("SwAVHook: " + queue_path_ + " has no tensor 'queue'");
    const auto some = model.parameters();
    queue_ = dict.at("queue").toTensor();
    if (!some.empty()) queue_ = queue_.to(some[0].device(), some[0].scalar_type());
    model.swav_loss().queue = queue_;
    context.log("SwAVHook: loaded the queue from " + queue_path_);
  }
  const int64_t global_batch = options_.batch_size * context.world_size();
  queue_length_ = options_.queue_length - options_.queue_length % global_batch;
  for (const auto& [name, iters] : options_.frozen_layers_cfg) requires_grad_[name] = true;
}

void SwAVHook::before_train_iter(RunnerContext& context) {
  for (const auto& [layer, frozen_iters] : options_.frozen_layers_cfg) {
    bool& requires_grad = requires_grad_[layer];
    const bool frozen = context.iter() < frozen_iters;
    if (frozen == !requires_grad) continue;
    requires_grad = !frozen;
    for (auto& item : context.model().named_parameters())
      if (item.key().find(layer) != std::string::npos) item.value().set_requires_grad(!frozen);
  }
}

void SwAVHook::before_train_epoch(RunnerContext& context) {
  SwAV& model = swav_of(context);
  if (queue_length_ > 0 && context.epoch() >= options_.epoch_queue_starts && !queue_.defined()) {
    const auto some = model.parameters();
    auto where = torch::TensorOptions();
    if (!some.empty()) where = where.device(some[0].device()).dtype(some[0].scalar_type());
    queue_ = torch::zeros({int64_t(options_.crops_for_assign.size()),
                           queue_length_ / context.world_size(), options_.feat_dim},
                          where);
  }
  model.swav_loss().queue = queue_;
  model.swav_loss().use_queue = false;
}

void SwAVHook::after_train_epoch(RunnerContext& context) {
  queue_ = swav_of(context).swav_loss().queue;
  if (queue_.defined() && (context.epoch() + 1) % options_.interval == 0) {
    c10::Dict<std::string, torch::Tensor> dict;
    dict.insert("queue", queue_.cpu());
    const std::vector<char> bytes = torch::pickle_save(dict);
    const std::string tmp = queue_path_ + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary);
      out.write(bytes.data(), std::streamsize(bytes.size()));
      if (!out) throw ValueError("SwAVHook: cannot write " + tmp);
    }
    std::filesystem::rename(tmp, queue_path_);
  }
}

} // namespace selfsup::plugins::swav
