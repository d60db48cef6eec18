// Opening a plugin file and checking its handshake: shared by the host's loader and the
// scanner process (selfsup-plugin-scanner), which runs it on new or changed files first.
#include "plugin_scan.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

#include <boost/dll/library_info.hpp>

#include <selfsup/registry.h>
#include <selfsup/version.h>

namespace selfsup::core::detail {

std::vector<std::shared_ptr<boost::dll::shared_library>>& pinned_libraries() {
  // Deliberately leaked, so that no static destructor releases a handle (see plugin_loader.h).
  static auto* libs = new std::vector<std::shared_ptr<boost::dll::shared_library>>();
  return *libs;
}

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

namespace {

// The first bytes of a file, quoted when they are text: `"this is not"`, else in hex.
std::string describe_start(const unsigned char* bytes, size_t n) {
  n = std::min<size_t>(n, 16);
  bool text = true;
  for (size_t i = 0; i < n; ++i)
    if ((bytes[i] < 0x20 || bytes[i] > 0x7e) && bytes[i] != '\n' && bytes[i] != '\t') text = false;
  std::string out;
  if (text) {
    out = "it starts with \"";
    for (size_t i = 0; i < n; ++i)
      out += bytes[i] == '\n' || bytes[i] == '\t' ? ' ' : char(bytes[i]);
    return out + "\"";
  }
  static const char* hex = "0123456789abcdef";
  out = "its first bytes are";
  for (size_t i = 0; i < std::min<size_t>(n, 8); ++i) {
    out += ' ';
    out += hex[bytes[i] >> 4];
    out += hex[bytes[i] & 15];
  }
  return out;
}

// Why `file` cannot be an ELF shared object, from its header alone ("" if it may be one).
std::string not_a_shared_object(const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return std::string("cannot open it: ") + std::strerror(errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return "not a regular file";
  }
  unsigned char head[64] = {0};
  const ssize_t n = ::pread(fd, head, sizeof head, 0);
  ::close(fd);
  if (st.st_size == 0 || n == 0) return "not a shared library: the file is empty (0 bytes)";
  if (n < 0) return std::string("cannot read it: ") + std::strerror(errno);
  if (n < 4 || std::memcmp(head,
                           "\x7f"
                           "ELF",
                           4) != 0)
    return "not a shared library: no ELF header (" + describe_start(head, size_t(n)) + ")";
  if (n < 18)
    return "not a shared library: a truncated ELF header (" + std::to_string(n) + " bytes)";
  const unsigned e_type = head[5] == 2 ? (head[16] << 8) | head[17] : head[16] | (head[17] << 8);
  if (e_type != 3) // ET_DYN
    return "not a shared library: an ELF " +
           std::string(e_type == 1   ? "relocatable object (.o)"
                       : e_type == 2 ? "executable"
                       : e_type == 4 ? "core dump"
                                     : "file of type " + std::to_string(e_type));
  return "";
}

} // namespace

bool open_plugin(const std::string& file, OpenedPlugin& out, std::string& why,
                 const std::function<void(const char*)>& stage) {
  // 1. Inspect without running any of its code.
  why = not_a_shared_object(file);
  if (!why.empty()) return false;
  std::vector<std::string> symbols;
  try {
    boost::dll::library_info info(file, true);
    try {
      symbols = info.symbols("boostdll");
    } catch (const std::exception&) {
      symbols.clear(); // no such section
    }
  } catch (const std::exception& e) {
    why = "not a shared library (" + std::string(e.what()) + ")";
    return false;
  }
  if (std::find(symbols.begin(), symbols.end(), "selfsup_plugin_info") == symbols.end()) {
    why = "no selfsup entry point (alias 'selfsup_plugin_info' not exported; was SELFSUP_PLUGIN "
          "used?)";
    return false;
  }

  // 2. Load it: its static initializers run here.
  if (stage) stage("open");
  auto lib = std::make_shared<boost::dll::shared_library>();
  std::error_code ec;
  dlerror();
  lib->load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
  if (ec) {
    const char* err = dlerror();
    why = std::string("cannot load: ") + (err ? err : ec.message());
    return false;
  }
  pinned_libraries().push_back(lib); // never unloaded, even if refused below

  // 3. Handshake.
  const PluginInfo* info = nullptr;
  try {
    auto& get_info = lib->get_alias<const PluginInfo*()>("selfsup_plugin_info");
    info = get_info();
  } catch (const std::exception& e) {
    why = std::string("cannot read the plugin info: ") + e.what();
    return false;
  }
  if (!info) {
    why = "plugin info is null";
    return false;
  }
  if (info->abi_version != uint32_t(SELFSUP_ABI_VERSION)) {
    why = "plugin ABI version " + std::to_string(info->abi_version) + ", this selfsup expects " +
          std::to_string(SELFSUP_ABI_VERSION);
    return false;
  }
  const std::string host_fp = SELFSUP_BUILD_FINGERPRINT;
  if (!info->fingerprint || host_fp != info->fingerprint) {
    const std::string theirs = info->fingerprint ? info->fingerprint : "";
    why = "built with " + fingerprint_difference(theirs, host_fp) + " [" + theirs +
          "], this selfsup is [" + host_fp + "]";
    return false;
  }
  if (!info->name || !*info->name || !info->version || !info->register_types) {
    why = "plugin info has an empty name, version or register function";
    return false;
  }
  out.library = std::move(lib);
  out.info = info;
  return true;
}

namespace {

bool write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

// Opens `file` as the host would and registers its types into a throw-away registry.
Json probe(const std::string& file, int fd) {
  auto stage = [fd](const char* name) {
    write_all(fd, Json::object({{"stage", name}}).dump() + "\n");
  };
  OpenedPlugin p;
  std::string why;
  if (!open_plugin(file, p, why, stage)) return Json::object({{"ok", false}, {"reason", why}});
  stage("register");
  // Leaked: its factories are the plugin's code, which stays mapped anyway.
  auto* registry = new Registry();
  Registrar registrar(p.info->name, file);
  char err[1024] = {0};
  if (p.info->register_types(&registrar, err, sizeof err) != 0)
    return Json::object(
        {{"ok", false}, {"reason", std::string("register function failed: ") + err}});
  if (registrar.size() == 0) return Json::object({{"ok", false}, {"reason", "registers no types"}});
  try {
    registrar.commit(*registry);
  } catch (const std::exception& e) {
    return Json::object({{"ok", false}, {"reason", e.what()}});
  }
  Json types = Json::array();
  for (const auto* e : registry->entries()) types.push_back(e->kind + "/" + e->name);
  const PluginInfo& i = *p.info;
  Json plugin = Json::object({{"name", i.name},
                              {"version", i.version},
                              {"selfsup_version", i.selfsup_version ? i.selfsup_version : ""},
                              {"torch_version", i.torch_version ? i.torch_version : ""},
                              {"fingerprint", i.fingerprint},
                              {"types", std::move(types)}});
  return Json::object({{"ok", true}, {"plugin", std::move(plugin)}});
}

} // namespace

int scanner_main(int argc, char** argv) {
  int fd = -1;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--fd") == 0) fd = std::atoi(argv[i + 1]);
  if (fd < 3) {
    const char* usage = "selfsup-plugin-scanner: a helper of selfsup, started by it with "
                        "--fd N; it opens plugin files out of the host process\n";
    (void)!::write(2, usage, std::strlen(usage));
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN); // the host has gone: writes fail, and we exit below
  if (!write_all(
          fd, Json::object({{"ready", true}, {"fingerprint", SELFSUP_BUILD_FINGERPRINT}}).dump() +
                  "\n"))
    ::_exit(1);
  std::string buf;
  char chunk[4096];
  for (;;) {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      const std::string file = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      Json reply;
      try {
        reply = probe(file, fd);
      } catch (const std::exception& e) {
        reply =
            Json::object({{"ok", false}, {"reason", std::string("scanning failed: ") + e.what()}});
      }
      if (!write_all(fd, reply.dump() + "\n")) ::_exit(1);
    }
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, size_t(n));
  }
  // The plugins' static destructors are not run: a scanner only reports.
  ::_exit(0);
}

} // namespace selfsup::core::detail
