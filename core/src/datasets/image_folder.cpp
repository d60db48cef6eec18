// ImageFolder: a folder of JPEG/PNG images, with class sub-folders (labelled) or flat
// (unlabelled), or an MMSelfSup/MMPretrain annotation list. Keys as MMPretrain's
// CustomDataset. Files are listed when the dataset is built; images are decoded lazily in
// get(), on the loader's threads.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/options.h>
#include <selfsup/registry.h>

#include "common.h"

namespace selfsup::core {

namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxImageFileBytes = uint64_t(1) << 30;
constexpr uint64_t kMaxAnnFileBytes = uint64_t(1) << 30;
constexpr int kMaxFolderDepth = 64;

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const std::vector<std::string>& decodable_extensions() {
  static const std::vector<std::string> v{".jpg", ".jpeg", ".png"};
  return v;
}

struct ImageFolderOptions {
  std::string data_root;
  Json data_prefix = Json("");
  std::string ann_file;
  std::optional<bool> with_label;
  std::vector<std::string> extensions = decodable_extensions();
  std::string color_type = "color";
  std::string on_bad_image = "error";
  int64_t max_pixels = kDefaultMaxImagePixels;
  // MMPretrain's BaseDataset keys, taken by the mmcls/mmpretrain names only.
  bool test_mode = false;
  bool lazy_init = false;
  bool serialize_data = true;
  Json metainfo;

  // `mmcls`: the table of mmcls.ImageNet / mmcls.CustomDataset (and their mmpretrain names),
  // which also takes MMPretrain's BaseDataset keys that change nothing here.
  static OptionTable<ImageFolderOptions> table(bool mmcls = false) {
    using O = ImageFolderOptions;
    auto t =
        OptionTable<O>(
            "A folder of JPEG/PNG images, as MMPretrain's CustomDataset: class sub-folders "
            "(label = index of the sorted folder name), a flat folder (unlabelled, label -1), "
            "or an annotation list (`ann_file`: lines `relative/path [label]`). Images are "
            "decoded when a sample is read, to 8-bit BGR (or grey); names starting with '.' "
            "are skipped. Samples carry gt_label, sample_idx and the string img_path.",
            O())
            .optional("data_root", &O::data_root,
                      "the root folder: images (or class sub-folders) are under "
                      "data_root/data_prefix, and a relative ann_file is read from data_root",
                      check::existing_dir({""}))
            .optional("data_prefix", &O::data_prefix,
                      "a sub-folder of data_root holding the images: a string or {\"img_path\": "
                      "string}")
            .optional(
                "ann_file", &O::ann_file,
                "an annotation list, one image per line: `path` or `path label` (an int >= 0), "
                "paths relative to data_root/data_prefix; \"\": list the folder instead")
            .optional(
                "with_label", &O::with_label,
                "true: class sub-folders (or labelled ann_file lines); false: every image "
                "below the folder (or the whole ann_file line is the path), label -1; absent: "
                "decided from the folder (sub-folders only: classes, images only: unlabelled) "
                "or from the ann_file lines")
            .optional("extensions", &O::extensions,
                      "file name endings listed (case-insensitive); JPEG and PNG are decoded",
                      check::non_empty())
            .optional("color_type", &O::color_type,
                      "mmcv's: \"color\" (3 channels, grey expanded), \"grayscale\" (1 channel), "
                      "\"unchanged\" (as stored: 1 or 3 channels; alpha is always dropped)",
                      check::one_of({"color", "grayscale", "unchanged"}))
            .optional(
                "on_bad_image", &O::on_bad_image,
                "an unreadable or corrupt image: \"error\" stops the run naming the file; "
                "\"skip\" reports it once, counts it and reads the next good image in its place",
                check::one_of({"error", "skip"}))
            .optional("max_pixels", &O::max_pixels,
                      "images with more pixels (width * height) are refused from their header, "
                      "before decoding (decompression bombs)",
                      check::gt(0))
            .rule([](const O& o, const Config& cfg) {
              const Json& p = o.data_prefix;
              const bool prefix_ok =
                  p.is_string() || (p.is_object() && p.keys().size() == 1 && p.find("img_path") &&
                                    p.find("img_path")->is_string());
              if (!prefix_ok)
                cfg.fail_key("data_prefix",
                             "expected a string or {\"img_path\": string}, got " + p.dump());
              for (size_t i = 0; i < o.extensions.size(); ++i) {
                const auto& all = decodable_extensions();
                if (std::find(all.begin(), all.end(), lower(o.extensions[i])) == all.end())
                  cfg["extensions"].at(i).fail("expected one of \".jpg\", \".jpeg\", \".png\" (the "
                                               "formats decoded), got \"" +
                                               o.extensions[i] + "\"");
              }
              if (o.data_root.empty() && o.ann_file.empty() && p.is_string() &&
                  p.as_string().empty())
                cfg.fail("give data_root (the image folder), or an ann_file");
            });
    if (mmcls) {
      t.optional("test_mode", &O::test_mode,
                 "MMPretrain's: true for evaluation sets; the samples are the same either way "
                 "(this dataset filters nothing and never refetches)")
          .optional("lazy_init", &O::lazy_init,
                    "MMPretrain's: delay reading the annotations; here the file list is always "
                    "read when the dataset is built, so a missing file is reported before the run")
          .optional("serialize_data", &O::serialize_data,
                    "MMPretrain's memory layout of the annotations between workers; the loader's "
                    "threads share one list here")
          .optional("metainfo", &O::metainfo,
                    "MMPretrain's class names: only null (classes come from the folder or the "
                    "labels of ann_file)")
          .rule([](const O& o, const Config& cfg) {
            if (!o.metainfo.is_null())
              cfg.fail_key("metainfo", "expected null: class names are taken from the class "
                                       "sub-folders or the ann_file labels, got " +
                                           o.metainfo.dump());
          });
    }
    return t;
  }
};

struct Item {
  std::string path;
  int64_t label = -1;
};

class ImageFolder final : public Dataset {
public:
  explicit ImageFolder(const Config& cfg, bool mmcls = false) : where_(cfg.where()) {
    const ImageFolderOptions o = ImageFolderOptions::table(mmcls).parse(cfg);
    extensions_ = o.extensions;
    for (auto& e : extensions_) e = lower(e);
    color_type_ = o.color_type;
    skip_bad_ = o.on_bad_image == "skip";
    max_pixels_ = o.max_pixels;
    const std::string prefix = o.data_prefix.is_string()
                                   ? o.data_prefix.as_string()
                                   : o.data_prefix.find("img_path")->as_string();
    fs::path img_dir = prefix.empty() ? fs::path(o.data_root) : fs::path(o.data_root) / prefix;
    if (img_dir.empty()) img_dir = ".";
    if (!o.ann_file.empty()) {
      fs::path ann = o.ann_file;
      if (ann.is_relative() && !o.data_root.empty()) ann = fs::path(o.data_root) / ann;
      read_ann_file(cfg, ann, img_dir, o.with_label);
    } else {
      list_folder(cfg, img_dir, o.with_label);
    }
  }

