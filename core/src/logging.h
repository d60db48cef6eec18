#pragma once
// Training output: a progress bar with ETA on a terminal, plain periodic lines otherwise,
// and scalars.jsonl (one JSON object per iteration) in the work dir.
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace selfsup::core {

class ProgressLogger {
public:
  /// `quiet`: writes nothing (a rank other than 0 of a distributed run).
  ProgressLogger(bool tty, int64_t interval, bool quiet = false);
  ~ProgressLogger();
  ProgressLogger(const ProgressLogger&) = delete;
  ProgressLogger& operator=(const ProgressLogger&) = delete;

  /// Appends the records to `jsonl_path` from now on (never through a symbolic link: one in
  /// its place is refused, naming the file). Without it, no records are written.
  void open_scalars(const std::string& jsonl_path);

  void begin_epoch(int64_t epoch, int64_t max_epochs, int64_t num_iters, int64_t first_iter);
  /// After an iteration: `done` iterations of this epoch are finished.
  void after_iter(int64_t done, int64_t global_iter, int64_t remaining_total, double lr,
                  const std::vector<std::pair<std::string, double>>& scalars);
  void end_epoch();
  /// Appends one record to scalars.jsonl (scalars logged outside an iteration).
  void record(const std::string& json_line);
  /// A line of text that does not break the bar.
  void message(const std::string& text);

private:
  bool tty_;
  int64_t interval_;
  bool quiet_ = false;
  void append(const std::string& line);

  int jsonl_ = -1; // the scalar log's file descriptor
  std::string jsonl_path_;
  int64_t epoch_ = 0, max_epochs_ = 0, num_iters_ = 0, first_iter_ = 0;
  bool bar_open_ = false;
  std::chrono::steady_clock::time_point epoch_start_, last_;
  double avg_iter_s_ = 0;
};

std::string format_duration(double seconds);

} // namespace selfsup::core
