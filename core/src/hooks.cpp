// The engine's hooks: CheckpointHook, KNNEvalHook and LinearProbeHook.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/data.h>
#include <selfsup/core/knn_eval.h>
#include <selfsup/core/linear_probe.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

using namespace selfsup::check;

constexpr const char* kPrecisionDoc =
    "feature extraction arithmetic: 'bf16', 'fp32', or 'auto' (bf16 on a CPU with native "
    "bf16, else fp32)";

// How a hook extracts: in `precision`, with progress lines through the run's log.
ExtractOptions hook_extract_options(RunnerContext& ctx, const std::string& precision,
                                    const std::string& name) {
  ExtractOptions o;
  o.precision = parse_extract_precision(precision, "precision");
  o.name = name;
  o.log = [&ctx](const std::string& line) { ctx.log(line); };
  return o;
}

struct CheckpointHookOptions {
  int64_t interval = 1;
  int64_t max_keep_ckpts = -1;
  bool save_last = true;
  bool by_epoch = true;
  static OptionTable<CheckpointHookOptions> table() {
    using O = CheckpointHookOptions;
    return OptionTable<O>("Saves a checkpoint every `interval` epochs, atomically, keeping the "
                          "last max_keep_ckpts.",
                          O())
        .optional("interval", &O::interval, "epochs between checkpoints", gt(0))
        .optional("max_keep_ckpts", &O::max_keep_ckpts, "how many to keep (-1: all)", ge(-1))
        .optional("save_last", &O::save_last, "always save after the last epoch")
        .optional("by_epoch", &O::by_epoch, "epoch-based (the only mode)", one_of({true}))
        .rule([](const O& o, const Config& cfg) {
          if (o.max_keep_ckpts == 0)
            cfg.fail_key("max_keep_ckpts", "expected > 0, or -1 to keep all, got 0");
        });
  }
};

class CheckpointHook final : public Hook {
public:
  explicit CheckpointHook(const CheckpointHookOptions& o)
      : interval_(o.interval), max_keep_(o.max_keep_ckpts), save_last_(o.save_last) {}
  int priority() const override { return 70; } // LOW, after the others, like MMEngine

  void after_train_epoch(RunnerContext& ctx) override {
    const int64_t e = ctx.epoch();
    if (e % interval_ != 0 && !(save_last_ && e == ctx.max_epochs())) return;
    const std::string path = ctx.save_checkpoint("epoch_" + std::to_string(e) + ".pth");
    if (!path.empty()) prune(ctx.work_dir(), path); // rank 0 only
  }

private:
  void prune(const std::string& dir, const std::string& keep) const {
    static const std::regex epoch_re(R"(epoch_(\d+)\.pth)"), iter_re(R"(iter_(\d+)\.pth)");
    std::vector<std::pair<int64_t, fs::path>> epochs;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::smatch m;
      const std::string name = entry.path().filename().string();
      if (std::regex_match(name, m, epoch_re)) {
        epochs.emplace_back(std::stoll(m[1]), entry.path());
      } else if (std::regex_match(name, m, iter_re) && entry.path() != keep) {
        fs::remove(entry.path(), ec); // an interrupted run's checkpoint, now superseded
      }
    }
    std::sort(epochs.begin(), epochs.end());
    if (max_keep_ < 0) return;
    for (size_t i = 0; i + size_t(max_keep_) < epochs.size(); ++i)
      if (epochs[i].second != keep) fs::remove(epochs[i].second, ec);
  }

  int64_t interval_, max_keep_;
  bool save_last_;
};

struct KNNEvalHookOptions {
  Config bank_dataloader, query_dataloader;
  int64_t interval = 0;
  int64_t k = 200;
  double temperature = 0.07;
  bool compare_random_init = true;
  std::string precision = "auto";
  static OptionTable<KNNEvalHookOptions> table() {
    using O = KNNEvalHookOptions;
    return OptionTable<O>("Weighted kNN accuracy of the algorithm's features (extract_feat): "
                          "every `interval` epochs and after training; optionally also of the "
                          "random-init encoder first.",
                          O())
        .required("bank_dataloader", &O::bank_dataloader,
                  "dataloader of the labelled bank (train split)")
        .nested(DataLoader::schema())
        .required("query_dataloader", &O::query_dataloader,
                  "dataloader of the queries (test split)")
        .nested(DataLoader::schema())
        .optional("interval", &O::interval, "epochs between evaluations (0: only at the end)",
                  ge(0))
        .optional("k", &O::k, "neighbours", gt(0))
        .optional("temperature", &O::temperature, "softmax temperature of the vote", gt(0))
        .optional("compare_random_init", &O::compare_random_init,
                  "also evaluate the encoder before training (same init and seed)")
        .optional("precision", &O::precision, kPrecisionDoc, one_of({"auto", "fp32", "bf16"}));
  }
};