  [[nodiscard]] int64_t size() const override { return int64_t(items_.size()); }
  [[nodiscard]] int64_t num_classes() const override { return num_classes_; }
  [[nodiscard]] const std::vector<std::string>& classes() const { return classes_; }

  [[nodiscard]] Sample get(int64_t index) const override {
    const int64_t n = size();
    if (index < 0 || index >= n)
      throw ValueError(where_ + ": ImageFolder index " + std::to_string(index) +
                       " out of range [0, " + std::to_string(n) + ")");
    if (!skip_bad_) return load(index, index);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t j = (index + k) % n;
      if (known_bad(j)) continue;
      try {
        return load(j, index);
      } catch (const ValueError& e) {
        report_bad(j, e.what());
      }
    }
    throw ValueError(where_ + ": every one of the " + std::to_string(n) +
                     " images is unreadable (on_bad_image: \"skip\" has nothing left to read)");
  }

private:
  // The image of items_[j] as the sample of position `index`.
  [[nodiscard]] Sample load(int64_t j, int64_t index) const {
    const Item& item = items_[size_t(j)];
    const std::vector<uint8_t> bytes = read_regular_file(item.path, kMaxImageFileBytes, "image");
    const torch::Tensor t = decode_image(bytes.data(), bytes.size(), item.path, max_pixels_);
    const int h = int(t.size(0)), w = int(t.size(1)), c = int(t.size(2));
    const uint8_t* src = t.data_ptr<uint8_t>();
    const size_t n = size_t(h) * size_t(w);
    const int out_c = color_type_ == "grayscale" ? 1 : color_type_ == "color" ? 3 : c;
    Sample s;
    s.img = Image(h, w, out_c);
    uint8_t* dst = s.img.data.data();
    if (out_c == c && c == 1) {
      std::copy(src, src + n, dst);
    } else if (out_c == 3 && c == 1) {
      for (size_t i = 0; i < n; ++i) dst[i * 3] = dst[i * 3 + 1] = dst[i * 3 + 2] = src[i];
    } else if (out_c == 3) { // RGB -> BGR
      for (size_t i = 0; i < n; ++i) {
        dst[i * 3] = src[i * 3 + 2];
        dst[i * 3 + 1] = src[i * 3 + 1];
        dst[i * 3 + 2] = src[i * 3];
      }
    } else { // RGB -> grey: PIL's "L" (ITU-R 601-2 luma)
      for (size_t i = 0; i < n; ++i)
        dst[i] =
            uint8_t((src[i * 3] * 299 + src[i * 3 + 1] * 587 + src[i * 3 + 2] * 114 + 500) / 1000);
    }
    s.gt_label = item.label;
    s.sample_idx = index;
    s.strings["img_path"] = item.path;
    return s;
  }

