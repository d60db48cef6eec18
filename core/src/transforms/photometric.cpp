// Photometric transforms (mmselfsup / mmcv names and semantics): ColorJitter, RandomGrayscale,
// RandomGaussianBlur, RandomSolarize, ColorConvert.
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/options.h>

#include "common.h"
#include "pil_ops.h"

namespace selfsup::core::transforms {

namespace {

// ---------------------------------------------------------------------------------------
// ColorJitter

// backend 'cv2': the engine's OpenCV-era kernels (PIL-like blends computed in double; hue through
// OpenCV's HSV_FULL). backend 'pillow' uses pil_ops.h, bit-exact with PIL.
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

// mmselfsup ColorJitter._check_input: an amount v >= 0 (at most `max_amount`), or a factor
// range [min, max] inside [lo, hi].
Constraint jitter(double max_amount, double lo, double hi, std::string text) {
  Constraint c{std::move(text), [=](const Json& v) {
                 if (v.is_number()) return v.as_number() >= 0.0 && v.as_number() <= max_amount;
                 return v.is_array() && v.size() == 2 && v.at(0).is_number() &&
                        v.at(1).is_number() && v.at(0).as_number() >= lo &&
                        v.at(0).as_number() <= v.at(1).as_number() && v.at(1).as_number() <= hi;
               }};
  c.names_type = false;
  return c;
}

Constraint factor_jitter() {
  return jitter(HUGE_VAL, 0.0, HUGE_VAL, "a number >= 0 or a list [min, max] with 0 <= min <= max");
}

struct ColorJitterOptions {
  Json brightness = 0.0;
  Json contrast = 0.0;
  Json saturation = 0.0;
  Json hue = 0.0;
  std::string backend = "pillow";

  static OptionTable<ColorJitterOptions> table() {
    using O = ColorJitterOptions;
    return OptionTable<O>(
               "Randomly changes brightness, contrast, saturation and hue, in a random order "
               "(mmselfsup ColorJitter). A value v gives factors ~U[max(0, 1-v), 1+v] (hue: "
               "U[-v, v], v <= 0.5); a list gives [min, max]. Brightness scales, contrast "
               "blends with the mean grey level, saturation blends with the grey image, hue "
               "rotates H in HSV. backend 'pillow' (the default, as mmselfsup) reproduces "
               "mmcv's PIL path bit for bit (ImageEnhance blends, PIL's uint8 HSV); 'cv2' runs "
               "the OpenCV kernels (hue through OpenCV's HSV, which rounds differently). "
               "Saturation and hue leave 1-channel images unchanged.",
               O())
        .optional("brightness", &O::brightness, "jitter amount, or [min, max] factor",
                  factor_jitter())
        .optional("contrast", &O::contrast, "jitter amount, or [min, max] factor", factor_jitter())
        .optional("saturation", &O::saturation, "jitter amount, or [min, max] factor",
                  factor_jitter())
        .optional("hue", &O::hue, "jitter amount, or [min, max] shift",
                  jitter(0.5, -0.5, 0.5,
                         "a number in [0, 0.5] or a list [min, max] with -0.5 <= min <= max <= "
                         "0.5"))
        .optional("backend", &O::backend, "'pillow' (PIL arithmetic) or 'cv2' (OpenCV)",
                  check::one_of({"pillow", "cv2"}));
  }
};

class ColorJitter final : public Transform {
public:
  explicit ColorJitter(const ColorJitterOptions& o)
      : brightness_(factor_range(o.brightness, 1.0, true)),
        contrast_(factor_range(o.contrast, 1.0, true)),
        saturation_(factor_range(o.saturation, 1.0, true)), hue_(factor_range(o.hue, 0.0, false)),
        pillow_(o.backend == "pillow") {}
  explicit ColorJitter(const Config& cfg) : ColorJitter(ColorJitterOptions::table().parse(cfg)) {}

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
      if (pillow_) {
        if (op == 0 && brightness_) pil::brightness(s.img, b);
        if (op == 1 && contrast_) pil::contrast(s.img, c);
        if (op == 2 && saturation_) pil::color(s.img, sat);
        if (op == 3 && hue_) pil::hue(s.img, h);
      } else {
        if (op == 0 && brightness_) adjust_brightness(s.img, b);
        if (op == 1 && contrast_) adjust_contrast(s.img, c);
        if (op == 2 && saturation_) adjust_saturation(s.img, sat);
        if (op == 3 && hue_) adjust_hue(s.img, h);
      }
    }
  }

private:
  using Range = std::optional<std::pair<double, double>>;
  // v -> [center - v, center + v] (the low end clipped at 0 for brightness, contrast and
  // saturation), or [min, max] as given (checked by the table); an identity range turns the
  // op off.
  static Range factor_range(const Json& v, double center, bool clip_at_zero) {
    double lo = 0, hi = 0;
    if (v.is_number()) {
      lo = center - v.as_number();
      hi = center + v.as_number();
      if (clip_at_zero) lo = std::max(lo, 0.0);
    } else {
      lo = v.at(0).as_number();
      hi = v.at(1).as_number();
    }
    if (lo == center && hi == center) return std::nullopt;
    return std::make_pair(lo, hi);
  }

