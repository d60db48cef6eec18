#include <selfsup/core/preflight.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <c10/util/Exception.h>

#include <selfsup/config.h>
#include <selfsup/core/data.h>
#include <selfsup/core/optim_wrapper.h>
#include <selfsup/core/schedulers.h>
#include <selfsup/core/weight_export.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

#include "run_setup.h"

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

// ---- the plugins of MMSelfSup 1.0's model zoo -----------------------------------------------

// Every type MMSelfSup 1.0 registers (mmselfsup/{models,datasets,engine}), and the types of
// mmcls/mmengine its configs name, with the selfsup plugin that provides it ("core": the
// engine). Names of one family live in that family's plugin (DESIGN.md, "Layers").
const std::map<std::string, std::string>& zoo_table() {
  static const std::map<std::string, std::string> table = {
      // algorithms
      {"BarlowTwins", "barlowtwins"},
      {"BEiT", "beit"},
      {"BYOL", "byol"},
      {"CAE", "cae"},
      {"DeepCluster", "deepcluster"},
      {"DenseCL", "densecl"},
      {"EVA", "eva"},
      {"MAE", "mae"},
      {"MaskFeat", "maskfeat"},
      {"MILAN", "milan"},
      {"MixMIM", "mixmim"},
      {"MoCo", "moco"},
      {"MoCoV3", "moco"},
      {"NPID", "npid"},
      {"ODC", "odc"},
      {"PixMIM", "pixmim"},
      {"RelativeLoc", "pretext"},
      {"RotationPred", "pretext"},
      {"SimCLR", "simclr"},
      {"SimMIM", "simmim"},
      {"SimSiam", "simsiam"},
      {"SwAV", "swav"},
      // backbones
      {"ResNet", "backbones"},
      {"ResNet_CIFAR", "backbones"},
      {"ResNetV1d", "backbones"},
      {"ResNeXt", "backbones"},
      {"ResNetSobel", "backbones"},
      {"VisionTransformer", "backbones"},
      {"SwinTransformer", "backbones"},
      {"MoCoV3ViT", "backbones"},
      {"BEiTViT", "beit"},
      {"CAEViT", "cae"},
      {"MAEViT", "mae"},
      {"MaskFeatViT", "maskfeat"},
      {"MILANViT", "milan"},
      {"MixMIMTransformerPretrain", "mixmim"},
      {"SimMIMSwinTransformer", "simmim"},
      // necks
      {"NonLinearNeck", "common"},
      {"LinearNeck", "common"},
      {"AvgPool2dNeck", "common"},
      {"MoCoV2Neck", "common"},
      {"DenseCLNeck", "densecl"},
      {"ODCNeck", "odc"},
      {"RelativeLocNeck", "pretext"},
      {"SwAVNeck", "swav"},
      {"MAEPretrainDecoder", "mae"},
      {"ClsBatchNormNeck", "mae"},
      {"MILANPretrainDecoder", "milan"},
      {"MixMIMPretrainDecoder", "mixmim"},
      {"SimMIMNeck", "simmim"},
      {"BEiTV2Neck", "beit"},
      {"CAENeck", "cae"},
      // heads
      {"ContrastiveHead", "common"},
      {"ClsHead", "common"},
      {"LatentPredictHead", "common"},
      {"LatentCrossCorrelationHead", "common"},
      {"MultiClsHead", "pretext"},
      {"MoCoV3Head", "moco"},
      {"SwAVHead", "swav"},
      {"MAEPretrainHead", "mae"},
      {"MaskFeatPretrainHead", "maskfeat"},
      {"MILANPretrainHead", "milan"},
      {"MixMIMPretrainHead", "mixmim"},
      {"SimMIMHead", "simmim"},
      {"BEiTV1Head", "beit"},
      {"BEiTV2Head", "beit"},
      {"CAEHead", "cae"},
      // losses
      {"CrossEntropyLoss", "common"},
      {"CosineSimilarityLoss", "common"},
      {"CrossCorrelationLoss", "common"},
      {"SwAVLoss", "swav"},
      {"MAEReconstructionLoss", "mae"},
      {"PixelReconstructionLoss", "common"},
      {"SimMIMReconstructionLoss", "simmim"},
      {"BEiTLoss", "beit"},
      {"CAELoss", "cae"},
      // memories and target generators
      {"SimpleMemory", "npid"},
      {"ODCMemory", "odc"},
      {"HOGGenerator", "maskfeat"},
      {"LowFreqTargetGenerator", "pixmim"},
      {"CLIPGenerator", "milan"},
      {"VQKD", "beit"},
      {"DALL-E", "cae"},
      // data preprocessors
      {"SelfSupDataPreprocessor", "core"},
      {"TwoNormDataPreprocessor", "core"},
      {"RelativeLocDataPreprocessor", "pretext"},
      {"RotationPredDataPreprocessor", "pretext"},
      {"CAEDataPreprocessor", "cae"},
      {"VideoDataPreprocessor", "core"},
      // datasets, samplers, transforms
      {"ImageNet", "core"},
      {"ImageList", "core"},
      {"Places205", "core"},
      {"DeepClusterImageNet", "deepcluster"},
      {"DeepClusterSampler", "deepcluster"},
      {"DefaultSampler", "core"},
      {"LoadImageFromFile", "core"},
      {"PackSelfSupInputs", "core"},
      {"MultiView", "core"},
      {"RandomApply", "core"},
      {"RandomResizedCrop", "core"},
      {"RandomFlip", "core"},
      {"ColorJitter", "core"},
      {"RandomGrayscale", "core"},
      {"RandomGaussianBlur", "core"},
      {"RandomSolarize", "core"},
      {"RandomCrop", "core"},
      {"RandomRotation", "core"},
      {"RandomPatchWithLabels", "pretext"},
      {"RotationWithLabels", "pretext"},
      {"BEiTMaskGenerator", "common"},
      {"SimMIMMaskGenerator", "simmim"},
      {"MAERandomResizedCrop", "mae"},
      {"RandomResizedCropAndInterpolationWithTwoPic", "core"},
      // hooks, optimizers, loops, schedulers
      {"DeepClusterHook", "deepcluster"},
      {"DenseCLHook", "densecl"},
      {"ODCHook", "odc"},
      {"SimSiamHook", "simsiam"},
      {"SwAVHook", "swav"},
      {"LARS", "core"},
      {"SGD", "core"},
      {"AdamW", "core"},
      {"Adam", "core"},
      {"OptimWrapper", "core"},
      {"AmpOptimWrapper", "core"},
      {"LearningRateDecayOptimWrapperConstructor", "core"},
      {"EpochBasedTrainLoop", "core"},
      {"IterBasedTrainLoop", "core"},
      {"CheckpointHook", "core"},
      {"LoggerHook", "core"},
      {"LinearLR", "core"},
      {"CosineAnnealingLR", "core"},
      {"MultiStepLR", "core"},
      {"StepLR", "core"},
      {"CosineEMA", "core"},
      // mmengine's weight initialisers (init_cfg)
      {"Constant", "core"},
      {"Xavier", "core"},
      {"Normal", "core"},
      {"TruncNormal", "core"},
      {"Uniform", "core"},
      {"Kaiming", "core"},
      {"Pretrained", "core"},
  };
  return table;
}

