// The engine's hooks: CheckpointHook and KNNEvalHook.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/data.h>
#include <selfsup/core/knn_eval.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/registry.h>

#include "builtins.h"

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

class CheckpointHook final : public Hook {
public:
  explicit CheckpointHook(const Config& cfg)
      : interval_(cfg.get<int64_t>("interval")), max_keep_(cfg.get<int64_t>("max_keep_ckpts")),
        save_last_(cfg.get<bool>("save_last")) {
    if (interval_ <= 0) cfg.fail_key("interval", "expected > 0");
    if (!cfg.get<bool>("by_epoch"))
      cfg.fail_key("by_epoch", "only epoch-based checkpoints are supported");
    if (max_keep_ == 0) cfg.fail_key("max_keep_ckpts", "expected > 0, or -1 to keep all");
  }
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

class KNNEvalHook final : public Hook {
public:
  explicit KNNEvalHook(const Config& cfg)
      : interval_(cfg.get<int64_t>("interval")), k_(cfg.get<int64_t>("k")),
        temperature_(cfg.get<double>("temperature")),
        compare_random_(cfg.get<bool>("compare_random_init")),
        bank_cfg_(cfg["bank_dataloader"].json(), cfg.path_of("bank_dataloader")),
        query_cfg_(cfg["query_dataloader"].json(), cfg.path_of("query_dataloader")) {
    if (interval_ < 0) cfg.fail_key("interval", "expected >= 0 (0: only after training)");
    if (k_ <= 0) cfg.fail_key("k", "expected > 0");
    if (temperature_ <= 0) cfg.fail_key("temperature", "expected > 0");
    // Build the loaders now, so a bad dataset config fails before training starts.
    bank_ = DataLoader::from_config(bank_cfg_, 0);
    query_ = DataLoader::from_config(query_cfg_, 0);
  }
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
    auto bank = extract_features(model, *bank_, bank_labels, device);
    auto queries = extract_features(model, *query_, query_labels, device);
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
  Config bank_cfg_, query_cfg_;
  std::unique_ptr<DataLoader> bank_, query_;
  std::optional<KnnResult> random_;
};

} // namespace

void register_hooks(Registrar& r) {
  r.add<Hook>(
      "CheckpointHook", [](const Config& c) { return std::make_shared<CheckpointHook>(c); },
      Schema("Saves a checkpoint every `interval` epochs, atomically, keeping the last "
             "max_keep_ckpts.")
          .optional("interval", ArgType::Int, 1, "epochs between checkpoints")
          .optional("max_keep_ckpts", ArgType::Int, -1, "how many to keep (-1: all)")
          .optional("save_last", ArgType::Bool, true, "always save after the last epoch")
          .optional("by_epoch", ArgType::Bool, true, "epoch-based (the only mode)"));
  r.add<Hook>(
      "KNNEvalHook", [](const Config& c) { return std::make_shared<KNNEvalHook>(c); },
      Schema("Weighted kNN accuracy of global-pooled backbone features: every `interval` "
             "epochs and after training; optionally also of the random-init encoder first.")
          .required("bank_dataloader", ArgType::Dict,
                    "dataloader of the labelled bank (train split)")
          .required("query_dataloader", ArgType::Dict, "dataloader of the queries (test split)")
          .optional("interval", ArgType::Int, 0, "epochs between evaluations (0: only at the end)")
          .optional("k", ArgType::Int, 200, "neighbours")
          .optional("temperature", ArgType::Float, 0.07, "softmax temperature of the vote")
          .optional("compare_random_init", ArgType::Bool, true,
                    "also evaluate the encoder before training (same init and seed)"));
}

} // namespace selfsup::core