  Range brightness_, contrast_, saturation_, hue_;
  bool pillow_ = true;
};

// ---------------------------------------------------------------------------------------
// RandomGrayscale

struct RandomGrayscaleOptions {
  double prob = 0.1;
  bool keep_channels = false;
  std::vector<double> channel_weights = {1.0, 1.0, 1.0};
  std::string color_format = "bgr";

  static OptionTable<RandomGrayscaleOptions> table() {
    using O = RandomGrayscaleOptions;
    using namespace selfsup::check;
    return OptionTable<O>("Converts the image to grey with probability `prob`: sum_c w_c x_c / "
                          "sum_c w_c (mmcv RandomGrayscale). MMSelfSup configs use "
                          "channel_weights [0.114, 0.587, 0.2989], the luma weights in BGR "
                          "order. 1-channel images are left unchanged.",
                          O())
        .optional("prob", &O::prob, "probability of converting", in(0, 1))
        .optional("keep_channels", &O::keep_channels,
                  "true: keep 3 channels (grey replicated); false: output 1 channel")
        .optional("channel_weights", &O::channel_weights,
                  "per-channel weights, in the image's channel order (BGR)", size(3))
        .optional("color_format", &O::color_format,
                  "'hsv' images are converted to BGR first, always", one_of({"bgr", "rgb", "hsv"}))
        .rule([](const O& o, const Config& cfg) {
          const auto& w = o.channel_weights;
          if (!(w[0] + w[1] + w[2] > 0.0))
            cfg.fail_key("channel_weights", "expected weights with a positive sum, got " +
                                                describe_value(cfg["channel_weights"].json()));
        });
  }
};

class RandomGrayscale final : public Transform {
public:
  explicit RandomGrayscale(const Config& cfg) {
    const auto o = RandomGrayscaleOptions::table().parse(cfg);
    prob_ = o.prob;
    keep_channels_ = o.keep_channels;
    hsv_ = o.color_format == "hsv";
    const auto& w = o.channel_weights;
    weights_ = {w[0], w[1], w[2]};
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
    img = pil::weighted_grey(img, weights_, keep_channels_); // mmcv's numpy arithmetic
  }

private:
  double prob_ = 0;
  bool keep_channels_ = false;
  bool hsv_ = false;
  std::array<double, 3> weights_{};
};

// ---------------------------------------------------------------------------------------
// RandomGaussianBlur

struct RandomGaussianBlurOptions {
  double sigma_min = 0, sigma_max = 0; // required
  double prob = 0.5;