std::string bare_name(const std::string& type) {
  const auto dot = type.rfind('.');
  return dot == std::string::npos ? type : type.substr(dot + 1);
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      const bool same = std::tolower(a[i - 1]) == std::tolower(b[j - 1]);
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The zoo names nearest `name` (at most 3, within a third of its length).
std::vector<std::string> nearest_zoo_names(const std::string& name) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& [known, plugin] : zoo_table()) {
    const size_t d = edit_distance(name, known);
    if (d <= std::max<size_t>(2, name.size() / 3)) scored.emplace_back(d, known);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < 3; ++i) out.push_back(scored[i].second);
  return out;
}

// The plugins the registry holds entries of.
std::set<std::string> loaded_plugins(const Registry& registry) {
  std::set<std::string> out;
  for (const auto* e : registry.entries()) out.insert(e->plugin);
  return out;
}

bool registered_anywhere(const Registry& registry, const std::string& type) {
  for (const auto& kind : registry.kinds())
    if (!registry.providers(kind, type).empty()) return true;
  return false;
}

// Why `type` (unknown to the registry) is missing, from the zoo table.
// For a name not in the table: MMSelfSup's nearest names that no loaded plugin registers
// (the registry's own suggestion covers the registered ones), or "".
std::string missing_type_note(const std::string& type, const std::set<std::string>& loaded,
                              const Registry& registry) {
  const std::string bare = bare_name(type);
  const auto it = zoo_table().find(bare);
  if (it == zoo_table().end()) {
    std::string note;
    for (const auto& near : nearest_zoo_names(bare)) {
      if (registered_anywhere(registry, near)) continue;
      const std::string& plugin = zoo_table().at(near);
      note += (note.empty() ? "; MMSelfSup's nearest: '" : ", '") + near + "' (" +
              (plugin == "core"            ? std::string("the engine's, not implemented yet")
               : loaded.count(plugin) != 0 ? "plugin '" + plugin + "', which lacks it"
                                           : "plugin '" + plugin + "', not loaded") +
              ")";
    }
    return note;
  }
  const std::string& plugin = it->second;
  if (plugin == "core")
    return "'" + bare + "' is MMSelfSup's, and selfsup's engine does not implement it yet";
  if (loaded.count(plugin))
    return "'" + bare + "' belongs to the plugin '" + plugin +
           "', which is loaded but does not register it (this version of it lacks it)";
  return "'" + bare + "' is provided by the plugin '" + plugin +
         "', which is not loaded (build the target selfsup_" + plugin + ", or put its libselfsup_" +
         plugin + ".so in a plugin folder: SELFSUP_PLUGIN_PATH, --plugin-dir)";
}

