// Loading: mmcv's LoadImageFromFile. Our datasets decode each image when a sample is read
// (libjpeg-turbo / libpng, to 8-bit BGR or grey as the dataset's color_type), so this
// transform loads nothing: it is accepted as the first transform of a pipeline (the place
// MMSelfSup's configs put it), its keys are checked, and it checks that the dataset gave the
// sample an image. Pipeline refuses it anywhere but first.
#include <string>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/options.h>

#include "common.h"

namespace selfsup::core::transforms {

namespace {

struct LoadImageFromFileOptions {
  bool to_float32 = false;
  std::string color_type = "color";
  std::string imdecode_backend = "cv2";
  Json file_client_args;
  Json backend_args;
  bool ignore_empty = false;

  static OptionTable<LoadImageFromFileOptions> table() {
    using O = LoadImageFromFileOptions;
    using namespace check;
    return OptionTable<O>(
               "mmcv's LoadImageFromFile, first transform of a pipeline only. The dataset has "
               "already decoded the image (libjpeg-turbo / libpng, 8-bit BGR, or grey with the "
               "dataset's color_type), so this transform checks its keys and that the sample "
               "has an image.",
               O())
        .optional("to_float32", &O::to_float32,
                  "only false: images stay 8-bit until PackSelfSupInputs")
        .optional("color_type", &O::color_type,
                  "only \"color\" (the datasets' default); set color_type on the dataset for "
                  "\"grayscale\" or \"unchanged\"")
        .optional("imdecode_backend", &O::imdecode_backend,
                  "\"cv2\", \"pillow\" or \"turbojpeg\": accepted, the decoder is always "
                  "libjpeg-turbo / libpng",
                  one_of({"cv2", "pillow", "turbojpeg"}))
        .optional("file_client_args", &O::file_client_args,
                  "null or {\"backend\": \"disk\"} (local files only)")
        .optional("backend_args", &O::backend_args,
                  "null or {\"backend\": \"local\"} (local files only)")
        .optional("ignore_empty", &O::ignore_empty,
                  "only false; a missing or bad image is the dataset's on_bad_image")
        .rule([](const O& o, const Config& cfg) {
          if (o.to_float32)
            cfg.fail_key("to_float32", "expected false: images are 8-bit until "
                                       "PackSelfSupInputs converts them");
          if (o.color_type != "color")
            cfg.fail_key("color_type", "expected \"color\", got \"" + o.color_type +
                                           "\": set color_type on the dataset (it decodes the "
                                           "image)");
          if (o.ignore_empty)
            cfg.fail_key("ignore_empty", "expected false: set the dataset's on_bad_image: "
                                         "\"skip\" to read past unreadable images");
          const auto local = [&](const char* key, const Json& v, const char* name) {
            if (v.is_null()) return;
            const bool ok = v.is_object() && v.keys().size() == 1 && v.find("backend") &&
                            v.find("backend")->is_string() &&
                            v.find("backend")->as_string() == name;
            if (!ok)
              cfg.fail_key(key, std::string("expected null or {\"backend\": \"") + name +
                                    "\"} (only local files are read), got " + v.dump());
          };
          local("file_client_args", o.file_client_args, "disk");
          local("backend_args", o.backend_args, "local");
        });
  }
};

class LoadImageFromFile final : public Transform {
public:
  // The options only need checking: decoding happened in the dataset, so nothing is kept.
  explicit LoadImageFromFile(const Config& cfg) {
    static_cast<void>(LoadImageFromFileOptions::table().parse(cfg));
  }

  void apply(Sample& s, Rng&) const override {
    if (!s.views.empty())
      throw ValueError("LoadImageFromFile: the sample already has views; LoadImageFromFile must "
                       "be the first transform of the dataset's pipeline");
    require_image(s.img, "LoadImageFromFile");
  }
};

} // namespace

void register_loading(Registrar& r) {
  r.add<Transform>("LoadImageFromFile", &make<LoadImageFromFile>,
                   LoadImageFromFileOptions::table().schema());
}

} // namespace selfsup::core::transforms