  static OptionTable<RandomGaussianBlurOptions> table() {
    using O = RandomGaussianBlurOptions;
    using namespace selfsup::check;
    return OptionTable<O>("Gaussian blur with probability `prob`, sigma ~U[sigma_min, "
                          "sigma_max] (mmselfsup RandomGaussianBlur; PIL's "
                          "GaussianBlur(radius=sigma), i.e. radius = standard deviation), "
                          "reproduced bit for bit: PIL approximates the Gaussian by 3 passes of "
                          "an extended box blur per direction, edges replicated.",
                          O())
        .required("sigma_min", &O::sigma_min, "smallest standard deviation", ge(0))
        .required("sigma_max", &O::sigma_max, "largest standard deviation, >= sigma_min")
        .optional("prob", &O::prob, "probability of blurring", in(0, 1))
        .rule([](const O& o, const Config& cfg) {
          if (!(o.sigma_max >= o.sigma_min))
            cfg.fail_key("sigma_max", "expected sigma_max >= sigma_min (" +
                                          describe_value(cfg["sigma_min"].json()) + "), got " +
                                          describe_value(cfg["sigma_max"].json()));
        });
  }
};

class RandomGaussianBlur final : public Transform {
public:
  explicit RandomGaussianBlur(const Config& cfg) {
    const auto o = RandomGaussianBlurOptions::table().parse(cfg);
    sigma_min_ = o.sigma_min;
    sigma_max_ = o.sigma_max;
    prob_ = o.prob;
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomGaussianBlur");
    if (!rng.bernoulli(prob_)) return;
    const double sigma = rng.uniform(sigma_min_, sigma_max_);
    pil::gaussian_blur(s.img, sigma);
  }

private:
  double sigma_min_ = 0, sigma_max_ = 0, prob_ = 0;
};

// ---------------------------------------------------------------------------------------
// RandomSolarize

struct RandomSolarizeOptions {
  double threshold = 128;
  double prob = 0.5;

  static OptionTable<RandomSolarizeOptions> table() {
    using O = RandomSolarizeOptions;
    return OptionTable<O>("Solarizes with probability `prob`: x < threshold ? x : 255 - x "
                          "(mmselfsup RandomSolarize, BYOL).",
                          O())
        .optional("threshold", &O::threshold, "pixels at or above it are inverted")
        .optional("prob", &O::prob, "probability of solarizing", check::in(0, 1));
  }
};

class RandomSolarize final : public Transform {
public:
  explicit RandomSolarize(const Config& cfg) {
    const auto o = RandomSolarizeOptions::table().parse(cfg);
    prob_ = o.prob;
    threshold_ = o.threshold;
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomSolarize");
    if (rng.bernoulli(prob_)) pil::solarize(s.img, threshold_);
  }

private:
  double prob_ = 0;
  double threshold_ = 128;
};

// ---------------------------------------------------------------------------------------
// ColorConvert

struct ColorConvertOptions {
  int channels = 0; // required

  static OptionTable<ColorConvertOptions> table() {
    using O = ColorConvertOptions;
    return OptionTable<O>("Sets the number of channels: 1 -> 3 replicates grey into B, G and R; "
                          "3 -> 1 takes the luma (0.299 R + 0.587 G + 0.114 B) of the BGR image.",
                          O())
        .required("channels", &O::channels, "1 or 3", check::one_of({1, 3}));
  }
};

class ColorConvert final : public Transform {
public:
  explicit ColorConvert(const Config& cfg)
      : channels_(ColorConvertOptions::table().parse(cfg).channels) {}

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

} // namespace

void register_photometric(Registrar& r) {
  r.add<Transform>("ColorJitter", &make<ColorJitter>, ColorJitterOptions::table().schema());
  r.add<Transform>("RandomGrayscale", &make<RandomGrayscale>,
                   RandomGrayscaleOptions::table().schema());
  r.add<Transform>("RandomGaussianBlur", &make<RandomGaussianBlur>,
                   RandomGaussianBlurOptions::table().schema());
  r.add<Transform>("RandomSolarize", &make<RandomSolarize>,
                   RandomSolarizeOptions::table().schema());
  r.add<Transform>("ColorConvert", &make<ColorConvert>, ColorConvertOptions::table().schema());
}

} // namespace selfsup::core::transforms