// The config node at a problem's path ("model.head", "param_scheduler[1]"), or null.
const Json* node_at(const Json& root, const std::string& path) {
  const Json* node = &root;
  size_t i = 0;
  while (node && i < path.size()) {
    if (path[i] == '.') ++i;
    if (path[i] == '[') {
      const size_t close = path.find(']', i);
      if (close == std::string::npos || !node->is_array()) return nullptr;
      const size_t index = std::stoul(path.substr(i + 1, close - i - 1));
      node = index < node->size() ? &node->at(index) : nullptr;
      i = close + 1;
      continue;
    }
    const size_t end = path.find_first_of(".[", i);
    const std::string key = path.substr(i, end == std::string::npos ? std::string::npos : end - i);
    node = node->is_object() ? node->find(key) : nullptr;
    i = end == std::string::npos ? path.size() : end;
  }
  return node;
}

// Every `type` string below `node` at `path` (not `node`'s own) that no plugin registers and
// that is not a problem of its own in `problems`.
void unregistered_types_below(const Json& node, const std::string& path, const Registry& registry,
                              const std::vector<std::string>& problems, bool top,
                              std::vector<std::string>& out) {
  if (node.is_object()) {
    const Json* type = node.find("type");
    const std::string own = path + ".type: ";
    if (!top && type && type->is_string() && !registered_anywhere(registry, type->as_string()) &&
        std::find(out.begin(), out.end(), type->as_string()) == out.end() &&
        std::none_of(problems.begin(), problems.end(),
                     [&](const std::string& p) { return p.compare(0, own.size(), own) == 0; }))
      out.push_back(type->as_string());
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string& key = node.keys()[i];
      // Layer settings a module reads itself, not components of the registry.
      if (key == "norm_cfg" || key == "act_cfg" || key == "conv_cfg" || key == "init_cfg") continue;
      unregistered_types_below(node.at(i), path + "." + key, registry, problems, false, out);
    }
  } else if (node.is_array()) {
    for (size_t i = 0; i < node.size(); ++i)
      unregistered_types_below(node.at(i), path + "[" + std::to_string(i) + "]", registry, problems,
                               false, out);
  }
}

