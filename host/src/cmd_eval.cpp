// `selfsup eval linear|knn CONFIG --checkpoint CKPT`: the linear probe and the weighted kNN on
// frozen features of a trained checkpoint.
#include <cstdio>
#include <iostream>

#include <boost/program_options.hpp>
#include <torch/torch.h>

#include <selfsup/core/knn_eval.h>
#include <selfsup/core/linear_probe.h>
#include <selfsup/errors.h>

#include "cli.h"
#include "eval_setup.h"

namespace po = boost::program_options;

namespace selfsup::host {

namespace {

void usage(std::ostream& os) {
  os << "Usage: selfsup eval linear|knn CONFIG --checkpoint CKPT [options]\n\n"
        "  linear  train a linear classifier on frozen backbone features of the train split,\n"
        "          report top-1/top-5 on the test split\n"
        "  knn     weighted kNN of the test split's features among the train split's\n\n"
        "Run 'selfsup eval linear --help' or 'selfsup eval knn --help' for the options.\n";
}

} // namespace

int cmd_eval(int argc, char** argv) {
  // argv[0] is "eval", argv[1] the mode.
  if (argc < 2) {
    usage(std::cerr);
    return kUsage;
  }
  const std::string mode = argv[1];
  if (mode == "-h" || mode == "--help") {
    usage(std::cout);
    return kOk;
  }
  if (mode != "linear" && mode != "knn") {
    std::cerr << "selfsup eval: unknown mode '" << mode << "' (expected linear or knn)\n\n";
    usage(std::cerr);
    return kUsage;
  }

  po::options_description opts("selfsup eval " + mode + " CONFIG --checkpoint CKPT [options]");
  std::vector<std::string> overrides, plugin_dirs;
  std::string checkpoint, device_name = "cpu", precision;
  int threads = 0;
  core::LinearProbeOptions lp;
  int64_t k = -1;
  double temperature = -1;
  // clang-format off
  opts.add_options()
    ("help,h", "show this help")
    ("checkpoint", po::value(&checkpoint), "the trained checkpoint (.pth) whose weights to evaluate")
    ("cfg-options", po::value(&overrides)->multitoken(), "override config keys: a.b=value ...")
    ("device", po::value(&device_name), "cpu or cuda")
    ("threads", po::value(&threads), "compute threads (default: all cores)")
    ("precision", po::value(&precision),
     "feature extraction: bf16, fp32 or auto (bf16 on a CPU with native bf16); default: the "
     "evaluation hook's precision, else auto")
    ("plugin-dir", po::value(&plugin_dirs), "also load plugins from this folder (repeatable)")
    ("allow-insecure-plugins", "load plugins from folders or files others can write to");
  if (mode == "linear")
    opts.add_options()
      ("epochs", po::value(&lp.epochs)->default_value(lp.epochs), "training epochs of the probe")
      ("batch-size", po::value(&lp.batch_size)->default_value(lp.batch_size),
       "batch size (capped to the train split's size)")
      ("lr", po::value(&lp.base_lr)->default_value(lp.base_lr),
       "SGD lr for a batch of 256 (scaled linearly by the batch size), cosine to 0")
      ("momentum", po::value(&lp.momentum)->default_value(lp.momentum), "SGD momentum")
      ("weight-decay", po::value(&lp.weight_decay)->default_value(lp.weight_decay), "SGD weight decay")
      ("no-standardize", "do not standardise the features (BatchNorm1d without affine) first")
      ("seed", po::value(&lp.seed)->default_value(lp.seed), "seed of the head init and batch order");
  else
    opts.add_options()
      ("k", po::value(&k), "neighbours (default: the config's KNNEvalHook k, else 200)")
      ("temperature", po::value(&temperature),
       "temperature of the vote (default: the KNNEvalHook's, else 0.07)");
  // clang-format on
  std::string config;
  po::variables_map vm = parse_with_config(argc - 1, argv + 1, opts, config);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return kOk;
  }
  if (config.empty() || checkpoint.empty()) {
    std::cerr << "selfsup eval " << mode << ": a CONFIG and --checkpoint CKPT are required\n\n"
              << opts << "\n";
    return kUsage;
  }
  if (threads < 0) throw po::error("--threads must be >= 0");
  if (mode == "linear" && (lp.epochs <= 0 || lp.batch_size <= 0 || !(lp.base_lr > 0)))
    throw po::error("--epochs, --batch-size and --lr must be > 0");
  if (vm.count("k") && k <= 0) throw po::error("--k must be > 0");
  if (vm.count("temperature") && !(temperature > 0)) throw po::error("--temperature must be > 0");
  lp.standardize = vm.count("no-standardize") == 0;

