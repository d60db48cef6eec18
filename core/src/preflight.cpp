#include <selfsup/core/preflight.h>

#include <filesystem>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "run_setup.h"

namespace fs = std::filesystem;

namespace selfsup::core {

std::vector<std::string> preflight(const Json& cfg, const TrainOptions& options) {
  const Registry& registry = options.registry ? *options.registry : Registry::global();
  std::vector<std::string> problems = registry.validate(Config(cfg), RunnerKeys::table().schema());
  if (!options.resume.empty() && options.resume != "auto") {
    std::error_code ec;
    if (!fs::is_regular_file(options.resume, ec))
      problems.push_back("--resume: expected an existing checkpoint file or \"auto\", got \"" +
                         options.resume + "\"");
  }
  return problems;
}

void check_before_training(const Json& cfg, const TrainOptions& options, const std::string& what) {
  const std::vector<std::string> problems = preflight(cfg, options);
  if (problems.empty()) return;
  std::string text = what + ": " + std::to_string(problems.size()) +
                     (problems.size() == 1 ? " problem" : " problems") +
                     " (found before anything was built, read or written):";
  for (const auto& p : problems) {
    text += "\n  ";
    for (const char c : p) text += c == '\n' ? std::string("\n    ") : std::string(1, c);
  }
  throw ConfigError(text);
}

} // namespace selfsup::core
