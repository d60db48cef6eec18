// The host's side of the plugin scan: the scanner process and the registry cache.
#include "plugin_scan.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>

#include <selfsup/version.h>

extern char** environ;

namespace fs = std::filesystem;

namespace selfsup::core::detail {

namespace {

long long now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string seconds_text(double s) {
  std::string t = std::to_string(s);
  t.erase(t.find_last_not_of('0') + 1);
  if (!t.empty() && t.back() == '.') t.pop_back();
  return t + " s";
}

std::string signal_name(int sig) {
  switch (sig) {
  case SIGSEGV:
    return "SIGSEGV";
  case SIGABRT:
    return "SIGABRT";
  case SIGBUS:
    return "SIGBUS";
  case SIGILL:
    return "SIGILL";
  case SIGFPE:
    return "SIGFPE";
  case SIGTRAP:
    return "SIGTRAP";
  case SIGSYS:
    return "SIGSYS";
  case SIGKILL:
    return "SIGKILL";
  case SIGTERM:
    return "SIGTERM";
  case SIGINT:
    return "SIGINT";
  case SIGHUP:
    return "SIGHUP";
  case SIGQUIT:
    return "SIGQUIT";
  case SIGPIPE:
    return "SIGPIPE";
  case SIGXCPU:
    return "SIGXCPU";
  case SIGXFSZ:
    return "SIGXFSZ";
  default:
    return "signal " + std::to_string(sig);
  }
}

// Signals another process (a user, a terminal) sends: no verdict about the file.
bool external_signal(int sig) {
  return sig == SIGKILL || sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT;
}

std::string stage_text(const std::string& stage) {
  if (stage == "open") return "while being opened (in a static initializer)";
  if (stage == "register") return "in its register function";
  return "while being inspected";
}

// The last lines the scanner wrote to stderr, on one line (at most ~300 characters).
std::string stderr_tail(const std::string& err) {
  std::string flat;
  for (char c : err) {
    if (c == '\n' || c == '\r' || c == '\t') {
      if (!flat.empty() && flat.back() != ' ') flat += ' ';
    } else if (static_cast<unsigned char>(c) >= 0x20) {
      flat += c;
    }
  }
  while (!flat.empty() && flat.back() == ' ') flat.pop_back();
  if (flat.empty()) return "";
  if (flat.size() > 300) flat = "..." + flat.substr(flat.size() - 300);
  return "; it printed: " + flat;
}

bool send_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

} // namespace

// --- the scanner process -----------------------------------------------------------------

ScannerProcess::ScannerProcess(std::string executable, double timeout_s)
    : executable_(std::move(executable)), timeout_s_(timeout_s) {}

ScannerProcess::~ScannerProcess() {
  stop();
}

bool ScannerProcess::start(std::string& why) {
  if (::access(executable_.c_str(), X_OK) != 0) {
    why = "the plugin scanner " + executable_ + " cannot be run (" + std::strerror(errno) +
          "); is the install complete?";
    return false;
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    why = std::string("socketpair: ") + std::strerror(errno);
    return false;
  }
  int ep[2];
  if (::pipe2(ep, O_CLOEXEC) != 0) {
    why = std::string("pipe: ") + std::strerror(errno);
    ::close(sv[0]);
    ::close(sv[1]);
    return false;
  }
  // Above the fds the child gets (0-3), so that dup2 never meets itself.
  const int child_channel = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
  const int child_err = ::fcntl(ep[1], F_DUPFD_CLOEXEC, 10);
  ::close(sv[1]);
  ::close(ep[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  // What a plugin prints goes to the stderr pipe: stdout is never a channel.
  posix_spawn_file_actions_adddup2(&actions, child_err, 1);
  posix_spawn_file_actions_adddup2(&actions, child_err, 2);
  posix_spawn_file_actions_adddup2(&actions, child_channel, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so a Ctrl-C at the terminal is the host's to handle; the scanner
  // ends when the host closes the channel (or dies). Signals unblocked, SIGPIPE default.
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string fd_arg = "3";
  std::string fd_flag = "--fd";
  char* args[] = {executable_.data(), fd_flag.data(), fd_arg.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, executable_.c_str(), &actions, &attr, args, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(child_channel);
  ::close(child_err);
  if (rc != 0) {
    why = "cannot start the plugin scanner " + executable_ + ": " + std::strerror(rc);
    ::close(sv[0]);
    ::close(ep[0]);
    return false;
  }
  pid_ = pid;
  channel_ = sv[0];
  stderr_ = ep[0];
  ::fcntl(stderr_, F_SETFL, ::fcntl(stderr_, F_GETFL) | O_NONBLOCK);
  in_.clear();
  err_.clear();

  // It says it is ready once its libraries are loaded; start-up gets a longer time.
  const double startup_s = std::max(30.0, timeout_s_);
  std::string line;
  const int r = read_line(line, now_ms() + static_cast<long long>(startup_s * 1000));
  if (r != 1) {
    if (r < 0) {
      ::kill(pid_, SIGKILL);
      why =
          "the plugin scanner " + executable_ + " did not start within " + seconds_text(startup_s);
    } else {
      why = "the plugin scanner " + executable_ + " " + reap_status() + " at start";
    }
    drain_stderr();
    why += stderr_tail(err_);
    stop();
    return false;
  }
  std::string fingerprint;
  try {
    const Json ready = Json::parse(line, "plugin scanner");
    if (const Json* f = ready.find("fingerprint"); f && f->is_string())
      fingerprint = f->as_string();
  } catch (const std::exception&) {
  }
  if (fingerprint != SELFSUP_BUILD_FINGERPRINT) {
    why = "the plugin scanner " + executable_ + " is of another build [" + fingerprint +
          "], this selfsup is [" + SELFSUP_BUILD_FINGERPRINT + "]";
    stop();
    return false;
  }
  return true;
}

void ScannerProcess::stop() {
  if (channel_ >= 0) ::close(channel_);
  channel_ = -1;
  if (pid_ > 0) {
    // An idle scanner exits when its channel closes; give it a moment, then kill it.
    int status = 0;
    const long long deadline = now_ms() + 2000;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (now_ms() > deadline) {
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        break;
      }
      ::usleep(2000);
    }
  }
  pid_ = -1;
  if (stderr_ >= 0) ::close(stderr_);
  stderr_ = -1;
  in_.clear();
}

void ScannerProcess::drain_stderr() {
  if (stderr_ < 0) return;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(stderr_, buf, sizeof buf);
    if (n > 0) {
      err_.append(buf, size_t(n));
      if (err_.size() > 8192) err_.erase(0, err_.size() - 4096);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) { // every writer has gone
      ::close(stderr_);
      stderr_ = -1;
    }
    return;
  }
}

int ScannerProcess::read_line(std::string& line, long long deadline_ms) {
  for (;;) {
    if (const size_t nl = in_.find('\n'); nl != std::string::npos) {
      line = in_.substr(0, nl);
      in_.erase(0, nl + 1);
      return 1;
    }
    const long long left = deadline_ms - now_ms();
    if (left <= 0) return -1;
    pollfd fds[2] = {{channel_, POLLIN, 0}, {stderr_, POLLIN, 0}};
    const int r = ::poll(fds, stderr_ >= 0 ? 2 : 1, int(std::min<long long>(left, INT_MAX)));
    if (r < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    if (stderr_ >= 0 && fds[1].revents) drain_stderr();
    if (fds[0].revents) {
      char buf[4096];
      const ssize_t n = ::read(channel_, buf, sizeof buf);
      if (n > 0) {
        in_.append(buf, size_t(n));
      } else if (n == 0 || errno != EINTR) {
        return 0;
      }
    }
  }
}

std::string ScannerProcess::reap_status() {
  // The channel closed: the process is ending (a plugin that closed it and lives on is killed).
  int status = 0;
  last_signal_ = 0;
  const long long deadline = now_ms() + 2000;
  pid_t r;
  while ((r = ::waitpid(pid_, &status, WNOHANG)) == 0 && now_ms() < deadline) ::usleep(2000);
  if (r == 0) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    last_signal_ = SIGKILL;
    return "closed its channel and was killed";
  }
  pid_ = -1;
  if (r < 0) return std::string("ended (waitpid: ") + std::strerror(errno) + ")";
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    last_signal_ = sig;
    return "crashed with " + signal_name(sig) + " (signal " + std::to_string(sig) + ", " +
           ::strsignal(sig) + ")";
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended";
}

ScanOutcome ScannerProcess::scan(const std::string& file) {
  ScanOutcome out;
  if (file.find('\n') != std::string::npos) {
    out.reason = "its path contains a newline";
    return out;
  }
  if (pid_ < 0) {
    std::string why;
    if (!start(why)) {
      out.reason = "cannot be scanned: " + why;
      return out;
    }
  }
  drain_stderr();
  err_.clear();
  std::string stage;
  if (send_all(channel_, file + "\n")) {
    const long long deadline = now_ms() + static_cast<long long>(timeout_s_ * 1000);
    for (;;) {
      std::string line;
      const int r = read_line(line, deadline);
      if (r == 1) {
        Json reply;
        try {
          reply = Json::parse(line, "plugin scanner");
        } catch (const std::exception& e) {
          out.reason = std::string("the plugin scanner answered garbage: ") + e.what();
          stop();
          return out;
        }
        if (const Json* s = reply.find("stage"); s && s->is_string()) {
          stage = s->as_string();
          continue;
        }
        const Json* ok = reply.find("ok");
        out.ok = ok && ok->is_bool() && ok->as_bool();
        out.cacheable = true;
        if (out.ok) {
          if (const Json* p = reply.find("plugin")) out.plugin = *p;
        } else {
          const Json* reason = reply.find("reason");
          out.reason = reason && reason->is_string() ? reason->as_string() : "refused";
        }
        return out;
      }
      if (r < 0) { // hangs: killed, and the next file gets a new scanner
        ::kill(pid_, SIGKILL);
        (void)reap_status();
        drain_stderr();
        out.reason = "hangs " + stage_text(stage) + ": no answer within " +
                     seconds_text(timeout_s_) +
                     ", killed (SELFSUP_PLUGIN_SCAN_TIMEOUT sets the time)" + stderr_tail(err_);
        out.cacheable = true;
        out.timeout_s = timeout_s_;
        stop();
        return out;
      }
      break; // the channel closed: it died
    }
  }
  out.reason = reap_status() + " " + stage_text(stage);
  if (last_signal_ == 0) out.reason += ", without answering";
  drain_stderr();
  out.reason += stderr_tail(err_);
  out.cacheable = !external_signal(last_signal_);
  stop();
  return out;
}

// --- the registry cache ------------------------------------------------------------------

namespace {

constexpr int kCacheVersion = 1;
constexpr off_t kMaxCacheBytes = 64 << 20;

int64_t ns(const timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

bool int_field(const Json& e, const char* key, int64_t want) {
  const Json* v = e.find(key);
  return v && v->is_int() && v->as_int() == want;
}

// Why a folder may not hold our cache ("" if it may): others could plant or swap files.
std::string unsafe_cache_dir(int dfd) {
  struct stat st {};
  if (::fstat(dfd, &st) != 0) return std::strerror(errno);
  if (st.st_uid != ::geteuid() && st.st_uid != 0)
    return "its folder is owned by another user (uid " + std::to_string(st.st_uid) + ")";
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
    return "its folder is writable by others";
  return "";
}

} // namespace

PluginCache::PluginCache(std::string path, std::function<void(const std::string&)> warn)
    : path_(std::move(path)), warn_(std::move(warn)) {}

void PluginCache::load() {
  if (loaded_ || path_.empty()) return;
  loaded_ = true;
  auto ignore = [this](const std::string& why) {
    if (warn_)
      warn_("selfsup: plugin cache " + path_ + " ignored (" + why + "); plugins are scanned again");
    dirty_ = true; // replaced by a good one at the end
  };
  const fs::path p(path_);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return; // nothing cached yet
  if (std::string why = unsafe_cache_dir(dfd); !why.empty()) {
    ::close(dfd);
    ignore(why);
    return;
  }
  const int fd =
      ::openat(dfd, p.filename().c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  const int open_errno = errno;
  ::close(dfd);
  if (fd < 0) {
    if (open_errno == ENOENT) return;
    ignore(open_errno == ELOOP ? "it is a symbolic link, not followed"
                               : std::string("cannot open it: ") + std::strerror(open_errno));
    return;
  }
  struct stat st {};
  std::string why;
  if (::fstat(fd, &st) != 0) {
    why = std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    why = "not a regular file";
  } else if (st.st_uid != ::geteuid()) {
    why = "owned by another user (uid " + std::to_string(st.st_uid) + ")";
  } else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    why = "writable by others";
  } else if (st.st_size > kMaxCacheBytes) {
    why = "larger than 64 MiB";
  }
  std::string text;
  if (why.empty()) {
    text.resize(size_t(st.st_size));
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += size_t(n);
    }
    text.resize(done);
  }
  ::close(fd);
  if (!why.empty()) {
    ignore(why);
    return;
  }
  try {
    Json j = Json::parse(text, path_);
    const Json* version = j.is_object() ? j.find("version") : nullptr;
    Json* files = j.is_object() ? j.find("files") : nullptr;
    if (!version || !version->is_int() || version->as_int() != kCacheVersion || !files ||
        !files->is_object()) {
      ignore("not a selfsup plugin cache of version " + std::to_string(kCacheVersion));
      return;
    }
    files_ = std::move(*files);
  } catch (const std::exception& e) {
    ignore(std::string("corrupt: ") + e.what());
  }
}

const Json* PluginCache::lookup(const std::string& file, const struct stat& st, double timeout_s) {
  if (path_.empty()) return nullptr;
  load();
  const Json* e = files_.find(file);
  if (!e || !e->is_object()) return nullptr;
  const Json* host = e->find("host");
  const Json* ok = e->find("ok");
  if (!host || !host->is_string() || host->as_string() != SELFSUP_BUILD_FINGERPRINT || !ok ||
      !ok->is_bool())
    return nullptr;
  if (!int_field(*e, "size", int64_t(st.st_size)) || !int_field(*e, "mtime_ns", ns(st.st_mtim)) ||
      !int_field(*e, "ctime_ns", ns(st.st_ctim)) || !int_field(*e, "ino", int64_t(st.st_ino)) ||
      !int_field(*e, "dev", int64_t(st.st_dev)))
    return nullptr;
  if (ok->as_bool()) {
    const Json* plugin = e->find("plugin");
    if (!plugin || !plugin->is_object()) return nullptr;
  } else {
    const Json* reason = e->find("reason");
    if (!reason || !reason->is_string()) return nullptr;
    // A hang judged with a shorter timeout than today's is tried again.
    if (const Json* t = e->find("timeout_s"); t && t->is_number() && t->as_number() < timeout_s)
      return nullptr;
  }
  return e;
}

void PluginCache::store(const std::string& file, const struct stat& st, const ScanOutcome& o) {
  if (path_.empty()) return;
  load();
  Json e = Json::object({{"size", int64_t(st.st_size)},
                         {"mtime_ns", ns(st.st_mtim)},
                         {"ctime_ns", ns(st.st_ctim)},
                         {"ino", int64_t(st.st_ino)},
                         {"dev", int64_t(st.st_dev)},
                         {"host", SELFSUP_BUILD_FINGERPRINT},
                         {"ok", o.ok}});
  if (o.ok) {
    e.set("plugin", o.plugin);
  } else {
    e.set("reason", o.reason);
    if (o.timeout_s > 0) e.set("timeout_s", o.timeout_s);
  }
  files_.set(file, std::move(e));
  dirty_ = true;
}

void PluginCache::save() {
  if (path_.empty() || !dirty_) return;
  dirty_ = false;
  auto warn = [this](const std::string& why) {
    if (warn_) warn_("selfsup: cannot write the plugin cache " + path_ + ": " + why);
  };
  // Files that are gone are forgotten.
  Json kept = Json::object();
  for (size_t i = 0; i < files_.keys().size(); ++i) {
    struct stat st {};
    if (::lstat(files_.keys()[i].c_str(), &st) == 0) kept.set(files_.keys()[i], files_.at(i));
  }
  files_ = std::move(kept);
  const fs::path p(path_);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    // New folders are ours alone.
    fs::create_directories(dir, ec);
    if (!ec) fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
    if (ec) {
      warn(ec.message());
      return;
    }
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    warn(std::strerror(errno));
    return;
  }
  if (std::string why = unsafe_cache_dir(dfd); !why.empty()) {
    ::close(dfd);
    warn(why);
    return;
  }
  const std::string name = p.filename().string();
  const std::string tmp = "." + name + "." + std::to_string(::getpid()) + "." +
                          std::to_string(now_ms() % 1000000007) + ".tmp";
  const int fd =
      ::openat(dfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    warn(std::strerror(errno));
    ::close(dfd);
    return;
  }
  const std::string text =
      Json::object({{"version", kCacheVersion}, {"files", files_}}).dump(1) + "\n";
  size_t done = 0;
  bool good = true;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      good = false;
      break;
    }
    done += size_t(n);
  }
  const int write_errno = errno;
  good = ::close(fd) == 0 && good;
  // rename() replaces a symlink planted at the cache path; it never writes through it.
  if (!good || ::renameat(dfd, tmp.c_str(), dfd, name.c_str()) != 0) {
    warn(std::strerror(good ? errno : write_errno));
    ::unlinkat(dfd, tmp.c_str(), 0);
  }
  ::close(dfd);
}

} // namespace selfsup::core::detail