  core::PluginLoader loader;
  load_plugins(loader, plugin_dirs, vm.count("allow-insecure-plugins") > 0);
  const Json cfg = load_config(config, overrides, &loader);
  set_compute_threads(threads);
  const core::ExtractPrecision extract_precision = eval_precision(cfg, precision);
  const torch::Device device = parse_device(device_name);

  std::shared_ptr<Algorithm> model;
  try {
    model = model_from_checkpoint(cfg, config, checkpoint, device);
  } catch (const ValueError& e) {
    std::cerr << "selfsup eval: error: " << e.what() << "\n";
    return kUsage;
  }
  torch::Tensor train_labels, test_labels;
  auto train = split_features(*model, cfg, "train", train_labels, device, extract_precision);
  auto test = split_features(*model, cfg, "test", test_labels, device, extract_precision);

  char buf[400];
  if (mode == "knn") {
    const Config hook = eval_hook(cfg);
    const bool knn = !hook.is_null() && hook["type"].as<std::string>() == "KNNEvalHook";
    if (k <= 0) k = knn && hook.has("k") ? hook["k"].as<int64_t>() : 200;
    if (!(temperature > 0))
      temperature = knn && hook.has("temperature") ? hook["temperature"].as<double>() : 0.07;
    const auto r = core::knn_classify(train, train_labels, test, test_labels, k, temperature);
    std::snprintf(buf, sizeof buf,
                  "kNN (k=%lld, T=%g, %lld bank / %lld queries): top-1 %.2f %%, top-5 %.2f %%",
                  (long long)k, temperature, (long long)r.num_bank, (long long)r.num_queries,
                  r.top1, r.top5);
    std::cout << buf << std::endl;
    return kOk;
  }

  const int64_t report_every = std::max<int64_t>(1, lp.epochs / 10);
  const auto r = core::linear_probe(
      train, train_labels, test, test_labels, lp, -1, [&](int64_t epoch, double loss) {
        if (epoch % report_every == 0 || epoch == lp.epochs) {
          char line[120];
          std::snprintf(line, sizeof line, "  linear probe epoch %lld/%lld: loss %.4f",
                        (long long)epoch, (long long)lp.epochs, loss);
          std::cout << line << std::endl;
        }
      });
  std::snprintf(buf, sizeof buf,
                "Linear probe (%lld-dim features%s, %lld classes; %lld train / %lld test; %lld "
                "epochs, batch %lld, SGD lr %g cosine, momentum %g, weight decay %g): train "
                "top-1 %.2f %%",
                (long long)r.dim, lp.standardize ? ", standardised" : "", (long long)r.num_classes,
                (long long)r.num_train, (long long)r.num_test, (long long)r.epochs,
                (long long)r.batch_size, r.lr, lp.momentum, lp.weight_decay, r.train_top1);
  std::cout << buf << std::endl;
  std::snprintf(buf, sizeof buf, "linear probe: top-1 %.2f %%, top-5 %.2f %%", r.top1, r.top5);
  std::cout << buf << std::endl;
  return kOk;
}

} // namespace selfsup::host
