// The transform helpers of common.h and register_transforms.
#include "common.h"

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

Constraint min_max() {
  return Constraint{"[min, max] with min <= max", [](const Json& v) {
                      return v.is_array() && v.size() == 2 && v.at(0).is_number() &&
                             v.at(1).is_number() && v.at(0).as_number() <= v.at(1).as_number();
                    }};
}

} // namespace transforms

void register_transforms(Registrar& r) {
  transforms::register_geometric(r);
  transforms::register_rotate_resize_crop(r);
  transforms::register_photometric(r);
  transforms::register_composition(r);
  transforms::register_packing(r);
  transforms::register_loading(r);
}

} // namespace selfsup::core
