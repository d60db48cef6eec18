// The engine's data transforms, with MMSelfSup / mmcv names, keys and semantics, on OpenCV.
// Every transform is immutable after construction; all randomness comes from the Rng passed
// to apply(), so a sample's result does not depend on the thread that runs it.
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>
#include <selfsup/schema.h>

#include "builtins.h"

namespace selfsup::core {

namespace {

// ---------------------------------------------------------------------------------------
// Helpers

using Lut = std::array<uint8_t, 256>;

// A cv::Mat header over the image's pixels (no copy).
cv::Mat as_mat(Image& img) {
  return cv::Mat(img.height, img.width, CV_8UC(img.channels), img.data.data());
}

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

uint8_t clamp_u8(int v) {
  return uint8_t(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// PIL's float -> uint8 in Image.blend: truncation toward zero, clipped.
uint8_t trunc_u8(float v) {
  if (v <= 0.f) return 0;
  if (v >= 255.f) return 255;
  return uint8_t(v);
}

void apply_lut(Image& img, const Lut& lut) {
  for (auto& v : img.data) v = lut[v];
}

// PIL's "L" conversion (ITU-R 601-2 luma) of one BGR pixel.
inline int luma_bgr(const uint8_t* p) {
  return (p[2] * 19595 + p[1] * 38470 + p[0] * 7471 + 0x8000) >> 16;
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

// ---------------------------------------------------------------------------------------
// ColorJitter

// PIL ImageEnhance semantics (blend with a degenerate image, truncating like Image.blend).
void adjust_brightness(Image& img, double factor) {
  Lut lut;
  for (int v = 0; v < 256; ++v) lut[size_t(v)] = trunc_u8(float(factor * v));
  apply_lut(img, lut);
}

void adjust_contrast(Image& img, double factor) {
  const size_t n = size_t(img.height) * size_t(img.width);
  uint64_t sum = 0;
  if (img.channels == 3) {
    for (size_t i = 0; i < n; ++i) sum += uint64_t(luma_bgr(&img.data[i * 3]));
  } else {
    for (size_t i = 0; i < n; ++i) sum += img.data[i * size_t(img.channels)];
  }
  const int mean = int(double(sum) / double(n) + 0.5);
  Lut lut;
  for (int v = 0; v < 256; ++v) lut[size_t(v)] = trunc_u8(float(mean + factor * (v - mean)));
  apply_lut(img, lut);
}

void adjust_saturation(Image& img, double factor) {
  if (img.channels != 3) return; // grey images have no saturation
  const size_t n = size_t(img.height) * size_t(img.width);
  const float f = float(factor);
  uint8_t* p = img.data.data();
  for (size_t i = 0; i < n; ++i, p += 3) {
    const float g = float(luma_bgr(p));
    p[0] = trunc_u8(g + f * (float(p[0]) - g));
    p[1] = trunc_u8(g + f * (float(p[1]) - g));
    p[2] = trunc_u8(g + f * (float(p[2]) - g));
  }
}

void adjust_hue(Image& img, double factor) {
  if (img.channels != 3) return; // PIL leaves "L" images unchanged
  // mmcv: h (0..255 scale) += np.uint8(hue_factor * 255), wrapping.
  const auto shift = uint8_t(int(factor * 255.0) & 0xFF);
  if (shift == 0) return;
  thread_local cv::Mat hsv;
  cv::Mat m = as_mat(img);
  cv::cvtColor(m, hsv, cv::COLOR_BGR2HSV_FULL);
  const size_t n = size_t(img.height) * size_t(img.width);
  uint8_t* h = hsv.ptr<uint8_t>();
  for (size_t i = 0; i < n; ++i) h[i * 3] = uint8_t(h[i * 3] + shift);
  cv::cvtColor(hsv, m, cv::COLOR_HSV2BGR_FULL);
}

class ColorJitter final : public Transform {
public:
  explicit ColorJitter(const Config& cfg)
      : brightness_(factor_range(cfg, "brightness", 1.0, 0.0, HUGE_VAL, true)),
        contrast_(factor_range(cfg, "contrast", 1.0, 0.0, HUGE_VAL, true)),
        saturation_(factor_range(cfg, "saturation", 1.0, 0.0, HUGE_VAL, true)),
        hue_(factor_range(cfg, "hue", 0.0, -0.5, 0.5, false)) {
    get_choice(cfg, "backend", {"pillow", "cv2"});
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "ColorJitter");
    // np.random.permutation(4), then the factors in the order b, c, s, h.
    std::array<int, 4> order{0, 1, 2, 3};
    for (int i = 3; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng.randint(0, i))]);
    const double b = brightness_ ? rng.uniform(brightness_->first, brightness_->second) : 1.0;
    const double c = contrast_ ? rng.uniform(contrast_->first, contrast_->second) : 1.0;
    const double sat = saturation_ ? rng.uniform(saturation_->first, saturation_->second) : 1.0;
    const double h = hue_ ? rng.uniform(hue_->first, hue_->second) : 0.0;
    for (int op : order) {
      if (op == 0 && brightness_) adjust_brightness(s.img, b);
      if (op == 1 && contrast_) adjust_contrast(s.img, c);
      if (op == 2 && saturation_) adjust_saturation(s.img, sat);
      if (op == 3 && hue_) adjust_hue(s.img, h);
    }
  }

private:
  using Range = std::optional<std::pair<double, double>>;

  // mmselfsup ColorJitter._check_input: v -> [center - v, center + v] (the low end clipped at
  // 0 for brightness/contrast/saturation), or an explicit [min, max] inside the bounds; an
  // identity range turns the op off.
  static Range factor_range(const Config& cfg, const char* key, double center, double lo_bound,
                            double hi_bound, bool clip_at_zero) {
    const Config c = cfg[key];
    double lo = 0, hi = 0;
    if (c.json().is_number()) {
      const double v = c.json().as_number();
      if (!(v >= 0.0)) c.fail("expected a number >= 0, got " + describe_value(c.json()));
      lo = center - v;
      hi = center + v;
      if (clip_at_zero) lo = std::max(lo, 0.0);
      if (!clip_at_zero && !(lo >= lo_bound && hi <= hi_bound))
        c.fail("expected a number in [0, 0.5], got " + describe_value(c.json()));
    } else if (c.is_array()) {
      std::tie(lo, hi) = get_range(cfg, key);
      if (!(lo >= lo_bound && hi <= hi_bound))
        c.fail(std::string("expected ") +
               (clip_at_zero ? "0 <= min <= max" : "-0.5 <= min <= max <= 0.5") + ", got " +
               describe_value(c.json()));
    } else {
      c.fail("expected a number or a list [min, max], got " + describe_value(c.json()));
    }
    if (lo == center && hi == center) return std::nullopt;
    return std::make_pair(lo, hi);
  }

  Range brightness_, contrast_, saturation_, hue_;
};

Schema color_jitter_schema() {
  return Schema("Randomly changes brightness, contrast, saturation and hue, in a random order "
                "(mmselfsup ColorJitter). A value v gives factors ~U[max(0, 1-v), 1+v] (hue: "
                "U[-v, v], v <= 0.5); a list gives [min, max]. PIL ImageEnhance semantics on BGR "
                "uint8: brightness scales, contrast blends with the mean grey level, saturation "
                "blends with the grey image, hue rotates H in HSV. Saturation and hue leave "
                "1-channel images unchanged. Both backends run the same code on OpenCV.")
      .optional("brightness", ArgType::Any, 0.0, "jitter amount, or [min, max] factor")
      .optional("contrast", ArgType::Any, 0.0, "jitter amount, or [min, max] factor")
      .optional("saturation", ArgType::Any, 0.0, "jitter amount, or [min, max] factor")
      .optional("hue", ArgType::Any, 0.0, "jitter amount in [0, 0.5], or [min, max] in [-0.5, 0.5]")
      .optional("backend", ArgType::String, "pillow", "'pillow' or 'cv2' (same behaviour)");
}

// ---------------------------------------------------------------------------------------
// RandomApply

class RandomApply final : public Transform {
public:
  explicit RandomApply(const Config& cfg)
      : pipeline_(cfg["transforms"]), prob_(get_prob(cfg, "prob")) {}

