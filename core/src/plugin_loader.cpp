#include <selfsup/core/plugin_loader.h>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>

#include <boost/dll/library_info.hpp>
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <selfsup/plugin.h>
#include <selfsup/version.h>

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

// Plugins are never unloaded: every library this process loads stays mapped until it ends
// (never dlclose'd, whatever becomes of the loader or the registry), because objects a plugin
// made (modules, factories, exception and type info) may be alive anywhere and its code must
// outlive them. The handles are deliberately leaked so no static destructor releases them.
std::vector<std::shared_ptr<boost::dll::shared_library>>& pinned_libraries() {
  static auto* libs = new std::vector<std::shared_ptr<boost::dll::shared_library>>();
  return *libs;
}

std::mutex& loader_mutex() {
  static std::mutex m;
  return m;
}

// "torch=2.1 (host: torch=1.13), cxx11abi=0 (host: cxx11abi=1)": the fields that differ.
std::string fingerprint_difference(const std::string& theirs, const std::string& ours) {
  auto split = [](const std::string& s) {
    std::vector<std::pair<std::string, std::string>> out;
    size_t start = 0;
    while (start < s.size()) {
      size_t end = s.find(';', start);
      if (end == std::string::npos) end = s.size();
      std::string kv = s.substr(start, end - start);
      size_t eq = kv.find('=');
      out.emplace_back(kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
      start = end + 1;
    }
    return out;
  };
  auto mine = split(ours);
  std::string diff;
  for (const auto& [k, v] : split(theirs)) {
    for (const auto& [k2, v2] : mine)
      if (k == k2 && v != v2)
        diff += (diff.empty() ? "" : ", ") + k + "=" + v + " (host: " + k + "=" + v2 + ")";
  }
  return diff.empty() ? std::string("another build fingerprint") : diff;
}

} // namespace

PluginLoader::PluginLoader(Registry& registry) : registry_(registry) {
  on_refusal = [](const std::string& line) { std::cerr << line << "\n"; };
}

std::string PluginLoader::builtin_plugin_dir() {
  fs::path lib = boost::dll::this_line_location().parent_path().string();
  return (lib / "selfsup" / "plugins").string();
}

void PluginLoader::refuse(const std::string& file, const std::string& reason) {
  refusals_.push_back({file, reason});
  registry_.note_refused(file, reason);
  if (on_refusal) on_refusal("selfsup: skipping plugin " + file + ": " + reason);
}

std::string PluginLoader::insecure_reason(const std::string& path) const {
  if (allow_insecure_) return "";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  if (st.st_mode & S_IWOTH)
    return "it is world-writable (use --allow-insecure-plugins to load it anyway)";
  if (st.st_uid != ::geteuid() && st.st_uid != 0)
    return "it is owned by another user (uid " + std::to_string(st.st_uid) +
           "; use --allow-insecure-plugins to load it anyway)";
  if ((st.st_mode & S_IWGRP) && st.st_gid != ::getegid())
    return "it is writable by another group (gid " + std::to_string(st.st_gid) +
           "; use --allow-insecure-plugins to load it anyway)";
  return "";
}

void PluginLoader::load_directory(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    refuse(dir, "not a directory");
    return;
  }
  if (std::string why = insecure_reason(dir); !why.empty()) {
    refuse(dir, "plugin folder refused: " + why);
    return;
  }
  dirs_.push_back(dir);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto& p = entry.path();
    if (p.extension() != ".so") continue;
    if (!entry.is_regular_file(ec)) continue; // only regular files (or links to them)
    files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) load_file(f.string());
}

void PluginLoader::load_default_locations(const std::vector<std::string>& extra_dirs) {
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
  std::error_code ec;
  fs::path canonical = fs::canonical(file_in, ec);
  if (ec) {
    refuse(file_in, "cannot resolve path: " + ec.message());
    return false;
  }
  const std::string file = canonical.string();
  if (!seen_files_.insert(file).second) return true; // the same file reached twice: once
  if (!fs::is_regular_file(canonical, ec)) {
    refuse(file, "not a regular file");
    return false;
  }
  if (std::string why = insecure_reason(file); !why.empty()) {
    refuse(file, why);
    return false;
  }

  // 1. Inspect without running any of its code.
  std::vector<std::string> symbols;
  try {
    boost::dll::library_info info(canonical.string(), true);
    try {
      symbols = info.symbols("boostdll");
    } catch (const std::exception&) {
      symbols.clear(); // no such section
    }
  } catch (const std::exception& e) {
    refuse(file, "not a shared library (" + std::string(e.what()) + ")");
    return false;
  }
  if (std::find(symbols.begin(), symbols.end(), "selfsup_plugin_info") == symbols.end()) {
    refuse(file, "no selfsup entry point (alias 'selfsup_plugin_info' not exported; "
                 "was SELFSUP_PLUGIN used?)");
    return false;
  }

  // 2. Load it.
  std::lock_guard<std::mutex> lock(loader_mutex());
  auto lib = std::make_shared<boost::dll::shared_library>();
  dlerror();
  lib->load(canonical.string(), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local,
            ec);
  if (ec) {
    const char* why = dlerror();
    refuse(file, std::string("cannot load: ") + (why ? why : ec.message()));
    return false;
  }
  pinned_libraries().push_back(lib); // never unloaded, even if refused below

  // 3. Handshake.
  const PluginInfo* info = nullptr;
  try {
    auto& get_info = lib->get_alias<const PluginInfo*()>("selfsup_plugin_info");
    info = get_info();
  } catch (const std::exception& e) {
    refuse(file, std::string("cannot read the plugin info: ") + e.what());
    return false;
  }
  if (!info) {
    refuse(file, "plugin info is null");
    return false;
  }
  if (info->abi_version != uint32_t(SELFSUP_ABI_VERSION)) {
    refuse(file, "plugin ABI version " + std::to_string(info->abi_version) +
                     ", this selfsup expects " + std::to_string(SELFSUP_ABI_VERSION));
    return false;
  }
  const std::string host_fp = SELFSUP_BUILD_FINGERPRINT;
  if (!info->fingerprint || host_fp != info->fingerprint) {
    const std::string theirs = info->fingerprint ? info->fingerprint : "";
    refuse(file, "built with " + fingerprint_difference(theirs, host_fp) + " [" + theirs +
                     "], this selfsup is [" + host_fp + "]");
    return false;
  }
  if (!info->name || !*info->name || !info->version || !info->register_types) {
    refuse(file, "plugin info has an empty name, version or register function");
    return false;
  }
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

  // 4. Register, all or nothing. A type name another plugin also provides is fine: configs
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