class KNNEvalHook final : public Hook {
public:
  explicit KNNEvalHook(const KNNEvalHookOptions& o)
      : interval_(o.interval), k_(o.k), temperature_(o.temperature),
        compare_random_(o.compare_random_init), precision_(o.precision),
        // Built now, so a bad dataset config fails before training starts.
        bank_(DataLoader::from_config(o.bank_dataloader, 0)),
        query_(DataLoader::from_config(o.query_dataloader, 0)) {}
  int priority() const override { return 80; }

  void before_run(RunnerContext& ctx) override {
    if (!compare_random_ || ctx.rank() != 0) return;
    const fs::path saved = fs::path(ctx.work_dir()) / "knn_random_init.json";
    if (ctx.iter() != 0) {
      // A resumed run: the baseline measured when the run started, if it was saved.
      std::ifstream in(saved);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!in || text.empty()) {
        ctx.log("kNN: resumed run without " + saved.string() + "; no random-init baseline");
        return;
      }
      const Json j = Json::parse(text, saved.string());
      for (const char* key : {"top1", "top5", "num_bank", "num_queries"})
        if (!j.find(key) || !j.find(key)->is_number())
          throw ValueError(saved.string() + ": expected a number at '" + key + "'");
      KnnResult r;
      r.top1 = j.find("top1")->as_number();
      r.top5 = j.find("top5")->as_number();
      r.num_bank = j.find("num_bank")->as_int();
      r.num_queries = j.find("num_queries")->as_int();
      random_ = r;
      ctx.log(line("random init (measured at the start of the run)", r));
      return;
    }
    random_ = evaluate(ctx);
    ctx.log(line("random init", *random_));
    write_file_atomic(saved.string(), Json::object({{"top1", random_->top1},
                                                    {"top5", random_->top5},
                                                    {"num_bank", Json(random_->num_bank)},
                                                    {"num_queries", Json(random_->num_queries)}})
                                              .dump(2) +
                                          "\n");
  }

  void after_train_epoch(RunnerContext& ctx) override {
    if (ctx.rank() != 0 || interval_ == 0 || ctx.epoch() % interval_ != 0 ||
        ctx.epoch() == ctx.max_epochs())
      return;
    KnnResult r = evaluate(ctx);
    ctx.log(line("epoch " + std::to_string(ctx.epoch()), r));
  }

  void after_run(RunnerContext& ctx) override {
    if (ctx.rank() != 0) return;
    KnnResult r = evaluate(ctx);
    ctx.log(line("trained", r));
    Json out = Json::object({{"k", Json(k_)}, {"temperature", temperature_}});
    out.set("trained", Json::object({{"top1", r.top1}, {"top5", r.top5}}));
    if (random_) {
      out.set("random_init", Json::object({{"top1", random_->top1}, {"top5", random_->top5}}));
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "kNN top-1: trained %.2f%% vs random init %.2f%% (%+.2f points; same "
                    "architecture, init scheme and seed)",
                    r.top1, random_->top1, r.top1 - random_->top1);
      ctx.log(buf);
    }
    write_file_atomic((fs::path(ctx.work_dir()) / "knn.json").string(), out.dump(2) + "\n");
  }

private:
  KnnResult evaluate(RunnerContext& ctx) {
    auto& model = ctx.model();
    torch::Device device = model.parameters().empty() ? torch::Device(torch::kCPU)
                                                      : model.parameters().front().device();
    torch::Tensor bank_labels, query_labels;
    auto bank = extract_features(model, *bank_, bank_labels, device,
                                 hook_extract_options(ctx, precision_, "kNN bank features"));
    auto queries = extract_features(model, *query_, query_labels, device,
                                    hook_extract_options(ctx, precision_, "kNN query features"));
    KnnResult r = knn_classify(bank, bank_labels, queries, query_labels, k_, temperature_);
    ctx.log_scalar("knn/top1", r.top1);
    return r;
  }

  std::string line(const std::string& what, const KnnResult& r) const {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "kNN (k=%lld, T=%g, %lld bank / %lld queries) %s: top-1 %.2f%%, top-5 %.2f%%",
                  (long long)k_, temperature_, (long long)r.num_bank, (long long)r.num_queries,
                  what.c_str(), r.top1, r.top5);
    return buf;
  }

  int64_t interval_, k_;
  double temperature_;
  bool compare_random_;
  std::string precision_;
  std::unique_ptr<DataLoader> bank_, query_;
  std::optional<KnnResult> random_;
};

