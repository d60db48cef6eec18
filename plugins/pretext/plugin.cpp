// The `pretext` plugin: RelativeLoc and RotationPred, their neck, preprocessors and transforms.
#include <selfsup/plugin.h>

#include "pretext.h"
#include "pretext_transforms.h"

namespace selfsup::plugins::pretext {

void register_types(Registrar& r) {
  r.add<Algorithm>(
      "RelativeLoc", [](const Config& cfg) { return std::make_shared<RelativeLoc>(cfg); },
      RelativeLoc::schema());
  r.add<Algorithm>(
      "RotationPred", [](const Config& cfg) { return std::make_shared<RotationPred>(cfg); },
      RotationPred::schema());
  r.add<Neck>("RelativeLocNeck", &make_relative_loc_neck, RelativeLocNeckOptions::table().schema());
  r.add<DataPreprocessor>("RelativeLocDataPreprocessor", &make_relative_loc_data_preprocessor,
                          SelfSupDataPreprocessorOptions::table().schema());
  r.add<DataPreprocessor>("RotationPredDataPreprocessor", &make_rotation_pred_data_preprocessor,
                          SelfSupDataPreprocessorOptions::table().schema());
  r.add<Transform>("RotationWithLabels", &make_rotation_with_labels,
                   Schema("Rotation prediction: the views [img, rot 90, rot 180, rot 270] "
                          "(clockwise) with rot_label [0, 1, 2, 3] (MMSelfSup's "
                          "RotationWithLabels); a square image for 90 and 270"));
  r.add<Transform>("RandomPatchWithLabels", &make_random_patch_with_labels,
                   RandomPatchWithLabelsOptions::table().schema());
}

} // namespace selfsup::plugins::pretext

SELFSUP_PLUGIN("pretext", "0.1.0", selfsup::plugins::pretext::register_types)
