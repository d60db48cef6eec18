// selfsup launch: starts the local ranks of a data-parallel run as torchrun does (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT), forwards
// SIGINT/SIGTERM to them and, when one fails, stops the others.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <selfsup/errors.h>

#include "cli.h"

namespace selfsup::host {

namespace {

constexpr int kMaxLocal = 256;
pid_t g_children[kMaxLocal];
int g_num_children = 0;
volatile sig_atomic_t g_signal = 0;

extern "C" void forward_signal(int sig) {
  g_signal = sig;
  for (int i = 0; i < g_num_children; ++i)
    if (g_children[i] > 0) kill(g_children[i], sig);
}

void launch_usage(std::ostream& os) {
  os << "Usage: selfsup launch --nproc-per-node N [--nnodes M --node-rank R]\n"
        "                      [--master-addr A] [--master-port P] [--grace S] -- train CONFIG "
        "...\n\n"
        "Starts N ranks of `selfsup train` on this node with torchrun's environment variables\n"
        "(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT)\n"
        "and --launcher pytorch. SIGINT/SIGTERM are forwarded to the ranks (they stop after the\n"
        "same iteration; rank 0 saves a checkpoint). When a rank fails, the others get SIGTERM,\n"
        "then SIGKILL after --grace seconds (default 30), and launch exits with its code.\n\n"
        "  --nproc-per-node N   local ranks (1..256)\n"
        "  --nnodes M           nodes (default 1)\n"
        "  --node-rank R        this node's index, 0..M-1 (default 0)\n"
        "  --master-addr A      the host of rank 0 (default 127.0.0.1)\n"
        "  --master-port P      a free TCP port on that host (default 29500)\n";
}

int to_int(const std::string& opt, const std::string& v, int lo, int hi) {
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || errno != 0 || *end != '\0' || n < lo || n > hi)
    throw ConfigError("selfsup launch " + opt + ": expected an integer in [" + std::to_string(lo) +
                      ", " + std::to_string(hi) + "], got '" + v + "'");
  return int(n);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended";
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kFailure;
}

} // namespace

int cmd_launch(int argc, char** argv) {
  int nproc = 0, nnodes = 1, node_rank = 0, master_port = 29500, grace = 30;
  std::string master_addr = "127.0.0.1";
  std::vector<std::string> command;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (int j = i + 1; j < argc; ++j) command.emplace_back(argv[j]);
      break;
    }
    if (a == "-h" || a == "--help") {
      launch_usage(std::cout);
      return kOk;
    }
    std::string value;
    if (const auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::cerr << "selfsup launch: " << a << " needs a value\n\n";
      launch_usage(std::cerr);
      return kUsage;
    }
    for (auto& c : a)
      if (c == '_') c = '-'; // torchrun spells them --nproc_per_node too
    if (a == "--nproc-per-node") {
      nproc = to_int(a, value, 1, kMaxLocal);
    } else if (a == "--nnodes") {
      nnodes = to_int(a, value, 1, 1 << 16);
    } else if (a == "--node-rank") {
      node_rank = to_int(a, value, 0, (1 << 16) - 1);
    } else if (a == "--master-addr") {
      master_addr = value;
    } else if (a == "--master-port") {
      master_port = to_int(a, value, 1, 65535);
    } else if (a == "--grace") {
      grace = to_int(a, value, 0, 3600);
    } else {
      std::cerr << "selfsup launch: unknown option '" << argv[i - 1] << "'\n\n";
      launch_usage(std::cerr);
      return kUsage;
    }
  }
  if (nproc == 0 || command.empty() || command.front() != "train") {
    std::cerr << "selfsup launch: "
              << (nproc == 0 ? "--nproc-per-node is required"
                             : "expected '-- train CONFIG ...' after the options")
              << "\n\n";
    launch_usage(std::cerr);
    return kUsage;
  }
  if (node_rank >= nnodes)
    throw ConfigError("selfsup launch --node-rank: " + std::to_string(node_rank) +
                      " is not below --nnodes " + std::to_string(nnodes));
  if (master_addr.empty()) throw ConfigError("selfsup launch --master-addr: empty");
  bool has_launcher = false;
  for (const auto& c : command)
    if (c == "--launcher" || c.rfind("--launcher=", 0) == 0) has_launcher = true;
  if (!has_launcher) {
    command.emplace_back("--launcher");
    command.emplace_back("pytorch");
  }

  char self[PATH_MAX];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) throw Error("selfsup launch: cannot find its own executable (/proc/self/exe)");
  self[len] = '\0';
  std::vector<char*> child_argv;
  child_argv.push_back(self);
  for (auto& c : command) child_argv.push_back(c.data());
  child_argv.push_back(nullptr);

  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // The children are started with these blocked (then unblock them), so none is missed.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);

  const int world = nnodes * nproc;
  const pid_t parent = getpid();
  for (int local = 0; local < nproc; ++local) {
    sigprocmask(SIG_BLOCK, &block, &old);
    const pid_t pid = fork();
    if (pid < 0) {
      sigprocmask(SIG_SETMASK, &old, nullptr);
      std::cerr << "selfsup launch: fork failed: " << std::strerror(errno) << "\n";
      forward_signal(SIGTERM);
      break;
    }
    if (pid == 0) {
      // Own process group: a Ctrl-C on the terminal reaches the launcher, which forwards it
      // once. A launcher that dies takes its ranks with it.
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(kFailure);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGINT, &dfl, nullptr);
      sigaction(SIGTERM, &dfl, nullptr);
      sigprocmask(SIG_SETMASK, &old, nullptr);
      const int rank = node_rank * nproc + local;
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("GROUP_RANK", std::to_string(node_rank).c_str(), 1);
      setenv("MASTER_ADDR", master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(master_port).c_str(), 1);
      execv(self, child_argv.data());
      std::fprintf(stderr, "selfsup launch: cannot run %s: %s\n", self, std::strerror(errno));
      _exit(127);
    }
    g_children[g_num_children++] = pid;
    sigprocmask(SIG_SETMASK, &old, nullptr);
  }

  int rc = kOk, running = g_num_children;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  while (running > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      int local = -1;
      for (int i = 0; i < g_num_children; ++i)
        if (g_children[i] == pid) local = i;
      if (local < 0) continue;
      g_children[local] = 0;
      --running;
      const bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
      if (failed && rc == kOk && g_signal == 0) {
        rc = exit_code(status);
        if (rc == kOk) rc = kFailure;
        std::cerr << "selfsup launch: rank " << node_rank * nproc + local << " (pid " << pid << ") "
                  << describe(status)
                  << (running > 0 && !stopping ? "; stopping the other ranks" : "") << "\n";
      }
      if (failed && rc == kOk) rc = exit_code(status) == kOk ? kFailure : exit_code(status);
      if (failed && !stopping && running > 0) {
        stopping = true;
        stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace);
        for (int i = 0; i < g_num_children; ++i)
          if (g_children[i] > 0) kill(g_children[i], SIGTERM);
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      std::cerr << "selfsup launch: " << running << " rank(s) still running " << grace
                << " s after SIGTERM; killing them\n";
      for (int i = 0; i < g_num_children; ++i)
        if (g_children[i] > 0) kill(g_children[i], SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (g_signal != 0 && rc == kOk) rc = 128 + int(g_signal);
  return rc;
}

} // namespace selfsup::host
