// `selfsup convert-config FILE.py`: runs the converter script (tools/selfsup_convert_config.py,
// installed in share/selfsup/tools/) with the system's Python. The script needs only the
// standard library; it is found relative to this executable, in the build tree and the
// install tree alike.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <boost/program_options.hpp>

#include <selfsup/core/runner.h>

#include "cli.h"

extern char** environ;

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace selfsup::host {

namespace {

// <prefix>/share/selfsup/tools/selfsup_convert_config.py, <prefix> being the folder above the
// executable's bin/.
fs::path converter_script() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  return exe.parent_path().parent_path() / "share" / "selfsup" / "tools" /
         "selfsup_convert_config.py";
}

// $SELFSUP_PYTHON, else /usr/bin/python3 (Debian's, whatever python3 comes first on PATH).
std::string python_interpreter(const std::string& option) {
  if (!option.empty()) return option;
  if (const char* env = std::getenv("SELFSUP_PYTHON"); env && *env) return env;
  return "/usr/bin/python3";
}

// Runs argv[0] (a path, or a name looked up in PATH) and returns its exit status; -1 with
// `why` set when it could not be started.
int spawn_and_wait(std::vector<std::string> args, std::string& why) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (rc != 0) {
    why = std::strerror(rc);
    return -1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      why = std::strerror(errno);
      return -1;
    }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  why = "killed by signal " + std::to_string(WTERMSIG(status));
  return -1;
}

} // namespace

int cmd_convert_config(int argc, char** argv) {
  po::options_description opts("selfsup convert-config FILE.py [-o OUT.json] [options]");
  std::string output, python;
  std::vector<std::string> packages;
  opts.add_options()("help,h", "show this help")(
      "output,o", po::value(&output), "write the JSON config here (default: standard output)")(
      "keep-variables",
      "keep every module-level variable (data_root, train_pipeline, ...) as a top-level key; "
      "by default only the keys a selfsup config has are kept, and the others are named")(
      "package", po::value(&packages)->multitoken(),
      "NAME=DIR: the configs folder of package NAME, for _base_ files written 'NAME::path' "
      "(e.g. mmcls=/path/to/mmcls/configs)")(
      "python", po::value(&python),
      "the Python 3 interpreter to run the converter (default: $SELFSUP_PYTHON, else "
      "/usr/bin/python3; only its standard library is used)");
  std::string config;
  po::variables_map vm = parse_with_config(argc, argv, opts, config);
  if (vm.count("help")) {
    std::cout << "Turns an MMSelfSup/mmengine .py config and its _base_ chain into one JSON "
                 "config (bases merged with mmengine's rules, {{_base_.x}} and _base_.x "
                 "references resolved, tuples as lists). Nothing in the file is executed.\n"
              << opts << "\n";
    return kOk;
  }
  if (config.empty()) {
    std::cerr << "selfsup convert-config: a FILE.py is required\n\n" << opts << "\n";
    return kUsage;
  }
  const fs::path script = converter_script();
  std::error_code ec;
  if (script.empty() || !fs::is_regular_file(script, ec)) {
    std::cerr << "selfsup convert-config: the converter script " << script.string()
              << " is missing (it is installed with selfsup in share/selfsup/tools/)\n";
    return kFailure;
  }
  std::vector<std::string> args = {python_interpreter(python), script.string(), config};
  if (!output.empty()) args.insert(args.end(), {"-o", output});
  for (const auto& p : packages) args.insert(args.end(), {"--package", p});
  if (!vm.count("keep-variables")) {
    std::string keys;
    for (const auto& k : core::runner_config_keys()) keys += (keys.empty() ? "" : ",") + k;
    args.insert(args.end(), {"--keep-keys", keys});
  }
  std::string why;
  const int rc = spawn_and_wait(args, why);
  if (rc < 0) {
    std::cerr << "selfsup convert-config: cannot run " << args[0] << " " << script.string() << ": "
              << why << " (set --python or SELFSUP_PYTHON to a Python 3)\n";
    return kFailure;
  }
  if (rc == 0) return kOk;
  return rc == 2 ? kUsage : kFailure;
}

} // namespace selfsup::host
