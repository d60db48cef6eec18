#include "logging.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>

#include <selfsup/errors.h>
#include <selfsup/json.h>

namespace selfsup::core {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) s = 0;
  long t = long(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  return buf;
}

ProgressLogger::ProgressLogger(bool tty, int64_t interval, bool quiet)
    : tty_(tty), interval_(std::max<int64_t>(1, interval)), quiet_(quiet) {}

ProgressLogger::~ProgressLogger() {
  if (bar_open_) std::cerr << "\n";
  if (jsonl_ >= 0) ::close(jsonl_);
}

void ProgressLogger::open_scalars(const std::string& jsonl_path) {
  const int fd =
      ::open(jsonl_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw ValueError(jsonl_path + ": cannot open the scalar log: " +
                     (err == ELOOP ? std::string("it is a symbolic link; refusing to write "
                                                 "through it (remove the link)")
                                   : std::string(std::strerror(err))));
  }
  if (jsonl_ >= 0) ::close(jsonl_);
  jsonl_ = fd;
  jsonl_path_ = jsonl_path;
}

void ProgressLogger::append(const std::string& line) {
  if (jsonl_ < 0) return;
  const std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(jsonl_, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ValueError(jsonl_path_ + ": cannot write the scalar log: " + std::strerror(errno));
    }
    done += size_t(n);
  }
}

void ProgressLogger::begin_epoch(int64_t epoch, int64_t max_epochs, int64_t num_iters,
                                 int64_t first_iter) {
  epoch_ = epoch;
  max_epochs_ = max_epochs;
  num_iters_ = num_iters;
  first_iter_ = first_iter;
  epoch_start_ = last_ = std::chrono::steady_clock::now();
}

void ProgressLogger::after_iter(int64_t done, int64_t global_iter, int64_t remaining_total,
                                double lr,
                                const std::vector<std::pair<std::string, double>>& scalars) {
  auto now = std::chrono::steady_clock::now();
  double dt = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  // Exponential average of the iteration time; the first iteration seeds it.
  avg_iter_s_ = avg_iter_s_ == 0 ? dt : 0.9 * avg_iter_s_ + 0.1 * dt;
  double eta = avg_iter_s_ * double(remaining_total);

  Json rec = Json::object({{"iter", Json(global_iter)}, {"epoch", Json(epoch_ + 1)}});
  rec.set("lr", lr);
  for (const auto& [k, v] : scalars) rec.set(k, v);
  rec.set("time", dt);
  append(rec.dump());
  if (quiet_) return;

  std::ostringstream loss;
  for (const auto& [k, v] : scalars) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " %s: %.4f", k.c_str(), v);
    loss << buf;
  }
  if (tty_) {
    const int width = 24;
    int filled = num_iters_ > 0 ? int(width * done / num_iters_) : width;
    std::string bar(size_t(filled), '#');
    bar.resize(width, '.');
    char head[160];
    std::snprintf(head, sizeof head, "\rEpoch %lld/%lld [%s] %lld/%lld %.2f it/s ETA %s",
                  (long long)epoch_ + 1, (long long)max_epochs_, bar.c_str(), (long long)done,
                  (long long)num_iters_, avg_iter_s_ > 0 ? 1.0 / avg_iter_s_ : 0.0,
                  format_duration(eta).c_str());
    std::cerr << head << loss.str() << "\033[K" << std::flush;
    bar_open_ = true;
  } else if (done % interval_ == 0 || done == num_iters_) {
    char head[160];
    std::snprintf(head, sizeof head, "Epoch(train) [%lld][%lld/%lld] lr: %.4e eta: %s time: %.3f",
                  (long long)epoch_ + 1, (long long)done, (long long)num_iters_, lr,
                  format_duration(eta).c_str(), avg_iter_s_);
    std::cout << head << loss.str() << std::endl;
  }
}

void ProgressLogger::end_epoch() {
  if (bar_open_) {
    std::cerr << "\n";
    bar_open_ = false;
  }
}

void ProgressLogger::record(const std::string& json_line) {
  append(json_line);
}

void ProgressLogger::message(const std::string& text) {
  if (quiet_) return;
  if (bar_open_) {
    std::cerr << "\n";
    bar_open_ = false;
  }
  std::cout << text << std::endl;
}

} // namespace selfsup::core