// Rewrites "<path>.type: unknown <kind> type '<name>'; did you mean ...? (registered: ...)"
// for a name of MMSelfSup's zoo: the plugin that provides it, and the other types below it
// that are missing as well (the walk does not go below a component of unknown type).
void add_plugin_hints(std::vector<std::string>& problems, const Json& cfg,
                      const Registry& registry) {
  const std::set<std::string> loaded = loaded_plugins(registry);
  for (auto& p : problems) {
    const std::string marker = ": unknown ";
    const size_t at = p.find(marker);
    if (at == std::string::npos) continue;
    const size_t type_at = p.find(" type '", at + marker.size());
    if (type_at == std::string::npos || p.find(' ', at + marker.size()) != type_at) continue;
    const size_t name_at = type_at + 7;
    const size_t name_end = p.find('\'', name_at);
    if (name_end == std::string::npos) continue;
    const std::string name = p.substr(name_at, name_end - name_at);
    const std::string bare = bare_name(name);
    if (bare != name && registered_anywhere(registry, bare)) continue; // another scope's
    const size_t line_end = std::min(p.find('\n'), p.size());
    std::string note;
    if (zoo_table().count(bare)) {
      note = ": " + missing_type_note(name, loaded, registry);
    } else {
      note = p.substr(name_end + 1, line_end - name_end - 1) +
             missing_type_note(name, loaded, registry);
    }
    std::string path = p.substr(0, at);
    if (path.size() > 5 && path.compare(path.size() - 5, 5, ".type") == 0) {
      path.resize(path.size() - 5);
      std::vector<std::string> below;
      if (const Json* node = node_at(cfg, path))
        unregistered_types_below(*node, path, registry, problems, true, below);
      for (size_t i = 0; i < below.size(); ++i) {
        const auto it = zoo_table().find(bare_name(below[i]));
        std::string who = " (not MMSelfSup's)";
        if (it != zoo_table().end())
          who = it->second == "core" ? " (the engine's, not implemented yet)"
                                     : " (plugin '" + it->second + "')";
        note += (i ? ", " : "; below it, also missing: ") + below[i] + who;
      }
    }
    p = p.substr(0, name_end + 1) + note + p.substr(line_end);
  }
}

// ---- building each part ---------------------------------------------------------------------

// Whether a problem lies at `key` or below it.
bool under(const std::string& problem, const std::string& key) {
  if (problem.compare(0, key.size(), key) != 0 || problem.size() == key.size()) return false;
  const char next = problem[key.size()];
  return next == '.' || next == '[' || next == ':';
}

// A missing file or folder that a run reads when it starts: a dataset's files and folders,
// load_from (the path constraints of their keys), a backbone's Pretrained init_cfg checkpoint.
bool is_start_file_problem(const std::string& problem) {
  const size_t colon = problem.find(": ");
  if (colon == std::string::npos) return false;
  if (problem.compare(colon, 22, ": expected an existing") == 0) return true;
  const std::string checkpoint = "init_cfg.checkpoint";
  return colon >= checkpoint.size() &&
         problem.compare(colon - checkpoint.size(), checkpoint.size(), checkpoint) == 0 &&
         problem.compare(colon, 14, ": no such file") == 0;
}

bool is_missing_pretrained(const Json& init) {
  if (!init.is_object()) return false;
  const Json* type = init.find("type");
  const Json* file = init.find("checkpoint");
  std::error_code ec;
  return type && type->is_string() && type->as_string() == "Pretrained" && file &&
         file->is_string() && !fs::is_regular_file(file->as_string(), ec);
}

// Without data (`--no-data`), a module whose init_cfg is {type: 'Pretrained', checkpoint: FILE}
// with no such FILE is built with its own initial weights, as if the init_cfg were absent
// (mmengine applies an init_cfg after building): its keys were validated by preflight().
void drop_missing_pretrained(Json& node) {
  if (node.is_array()) {
    for (size_t i = 0; i < node.size(); ++i) drop_missing_pretrained(node.at(i));
    return;
  }
  if (!node.is_object()) return;
  if (Json* init = node.find("init_cfg")) {
    if (is_missing_pretrained(*init)) {
      node.erase("init_cfg");
    } else if (init->is_array()) {
      Json kept = Json::array();
      for (const Json& one : init->items())
        if (!is_missing_pretrained(one)) kept.push_back(one);
      *init = std::move(kept);
    }
  }
  for (size_t i = 0; i < node.size(); ++i) drop_missing_pretrained(node.at(i));
}

