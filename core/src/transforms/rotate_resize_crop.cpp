// RandomRotation (mmselfsup), ResizeEdge (mmcls) and CenterCrop (mmcv): the geometric
// transforms of the DeepCluster and ODC recipes, with their upstream names and semantics.
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/options.h>

#include "common.h"
#include "pil_ops.h"

namespace selfsup::core::transforms {

namespace {

// OpenCV's flag for mmcv's interpolation names.
int cv_interpolation(const std::string& name) {
  if (name == "nearest") return cv::INTER_NEAREST;
  if (name == "bilinear") return cv::INTER_LINEAR;
  if (name == "bicubic") return cv::INTER_CUBIC;
  if (name == "area") return cv::INTER_AREA;
  return cv::INTER_LANCZOS4; // "lanczos"
}

// A number >= 0 (the range [-d, d]) or [min, max] with min <= max.
Constraint degrees_range() {
  Constraint c{"a number >= 0 or a list [min, max] of two numbers with min <= max",
               [](const Json& v) {
                 if (v.is_number()) return v.as_number() >= 0;
                 return v.is_array() && v.size() == 2 && v.at(0).is_number() &&
                        v.at(1).is_number() && v.at(0).as_number() <= v.at(1).as_number();
               }};
  c.names_type = false;
  return c;
}

struct RandomRotationOptions {
  Json degrees; // required
  std::string interpolation = "nearest";
  bool expand = false;
  std::optional<std::vector<double>> center;
  int fill = 0;

  static OptionTable<RandomRotationOptions> table() {
    using O = RandomRotationOptions;
    using namespace selfsup::check;
    return OptionTable<O>(
               "Rotates the image by an angle drawn uniformly from `degrees`, positive = "
               "clockwise, about `center` (default: the image centre ((w - 1) / 2, (h - 1) / "
               "2)), as mmselfsup RandomRotation through mmcv.imrotate: OpenCV's warpAffine, a "
               "constant border of `fill` in the first channel (0 in the others, as OpenCV "
               "reads a single number), and with `expand` an output grown to hold the whole "
               "rotated image (its size rounded half to even).",
               O())
        .required("degrees", &O::degrees, "d: the range [-d, d]; or [min, max]", degrees_range())
        .optional("interpolation", &O::interpolation, "how pixels are sampled",
                  one_of({"nearest", "bilinear", "bicubic", "area", "lanczos"}))
        .optional("expand", &O::expand, "grow the output to hold the whole rotated image")
        .optional("center", &O::center, "rotation centre [x, y] in the source image", size(2))
        .optional("fill", &O::fill, "border value outside the rotated image")
        .rule([](const O& o, const Config& cfg) {
          if (o.expand && o.center)
            cfg.fail_key("center", "expected no centre with expand true (mmcv: `expand` "
                                   "conflicts with `center`), got " +
                                       describe_value(cfg["center"].json()));
        });
  }
};

class RandomRotation final : public Transform {
public:
  explicit RandomRotation(const Config& cfg) : o_(RandomRotationOptions::table().parse(cfg)) {
    if (o_.degrees.is_number()) {
      lo_ = -o_.degrees.as_number();
      hi_ = o_.degrees.as_number();
    } else {
      lo_ = o_.degrees.at(0).as_number();
      hi_ = o_.degrees.at(1).as_number();
    }
    interp_ = cv_interpolation(o_.interpolation);
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomRotation");
    const double angle = rng.uniform(lo_, hi_);
    int w = s.img.width, h = s.img.height;
    const cv::Point2f center = o_.center
                                   ? cv::Point2f(float((*o_.center)[0]), float((*o_.center)[1]))
                                   : cv::Point2f(float((w - 1) * 0.5), float((h - 1) * 0.5));
    cv::Mat m = cv::getRotationMatrix2D(center, -angle, 1.0);
    if (o_.expand) {
      const double cos = std::abs(m.at<double>(0, 0)), sin = std::abs(m.at<double>(0, 1));
      const double new_w = h * sin + w * cos, new_h = h * cos + w * sin;
      m.at<double>(0, 2) += (new_w - w) * 0.5;
      m.at<double>(1, 2) += (new_h - h) * 0.5;
      w = int(std::nearbyint(new_w)); // numpy's round: half to even
      h = int(std::nearbyint(new_h));
    }
    Image out(h, w, s.img.channels);
    cv::Mat dst = as_mat(out);
    cv::warpAffine(as_mat(s.img), dst, m, cv::Size(w, h), interp_, cv::BORDER_CONSTANT,
                   cv::Scalar(o_.fill));
    if (dst.data != out.data.data()) dst.copyTo(as_mat(out));
    s.img = std::move(out);
  }

private:
  RandomRotationOptions o_;
  double lo_ = 0, hi_ = 0;
  int interp_ = cv::INTER_NEAREST;
};

struct ResizeEdgeOptions {
  int scale = 0; // required
  std::string edge = "short";
  std::string backend = "cv2";
  std::string interpolation = "bilinear";

