#pragma once
// Finds, checks and loads plugin libraries. A file that is not a plugin, or a plugin that
// fails the handshake or its registration, is reported in one line (file + reason) and
// skipped; nothing of it is registered. Loaded libraries stay mapped for the life of the
// process, so nothing they created can outlive their code.
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <selfsup/core/export.h>
#include <selfsup/registry.h>

namespace selfsup::core {

struct PluginRecord {
  std::string name;
  std::string version;
  std::string file;
  std::string selfsup_version;
  std::string torch_version;
  std::string fingerprint;
  std::vector<std::string> types; // "kind/Type"
};

struct PluginRefusal {
  std::string file;
  std::string reason;
};

class SELFSUP_CORE_API PluginLoader {
public:
  explicit PluginLoader(Registry& registry = Registry::global());

  /// Also load from folders and files that others can write to (world-writable, or
  /// group-writable, or owned by another user than us or root). Off by default.
  void allow_insecure(bool allow) { allow_insecure_ = allow; }

  /// The install's own plugin folder: lib/selfsup/plugins beside libselfsup_core.so.
  static std::string builtin_plugin_dir();

  /// Loads every regular `*.so` file of a folder, in name order. A missing folder is reported.
  void load_directory(const std::string& dir);
  /// Loads one file; returns whether it was registered. Refusals are recorded and reported.
  bool load_file(const std::string& file);
  /// A config "plugins" entry: a path to a file or folder, or a plugin name looked up as
  /// lib<name>.so / libselfsup_<name>.so in the search folders. Throws ConfigError if not found.
  void load_spec(const std::string& spec, const std::string& json_path);
  /// The built-in folder, each folder of SELFSUP_PLUGIN_PATH, then each of `extra_dirs`.
  void load_default_locations(const std::vector<std::string>& extra_dirs);

  [[nodiscard]] const std::vector<PluginRecord>& plugins() const { return plugins_; }
  [[nodiscard]] const std::vector<PluginRefusal>& refusals() const { return refusals_; }
  [[nodiscard]] const std::vector<std::string>& search_dirs() const { return dirs_; }

  /// Called with each one-line refusal; the default prints to stderr.
  std::function<void(const std::string&)> on_refusal;

private:
  void refuse(const std::string& file, const std::string& reason);
  /// Why others could replace `path` (empty if they cannot, or if insecure is allowed).
  std::string insecure_reason(const std::string& path) const;

  Registry& registry_;
  std::vector<PluginRecord> plugins_;
  std::vector<PluginRefusal> refusals_;
  std::vector<std::string> dirs_;
  std::set<std::string> seen_files_;
  bool allow_insecure_ = false;
};

} // namespace selfsup::core