class PartChecker {
public:
  PartChecker(std::vector<std::string>& problems) : problems_(problems), before_(problems) {}

  bool faulted(const std::string& key) const {
    return std::any_of(before_.begin(), before_.end(),
                       [&](const std::string& p) { return under(p, key); });
  }

  // Runs `f`, adding what it throws (prefixed with `where` unless it names a place in it).
  template <class F> bool attempt(const std::string& where, F&& f) {
    std::string what;
    try {
      f();
      return true;
    } catch (const c10::Error& e) {
      what = e.what_without_backtrace();
    } catch (const std::exception& e) {
      what = e.what();
    }
    if (what.compare(0, where.size(), where) != 0) what = where + ": " + what;
    if (std::find(problems_.begin(), problems_.end(), what) == problems_.end())
      problems_.push_back(what);
    return false;
  }

private:
  std::vector<std::string>& problems_;
  const std::vector<std::string> before_;
};

// The pipelines of a data loader config (`dataset.pipeline`), built without the dataset.
void build_pipelines_of(const Config& loader, PartChecker& parts) {
  if (!loader.is_object() || !loader.has("dataset")) return;
  const Config dataset = loader["dataset"];
  if (!dataset.is_object() || !dataset.has("pipeline")) return;
  const Config pipeline = dataset["pipeline"];
  parts.attempt(pipeline.where(), [&] { Pipeline p(pipeline); });
}

void build_parts(const Json& cfg, const Registry& registry, const CheckOptions& check,
                 std::vector<std::string>& problems) {
  PartChecker parts(problems);
  const Config raw = Config(cfg).with_registry(registry);
  auto wanted = [&](const std::string& key) { return raw.has(key) && !parts.faulted(key); };

  std::shared_ptr<Algorithm> model;
  if (wanted("model"))
    parts.attempt("model", [&] {
      Json m = raw["model"].json(); // a backbone init_cfg Pretrained is the runner's to load
      const std::string pretrained = take_pretrained_init_cfg(m);
      if (check.data && !pretrained.empty() && !std::filesystem::is_regular_file(pretrained))
        throw ConfigError("model.backbone.init_cfg.checkpoint: no such file '" + pretrained + "'");
      if (!check.data) drop_missing_pretrained(m);
      model = build<Algorithm>(raw["model"].derive(m, "model"));
    });
  if (model && wanted("optim_wrapper"))
    parts.attempt("optim_wrapper", [&] { OptimWrapper w(raw["optim_wrapper"], *model); });

  std::shared_ptr<TrainLoop> loop;
  if (wanted("train_cfg"))
    parts.attempt("train_cfg", [&] { loop = build<TrainLoop>(raw["train_cfg"]); });

  int64_t iters_per_epoch = 1; // without data: the schedule is bound with one per epoch
  if (wanted("train_dataloader")) {
    if (check.data) {
      parts.attempt("train_dataloader", [&] {
        const auto loader = DataLoader::from_config(raw["train_dataloader"], 0);
        iters_per_epoch = loader->num_batches();
        if (iters_per_epoch == 0)
          throw ConfigError("train_dataloader: the dataset yields no batch (size " +
                            std::to_string(loader->dataset().size()) + ", batch_size " +
                            std::to_string(loader->options().batch_size) + ", drop_last)");
      });
    } else {
      build_pipelines_of(raw["train_dataloader"], parts);
    }
  }

  if (wanted("param_scheduler")) {
    const Config ps = raw["param_scheduler"];
    std::vector<std::shared_ptr<ParamScheduler>> schedulers;
    bool all = true;
    for (size_t i = 0; i < (ps.is_array() ? ps.size() : 1); ++i) {
      const Config one = ps.is_array() ? ps.at(i) : ps;
      all &= parts.attempt(one.where(), [&] { schedulers.push_back(build<ParamScheduler>(one)); });
    }
    if (all && loop && iters_per_epoch > 0)
      parts.attempt("param_scheduler", [&] {
        ParamScheduleChain chain(schedulers, iters_per_epoch, loop->max_epochs(iters_per_epoch),
                                 loop->max_iters(iters_per_epoch));
      });
  }

  if (!parts.faulted("default_hooks") && !parts.faulted("custom_hooks")) {
    // Without data, a hook that reads data (KNNEvalHook's loaders) is not built: its
    // loaders' pipelines are.
    Json hooks_cfg = cfg;
    if (!check.data && raw.has("custom_hooks") && raw["custom_hooks"].is_array()) {
      const Config hooks = raw["custom_hooks"];
      Json kept = Json::array();
      for (size_t i = 0; i < hooks.size(); ++i) {
        const Config hook = hooks.at(i);
        bool reads_data = false;
        if (hook.is_object())
          for (const auto& key : hook.json().keys())
            if (key.size() >= 10 && key.compare(key.size() - 10, 10, "dataloader") == 0) {
              reads_data = true;
              build_pipelines_of(hook[key], parts);
            }
        if (!reads_data) kept.push_back(hook.json());
      }
      hooks_cfg.set("custom_hooks", std::move(kept));
    }
    std::optional<RunnerKeys> keys;
    try {
      keys = RunnerKeys::table().parse(Config(hooks_cfg).with_registry(registry));
    } catch (const std::exception&) {
      // the top-level keys are faulty: preflight() has said how
    }
    if (keys) parts.attempt("custom_hooks", [&] { (void)build_hooks(*keys); });
  }
}

} // namespace