  [[nodiscard]] bool known_bad(int64_t j) const {
    std::lock_guard<std::mutex> lock(bad_mutex_);
    return bad_.count(j) != 0;
  }

  void report_bad(int64_t j, const std::string& why) const {
    size_t count = 0;
    {
      std::lock_guard<std::mutex> lock(bad_mutex_);
      if (!bad_.insert(j).second) return;
      count = bad_.size();
    }
    std::cerr << "selfsup: " << where_ << ": skipped a bad image (" << count
              << " so far, on_bad_image: \"skip\"): " << why << std::endl;
  }

  [[nodiscard]] bool listed(const fs::path& p) const {
    return std::find(extensions_.begin(), extensions_.end(), lower(p.extension().string())) !=
           extensions_.end();
  }

  static bool hidden(const fs::path& p) {
    const std::string name = p.filename().string();
    return !name.empty() && name[0] == '.';
  }

  // The image files below `dir`, recursively (folder links followed once each), in path order;
  // `others` counts the files that are not listed (and keeps the first as an example).
  void walk(const fs::path& dir, std::vector<std::string>& out, std::set<fs::path>& seen, int depth,
            size_t& others, std::string& other_example) const {
    std::error_code ec;
    const fs::path canon = fs::canonical(dir, ec);
    if (ec || !seen.insert(canon).second || depth > kMaxFolderDepth) return;
    fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
    if (ec) throw ValueError(dir.string() + ": cannot list folder (" + ec.message() + ")");
    std::vector<fs::path> entries;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) throw ValueError(dir.string() + ": cannot list folder (" + ec.message() + ")");
      entries.push_back(it->path());
    }
    std::sort(entries.begin(), entries.end());
    for (const fs::path& p : entries) {
      if (hidden(p)) continue;
      if (fs::is_directory(p, ec)) {
        walk(p, out, seen, depth + 1, others, other_example);
      } else if (fs::is_regular_file(p, ec) && listed(p)) {
        out.push_back(p.string());
      } else {
        if (others++ == 0) other_example = p.string();
      }
    }
  }

  [[nodiscard]] std::string extension_list() const {
    std::string out;
    for (const auto& e : extensions_) out += (out.empty() ? "" : ", ") + e;
    return out;
  }

  void list_folder(const Config& cfg, const fs::path& root, std::optional<bool> with_label) {
    std::error_code ec;
    const std::string key = cfg.path_of("data_root");
    if (!fs::exists(root, ec))
      throw ValueError(key + ": image folder " + root.string() + " not found");
    if (!fs::is_directory(root, ec))
      throw ValueError(key + ": " + root.string() + " is not a folder");
    // What lies directly in root: image files and sub-folders.
    std::vector<fs::path> direct_images, sub_dirs;
    fs::directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
    if (ec) throw ValueError(root.string() + ": cannot list folder (" + ec.message() + ")");
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) throw ValueError(root.string() + ": cannot list folder (" + ec.message() + ")");
      const fs::path& p = it->path();
      if (hidden(p)) continue;
      if (fs::is_directory(p, ec))
        sub_dirs.push_back(p);
      else if (fs::is_regular_file(p, ec) && listed(p))
        direct_images.push_back(p);
    }
    std::sort(sub_dirs.begin(), sub_dirs.end());
    const bool classes = with_label.value_or(direct_images.empty() && !sub_dirs.empty());
    if (with_label.value_or(true) && !direct_images.empty() && !sub_dirs.empty())
      throw ValueError(root.string() + ": " + std::to_string(direct_images.size()) +
                       " image(s) lie directly in it beside sub-folders (e.g. " +
                       direct_images.front().filename().string() +
                       "): with class sub-folders every image must be in one; set with_label: "
                       "false to use every image below " +
                       root.string() + " unlabelled [" + key + "]");
    if (classes && sub_dirs.empty())
      throw ValueError(root.string() +
                       ": with_label: true needs class sub-folders, and this "
                       "folder has none [" +
                       key + "]");
    size_t others = 0;
    std::string other_example;
    std::set<fs::path> seen;
    if (!classes) {
      std::vector<std::string> files;
      walk(root, files, seen, 0, others, other_example);
      std::sort(files.begin(), files.end());
      for (auto& f : files) items_.push_back(Item{std::move(f), -1});
    } else {
      seen.insert(fs::canonical(root, ec));
      for (const fs::path& d : sub_dirs) {
        std::vector<std::string> files;
        walk(d, files, seen, 1, others, other_example);
        if (files.empty())
          throw ValueError(d.string() + ": class folder has no images (" + extension_list() + ")" +
                           (with_label ? ""
                                       : "; with_label: false lists the images of " +
                                             root.string() + " unlabelled"));
        std::sort(files.begin(), files.end());
        const int64_t label = int64_t(classes_.size());
        classes_.push_back(d.filename().string());
        for (auto& f : files) items_.push_back(Item{std::move(f), label});
      }
      num_classes_ = int64_t(classes_.size());
    }
    if (items_.empty())
      throw ValueError(
          root.string() + ": no images (" + extension_list() + ") in this folder" +
          (classes ? "" : " or below it") +
          (others ? " (" + std::to_string(others) + " other file(s), e.g. " + other_example + ")"
                  : "") +
          " [" + key + "]");
  }

  void read_ann_file(const Config& cfg, const fs::path& ann, const fs::path& img_dir,
                     std::optional<bool> with_label) {
    std::error_code ec;
    if (!fs::exists(ann, ec))
      throw ValueError(cfg.path_of("ann_file") + ": annotation file " + ann.string() +
                       " not found");
    const std::vector<uint8_t> bytes =
        read_regular_file(ann.string(), kMaxAnnFileBytes, "annotation file");
    const std::string text(bytes.begin(), bytes.end());
    struct Line {
      size_t number;
      std::string raw; // the whole line, trimmed
      std::string path;
      std::optional<int64_t> label;
    };
    std::vector<Line> lines;
    size_t start = 0, number = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(start, end - start);
      start = end + 1;
      ++number;
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
        line.pop_back();
      size_t lead = 0;
      while (lead < line.size() && std::isspace(static_cast<unsigned char>(line[lead]))) ++lead;
      line.erase(0, lead);
      if (line.empty()) continue;
      Line l{number, line, line, std::nullopt};
      const size_t space = line.find_last_of(" \t");
      if (space != std::string::npos) {
        const std::string tail = line.substr(space + 1);
        int64_t v = 0;
        const auto [p, err] = std::from_chars(tail.data(), tail.data() + tail.size(), v);
        if (err == std::errc() && p == tail.data() + tail.size() && v >= 0 && v < (1 << 30)) {
          l.label = v;
          l.path = line.substr(0, space);
          while (!l.path.empty() && std::isspace(static_cast<unsigned char>(l.path.back())))
            l.path.pop_back();
        }
      }
      lines.push_back(std::move(l));
    }
    const std::string where = ann.string();
    if (lines.empty()) throw ValueError(where + ": annotation file lists no images");
    bool labelled = with_label.value_or(lines.front().label.has_value());
    for (const Line& l : lines) {
      const std::string at = where + ":" + std::to_string(l.number);
      if (labelled && !l.label)
        throw ValueError(
            at + ": expected `path label` (label an int >= 0), got \"" + l.path + "\"" +
            (with_label ? "" : " (the first line has a label, so every line needs one)"));
      if (!with_label && !labelled && l.label)
        throw ValueError(at + ": a label, but the first line has none; give every line a label, "
                              "or set with_label: false to read whole lines as paths");
      const std::string& rel = labelled ? l.path : l.raw;
      const fs::path file = img_dir / rel;
      if (!fs::is_regular_file(file, ec))
        throw ValueError(at + ": image " + file.string() + " not found (paths are relative to " +
                         img_dir.string() + ")");
      items_.push_back(Item{file.string(), labelled ? *l.label : -1});
      if (labelled) num_classes_ = std::max(num_classes_, *l.label + 1);
    }
  }

  std::string where_;
  std::vector<std::string> extensions_;
  std::string color_type_;
  bool skip_bad_ = false;
  int64_t max_pixels_ = kDefaultMaxImagePixels;
  std::vector<Item> items_;
  std::vector<std::string> classes_;
  int64_t num_classes_ = 0;
  mutable std::mutex bad_mutex_;
  mutable std::set<int64_t> bad_;
};

} // namespace

void register_image_folder(Registrar& r) {
  r.add<Dataset>(
      "ImageFolder",
      [](const Config& cfg) -> std::shared_ptr<Dataset> {
        return std::make_shared<ImageFolder>(cfg);
      },
      ImageFolderOptions::table().schema());
  // MMPretrain's (mmcls 1.0's) ImageNet and CustomDataset: the same reader with their keys
  // (ann_file lines `path label`; without ann_file, the class sub-folders of
  // data_root/data_prefix).
  for (const char* name : {"ImageNet", "mmcls.ImageNet", "mmpretrain.ImageNet",
                           "mmcls.CustomDataset", "mmpretrain.CustomDataset"})
    r.add<Dataset>(
        name,
        [](const Config& cfg) -> std::shared_ptr<Dataset> {
          return std::make_shared<ImageFolder>(cfg, true);
        },
        ImageFolderOptions::table(true).schema());
}

} // namespace selfsup::core
