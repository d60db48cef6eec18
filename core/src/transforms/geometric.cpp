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
#include <selfsup/schema.h>

#include "common.h"

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

class RandomResizedCrop final : public Transform {
public:
  explicit RandomResizedCrop(const Config& cfg) {
    const Config size = cfg["size"];
    if (size.json().is_int()) {
      out_h_ = out_w_ = size.as<int>();
    } else if (size.is_array() && size.size() == 2 && size.at(0).json().is_int() &&
               size.at(1).json().is_int()) {
      out_h_ = size.at(0).as<int>();
      out_w_ = size.at(1).as<int>();
    } else {
      size.fail("expected an int or a list [h, w] of two ints, got " + describe_value(size.json()));
    }
    if (out_h_ <= 0 || out_w_ <= 0)
      size.fail("expected sizes > 0, got " + describe_value(size.json()));
    std::tie(scale_lo_, scale_hi_) = get_range(cfg, "scale");
    if (!(scale_lo_ >= 0.0 && scale_hi_ > 0.0))
      cfg.fail_key("scale", "expected 0 <= min <= max and max > 0, got " +
                                describe_value(cfg["scale"].json()));
    double ratio_lo = 0, ratio_hi = 0;
    std::tie(ratio_lo, ratio_hi) = get_range(cfg, "ratio");
    if (!(ratio_lo > 0.0))
      cfg.fail_key("ratio", "expected 0 < min <= max, got " + describe_value(cfg["ratio"].json()));
    ratio_lo_ = ratio_lo;
    ratio_hi_ = ratio_hi;
    log_ratio_lo_ = std::log(ratio_lo);
    log_ratio_hi_ = std::log(ratio_hi);
    max_attempts_ = cfg.get<int>("max_attempts");
    if (max_attempts_ < 0)
      cfg.fail_key("max_attempts", "expected an int >= 0, got " + std::to_string(max_attempts_));
    interp_ = interpolation_flag(
        get_choice(cfg, "interpolation", {"nearest", "bilinear", "bicubic", "area", "lanczos"}));
    get_choice(cfg, "backend", {"cv2", "pillow"});
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
    const cv::Mat roi = as_mat(s.img)(cv::Rect(x, y, tw, th));
    s.img = resize_to(roi, out_h_, out_w_, s.img.channels, interp_);
  }

private:
  int out_h_ = 0, out_w_ = 0;
  double scale_lo_ = 0, scale_hi_ = 0;
  double ratio_lo_ = 0, ratio_hi_ = 0, log_ratio_lo_ = 0, log_ratio_hi_ = 0;
  int max_attempts_ = 10;
  int interp_ = cv::INTER_LINEAR;
};

Schema random_resized_crop_schema() {
  return Schema("Crops a random area (fraction ~U(scale) of the image, log-uniform aspect ratio, "
                "up to max_attempts tries, then a central crop with the ratio clamped) and resizes "
                "it to `size` (mmselfsup RandomResizedCrop). Resizing always runs on OpenCV: "
                "backend 'pillow' is accepted for config compatibility and behaves as 'cv2' "
                "(no PIL antialiasing when shrinking).")
      .required("size", ArgType::Any, "output size: an int (square) or [h, w]")
      .optional("scale", ArgType::FloatList, Json::array({0.08, 1.0}),
                "range [min, max] of the crop area as a fraction of the image area")
      .optional("ratio", ArgType::FloatList, Json::array({3.0 / 4.0, 4.0 / 3.0}),
                "range [min, max] of the crop aspect ratio w/h (sampled log-uniformly)")
      .optional("max_attempts", ArgType::Int, 10,
                "random tries before falling back to a central crop")
      .optional("interpolation", ArgType::String, "bilinear",
                "'nearest', 'bilinear', 'bicubic', 'area' or 'lanczos'")
      .optional("backend", ArgType::String, "cv2",
                "'cv2' or 'pillow'; both run on OpenCV (see above)");
}

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

class RandomFlip final : public Transform {
public:
  explicit RandomFlip(const Config& cfg)
      : prob_(get_prob(cfg, "prob")),
        direction_(get_choice(cfg, "direction", {"horizontal", "vertical", "diagonal"})) {}

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomFlip");
    if (!rng.bernoulli(prob_)) return;
    if (direction_ != "vertical") flip_horizontal(s.img);
    if (direction_ != "horizontal") flip_vertical(s.img);
  }

private:
  double prob_;
  std::string direction_;
};

Schema random_flip_schema() {
  return Schema("Flips the image with probability `prob` (mmcv RandomFlip).")
      .required("prob", ArgType::Float, "probability of flipping, in [0, 1]")
      .optional("direction", ArgType::String, "horizontal",
                "'horizontal', 'vertical' or 'diagonal' (both)");
}

} // namespace

void register_geometric(Registrar& r) {
  r.add<Transform>("RandomResizedCrop", &make<RandomResizedCrop>, random_resized_crop_schema());
  r.add<Transform>("RandomFlip", &make<RandomFlip>, random_flip_schema());
}

} // namespace selfsup::core::transforms