std::string zoo_plugin(const std::string& type) {
  const auto it = zoo_table().find(bare_name(type));
  return it == zoo_table().end() ? std::string() : it->second;
}

std::vector<std::string> preflight(const Json& config, const TrainOptions& options) {
  const Registry& registry = options.registry ? *options.registry : Registry::global();
  // A backbone init_cfg of type Pretrained is the runner's to load: the backbone never sees it.
  Json cfg = config;
  std::vector<std::string> pretrained_problems;
  if (Json* model = cfg.find("model")) try {
      const std::string file = take_pretrained_init_cfg(*model);
      std::error_code ec;
      if (!file.empty() && !fs::is_regular_file(file, ec))
        pretrained_problems.push_back("model.backbone.init_cfg.checkpoint: no such file '" + file +
                                      "'");
    } catch (const ConfigError& e) {
      pretrained_problems.push_back(e.what());
    }
  std::vector<std::string> problems = registry.validate(Config(cfg), RunnerKeys::table().schema());
  problems.insert(problems.end(), pretrained_problems.begin(), pretrained_problems.end());
  add_plugin_hints(problems, cfg, registry);
  if (!options.resume.empty() && options.resume != "auto") {
    std::error_code ec;
    if (!fs::is_regular_file(options.resume, ec))
      problems.push_back("--resume: expected an existing checkpoint file or \"auto\", got \"" +
                         options.resume + "\"");
  }
  return problems;
}

std::vector<std::string> check_config(const Json& cfg, const TrainOptions& options,
                                      const CheckOptions& check) {
  const Registry& registry = options.registry ? *options.registry : Registry::global();
  std::vector<std::string> problems = preflight(cfg, options);
  if (!check.data)
    problems.erase(std::remove_if(problems.begin(), problems.end(), is_start_file_problem),
                   problems.end());
  build_parts(cfg, registry, check, problems);
  return problems;
}

void throw_problems(const std::vector<std::string>& problems, const std::string& what,
                    const std::string& when) {
  if (problems.empty()) return;
  std::string text = what + ": " + std::to_string(problems.size()) +
                     (problems.size() == 1 ? " problem" : " problems") + " (" + when + "):";
  for (const auto& p : problems) {
    text += "\n  ";
    for (const char c : p) text += c == '\n' ? std::string("\n    ") : std::string(1, c);
  }
  throw ConfigError(text);
}

void check_before_training(const Json& cfg, const TrainOptions& options, const std::string& what) {
  throw_problems(preflight(cfg, options), what, "found before anything was built, read or written");
}

} // namespace selfsup::core
