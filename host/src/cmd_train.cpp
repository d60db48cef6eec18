#include <execinfo.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>

#include <boost/program_options.hpp>

#include <selfsup/core/optim_wrapper.h>
#include <selfsup/core/preflight.h>
#include <selfsup/core/runner.h>
#include <selfsup/errors.h>

#include "cli.h"

namespace po = boost::program_options;

namespace selfsup::host {

namespace {
extern "C" void on_signal(int) {
  core::request_stop();
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND; // a second signal ends the process at once
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// A fault during training (a bug here, in a plugin or in a library) still ends the process by
// its signal, as before, but first writes the signal and the faulting thread's stack to stderr
// so that a crash seen once (in CI, in a user's log) says where it happened.
extern "C" void on_fatal_signal(int sig, siginfo_t* info, void*) {
  const char* name = sig == SIGSEGV  ? "SIGSEGV"
                     : sig == SIGBUS ? "SIGBUS"
                     : sig == SIGILL ? "SIGILL"
                     : sig == SIGFPE ? "SIGFPE"
                                     : "a fatal signal";
  // Only async-signal-safe calls here: write(2), and the address formatted by hand.
  char address[2 + 16 + 1] = "0x";
  auto bits = reinterpret_cast<std::uintptr_t>(info != nullptr ? info->si_addr : nullptr);
  for (int i = 15; i >= 0; --i, bits >>= 4) address[2 + i] = "0123456789abcdef"[bits & 0xf];
  const char head[] = "selfsup: fatal signal ";
  (void)!::write(STDERR_FILENO, head, sizeof(head) - 1);
  (void)!::write(STDERR_FILENO, name, std::strlen(name));
  const char at[] = " at address ";
  (void)!::write(STDERR_FILENO, at, sizeof(at) - 1);
  (void)!::write(STDERR_FILENO, address, 18);
  const char tail[] = " during training; stack of the faulting thread:\n";
  (void)!::write(STDERR_FILENO, tail, sizeof(tail) - 1);
  void* frames[64];
  ::backtrace_symbols_fd(frames, ::backtrace(frames, 64), STDERR_FILENO);
  std::signal(sig, SIG_DFL); // the fault repeats on return (or the raise lands) and ends us
  std::raise(sig);
}

void install_fatal_signal_reporter() {
  void* warm[1];
  (void)::backtrace(warm, 1); // loads the unwinder now, not inside the handler
  struct sigaction sa {};
  sa.sa_sigaction = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_SIGINFO;
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE}) sigaction(sig, &sa, nullptr);
}
} // namespace

int cmd_train(int argc, char** argv) {
  po::options_description opts("selfsup train CONFIG [options]");
  std::vector<std::string> overrides, plugin_dirs;
  std::string work_dir, resume, device = "cpu", launcher;
  int64_t seed = -1;
  int threads = 0;
  opts.add_options()("help,h",
                     "show this help")("work-dir", po::value(&work_dir),
                                       "where logs, checkpoints and the merged config go "
                                       "(default: cfg.work_dir, else work_dirs/<config name>)")(
      "cfg-options", po::value(&overrides)->multitoken(),
      "override config keys: a.b=value ... (numbers, true/false, null, [lists], strings)")(
      "resume", po::value(&resume),
      "continue from a checkpoint path, or 'auto' for the latest "
      "in the work dir")("seed", po::value(&seed),
                         "random seed (default: cfg.randomness.seed, else 0)")(
      "threads", po::value(&threads),
      "compute threads (default: all cores)")("device", po::value(&device), "cpu or cuda")(
      "plugin-dir", po::value(&plugin_dirs), "also load plugins from this folder (repeatable)")(
      "launcher", po::value(&launcher),
      "none or pytorch: join the ranks RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT describe "
      "(default: cfg.launcher; pytorch when WORLD_SIZE > 1 is set)")(
      "allow-insecure-plugins", "load plugins from folders or files others can write to")(
      "amp", "mixed precision, as MMSelfSup's --amp: optim_wrapper.type becomes AmpOptimWrapper "
             "(bfloat16 autocast on the CPU; float16 with a dynamic loss scaler on CUDA)");
  std::string config;
  po::variables_map vm = parse_with_config(argc, argv, opts, config);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return kOk;
  }
  if (config.empty()) {
    std::cerr << "selfsup train: a CONFIG file is required\n\n" << opts << "\n";
    return kUsage;
  }
  if (threads < 0) throw po::error("--threads must be >= 0");

  core::PluginLoader loader;
  load_plugins(loader, plugin_dirs, vm.count("allow-insecure-plugins") > 0);
  Json cfg = load_config(config, overrides, &loader);
  if (vm.count("amp"))
    if (const std::string note = core::enable_amp(cfg); !note.empty())
      std::cerr << "selfsup: " << note << "\n";

  core::TrainOptions options;
  options.work_dir = work_dir;
  if (seed >= 0) options.seed = uint64_t(seed);
  options.threads = threads;
  options.device = device;
  options.resume = resume;
  options.launcher = launcher;
  options.config_name = std::filesystem::path(config).stem().string();
  options.config_path = config; // never overwritten by the merged config
  // The whole config, before any data is read or anything is written: every problem at once.
  core::check_before_training(cfg, options, config);
  // Building the runner reads the data the config points to, before anything is written: a
  // missing, truncated or corrupt dataset file or an empty image folder is the user's input,
  // so it exits 2 like a config error, with the message that names the file.
  std::unique_ptr<core::Runner> runner;
  try {
    runner = std::make_unique<core::Runner>(std::move(cfg), options);
  } catch (const ValueError& e) {
    std::cerr << "selfsup: data error: " << e.what() << "\n";
    return kUsage;
  }
  install_signal_handlers();
  install_fatal_signal_reporter();
  runner->train();
  return kOk;
}

} // namespace selfsup::host
