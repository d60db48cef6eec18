#include <selfsup/core/plugin_loader.h>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>

#include <boost/dll/runtime_symbol_info.hpp>

#include <selfsup/errors.h>
#include <selfsup/plugin.h>
#include <selfsup/version.h>

#include "plugin_scan.h"

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

std::mutex& loader_mutex() {
  static std::mutex m;
  return m;
}

constexpr double kDefaultScanTimeout = 10.0;

std::string mode_text(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", unsigned(mode & 07777));
  return buf;
}

// What a path is, when it is not a plugin file.
std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

} // namespace

// The outermost public load call ends the scanning session: the scanner stops and the cache
// is written once.
class PluginLoader::CallGuard {
public:
  explicit CallGuard(PluginLoader& l) : l_(l) { ++l_.depth_; }
  ~CallGuard() {
    if (--l_.depth_ == 0) l_.end_session();
  }
  CallGuard(const CallGuard&) = delete;
  CallGuard& operator=(const CallGuard&) = delete;

private:
  PluginLoader& l_;
};

PluginLoader::PluginLoader(Registry& registry) : registry_(registry) {
  on_refusal = [](const std::string& line) { std::cerr << line << "\n"; };
  on_warning = [](const std::string& line) { std::cerr << line << "\n"; };
}

PluginLoader::~PluginLoader() {
  if (depth_ > 0) return; // cannot happen: a guard lives inside a call
  scanner_.reset();
}

std::string PluginLoader::builtin_plugin_dir() {
  fs::path lib = boost::dll::this_line_location().parent_path().string();
  return (lib / "selfsup" / "plugins").string();
}

std::string PluginLoader::scanner_path() {
  fs::path lib = boost::dll::this_line_location().parent_path().string();
  return (lib / "selfsup" / "selfsup-plugin-scanner").string();
}

std::string PluginLoader::default_cache_path() {
  if (const char* env = std::getenv("SELFSUP_PLUGIN_CACHE")) {
    const std::string v = env;
    return v == "off" ? std::string() : v;
  }
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg == '/') return std::string(xdg) + "/selfsup/plugin-registry.json";
  const char* home = std::getenv("HOME");
  if (home && *home == '/') return std::string(home) + "/.cache/selfsup/plugin-registry.json";
  return "";
}

void PluginLoader::set_scan_timeout(double seconds) {
  if (!(seconds > 0) || seconds > 86400)
    throw ValueError("plugin scan timeout: expected seconds in (0, 86400], got " +
                     std::to_string(seconds));
  scan_timeout_ = seconds;
  scanner_.reset(); // a running scanner keeps the timeout it was made with
}

double PluginLoader::scan_timeout() {
  if (scan_timeout_ > 0) return scan_timeout_;
  scan_timeout_ = kDefaultScanTimeout;
  if (const char* env = std::getenv("SELFSUP_PLUGIN_SCAN_TIMEOUT")) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(env, &end);
    if (!*env || *end || errno || !(v > 0) || v > 86400)
      throw ConfigError(std::string("SELFSUP_PLUGIN_SCAN_TIMEOUT: expected a number of seconds "
                                    "in (0, 86400], got '") +
                        env + "'");
    scan_timeout_ = v;
  }
  return scan_timeout_;
}

void PluginLoader::set_cache_path(const std::string& path) {
  cache_path_ = path;
  cache_path_set_ = true;
  cache_.reset();
}

void PluginLoader::refuse(const std::string& file, const std::string& reason) {
  refusals_.push_back({file, reason});
  registry_.note_refused(file, reason);
  if (on_refusal) on_refusal("selfsup: skipping plugin " + file + ": " + reason);
}

