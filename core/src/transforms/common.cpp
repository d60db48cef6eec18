// The transform helpers of common.h and register_transforms.
#include "common.h"

#include <algorithm>
#include <string>

#include <selfsup/errors.h>

#include "../builtins.h"

namespace selfsup::core {
namespace transforms {

void require_image(const Image& img, const char* who) {
  if (img.empty() || img.height <= 0 || img.width <= 0 || img.channels <= 0)
    throw ValueError(std::string(who) +
                     ": the sample has no image (transforms that change `img` must come "
                     "before MultiView / PackSelfSupInputs)");
  if (img.data.size() != size_t(img.height) * size_t(img.width) * size_t(img.channels))
    throw ValueError(std::string(who) + ": image buffer size " + std::to_string(img.data.size()) +
                     " does not match " + std::to_string(img.height) + "x" +
                     std::to_string(img.width) + "x" + std::to_string(img.channels));
}

double get_prob(const Config& cfg, const char* key) {
  const double p = cfg.get<double>(key);
  if (!(p >= 0.0 && p <= 1.0))
    cfg.fail_key(key, "expected a probability in [0, 1], got " + describe_value(cfg[key].json()));
  return p;
}

std::string get_choice(const Config& cfg, const char* key,
                       const std::vector<std::string>& choices) {
  const std::string v = cfg.get<std::string>(key);
  if (std::find(choices.begin(), choices.end(), v) != choices.end()) return v;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "'" : ", '") + c + "'";
  cfg.fail_key(key, "expected one of " + list + ", got '" + v + "'");
}

// A [lo, hi] pair of numbers.
std::pair<double, double> get_range(const Config& cfg, const char* key) {
  const Config c = cfg[key];
  if (!c.is_array() || c.size() != 2 || !c.at(0).json().is_number() || !c.at(1).json().is_number())
    c.fail("expected a list of two numbers [min, max], got " + describe_value(c.json()));
  const double lo = c.at(0).json().as_number(), hi = c.at(1).json().as_number();
  if (!(lo <= hi)) c.fail("expected min <= max, got " + describe_value(c.json()));
  return {lo, hi};
}

} // namespace transforms

void register_transforms(Registrar& r) {
  transforms::register_geometric(r);
  transforms::register_photometric(r);
  transforms::register_composition(r);
  transforms::register_packing(r);
}

} // namespace selfsup::core
