// Geometric transforms (mmselfsup / mmcv names and semantics): RandomResizedCrop, RandomFlip.
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/options.h>

#include "common.h"
#include "pil_ops.h"

namespace selfsup::core::transforms {

namespace {

// ---------------------------------------------------------------------------------------
// RandomResizedCrop

int interpolation_flag(const std::string& name) {
  if (name == "nearest") return cv::INTER_NEAREST;
  if (name == "bilinear") return cv::INTER_LINEAR;
  if (name == "bicubic") return cv::INTER_CUBIC;
  if (name == "area") return cv::INTER_AREA;
  return cv::INTER_LANCZOS4; // "lanczos"
}

// Resizes `src` (any view) into a new image of out_h x out_w.
Image resize_to(const cv::Mat& src, int out_h, int out_w, int channels, int interp) {
  Image out(out_h, out_w, channels);
  cv::Mat dst = as_mat(out);
  if (src.rows == out_h && src.cols == out_w) {
    src.copyTo(dst);
  } else {
    cv::resize(src, dst, cv::Size(out_w, out_h), 0, 0, interp);
  }
  if (dst.data != out.data.data()) // OpenCV reallocated (not expected): copy back
    dst.copyTo(as_mat(out));
  return out;
}

// An int, or [h, w] of ints, each > 0.
Constraint image_size() {
  Constraint c{"an int > 0 or a list [h, w] of two ints > 0", [](const Json& v) {
                 if (v.is_int()) return v.as_int() > 0;
                 return v.is_array() && v.size() == 2 && v.at(0).is_int() && v.at(1).is_int() &&
                        v.at(0).as_int() > 0 && v.at(1).as_int() > 0;
               }};
  c.names_type = false;
  return c;
}

struct RandomResizedCropOptions {
  Json size; // required
  std::vector<double> scale = {0.08, 1.0};
  std::vector<double> ratio = {3.0 / 4.0, 4.0 / 3.0};
  int max_attempts = 10;
  std::string interpolation = "bilinear";
  std::string backend = "cv2";