std::string PluginLoader::insecure_reason(const std::string& canonical, bool is_folder) {
  if (allow_insecure_) return "";
  static const std::string hint = " (use --allow-insecure-plugins to load it anyway)";
  // `what` is the node's role in the message; `ancestor`: a folder above the plugin folder,
  // which may be writable by others if sticky (others cannot rename or delete our entries).
  auto check = [&](const fs::path& node, const std::string& what, bool ancestor) -> std::string {
    struct stat st {};
    if (::lstat(node.c_str(), &st) != 0)
      return "cannot check " + what + " " + node.string() + ": " + std::strerror(errno);
    const std::string mode = ", mode " + mode_text(st.st_mode);
    if (st.st_uid != ::geteuid() && st.st_uid != 0)
      return what + " " + node.string() + " is owned by another user (uid " +
             std::to_string(st.st_uid) + "), not by us or root" + hint;
    const bool sticky_ok = ancestor && S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX);
    if ((st.st_mode & S_IWOTH) && !sticky_ok)
      return what + " " + node.string() + " is world-writable (" + mode.substr(2) + ")" + hint;
    if ((st.st_mode & S_IWGRP) && !sticky_ok)
      return what + " " + node.string() + " is group-writable (gid " + std::to_string(st.st_gid) +
             mode + ")" + hint;
    return "";
  };
  const fs::path path(canonical);
  std::string why = check(path, is_folder ? "the plugin folder" : "the plugin file", false);
  if (!why.empty()) return why;
  fs::path dir = path.parent_path();
  if (!is_folder) { // its own folder: as strict as a plugin folder
    auto [it, fresh] = folder_verdicts_.try_emplace("=" + dir.string());
    if (fresh) it->second = check(dir, "its folder", false);
    if (!it->second.empty()) return it->second;
    if (dir == dir.root_path()) return "";
    dir = dir.parent_path();
  }
  for (;; dir = dir.parent_path()) {
    auto [it, fresh] = folder_verdicts_.try_emplace(dir.string());
    if (fresh) it->second = check(dir, "the parent folder", true);
    if (!it->second.empty()) return it->second;
    if (dir == dir.root_path() || dir.empty()) break;
  }
  return "";
}

void PluginLoader::end_session() {
  scanner_.reset();
  try {
    if (cache_) cache_->save();
  } catch (const std::exception& e) { // a cache is an optimisation: say so, go on
    if (on_warning) on_warning(std::string("selfsup: cannot write the plugin cache: ") + e.what());
  }
}

bool PluginLoader::prescan(const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    refuse(file, std::string("cannot read it: ") + std::strerror(errno));
    return false;
  }
  const double timeout = scan_timeout();
  if (!cache_)
    cache_ = std::make_unique<detail::PluginCache>(
        cache_path_set_ ? cache_path_ : default_cache_path(), [this](const std::string& line) {
          if (on_warning) on_warning(line);
        });
  if (const Json* hit = cache_->lookup(file, st, timeout)) {
    ++stats_.cached;
    if (hit->find("ok")->as_bool()) return true;
    refuse(file, hit->find("reason")->as_string());
    return false;
  }
  ++stats_.scanned;
  if (!scanner_) scanner_ = std::make_unique<detail::ScannerProcess>(scanner_path(), timeout);
  const detail::ScanOutcome out = scanner_->scan(file);
  if (out.cacheable) cache_->store(file, st, out);
  if (!out.ok) {
    refuse(file, out.reason);
    return false;
  }
  return true;
}

void PluginLoader::load_directory(const std::string& dir_in) {
  CallGuard guard(*this);
  std::error_code ec;
  if (!fs::is_directory(dir_in, ec)) {
    refuse(dir_in, "not a directory");
    return;
  }
  const fs::path dir = fs::canonical(dir_in, ec);
  if (ec) {
    refuse(dir_in, "cannot resolve the folder: " + ec.message());
    return;
  }
  if (std::string why = insecure_reason(dir.string(), true); !why.empty()) {
    refuse(dir_in, "plugin folder refused: " + why);
    return;
  }
  dirs_.push_back(dir_in);
  // Every `*.so` entry counts: one that is not a loadable file (a folder, a dangling link, a
  // link loop, a FIFO) is refused with its reason, never silently passed over.
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir_in, ec))
    if (entry.path().extension() == ".so") files.push_back(entry.path());
  if (ec) refuse(dir_in, "cannot list the folder: " + ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) load_file(f.string());
}

void PluginLoader::load_default_locations(const std::vector<std::string>& extra_dirs) {
  CallGuard guard(*this);
  std::string own = builtin_plugin_dir();
  std::error_code ec;
  if (fs::is_directory(own, ec)) load_directory(own);
  if (const char* env = std::getenv("SELFSUP_PLUGIN_PATH")) {
    std::string s(env);
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find(':', start);
      if (end == std::string::npos) end = s.size();
      if (end > start) load_directory(s.substr(start, end - start));
      start = end + 1;
    }
  }
  for (const auto& d : extra_dirs) load_directory(d);
}

