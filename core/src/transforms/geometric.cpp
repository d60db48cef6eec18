// Geometric transforms (mmselfsup / mmcv names and semantics): RandomResizedCrop,
// RandomResizedCropAndInterpolationWithTwoPic, RandomFlip, Resize, RandomCrop.
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

// The crop box of torchvision's / mmselfsup's RandomResizedCrop.get_params: up to max_attempts
// tries of an area fraction ~U(scale) and a log-uniform aspect ratio w/h (sizes rounded half to
// even, as Python's round()), the offsets uniform (row first); then a central crop with the
// ratio clamped. Draws from `rng` in upstream's order: area, ratio, row, column.
struct CropBox {
  int x = 0, y = 0, w = 0, h = 0;
};

class CropBoxSampler {
public:
  CropBoxSampler() = default;
  CropBoxSampler(const std::vector<double>& scale, const std::vector<double>& ratio,
                 int max_attempts)
      : scale_lo_(scale.at(0)), scale_hi_(scale.at(1)), ratio_lo_(ratio.at(0)),
        ratio_hi_(ratio.at(1)), log_ratio_lo_(std::log(ratio_lo_)),
        log_ratio_hi_(std::log(ratio_hi_)), max_attempts_(max_attempts) {}

  CropBox sample(int height, int width, Rng& rng) const {
    const double area = double(height) * double(width);
    CropBox b;
    for (int i = 0; i < max_attempts_; ++i) {
      const double target_area = rng.uniform(scale_lo_, scale_hi_) * area;
      const double aspect = std::exp(rng.uniform(log_ratio_lo_, log_ratio_hi_));
      // Python's round(): half to even, as std::nearbyint in the default rounding mode.
      b.w = int(std::nearbyint(std::sqrt(target_area * aspect)));
      b.h = int(std::nearbyint(std::sqrt(target_area / aspect)));
      if (b.w > 0 && b.w <= width && b.h > 0 && b.h <= height) {
        b.y = int(rng.randint(0, height - b.h));
        b.x = int(rng.randint(0, width - b.w));
        return b;
      }
    }
    const double in_ratio = double(width) / double(height); // central crop, ratio clamped
    if (in_ratio < ratio_lo_) {
      b.w = width;
      b.h = std::max(1, int(std::nearbyint(b.w / ratio_lo_)));
    } else if (in_ratio > ratio_hi_) {
      b.h = height;
      b.w = std::max(1, int(std::nearbyint(b.h * ratio_hi_)));
    } else {
      b.w = width;
      b.h = height;
    }
    b.h = std::min(b.h, height);
    b.w = std::min(b.w, width);
    b.y = (height - b.h) / 2;
    b.x = (width - b.w) / 2;
    return b;
  }

private:
  double scale_lo_ = 0, scale_hi_ = 0;
  double ratio_lo_ = 0, ratio_hi_ = 0, log_ratio_lo_ = 0, log_ratio_hi_ = 0;
  int max_attempts_ = 10;
};

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
    box_ = CropBoxSampler(o.scale, o.ratio, o.max_attempts);
    interp_ = interpolation_flag(o.interpolation);
    pillow_ = o.backend == "pillow";
    if (o.interpolation == "nearest") filter_ = pil::Filter::nearest;
    if (o.interpolation == "bicubic") filter_ = pil::Filter::bicubic;
    if (o.interpolation == "lanczos") filter_ = pil::Filter::lanczos;
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomResizedCrop");
    const CropBox b = box_.sample(s.img.height, s.img.width, rng);
    const int x = b.x, y = b.y, tw = b.w, th = b.h;
    if (pillow_) {
      s.img = pil::resize(s.img, x, y, tw, th, out_h_, out_w_, filter_);
      return;
    }
    const cv::Mat roi = as_mat(s.img)(cv::Rect(x, y, tw, th));
    s.img = resize_to(roi, out_h_, out_w_, s.img.channels, interp_);
  }

private:
  int out_h_ = 0, out_w_ = 0;
  CropBoxSampler box_;
  int interp_ = cv::INTER_LINEAR;
  bool pillow_ = false;
  pil::Filter filter_ = pil::Filter::bilinear;
};

// ---------------------------------------------------------------------------------------
// RandomResizedCropAndInterpolationWithTwoPic (BEiT / CAE)

// Upstream (mmselfsup 1.0) maps the interpolation names to PIL's resampling constants and hands
// those numbers to cv2.resize, which reads them as OpenCV flags: PIL's LANCZOS (1) is OpenCV's
// INTER_LINEAR, BILINEAR (2) is INTER_CUBIC, BICUBIC (3) is INTER_AREA, HAMMING (5) is
// INTER_LINEAR_EXACT. The flags below are what upstream's pictures are made with.
int two_pic_flag(const std::string& name) {
  if (name == "bicubic") return cv::INTER_AREA;
  if (name == "lanczos") return cv::INTER_LINEAR;
  if (name == "hamming") return cv::INTER_LINEAR_EXACT;
  return cv::INTER_CUBIC; // "bilinear"
}