  static OptionTable<ResizeEdgeOptions> table() {
    using O = ResizeEdgeOptions;
    using namespace selfsup::check;
    return OptionTable<O>(
               "Resizes the image so that one edge is `scale` pixels, the other scaled with it "
               "and truncated (mmcls ResizeEdge): 'short' / 'long' pick the shorter / longer "
               "edge, 'width' / 'height' that one. backend 'cv2' resizes with OpenCV; 'pillow' "
               "with PIL's Image.resize arithmetic, as mmcv.imresize(backend='pillow').",
               O())
        .required("scale", &O::scale, "length of the chosen edge after resizing", gt(0))
        .optional("edge", &O::edge, "which edge becomes `scale`",
                  one_of({"short", "long", "width", "height"}))
        .optional("backend", &O::backend, "'cv2' (OpenCV) or 'pillow' (PIL's resampling)",
                  one_of({"cv2", "pillow"}))
        .optional("interpolation", &O::interpolation, "how the image is resized",
                  one_of({"nearest", "bilinear", "bicubic", "area", "lanczos"}))
        .rule([](const O& o, const Config& cfg) {
          if (o.backend == "pillow" && o.interpolation == "area")
            cfg.fail_key("interpolation", "expected 'nearest', 'bilinear', 'bicubic' or "
                                          "'lanczos' with backend 'pillow' (PIL has no 'area'), "
                                          "got 'area'");
        });
  }
};

class ResizeEdge final : public Transform {
public:
  explicit ResizeEdge(const Config& cfg) : o_(ResizeEdgeOptions::table().parse(cfg)) {
    interp_ = cv_interpolation(o_.interpolation);
    if (o_.interpolation == "nearest") filter_ = pil::Filter::nearest;
    if (o_.interpolation == "bicubic") filter_ = pil::Filter::bicubic;
    if (o_.interpolation == "lanczos") filter_ = pil::Filter::lanczos;
  }

  void apply(Sample& s, Rng&) const override {
    require_image(s.img, "ResizeEdge");
    const int h = s.img.height, w = s.img.width;
    const bool set_width =
        (o_.edge == "short" && w < h) || (o_.edge == "long" && w > h) || o_.edge == "width";
    int out_w = o_.scale, out_h = o_.scale;
    if (set_width)
      out_h = int(double(o_.scale) * h / w);
    else
      out_w = int(double(o_.scale) * w / h);
    if (out_w < 1 || out_h < 1)
      throw ValueError("ResizeEdge: resizing a " + std::to_string(h) + "x" + std::to_string(w) +
                       " image to " + o_.edge + " edge " + std::to_string(o_.scale) +
                       " leaves an empty side (" + std::to_string(out_h) + "x" +
                       std::to_string(out_w) + ")");
    if (o_.backend == "pillow") {
      s.img = pil::resize(s.img, 0, 0, w, h, out_h, out_w, filter_);
      return;
    }
    Image out(out_h, out_w, s.img.channels);
    cv::Mat dst = as_mat(out);
    cv::resize(as_mat(s.img), dst, cv::Size(out_w, out_h), 0, 0, interp_);
    if (dst.data != out.data.data()) dst.copyTo(as_mat(out));
    s.img = std::move(out);
  }

private:
  ResizeEdgeOptions o_;
  int interp_ = cv::INTER_LINEAR;
  pil::Filter filter_ = pil::Filter::bilinear;
};

// An int > 0 or [w, h] of ints > 0 (mmcv's order).
Constraint crop_size_wh() {
  Constraint c{"an int > 0 or a list [w, h] of two ints > 0", [](const Json& v) {
                 if (v.is_int()) return v.as_int() > 0;
                 return v.is_array() && v.size() == 2 && v.at(0).is_int() && v.at(1).is_int() &&
                        v.at(0).as_int() > 0 && v.at(1).as_int() > 0;
               }};
  c.names_type = false;
  return c;
}

struct CenterCropOptions {
  Json crop_size; // required
  bool auto_pad = false;
  Json pad_cfg = Json::object({{"type", Json("Pad")}});
  bool clip_object_border = true;