void PluginLoader::load_spec(const std::string& spec, const std::string& json_path) {
  CallGuard guard(*this);
  std::error_code ec;
  if (spec.find('/') != std::string::npos || fs::exists(spec, ec)) {
    if (fs::is_directory(spec, ec)) {
      load_directory(spec);
      return;
    }
    if (!fs::is_regular_file(spec, ec))
      throw ConfigError(json_path + ": plugin file '" + spec + "' does not exist");
    if (!load_file(spec))
      throw ConfigError(json_path + ": plugin file '" + spec +
                        "' was refused: " + refusals_.back().reason);
    return;
  }
  // A name: already loaded, or lib<name>.so in a search folder.
  for (const auto& p : plugins_)
    if (p.name == spec) return;
  std::vector<std::string> dirs = dirs_;
  dirs.push_back(builtin_plugin_dir());
  for (const auto& d : dirs) {
    for (const std::string& file : {"lib" + spec + ".so", "libselfsup_" + spec + ".so"}) {
      fs::path p = fs::path(d) / file;
      if (fs::is_regular_file(p, ec)) {
        load_file(p.string());
        for (const auto& rec : plugins_)
          if (rec.name == spec) return;
      }
    }
  }
  throw ConfigError(json_path + ": plugin '" + spec + "' not found (searched lib" + spec +
                    ".so in " + std::to_string(dirs.size()) + " plugin folders)");
}

bool PluginLoader::load_file(const std::string& file_in) {
  CallGuard guard(*this);
  std::error_code ec;
  fs::path canonical = fs::canonical(file_in, ec);
  if (ec) {
    std::string why = ec.message();
    struct stat st {};
    if (ec.value() == ELOOP)
      why = "a symbolic link loop (" + why + ")";
    else if (::lstat(file_in.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
      why = "a dangling symbolic link (" + why + ")";
    refuse(file_in, "cannot resolve path: " + why);
    return false;
  }
  const std::string file = canonical.string();
  if (!seen_files_.insert(file).second) return true; // the same file reached twice: once
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    refuse(file, std::string("cannot read it: ") + std::strerror(errno));
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    refuse(file, kind_of(st.st_mode) + ", not a plugin file");
    return false;
  }
  if (std::string why = insecure_reason(file, false); !why.empty()) {
    refuse(file, why);
    return false;
  }
  // 1. New or changed files are first opened by the scanner, out of this process.
  if (!prescan(file)) return false;

  // 2. Open it here (the same checks again, then its code runs in this process).
  std::lock_guard<std::mutex> lock(loader_mutex());
  detail::OpenedPlugin opened;
  std::string why;
  if (!detail::open_plugin(file, opened, why)) {
    refuse(file, why);
    return false;
  }
  const PluginInfo* info = opened.info;
  for (const auto& p : plugins_) {
    if (p.name == info->name) {
      refuse(file,
             std::string("plugin name '") + info->name + "' is already provided by " + p.file);
      return false;
    }
  }
  // The plugin name is the scope of its types ("name.Type"), so it must be unique in the
  // registry too (the engine's own "core", or a plugin another loader put there).
  for (const auto* e : registry_.entries()) {
    if (e->plugin == info->name) {
      refuse(file,
             std::string("plugin name '") + info->name + "' is already provided by " + e->file);
      return false;
    }
  }

  // 3. Register, all or nothing. A type name another plugin also provides is fine: configs
  // choose with "plugin.Type", and a bare name they share is an error when it is built.
  Registrar registrar(info->name, file);
  char err[1024] = {0};
  if (info->register_types(&registrar, err, sizeof err) != 0) {
    refuse(file, std::string("register function failed: ") + err);
    return false;
  }
  if (registrar.size() == 0) {
    refuse(file, "registers no types");
    return false;
  }
  PluginRecord rec{info->name,
                   info->version,
                   file,
                   info->selfsup_version ? info->selfsup_version : "",
                   info->torch_version ? info->torch_version : "",
                   info->fingerprint,
                   {}};
  try {
    registrar.commit(registry_);
  } catch (const std::exception& e) {
    refuse(file, e.what());
    return false;
  }
  for (const auto* e : registry_.entries())
    if (e->file == file) rec.types.push_back(e->kind + "/" + e->name);
  plugins_.push_back(std::move(rec));
  return true;
}

} // namespace selfsup::core
