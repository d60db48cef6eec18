// Packing: mmselfsup PackSelfSupInputs, from the pipeline's named values to what an algorithm
// reads by name.
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/errors.h>
#include <selfsup/options.h>

#include "common.h"

namespace selfsup::core::transforms {

namespace {

// ---------------------------------------------------------------------------------------
// PackSelfSupInputs

// One key of a key list and the JSON path of its element, for errors at run time.
struct PackKey {
  std::string name;
  std::string path;
};

// An empty or repeated name in a key list is an error at its element.
void check_keys(const Config& cfg, const char* list_key) {
  const Config list = cfg[list_key];
  for (size_t i = 0; i < list.size(); ++i) {
    const Config element = list.at(i);
    const auto name = element.as<std::string>();
    if (name.empty()) element.fail("expected a key name, got an empty string");
    for (size_t j = 0; j < i; ++j)
      if (list.at(j).as<std::string>() == name) element.fail("key '" + name + "' is listed twice");
  }
}

// The keys of a list, each with the JSON path of its element (`list_path[i]`).
std::vector<PackKey> keys_of(const std::vector<std::string>& names, const std::string& list_path) {
  std::vector<PackKey> keys;
  for (size_t i = 0; i < names.size(); ++i)
    keys.push_back({names[i], list_path + "[" + std::to_string(i) + "]"});
  return keys;
}

struct PackSelfSupInputsOptions {
  std::string key = "img";
  std::vector<std::string> algorithm_keys, pseudo_label_keys, meta_keys;

  static OptionTable<PackSelfSupInputsOptions> table() {
    using O = PackSelfSupInputsOptions;
    return OptionTable<O>(
               "Packs the sample for the model (mmselfsup PackSelfSupInputs): a single image "
               "becomes the only view; the named values the key lists name go where an "
               "algorithm reads them by name (DataSamples data / pseudo_label / meta), each "
               "stacked along a new dim 0 per batch; the values no list names are dropped. "
               "Batches always carry gt_label and sample_idx. A listed key the sample lacks is "
               "an error naming the list element.",
               O())
        .optional("key", &O::key, "the image key; only 'img'", check::one_of({"img"}))
        .optional("algorithm_keys", &O::algorithm_keys,
                  "tensors set on the data sample itself (DataSamples::data), e.g. 'mask'; "
                  "'gt_label' and 'sample_idx' are always there")
        .optional("pseudo_label_keys", &O::pseudo_label_keys,
                  "tensors set on the data sample's pseudo_label (DataSamples::pseudo_label), "
                  "e.g. 'rot_label', 'patch_label'")
        .optional("meta_keys", &O::meta_keys,
                  "strings set as the data sample's metainfo (DataSamples::meta), e.g. "
                  "'img_path'; 'gt_label', 'sample_idx' as decimal text")
        .rule([](const O&, const Config& cfg) {
          for (const char* list : {"algorithm_keys", "pseudo_label_keys", "meta_keys"})
            check_keys(cfg, list);
        });
  }
};

std::string names_of(const Sample& s) {
  std::string out;
  for (const auto& entry : s.tensors) out += (out.empty() ? "'" : ", '") + entry.first + "'";
  std::string text;
  for (const auto& entry : s.strings) text += (text.empty() ? "'" : ", '") + entry.first + "'";
  return "tensors: " + (out.empty() ? std::string("none") : out) +
         "; strings: " + (text.empty() ? std::string("none") : text) +
         "; always 'gt_label', 'sample_idx'";
}

[[noreturn]] void missing(const Sample& s, const PackKey& k) {
  throw ValueError(k.path + ": sample " + std::to_string(s.sample_idx) + " has no '" + k.name +
                   "' (it has " + names_of(s) +
                   "); a transform before PackSelfSupInputs must write it");
}

// The tensor a key names: a named tensor, or gt_label / sample_idx as an int64 scalar.
torch::Tensor tensor_of(const Sample& s, const PackKey& k) {
  if (const auto it = s.tensors.find(k.name); it != s.tensors.end()) return it->second;
  if (k.name == "gt_label") return torch::tensor(s.gt_label, torch::kInt64);
  if (k.name == "sample_idx") return torch::tensor(s.sample_idx, torch::kInt64);
  if (s.strings.count(k.name))
    throw ValueError(k.path + ": '" + k.name +
                     "' is a string; algorithm and pseudo-label values are tensors (list "
                     "strings in meta_keys)");
  missing(s, k);
}

// The text a meta key names: a named string, or gt_label / sample_idx in decimal.
std::string text_of(const Sample& s, const PackKey& k) {
  if (const auto it = s.strings.find(k.name); it != s.strings.end()) return it->second;
  if (k.name == "gt_label") return std::to_string(s.gt_label);
  if (k.name == "sample_idx") return std::to_string(s.sample_idx);
  if (s.tensors.count(k.name))
    throw ValueError(k.path + ": '" + k.name +
                     "' is a tensor; meta values are strings (list tensors in algorithm_keys or "
                     "pseudo_label_keys)");
  missing(s, k);
}

class PackSelfSupInputs final : public Transform {
public:
  explicit PackSelfSupInputs(const Config& cfg) {
    const auto o = PackSelfSupInputsOptions::table().parse(cfg);
    algorithm_keys_ = keys_of(o.algorithm_keys, cfg.path_of("algorithm_keys"));
    pseudo_label_keys_ = keys_of(o.pseudo_label_keys, cfg.path_of("pseudo_label_keys"));
    meta_keys_ = keys_of(o.meta_keys, cfg.path_of("meta_keys"));
  }

  void apply(Sample& s, Rng&) const override {
    if (s.views.empty()) {
      require_image(s.img, "PackSelfSupInputs");
      s.views.push_back(std::move(s.img));
      s.img = Image();
    }
    for (const auto& k : algorithm_keys_) {
      if (k.name == "gt_label" || k.name == "sample_idx") continue; // batched always
      s.data[k.name] = tensor_of(s, k);
    }
    for (const auto& k : pseudo_label_keys_) s.pseudo_label[k.name] = tensor_of(s, k);
    for (const auto& k : meta_keys_) s.meta[k.name] = text_of(s, k);
    // What no list names is dropped, as MMSelfSup drops the rest of its results dict.
    s.tensors.clear();
    s.strings.clear();
  }

private:
  std::vector<PackKey> algorithm_keys_, pseudo_label_keys_, meta_keys_;
};

} // namespace

void register_packing(Registrar& r) {
  r.add<Transform>("PackSelfSupInputs", &make<PackSelfSupInputs>,
                   PackSelfSupInputsOptions::table().schema());
}

} // namespace selfsup::core::transforms