  static OptionTable<CenterCropOptions> table() {
    using O = CenterCropOptions;
    using namespace selfsup::check;
    return OptionTable<O>(
               "Crops the centre crop_size window (mmcv CenterCrop): offsets round((H - h) / 2) "
               "and round((W - w) / 2), half to even; a side larger than the image is cut to "
               "the image, or with auto_pad the image is first padded at the bottom and right "
               "(mmcv Pad: constant pad_val, default 0).",
               O())
        .required("crop_size", &O::crop_size, "an int (square) or [w, h]", crop_size_wh())
        .optional("auto_pad", &O::auto_pad, "pad an image smaller than the crop first")
        .optional("pad_cfg", &O::pad_cfg,
                  "the padding with auto_pad: {type: 'Pad'} with an optional int pad_val")
        .as(ArgType::Dict)
        .optional("clip_object_border", &O::clip_object_border,
                  "mmcv clips bounding boxes to the crop; samples here carry no boxes, so it "
                  "changes nothing")
        .rule([](const O& o, const Config& cfg) {
          for (const auto& key : o.pad_cfg.keys())
            if (key != "type" && key != "pad_val")
              cfg["pad_cfg"].fail_key(key, "unknown key (accepted: type, pad_val)");
          const Json* type = o.pad_cfg.find("type");
          if (!type || !type->is_string() || type->as_string() != "Pad")
            cfg["pad_cfg"].fail_key("type", "expected \"Pad\" (mmcv Pad), got " +
                                                (type ? describe_value(*type) : "nothing"));
          const Json* val = o.pad_cfg.find("pad_val");
          if (val && !(val->is_int() && val->as_int() >= 0 && val->as_int() <= 255))
            cfg["pad_cfg"].fail_key("pad_val",
                                    "expected int in [0, 255], got " + describe_value(*val));
        });
  }
};

class CenterCrop final : public Transform {
public:
  explicit CenterCrop(const Config& cfg) {
    const auto o = CenterCropOptions::table().parse(cfg);
    w_ = int(o.crop_size.is_int() ? o.crop_size.as_int() : o.crop_size.at(0).as_int());
    h_ = int(o.crop_size.is_int() ? o.crop_size.as_int() : o.crop_size.at(1).as_int());
    auto_pad_ = o.auto_pad;
    const Json* val = o.pad_cfg.find("pad_val");
    pad_val_ = val ? uint8_t(val->as_int()) : uint8_t(0);
  }

  void apply(Sample& s, Rng&) const override {
    require_image(s.img, "CenterCrop");
    int crop_h = h_, crop_w = w_;
    if (crop_h > s.img.height || crop_w > s.img.width) {
      if (auto_pad_) { // mmcv Pad to (max(W, w), max(H, h)): bottom and right
        const int ph = std::max(s.img.height, crop_h), pw = std::max(s.img.width, crop_w);
        Image padded(ph, pw, s.img.channels);
        std::fill(padded.data.begin(), padded.data.end(), pad_val_);
        as_mat(s.img).copyTo(as_mat(padded)(cv::Rect(0, 0, s.img.width, s.img.height)));
        s.img = std::move(padded);
      } else {
        crop_h = std::min(crop_h, s.img.height);
        crop_w = std::min(crop_w, s.img.width);
      }
    }
    // Python's round() of a float: half to even, as std::nearbyint by default.
    const int y = std::max(0, int(std::nearbyint((s.img.height - crop_h) / 2.0)));
    const int x = std::max(0, int(std::nearbyint((s.img.width - crop_w) / 2.0)));
    const int ch = std::min(s.img.height, y + crop_h) - y,
              cw = std::min(s.img.width, x + crop_w) - x;
    const cv::Mat roi = as_mat(s.img)(cv::Rect(x, y, cw, ch));
    Image out(ch, cw, s.img.channels);
    roi.copyTo(as_mat(out));
    s.img = std::move(out);
  }

private:
  int h_ = 0, w_ = 0;
  bool auto_pad_ = false;
  uint8_t pad_val_ = 0;
};

} // namespace

void register_rotate_resize_crop(Registrar& r) {
  r.add<Transform>("RandomRotation", &make<RandomRotation>,
                   RandomRotationOptions::table().schema());
  r.add<Transform>("ResizeEdge", &make<ResizeEdge>, ResizeEdgeOptions::table().schema());
  r.add<Transform>("CenterCrop", &make<CenterCrop>, CenterCropOptions::table().schema());
}

} // namespace selfsup::core::transforms