  void apply(Sample& s, Rng& rng) const override {
    if (rng.bernoulli(prob_)) pipeline_.apply(s, rng);
  }

private:
  Pipeline pipeline_;
  double prob_;
};

Schema random_apply_schema() {
  return Schema("Applies a list of transforms, all or none, with probability `prob` (mmcv "
                "RandomApply).")
      .required("transforms", ArgType::List, "the transforms (a list of transform dicts)")
      .optional("prob", ArgType::Float, 0.5, "probability of applying them, in [0, 1]");
}

// ---------------------------------------------------------------------------------------
// RandomGrayscale

class RandomGrayscale final : public Transform {
public:
  explicit RandomGrayscale(const Config& cfg)
      : prob_(get_prob(cfg, "prob")), keep_channels_(cfg.get<bool>("keep_channels")),
        hsv_(get_choice(cfg, "color_format", {"bgr", "rgb", "hsv"}) == "hsv") {
    const Config w = cfg["channel_weights"];
    const auto weights = w.as<std::vector<double>>();
    if (weights.size() != 3)
      w.fail("expected 3 weights (one per channel), got " + describe_value(w.json()));
    double sum = 0;
    for (double x : weights) sum += x;
    if (!(sum > 0.0))
      w.fail("expected weights with a positive sum, got " + describe_value(w.json()));
    for (size_t i = 0; i < 3; ++i) weights_[i] = float(weights[i] / sum);
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomGrayscale");
    Image& img = s.img;
    if (hsv_ && img.channels == 3) { // mmcv converts hsv to bgr whether it greys or not
      cv::Mat m = as_mat(img);
      thread_local cv::Mat tmp;
      cv::cvtColor(m, tmp, cv::COLOR_HSV2BGR);
      tmp.copyTo(m);
    }
    if (!rng.bernoulli(prob_) || img.channels == 1) return;
    if (img.channels != 3)
      throw ValueError("RandomGrayscale: expected a 1- or 3-channel image, got " +
                       std::to_string(img.channels) + " channels");
    const size_t n = size_t(img.height) * size_t(img.width);
    const float w0 = weights_[0], w1 = weights_[1], w2 = weights_[2];
    if (keep_channels_) {
      uint8_t* p = img.data.data();
      for (size_t i = 0; i < n; ++i, p += 3) {
        const uint8_t g = clamp_u8(int(w0 * p[0] + w1 * p[1] + w2 * p[2]));
        p[0] = p[1] = p[2] = g;
      }
    } else {
      Image out(img.height, img.width, 1);
      const uint8_t* p = img.data.data();
      for (size_t i = 0; i < n; ++i, p += 3)
        out.data[i] = clamp_u8(int(w0 * p[0] + w1 * p[1] + w2 * p[2]));
      img = std::move(out);
    }
  }

private:
  double prob_;
  bool keep_channels_;
  bool hsv_;
  std::array<float, 3> weights_{};
};

Schema random_grayscale_schema() {
  return Schema("Converts the image to grey with probability `prob`: sum_c w_c x_c / sum_c w_c "
                "(mmcv RandomGrayscale). MMSelfSup configs use channel_weights [0.114, 0.587, "
                "0.2989], the luma weights in BGR order. 1-channel images are left unchanged.")
      .optional("prob", ArgType::Float, 0.1, "probability of converting, in [0, 1]")
      .optional("keep_channels", ArgType::Bool, false,
                "true: keep 3 channels (grey replicated); false: output 1 channel")
      .optional("channel_weights", ArgType::FloatList, Json::array({1.0, 1.0, 1.0}),
                "per-channel weights, in the image's channel order (BGR)")
      .optional("color_format", ArgType::String, "bgr",
                "'bgr', 'rgb' or 'hsv' ('hsv' images are converted to BGR first, always)");
}

// ---------------------------------------------------------------------------------------
// RandomGaussianBlur

class RandomGaussianBlur final : public Transform {
public:
  explicit RandomGaussianBlur(const Config& cfg)
      : sigma_min_(cfg.get<double>("sigma_min")), sigma_max_(cfg.get<double>("sigma_max")),
        prob_(get_prob(cfg, "prob")) {
    if (!(sigma_min_ >= 0.0))
      cfg.fail_key("sigma_min",
                   "expected a number >= 0, got " + describe_value(cfg["sigma_min"].json()));
    if (!(sigma_max_ >= sigma_min_))
      cfg.fail_key("sigma_max", "expected sigma_max >= sigma_min (" +
                                    describe_value(cfg["sigma_min"].json()) + "), got " +
                                    describe_value(cfg["sigma_max"].json()));
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomGaussianBlur");
    if (!rng.bernoulli(prob_)) return;
    const double sigma = rng.uniform(sigma_min_, sigma_max_);
    if (sigma <= 0.0) return; // PIL radius 0: identity
    Image& img = s.img;
    // Kernel radius 3 sigma, but no wider than the image needs (replicated borders).
    const int cap = 2 * std::max(img.height, img.width) + 1;
    const int ksize = int(std::min(2.0 * std::ceil(3.0 * sigma) + 1.0, double(cap)));
    thread_local std::vector<uint8_t> scratch;
    scratch.resize(img.data.size());
    cv::Mat src = as_mat(img);
    cv::Mat dst(img.height, img.width, CV_8UC(img.channels), scratch.data());
    cv::GaussianBlur(src, dst, cv::Size(ksize, ksize), sigma, sigma, cv::BORDER_REPLICATE);
    if (dst.data != scratch.data()) {
      dst.copyTo(src);
    } else {
      std::swap(img.data, scratch);
    }
  }

private:
  double sigma_min_, sigma_max_, prob_;
};

Schema random_gaussian_blur_schema() {
  return Schema("Gaussian blur with probability `prob`, sigma ~U[sigma_min, sigma_max] (mmselfsup "
                "RandomGaussianBlur; PIL's GaussianBlur(radius=sigma), i.e. radius = standard "
                "deviation). Runs cv::GaussianBlur with a (2*ceil(3 sigma)+1)^2 kernel and "
                "replicated borders.")
      .required("sigma_min", ArgType::Float, "smallest standard deviation, >= 0")
      .required("sigma_max", ArgType::Float, "largest standard deviation, >= sigma_min")
      .optional("prob", ArgType::Float, 0.5, "probability of blurring, in [0, 1]");
}

// ---------------------------------------------------------------------------------------
// RandomSolarize

class RandomSolarize final : public Transform {
public:
  explicit RandomSolarize(const Config& cfg) : prob_(get_prob(cfg, "prob")) {
    const double thr = cfg.get<double>("threshold");
    for (int v = 0; v < 256; ++v) lut_[size_t(v)] = v < thr ? uint8_t(v) : uint8_t(255 - v);
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomSolarize");
    if (rng.bernoulli(prob_)) apply_lut(s.img, lut_);
  }

private:
  double prob_;
  Lut lut_{};
};

Schema random_solarize_schema() {
  return Schema("Solarizes with probability `prob`: x < threshold ? x : 255 - x (mmselfsup "
                "RandomSolarize, BYOL).")
      .optional("threshold", ArgType::Float, 128, "pixels at or above it are inverted")
      .optional("prob", ArgType::Float, 0.5, "probability of solarizing, in [0, 1]");
}

// ---------------------------------------------------------------------------------------
// MultiView

class MultiView final : public Transform {
public:
  explicit MultiView(const Config& cfg) {
    const Config list = cfg["transforms"];
    const Config nv = cfg["num_views"];
    std::vector<int> counts;
    if (nv.json().is_int()) {
      counts.push_back(nv.as<int>());
    } else if (nv.is_array()) {
      counts = nv.as<std::vector<int>>();
    } else {
      nv.fail("expected an int or a list of ints, got " + describe_value(nv.json()));
    }
    if (counts.size() != list.size())
      nv.fail("expected one count per pipeline of `transforms` (" + std::to_string(list.size()) +
              "), got " + describe_value(nv.json()));
    for (size_t i = 0; i < counts.size(); ++i)
      if (counts[i] < 1)
        (nv.is_array() ? nv.at(i) : nv)
            .fail("expected a view count >= 1, got " + std::to_string(counts[i]));
    for (size_t i = 0; i < list.size(); ++i) {
      const Config p = list.at(i);
      if (!p.is_array())
        p.fail("expected a pipeline (a list of transform dicts), got " + describe_value(p.json()));
      pipelines_.emplace_back(std::make_shared<Pipeline>(p), counts[i]);
    }
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "MultiView");
    const Image src = std::move(s.img);
    s.img = Image();
    for (const auto& [pipeline, count] : pipelines_) {
      for (int k = 0; k < count; ++k) {
        Sample view;
        view.img = src;
        view.gt_label = s.gt_label;
        view.sample_idx = s.sample_idx;
        pipeline->apply(view, rng);
        if (!view.views.empty()) {
          for (auto& v : view.views) s.views.push_back(std::move(v));
        } else {
          s.views.push_back(std::move(view.img));
        }
      }
    }
  }

private:
  std::vector<std::pair<std::shared_ptr<Pipeline>, int>> pipelines_;
};

Schema multi_view_schema() {
  return Schema("Runs each pipeline num_views[i] times on a copy of the sample and collects the "
                "resulting images as the sample's views, in order (mmselfsup MultiView). The "
                "single `img` is consumed.")
      .required("transforms", ArgType::List, "a list of pipelines, each a list of transform dicts")
      .required("num_views", ArgType::Any,
                "views per pipeline: a list of ints (same length as transforms), or one int");
}

// ---------------------------------------------------------------------------------------
// PackSelfSupInputs

class PackSelfSupInputs final : public Transform {
public:
  explicit PackSelfSupInputs(const Config& cfg) {
    get_choice(cfg, "key", {"img"});
    for (const char* key : {"algorithm_keys", "pseudo_label_keys", "meta_keys"}) {
      const Config list = cfg[key];
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string v = list.at(i).as<std::string>();
        if (v != "gt_label" && v != "sample_idx")
          list.at(i).fail("unknown key '" + v +
                          "': samples here carry only 'gt_label' and 'sample_idx' (batches "
                          "always include both)");
      }
    }
  }