struct LinearProbeHookOptions {
  Config bank_dataloader, query_dataloader;
  int64_t epochs = LinearProbeOptions().epochs;
  int64_t batch_size = LinearProbeOptions().batch_size;
  double lr = LinearProbeOptions().base_lr;
  double momentum = LinearProbeOptions().momentum;
  double weight_decay = LinearProbeOptions().weight_decay;
  bool standardize = LinearProbeOptions().standardize;
  std::string precision = "auto";
  static OptionTable<LinearProbeHookOptions> table() {
    using O = LinearProbeHookOptions;
    return OptionTable<O>("Linear probe after training: a linear classifier trained on the frozen "
                          "features (extract_feat, as the kNN) of the bank split, top-1/top-5 on "
                          "the query split (docs/evaluation.md).",
                          O())
        .required("bank_dataloader", &O::bank_dataloader,
                  "dataloader of the labelled training split of the probe")
        .nested(DataLoader::schema())
        .required("query_dataloader", &O::query_dataloader,
                  "dataloader of the test split of the probe")
        .nested(DataLoader::schema())
        .optional("epochs", &O::epochs, "training epochs of the probe", gt(0))
        .optional("batch_size", &O::batch_size, "batch size (capped to the bank's size)", gt(0))
        .optional("lr", &O::lr, "SGD lr for a batch of 256, scaled by the batch; cosine to 0",
                  gt(0))
        .optional("momentum", &O::momentum, "SGD momentum", ge(0))
        .optional("weight_decay", &O::weight_decay, "SGD weight decay", ge(0))
        .optional("standardize", &O::standardize,
                  "standardise the features first (BatchNorm1d without affine)")
        .optional("precision", &O::precision, kPrecisionDoc, one_of({"auto", "fp32", "bf16"}));
  }
};

class LinearProbeHook final : public Hook {
public:
  explicit LinearProbeHook(const LinearProbeHookOptions& o)
      : bank_(DataLoader::from_config(o.bank_dataloader, 0)),
        query_(DataLoader::from_config(o.query_dataloader, 0)), precision_(o.precision) {
    probe_.epochs = o.epochs;
    probe_.batch_size = o.batch_size;
    probe_.base_lr = o.lr;
    probe_.momentum = o.momentum;
    probe_.weight_decay = o.weight_decay;
    probe_.standardize = o.standardize;
  }
  int priority() const override { return 80; }

  void after_run(RunnerContext& ctx) override {
    if (ctx.rank() != 0) return;
    auto& model = ctx.model();
    torch::Device device = model.parameters().empty() ? torch::Device(torch::kCPU)
                                                      : model.parameters().front().device();
    torch::Tensor bank_labels, query_labels;
    auto bank =
        extract_features(model, *bank_, bank_labels, device,
                         hook_extract_options(ctx, precision_, "linear probe train features"));
    auto queries =
        extract_features(model, *query_, query_labels, device,
                         hook_extract_options(ctx, precision_, "linear probe test features"));
    LinearProbeOptions o = probe_;
    o.seed = ctx.seed();
    const LinearProbeResult r = linear_probe(bank, bank_labels, queries, query_labels, o);
    ctx.log_scalar("linear/top1", r.top1);
    ctx.log_scalar("linear/top5", r.top5);
    char buf[300];
    std::snprintf(buf, sizeof buf,
                  "Linear probe (%lld epochs, batch %lld, lr %g; %lld train / %lld test) "
                  "trained: top-1 %.2f%%, top-5 %.2f%%",
                  (long long)r.epochs, (long long)r.batch_size, r.lr, (long long)r.num_train,
                  (long long)r.num_test, r.top1, r.top5);
    ctx.log(buf);
    Json out = Json::object({{"top1", r.top1},
                             {"top5", r.top5},
                             {"train_top1", r.train_top1},
                             {"epochs", Json(r.epochs)},
                             {"batch_size", Json(r.batch_size)},
                             {"lr", r.lr},
                             {"num_train", Json(r.num_train)},
                             {"num_test", Json(r.num_test)}});
    write_file_atomic((fs::path(ctx.work_dir()) / "linear.json").string(), out.dump(2) + "\n");
  }

private:
  std::unique_ptr<DataLoader> bank_, query_;
  std::string precision_;
  LinearProbeOptions probe_;
};

} // namespace

void register_hooks(Registrar& r) {
  r.add<Hook>(
      "CheckpointHook",
      [](const Config& c) {
        return std::make_shared<CheckpointHook>(CheckpointHookOptions::table().parse(c));
      },
      CheckpointHookOptions::table().schema());
  r.add<Hook>(
      "KNNEvalHook",
      [](const Config& c) {
        return std::make_shared<KNNEvalHook>(KNNEvalHookOptions::table().parse(c));
      },
      KNNEvalHookOptions::table().schema());
  r.add<Hook>(
      "LinearProbeHook",
      [](const Config& c) {
        return std::make_shared<LinearProbeHook>(LinearProbeHookOptions::table().parse(c));
      },
      LinearProbeHookOptions::table().schema());
}

} // namespace selfsup::core