  static OptionTable<RandomResizedCropOptions> table() {
    using O = RandomResizedCropOptions;
    using namespace selfsup::check;
    return OptionTable<O>(
               "Crops a random area (fraction ~U(scale) of the image, log-uniform aspect ratio, "
               "up to max_attempts tries, then a central crop with the ratio clamped) and "
               "resizes it to `size` (mmselfsup RandomResizedCrop). backend 'cv2' resizes with "
               "OpenCV (cv::resize, no antialiasing when shrinking); 'pillow' reproduces PIL's "
               "Image.resize bit for bit (separable filter widened by the downscale factor, "
               "i.e. antialiased), as mmcv.imresize(backend='pillow') does.",
               O())
        .required("size", &O::size, "output size: an int (square) or [h, w]", image_size())
        .optional("scale", &O::scale,
                  "range [min, max] of the crop area as a fraction of the image area", min_max(),
                  each(ge(0)))
        .optional("ratio", &O::ratio,
                  "range [min, max] of the crop aspect ratio w/h (sampled log-uniformly)",
                  min_max(), each(gt(0)))
        .optional("max_attempts", &O::max_attempts,
                  "random tries before falling back to a central crop", ge(0))
        .optional("interpolation", &O::interpolation, "how the crop is resized",
                  one_of({"nearest", "bilinear", "bicubic", "area", "lanczos"}))
        .optional("backend", &O::backend, "'cv2' (OpenCV) or 'pillow' (PIL's resampling)",
                  one_of({"cv2", "pillow"}))
        .rule([](const O& o, const Config& cfg) {
          if (!(o.scale[1] > 0))
            cfg.fail_key("scale", "expected a largest area fraction > 0, got " +
                                      describe_value(cfg["scale"].json()));
          if (o.backend == "pillow" && o.interpolation == "area") // mmcv: no PIL 'area' filter
            cfg.fail_key("interpolation", "expected 'nearest', 'bilinear', 'bicubic' or "
                                          "'lanczos' with backend 'pillow' (PIL has no 'area'), "
                                          "got 'area'");
        });
  }
};

class RandomResizedCrop final : public Transform {
public:
  explicit RandomResizedCrop(const Config& cfg) {
    const auto o = RandomResizedCropOptions::table().parse(cfg);
    if (o.size.is_int()) {
      out_h_ = out_w_ = int(o.size.as_int());
    } else {
      out_h_ = int(o.size.at(0).as_int());
      out_w_ = int(o.size.at(1).as_int());
    }
    scale_lo_ = o.scale[0];
    scale_hi_ = o.scale[1];
    ratio_lo_ = o.ratio[0];
    ratio_hi_ = o.ratio[1];
    log_ratio_lo_ = std::log(ratio_lo_);
    log_ratio_hi_ = std::log(ratio_hi_);
    max_attempts_ = o.max_attempts;
    interp_ = interpolation_flag(o.interpolation);
    pillow_ = o.backend == "pillow";
    if (o.interpolation == "nearest") filter_ = pil::Filter::nearest;
    if (o.interpolation == "bicubic") filter_ = pil::Filter::bicubic;
    if (o.interpolation == "lanczos") filter_ = pil::Filter::lanczos;
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomResizedCrop");
    const int height = s.img.height, width = s.img.width;
    const double area = double(height) * double(width);
    int y = 0, x = 0, th = 0, tw = 0;
    bool found = false;
    for (int i = 0; i < max_attempts_ && !found; ++i) {
      const double target_area = rng.uniform(scale_lo_, scale_hi_) * area;
      const double aspect = std::exp(rng.uniform(log_ratio_lo_, log_ratio_hi_));
      // Python's round(): half to even, as std::nearbyint in the default rounding mode.
      tw = int(std::nearbyint(std::sqrt(target_area * aspect)));
      th = int(std::nearbyint(std::sqrt(target_area / aspect)));
      if (tw > 0 && tw <= width && th > 0 && th <= height) {
        y = int(rng.randint(0, height - th));
        x = int(rng.randint(0, width - tw));
        found = true;
      }
    }
    if (!found) { // central crop, ratio clamped
      const double in_ratio = double(width) / double(height);
      if (in_ratio < ratio_lo_) {
        tw = width;
        th = std::max(1, int(std::nearbyint(tw / ratio_lo_)));
      } else if (in_ratio > ratio_hi_) {
        th = height;
        tw = std::max(1, int(std::nearbyint(th * ratio_hi_)));
      } else {
        tw = width;
        th = height;
      }
      th = std::min(th, height);
      tw = std::min(tw, width);
      y = (height - th) / 2;
      x = (width - tw) / 2;
    }
    if (pillow_) {
      s.img = pil::resize(s.img, x, y, tw, th, out_h_, out_w_, filter_);
      return;
    }
    const cv::Mat roi = as_mat(s.img)(cv::Rect(x, y, tw, th));
    s.img = resize_to(roi, out_h_, out_w_, s.img.channels, interp_);
  }

private:
  int out_h_ = 0, out_w_ = 0;
  double scale_lo_ = 0, scale_hi_ = 0;
  double ratio_lo_ = 0, ratio_hi_ = 0, log_ratio_lo_ = 0, log_ratio_hi_ = 0;
  int max_attempts_ = 0;
  int interp_ = cv::INTER_LINEAR;
  bool pillow_ = false;
  pil::Filter filter_ = pil::Filter::bilinear;
};

// ---------------------------------------------------------------------------------------
// RandomFlip

void flip_horizontal(Image& img) {
  const int w = img.width, c = img.channels;
  for (int y = 0; y < img.height; ++y) {
    uint8_t* row = img.data.data() + size_t(y) * size_t(w) * size_t(c);
    if (c == 1) {
      std::reverse(row, row + w);
    } else {
      for (int a = 0, b = w - 1; a < b; ++a, --b)
        std::swap_ranges(row + size_t(a) * c, row + size_t(a) * c + c, row + size_t(b) * c);
    }
  }
}

void flip_vertical(Image& img) {
  const size_t stride = size_t(img.width) * size_t(img.channels);
  for (int a = 0, b = img.height - 1; a < b; ++a, --b)
    std::swap_ranges(img.data.data() + a * stride, img.data.data() + (a + 1) * stride,
                     img.data.data() + b * stride);
}

struct RandomFlipOptions {
  double prob = 0; // required
  std::string direction = "horizontal";

  static OptionTable<RandomFlipOptions> table() {
    using O = RandomFlipOptions;
    using namespace selfsup::check;
    return OptionTable<O>("Flips the image with probability `prob` (mmcv RandomFlip).", O())
        .required("prob", &O::prob, "probability of flipping", in(0, 1))
        .optional("direction", &O::direction, "'diagonal' flips both ways",
                  one_of({"horizontal", "vertical", "diagonal"}));
  }
};

class RandomFlip final : public Transform {
public:
  explicit RandomFlip(const Config& cfg) {
    const auto o = RandomFlipOptions::table().parse(cfg);
    prob_ = o.prob;
    direction_ = o.direction;
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomFlip");
    if (!rng.bernoulli(prob_)) return;
    if (direction_ != "vertical") flip_horizontal(s.img);
    if (direction_ != "horizontal") flip_vertical(s.img);
  }

private:
  double prob_ = 0;
  std::string direction_;
};

// ---------------------------------------------------------------------------------------
// Resize (mmcv) and RandomCrop (mmselfsup), as the RelativeLoc pipeline uses them

struct ResizeOptions {
  Json scale; // required
  bool keep_ratio = false;
  std::string interpolation = "bilinear";
  std::string backend = "cv2";

