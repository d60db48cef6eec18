#pragma once
// The run report: one self-contained HTML page (no scripts, styles or images from anywhere
// else) describing a work dir after `selfsup train`: an inline SVG plot per logged series of
// scalars.jsonl (every loss, the learning rate, kNN accuracy, any other scalar) over the
// iterations, the final figures (iterations, epochs, last and smoothed losses, training time,
// knn.json's top-1/top-5 trained and at random init) and the run's merged config.
#include <string>
#include <utility>
#include <vector>

#include <selfsup/core/export.h>

namespace selfsup::core {

/// One logged scalar over the iterations.
struct ReportSeries {
  std::string name;                              // the scalars.jsonl key ("loss", "lr", ...)
  std::vector<std::pair<double, double>> points; // (iter, value), in file order
};

/// Every numeric key of `work_dir`/scalars.jsonl but iter, epoch and time, in the order the
/// keys first appear. Throws ValueError naming the file when it is missing or a line is not
/// a JSON object.
SELFSUP_CORE_API std::vector<ReportSeries> read_scalar_series(const std::string& work_dir);

/// The report's HTML. Throws ValueError naming the work dir when it holds no scalars.jsonl.
SELFSUP_CORE_API std::string render_run_report(const std::string& work_dir);

} // namespace selfsup::core