  void apply(Sample& s, Rng&) const override {
    if (!s.views.empty()) return;
    require_image(s.img, "PackSelfSupInputs");
    s.views.push_back(std::move(s.img));
    s.img = Image();
  }
};

Schema pack_schema() {
  return Schema("Packs the sample for the model (mmselfsup PackSelfSupInputs): a single image "
                "becomes the only view. Batches always carry gt_label and sample_idx; the key "
                "lists are checked for compatibility.")
      .optional("key", ArgType::String, "img", "the image key; only 'img'")
      .optional("algorithm_keys", ArgType::StringList, Json::array(),
                "keys for the algorithm: 'gt_label', 'sample_idx'")
      .optional("pseudo_label_keys", ArgType::StringList, Json::array(),
                "pseudo-label keys: 'gt_label', 'sample_idx'")
      .optional("meta_keys", ArgType::StringList, Json::array(),
                "meta keys: 'gt_label', 'sample_idx'");
}

// ---------------------------------------------------------------------------------------
// ColorConvert

class ColorConvert final : public Transform {
public:
  explicit ColorConvert(const Config& cfg) : channels_(cfg.get<int>("channels")) {
    if (channels_ != 1 && channels_ != 3)
      cfg.fail_key("channels", "expected 1 or 3, got " + std::to_string(channels_));
  }