  static OptionTable<ResizeOptions> table() {
    using O = ResizeOptions;
    using namespace selfsup::check;
    return OptionTable<O>("Resizes the image to `scale` (mmcv Resize with OpenCV): an int is "
                          "(s, s), a list is [w, h]; with keep_ratio the image is scaled to "
                          "fit: factor min(max(scale) / long edge, min(scale) / short edge), "
                          "sizes rounded half up. mmcv's scale_factor is not supported.",
                          O())
        .required("scale", &O::scale, "target size: an int or [w, h]", image_size())
        .optional("keep_ratio", &O::keep_ratio, "keep the aspect ratio")
        .optional("interpolation", &O::interpolation, "how the image is resized",
                  one_of({"nearest", "bilinear", "bicubic", "area", "lanczos"}))
        .optional("backend", &O::backend, "only 'cv2' (OpenCV)", one_of({"cv2"}));
  }
};

class Resize final : public Transform {
public:
  explicit Resize(const Config& cfg) : o_(ResizeOptions::table().parse(cfg)) {
    w_ = int(o_.scale.is_int() ? o_.scale.as_int() : o_.scale.at(0).as_int());
    h_ = int(o_.scale.is_int() ? o_.scale.as_int() : o_.scale.at(1).as_int());
    interp_ = interpolation_flag(o_.interpolation);
  }
  void apply(Sample& s, Rng&) const override {
    require_image(s.img, "Resize");
    int out_w = w_, out_h = h_;
    if (o_.keep_ratio) {
      const double f = std::min(double(std::max(w_, h_)) / std::max(s.img.width, s.img.height),
                                double(std::min(w_, h_)) / std::min(s.img.width, s.img.height));
      out_w = int(s.img.width * f + 0.5);
      out_h = int(s.img.height * f + 0.5);
    }
    s.img = resize_to(as_mat(s.img), out_h, out_w, s.img.channels, interp_);
  }

private:
  ResizeOptions o_;
  int w_ = 0, h_ = 0, interp_ = cv::INTER_LINEAR;
};

struct RandomCropOptions {
  Json size; // required
  static OptionTable<RandomCropOptions> table() {
    using O = RandomCropOptions;
    return OptionTable<O>("Crops a random size[0] x size[1] window, offsets uniform (mmselfsup "
                          "RandomCrop without padding; its padding keys are not supported)",
                          O())
        .required("size", &O::size, "crop size: an int (square) or [h, w]", image_size());
  }
};

class RandomCrop final : public Transform {
public:
  explicit RandomCrop(const Config& cfg) {
    const auto o = RandomCropOptions::table().parse(cfg);
    h_ = int(o.size.is_int() ? o.size.as_int() : o.size.at(0).as_int());
    w_ = int(o.size.is_int() ? o.size.as_int() : o.size.at(1).as_int());
  }
  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomCrop");
    if (s.img.height < h_ || s.img.width < w_)
      throw ValueError("RandomCrop: the image (" + std::to_string(s.img.height) + "x" +
                       std::to_string(s.img.width) + ") is smaller than the crop (" +
                       std::to_string(h_) + "x" + std::to_string(w_) + ")");
    int y = 0, x = 0;
    if (!(s.img.height == h_ && s.img.width == w_)) {
      y = int(rng.randint(0, s.img.height - h_));
      x = int(rng.randint(0, s.img.width - w_));
    }
    const cv::Mat roi = as_mat(s.img)(cv::Rect(x, y, w_, h_));
    s.img = resize_to(roi, h_, w_, s.img.channels, cv::INTER_LINEAR);
  }

private:
  int h_ = 0, w_ = 0;
};

} // namespace

void register_geometric(Registrar& r) {
  r.add<Transform>("RandomResizedCrop", &make<RandomResizedCrop>,
                   RandomResizedCropOptions::table().schema());
  r.add<Transform>("RandomFlip", &make<RandomFlip>, RandomFlipOptions::table().schema());
  r.add<Transform>("Resize", &make<Resize>, ResizeOptions::table().schema());
  r.add<Transform>("RandomCrop", &make<RandomCrop>, RandomCropOptions::table().schema());
}

} // namespace selfsup::core::transforms
