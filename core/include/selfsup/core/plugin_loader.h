#pragma once
// Finds, checks and loads plugin libraries. A file that is not a plugin, or a plugin that
// fails the handshake or its registration, is reported in one line (file + reason) and
// skipped; nothing of it is registered. Loaded libraries stay mapped for the life of the
// process, so nothing they created can outlive their code.
//
// Safe scan (as GStreamer's registry): a new or changed file is first opened in a helper
// process, selfsup-plugin-scanner (lib/selfsup/ beside libselfsup_core.so). A file whose
// loading crashes (a signal), aborts, exits or hangs there past the scan timeout is refused
// in one line, and the host never runs it. Each verdict is kept in a registry cache keyed by
// the file's canonical path, size, mtime, ctime, inode and the host's build fingerprint, so
// unchanged files are not scanned again (refusals included).
//
// Who may write the code we run: the file, its folder and every folder above it up to `/`
// (symlinks resolved first) must be owned by us or root and not writable by group or others;
// a folder above the plugin folder may be writable by others only if it is sticky (as /tmp:
// nobody else can rename or delete what is ours in it). Otherwise refused, unless
// allow_insecure(true).
#include <functional>
#include <map>
#include <memory>
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

namespace detail {
class PluginCache;
class ScannerProcess;
} // namespace detail

class SELFSUP_CORE_API PluginLoader {
public:
  explicit PluginLoader(Registry& registry = Registry::global());
  ~PluginLoader();
  PluginLoader(const PluginLoader&) = delete;
  PluginLoader& operator=(const PluginLoader&) = delete;

  /// Also load from folders and files that others can write to (world-writable, or
  /// group-writable, or owned by another user than us or root). Off by default.
  void allow_insecure(bool allow) { allow_insecure_ = allow; }

  /// Seconds a file's scan may take before it is killed and refused as hanging. Default:
  /// SELFSUP_PLUGIN_SCAN_TIMEOUT if set (a number > 0), else 10.
  void set_scan_timeout(double seconds);
  /// The registry cache file; "" disables it. Default: default_cache_path().
  void set_cache_path(const std::string& path);
  /// SELFSUP_PLUGIN_CACHE if set ("" or "off": no cache), else
  /// $XDG_CACHE_HOME/selfsup/plugin-registry.json, else ~/.cache/selfsup/plugin-registry.json.
  static std::string default_cache_path();

  /// The install's own plugin folder: lib/selfsup/plugins beside libselfsup_core.so.
  static std::string builtin_plugin_dir();
  /// The helper that opens new plugin files first: lib/selfsup/selfsup-plugin-scanner.
  static std::string scanner_path();

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

  /// Files whose verdict came from a scan in the helper process, and from the cache.
  struct ScanStats {
    size_t scanned = 0;
    size_t cached = 0;
  };
  [[nodiscard]] const ScanStats& scan_stats() const { return stats_; }

  /// Called with each one-line refusal; the default prints to stderr.
  std::function<void(const std::string&)> on_refusal;
  /// Called with other one-line notes (a cache ignored or not writable); default: stderr.
  std::function<void(const std::string&)> on_warning;

private:
  class CallGuard;
  void refuse(const std::string& file, const std::string& reason);
  /// Why others could replace `canonical` (a file or plugin folder, symlinks resolved): it,
  /// or a folder above it, is writable by others or owned by another user. Empty if safe or
  /// if insecure is allowed.
  std::string insecure_reason(const std::string& canonical, bool is_folder);
  /// Scans `file` (canonical) in the helper process, or takes the verdict from the cache;
  /// refuses it and returns false if it is not fit to load.
  bool prescan(const std::string& file);
  /// Ends a scanning session: stops the scanner and saves the cache.
  void end_session();
  double scan_timeout();

  Registry& registry_;
  std::vector<PluginRecord> plugins_;
  std::vector<PluginRefusal> refusals_;
  std::vector<std::string> dirs_;
  std::set<std::string> seen_files_;
  std::map<std::string, std::string> folder_verdicts_; // canonical folder -> insecure reason
  bool allow_insecure_ = false;
  double scan_timeout_ = 0; // 0: not chosen yet
  std::string cache_path_;
  bool cache_path_set_ = false;
  std::unique_ptr<detail::PluginCache> cache_;
  std::unique_ptr<detail::ScannerProcess> scanner_;
  int depth_ = 0; // nesting of public load calls; the session ends with the outermost
  ScanStats stats_;
};

} // namespace selfsup::core