  void apply(Sample& s, Rng&) const override {
    require_image(s.img, "ColorConvert");
    Image& img = s.img;
    if (img.channels == channels_) return;
    if (img.channels != 1 && img.channels != 3)
      throw ValueError("ColorConvert: expected a 1- or 3-channel image, got " +
                       std::to_string(img.channels) + " channels");
    Image out(img.height, img.width, channels_);
    const size_t n = size_t(img.height) * size_t(img.width);
    if (channels_ == 3) {
      for (size_t i = 0; i < n; ++i)
        out.data[i * 3] = out.data[i * 3 + 1] = out.data[i * 3 + 2] = img.data[i];
    } else {
      cv::Mat dst = as_mat(out);
      cv::cvtColor(as_mat(img), dst, cv::COLOR_BGR2GRAY);
      if (dst.data != out.data.data())
        dst.copyTo(cv::Mat(img.height, img.width, CV_8UC1, out.data.data()));
    }
    img = std::move(out);
  }

private:
  int channels_;
};

Schema color_convert_schema() {
  return Schema("Sets the number of channels: 1 -> 3 replicates grey into B, G and R; 3 -> 1 "
                "takes the luma (0.299 R + 0.587 G + 0.114 B) of the BGR image.")
      .required("channels", ArgType::Int, "1 or 3");
}

template <class T> std::shared_ptr<Transform> make(const Config& cfg) {
  return std::make_shared<T>(cfg);
}

} // namespace

void register_transforms(Registrar& r) {
  r.add<Transform>("RandomResizedCrop", &make<RandomResizedCrop>, random_resized_crop_schema());
  r.add<Transform>("RandomFlip", &make<RandomFlip>, random_flip_schema());
  r.add<Transform>("ColorJitter", &make<ColorJitter>, color_jitter_schema());
  r.add<Transform>("RandomApply", &make<RandomApply>, random_apply_schema());
  r.add<Transform>("RandomGrayscale", &make<RandomGrayscale>, random_grayscale_schema());
  r.add<Transform>("RandomGaussianBlur", &make<RandomGaussianBlur>, random_gaussian_blur_schema());
  r.add<Transform>("RandomSolarize", &make<RandomSolarize>, random_solarize_schema());
  r.add<Transform>("MultiView", &make<MultiView>, multi_view_schema());
  r.add<Transform>("PackSelfSupInputs", &make<PackSelfSupInputs>, pack_schema());
  r.add<Transform>("ColorConvert", &make<ColorConvert>, color_convert_schema());
}

} // namespace selfsup::core
