#pragma once
// "Did you mean": the nearest of some names to a misspelt one (internal to the sdk).
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace selfsup::detail {

/// Edit distance (insertions, deletions, substitutions), ignoring case.
inline size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cur = row[j];
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (same ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

/// The candidate nearest to `name` within `max_distance` edits (and fewer edits than `name`
/// has letters, so "x" suggests nothing), or "".
inline std::string nearest(const std::string& name, const std::vector<std::string>& candidates,
                           size_t max_distance = 3) {
  std::string best;
  size_t best_d = max_distance + 1;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(name, c);
    if (d < best_d && d < name.size()) best_d = d, best = c;
  }
  return best;
}

} // namespace selfsup::detail
