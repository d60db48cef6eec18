#pragma once
// Internal to the plugin loader (not installed): opening a plugin file and its handshake, the
// scanner process that first opens new or changed files out of the host (as GStreamer's
// gst-plugin-scanner does), and the registry cache that remembers each file's verdict.
//
// plugin_scan_probe.cpp is compiled into libselfsup_core.so and into the scanner executable
// (selfsup-plugin-scanner, core/scanner/main.cpp), which links only libselfsup_sdk.so.
#include <sys/stat.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/dll/shared_library.hpp>

#include <selfsup/json.h>
#include <selfsup/plugin.h>

namespace selfsup::core::detail {

/// Every library this process loads stays mapped until it ends (never dlclose'd).
std::vector<std::shared_ptr<boost::dll::shared_library>>& pinned_libraries();

/// "torch=2.1 (host: torch=1.13), cxx11abi=0 (host: cxx11abi=1)": the fields that differ.
std::string fingerprint_difference(const std::string& theirs, const std::string& ours);

struct OpenedPlugin {
  std::shared_ptr<boost::dll::shared_library> library;
  const PluginInfo* info = nullptr;
};

/// Checks that `file` is an ELF shared object exporting the selfsup entry (without running
/// it), loads it (RTLD_NOW | RTLD_LOCAL, pinned for the life of the process) and checks its
/// info record: ABI version, fingerprint, non-empty fields. On a refusal returns false with the
/// reason in `why`. `stage("open")` is called just before its code first runs.
bool open_plugin(const std::string& file, OpenedPlugin& out, std::string& why,
                 const std::function<void(const char*)>& stage = {});

/// The scanner's main loop: reads one absolute path per line from `fd`, opens each file as
/// the host would (open_plugin, then its register function into a throw-away registry) and
/// answers one JSON line per file: {"ok":true,"plugin":{name,version,...,types}} or
/// {"ok":false,"reason":"..."}, preceded by {"stage":"open"|"register"} lines.
int scanner_main(int argc, char** argv);

/// What scanning one file found.
struct ScanOutcome {
  bool ok = false;
  std::string reason;     // why it was refused
  bool cacheable = false; // a verdict about the file (not a failure of the scanner itself)
  double timeout_s = 0;   // the timeout a hang was judged by (0: not a hang)
  Json plugin;            // the plugin's record when ok
};

/// A running selfsup-plugin-scanner. Files are sent one at a time; a file whose scan crashes,
/// exits or hangs past the timeout is blamed, the process is reaped (killed if hung) and a new
/// one is started for the next file.
class ScannerProcess {
public:
  ScannerProcess(std::string executable, double timeout_s);
  ~ScannerProcess();
  ScannerProcess(const ScannerProcess&) = delete;
  ScannerProcess& operator=(const ScannerProcess&) = delete;

  ScanOutcome scan(const std::string& file);

private:
  bool start(std::string& why);
  /// Closes the channel and reaps the process (killed if it does not exit at once).
  void stop();
  /// Reads what is available from the scanner's stderr (keeps the last few KiB).
  void drain_stderr();
  /// Waits until a whole line has arrived or `deadline_ms` (a CLOCK_MONOTONIC time) passes.
  /// Returns 1 with the line, 0 on end of file, -1 on timeout.
  int read_line(std::string& line, long long deadline_ms);
  /// The process has gone: its exit status in words.
  std::string reap_status();

  std::string executable_;
  double timeout_s_;
  pid_t pid_ = -1;
  int last_signal_ = 0; // what ended the last process reaped (0: it exited)
  int channel_ = -1;
  int stderr_ = -1;
  std::string in_;
  std::string err_;
};

/// The registry cache: each scanned file's verdict, keyed by canonical path, size, mtime and
/// ctime (ns), inode and the host's build fingerprint. A JSON file, written atomically
/// (temporary file + rename, never through a symlink); a missing, corrupt, foreign or
/// symlinked cache is ignored (everything is scanned again) and replaced.
class PluginCache {
public:
  /// `path` empty: no cache. `warn` receives one-line notes (ignored or unwritable cache).
  PluginCache(std::string path, std::function<void(const std::string&)> warn);

  [[nodiscard]] const std::string& path() const { return path_; }
  /// The cached outcome of `file` as it is now (`st`), or nullptr. A hang is reused only if it
  /// was judged with a timeout at least as long as `timeout_s`.
  const Json* lookup(const std::string& file, const struct stat& st, double timeout_s);
  void store(const std::string& file, const struct stat& st, const ScanOutcome& outcome);
  /// Writes the cache if anything changed, dropping entries of files that are gone.
  void save();

private:
  void load();

  std::string path_;
  std::function<void(const std::string&)> warn_;
  bool loaded_ = false;
  bool dirty_ = false;
  Json files_ = Json::object();
};

} // namespace selfsup::core::detail