// An int (square) or [w, h], as upstream passes the size to cv2.resize (dsize).
void two_pic_size(const Json& size, int& out_h, int& out_w) {
  out_w = int(size.is_int() ? size.as_int() : size.at(0).as_int());
  out_h = int(size.is_int() ? size.as_int() : size.at(1).as_int());
}

struct TwoPicOptions {
  Json size;        // required
  Json second_size; // null: one picture
  std::vector<double> scale = {0.08, 1.0};
  std::vector<double> ratio = {3.0 / 4.0, 4.0 / 3.0};
  std::string interpolation = "bilinear";
  std::string second_interpolation = "lanczos";

  static OptionTable<TwoPicOptions> table() {
    using O = TwoPicOptions;
    using namespace selfsup::check;
    Constraint optional_size = image_size();
    optional_size.text = "null, " + optional_size.text;
    optional_size.holds = [size = image_size().holds](const Json& v) {
      return v.is_null() || size(v);
    };
    return OptionTable<O>(
               "BEiT/CAE's crop (mmselfsup RandomResizedCropAndInterpolationWithTwoPic): one "
               "random box (RandomResizedCrop's: area ~U(scale), log-uniform ratio, 10 tries, "
               "then a central crop), resized to `size` for the backbone and, with "
               "`second_size`, also to `second_size` for the target generator: the sample's "
               "two views, [picture, target picture]. As upstream, the resizing is OpenCV's "
               "with PIL's constant read as an OpenCV flag: 'bicubic' resizes with INTER_AREA, "
               "'lanczos' with INTER_LINEAR, 'bilinear' with INTER_CUBIC, 'hamming' with "
               "INTER_LINEAR_EXACT; 'random' picks 'bilinear' or 'bicubic' per sample.",
               O())
        .required("size", &O::size, "the picture's size: an int (square) or [w, h]", image_size())
        .optional("second_size", &O::second_size,
                  "the target picture's size: an int (square) or [w, h]; null: no target "
                  "picture",
                  optional_size)
        .optional("scale", &O::scale,
                  "range [min, max] of the crop area as a fraction of the image area", min_max(),
                  each(ge(0)))
        .optional("ratio", &O::ratio,
                  "range [min, max] of the crop aspect ratio w/h (sampled log-uniformly)",
                  min_max(), each(gt(0)))
        .optional("interpolation", &O::interpolation, "how the picture is resized (see above)",
                  one_of({"bilinear", "bicubic", "lanczos", "hamming", "random"}))
        .optional("second_interpolation", &O::second_interpolation,
                  "how the target picture is resized (see above)",
                  one_of({"bilinear", "bicubic", "lanczos", "hamming"}))
        .rule([](const O& o, const Config& cfg) {
          if (!(o.scale[1] > 0))
            cfg.fail_key("scale", "expected a largest area fraction > 0, got " +
                                      describe_value(cfg["scale"].json()));
        });
  }
};

class RandomResizedCropAndInterpolationWithTwoPic final : public Transform {
public:
  explicit RandomResizedCropAndInterpolationWithTwoPic(const Config& cfg) {
    const auto o = TwoPicOptions::table().parse(cfg);
    box_ = CropBoxSampler(o.scale, o.ratio, 10);
    two_pic_size(o.size, out_h_, out_w_);
    if (!o.second_size.is_null()) {
      two_pics_ = true;
      two_pic_size(o.second_size, second_h_, second_w_);
    }
    random_interp_ = o.interpolation == "random";
    interp_ = two_pic_flag(o.interpolation);
    second_interp_ = two_pic_flag(o.second_interpolation);
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "RandomResizedCropAndInterpolationWithTwoPic");
    const CropBox b = box_.sample(s.img.height, s.img.width, rng);
    int interp = interp_;
    if (random_interp_) // upstream: random.choice((BILINEAR, BICUBIC)), after the box
      interp = rng.randint(0, 1) == 0 ? two_pic_flag("bilinear") : two_pic_flag("bicubic");
    const cv::Mat roi = as_mat(s.img)(cv::Rect(b.x, b.y, b.w, b.h));
    Image picture = resize_to(roi, out_h_, out_w_, s.img.channels, interp);
    if (!two_pics_) {
      s.img = std::move(picture);
      return;
    }
    Image target = resize_to(roi, second_h_, second_w_, s.img.channels, second_interp_);
    s.img = Image();
    s.views.push_back(std::move(picture));
    s.views.push_back(std::move(target));
  }

private:
  CropBoxSampler box_;
  int out_h_ = 0, out_w_ = 0, second_h_ = 0, second_w_ = 0;
  bool two_pics_ = false, random_interp_ = false;
  int interp_ = cv::INTER_CUBIC, second_interp_ = cv::INTER_LINEAR;
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
  r.add<Transform>("RandomResizedCropAndInterpolationWithTwoPic",
                   &make<RandomResizedCropAndInterpolationWithTwoPic>,
                   TwoPicOptions::table().schema());
  r.add<Transform>("RandomFlip", &make<RandomFlip>, RandomFlipOptions::table().schema());
  r.add<Transform>("Resize", &make<Resize>, ResizeOptions::table().schema());
  r.add<Transform>("RandomCrop", &make<RandomCrop>, RandomCropOptions::table().schema());
}

} // namespace selfsup::core::transforms
