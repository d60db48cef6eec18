#include <selfsup/core/weight_export.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <vector>

#include <torch/nn/module.h>
#include <torch/serialize.h>

#include <selfsup/errors.h>

#include "torch_archive.h"

namespace selfsup::core {
namespace {

const char* const kPrefix = "backbone.";

TensorMap strip_backbone(const TensorMap& model_state, const std::string& source) {
  TensorMap out;
  const size_t n = std::strlen(kPrefix);
  for (const auto& [k, v] : model_state)
    if (k.compare(0, n, kPrefix) == 0) out[k.substr(n)] = v;
  if (out.empty())
    throw ValueError(source + ": the state_dict has no 'backbone.' entries (expected a model "
                              "checkpoint written by selfsup train)");
  return out;
}

// torchvision.models.ResNet's names (without fc): the stem conv1/bn1, then layerK.B.convI,
// bnI and downsample.0 / .1 of the BasicBlock or Bottleneck.
TensorMap to_torchvision(const TensorMap& bb, const std::string& source) {
  static const std::regex kName(
      R"((conv1\.weight|bn1\.(weight|bias|running_mean|running_var|num_batches_tracked)|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.(weight|bias|running_mean|running_var|num_batches_tracked)|downsample\.0\.weight|downsample\.1\.(weight|bias|running_mean|running_var|num_batches_tracked))))");
  for (const auto& [k, v] : bb)
    if (!std::regex_match(k, kName))
      throw ValueError(source + ": backbone." + k +
                       " has no counterpart in torchvision's ResNet (format torchvision takes a "
                       "ResNet backbone without deep_stem, with BN layers; use --format selfsup "
                       "to keep the backbone's own names)");
  auto it = bb.find("conv1.weight");
  if (it == bb.end())
    throw ValueError(source + ": backbone.conv1.weight missing (format torchvision expects a "
                              "ResNet backbone)");
  if (it->second.dim() != 4 || it->second.size(2) != 7 || it->second.size(3) != 7)
    throw ValueError(source + ": backbone.conv1.weight is " + c10::str(it->second.sizes()) +
                     ", torchvision's ResNet has a 7x7 stem (ResNet_CIFAR's 3x3 stem has no "
                     "torchvision counterpart; use --format selfsup)");
  return bb;
}

// mmcls 1.0.0rc6 VisionTransformer names -> timm's VisionTransformer names.
TensorMap to_timm(const TensorMap& bb, const std::string& source) {
  struct Rule {
    std::regex from;
    std::string to;
  };
  static const std::vector<Rule> kRules = {
      {std::regex(R"(cls_token)"), "cls_token"},
      {std::regex(R"(pos_embed)"), "pos_embed"},
      {std::regex(R"(patch_embed\.projection\.(weight|bias))"), "patch_embed.proj.$1"},
      {std::regex(R"(layers\.(\d+)\.ln1\.(weight|bias))"), "blocks.$1.norm1.$2"},
      {std::regex(R"(layers\.(\d+)\.ln2\.(weight|bias))"), "blocks.$1.norm2.$2"},
      {std::regex(R"(layers\.(\d+)\.attn\.qkv\.(weight|bias))"), "blocks.$1.attn.qkv.$2"},
      {std::regex(R"(layers\.(\d+)\.attn\.proj\.(weight|bias))"), "blocks.$1.attn.proj.$2"},
      {std::regex(R"(layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias))"), "blocks.$1.mlp.fc1.$2"},
      {std::regex(R"(layers\.(\d+)\.ffn\.layers\.1\.(weight|bias))"), "blocks.$1.mlp.fc2.$2"},
      {std::regex(R"(ln1\.(weight|bias))"), "norm.$1"},
      {std::regex(R"(ln2\.(weight|bias))"), "fc_norm.$1"},
      {std::regex(R"(pre_norm\.(weight|bias))"), "norm_pre.$1"},
  };
  if (!bb.count("patch_embed.projection.weight"))
    throw ValueError(source + ": backbone.patch_embed.projection.weight missing (format timm "
                              "expects a VisionTransformer backbone)");
  TensorMap out;
  for (const auto& [k, v] : bb) {
    std::string name;
    for (const auto& r : kRules)
      if (std::regex_match(k, r.from)) {
        name = std::regex_replace(k, r.from, r.to);
        break;
      }
    if (name.empty())
      throw ValueError(source + ": backbone." + k +
                       " has no counterpart in timm's VisionTransformer (format timm takes "
                       "mmcls's VisionTransformer names with a 2-layer FFN; use --format "
                       "selfsup to keep the backbone's own names)");
    out[name] = v;
  }
  return out;
}

} // namespace

std::string default_export_format(const TensorMap& model_state) {
  if (model_state.count("backbone.conv1.weight")) return "torchvision";
  if (model_state.count("backbone.patch_embed.projection.weight")) return "timm";
  return "selfsup";
}

TensorMap export_backbone(const TensorMap& model_state, const std::string& format,
                          const std::string& source) {
  if (format != "torchvision" && format != "timm" && format != "selfsup")
    throw ValueError(source + ": unknown export format '" + format +
                     "' (expected torchvision, timm or selfsup)");
  const TensorMap bb = strip_backbone(model_state, source);
  if (format == "torchvision") return to_torchvision(bb, source);
  if (format == "timm") return to_timm(bb, source);
  return bb;
}

void save_weights(const std::string& path, const TensorMap& weights) {
  c10::Dict<std::string, at::Tensor> d;
  for (const auto& [k, v] : weights) d.insert(k, v.detach().cpu().contiguous().clone());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(d));
  write_file_atomic(path, std::string(bytes.data(), bytes.size()));
}

namespace {

std::vector<char> read_bytes(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw ValueError(path + ": not a weights file (missing, a folder or a special file)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ValueError(path + ": cannot open the weights file");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// timm's VisionTransformer names -> mmcls's.
std::string from_timm(const std::string& k) {
  static const std::vector<std::pair<std::regex, std::string>> kRules = {
      {std::regex(R"(patch_embed\.proj\.(weight|bias))"), "patch_embed.projection.$1"},
      {std::regex(R"(blocks\.(\d+)\.norm1\.(weight|bias))"), "layers.$1.ln1.$2"},
      {std::regex(R"(blocks\.(\d+)\.norm2\.(weight|bias))"), "layers.$1.ln2.$2"},
      {std::regex(R"(blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias))"), "layers.$1.attn.$2.$3"},
      {std::regex(R"(blocks\.(\d+)\.mlp\.fc1\.(weight|bias))"), "layers.$1.ffn.layers.0.0.$2"},
      {std::regex(R"(blocks\.(\d+)\.mlp\.fc2\.(weight|bias))"), "layers.$1.ffn.layers.1.$2"},
      {std::regex(R"(norm\.(weight|bias))"), "ln1.$1"},
      {std::regex(R"(fc_norm\.(weight|bias))"), "ln2.$1"},
      {std::regex(R"(norm_pre\.(weight|bias))"), "pre_norm.$1"},
  };
  for (const auto& [from, to] : kRules)
    if (std::regex_match(k, from)) return std::regex_replace(k, from, to);
  return k;
}

} // namespace

TensorMap import_backbone_weights(const std::string& path) {
  const std::vector<char> bytes = read_bytes(path);
  check_torch_archive(bytes, path);
  c10::IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const std::exception&) {
    throw ValueError(path + ": not a weights file torch.load writes (truncated or foreign "
                            "format)");
  }
  if (!v.isGenericDict()) throw ValueError(path + ": not a dict of tensors");
  auto top = v.toGenericDict();
  if (top.contains("meta") && top.contains("state_dict") && top.at("meta").isGenericDict()) {
    const auto meta = top.at("meta").toGenericDict();
    if (meta.contains("selfsup_format"))
      return export_backbone(load_checkpoint(path).state_dict, "selfsup", path);
  }
  if (top.contains("state_dict") && top.at("state_dict").isGenericDict())
    top = top.at("state_dict").toGenericDict();
  TensorMap all;
  for (const auto& item : top) {
    if (!item.key().isString() || !item.value().isTensor())
      throw ValueError(path + ": holds a non-tensor entry" +
                       (item.key().isString() ? " '" + item.key().toStringRef() + "'" : "") +
                       " (expected a plain dict of tensors)");
    check_tensor_in_storage(item.value().toTensor(), path + ": " + item.key().toStringRef());
    all[item.key().toStringRef()] = item.value().toTensor();
  }
  bool prefixed = false;
  for (const auto& [k, t] : all) prefixed |= k.rfind(kPrefix, 0) == 0;
  TensorMap out;
  const bool timm = all.count("patch_embed.proj.weight") > 0;
  for (const auto& [k, t] : all) {
    if (prefixed && k.rfind(kPrefix, 0) != 0) continue; // neck.*, head.* of a model checkpoint
    const std::string name = prefixed ? k.substr(std::strlen(kPrefix)) : k;
    if (!prefixed && (name.rfind("fc.", 0) == 0 || name.rfind("head.", 0) == 0))
      continue; // torchvision's / timm's classifier
    out[timm ? from_timm(name) : name] = t;
  }
  if (out.empty()) throw ValueError(path + ": holds no backbone weights");
  return out;
}

void load_initial_weights(torch::nn::Module& model, const std::string& path) {
  {
    const std::vector<char> bytes = read_bytes(path);
    check_torch_archive(bytes, path);
    bool selfsup = false;
    try {
      const c10::IValue v = torch::pickle_load(bytes);
      if (v.isGenericDict() && v.toGenericDict().contains("meta") &&
          v.toGenericDict().contains("state_dict")) {
        const c10::IValue meta = v.toGenericDict().at("meta");
        selfsup = !meta.isGenericDict() || meta.toGenericDict().contains("selfsup_format");
      }
    } catch (const std::exception&) {
      selfsup = true; // load_checkpoint names what is wrong with it
    }
    if (selfsup) {
      load_module_state(model, load_checkpoint(path).state_dict, "load_from " + path);
      return;
    }
  }
  load_pretrained_backbone(model, path, "load_from " + path);
}

void load_pretrained_backbone(torch::nn::Module& model, const std::string& path,
                              const std::string& source) {
  std::shared_ptr<torch::nn::Module> backbone;
  for (const auto& child : model.named_children())
    if (child.key() == "backbone") backbone = child.value();
  if (!backbone)
    throw ValueError(source + ": the file holds backbone weights, and the model has no "
                              "'backbone'");
  load_module_state(*backbone, import_backbone_weights(path), source);
}

std::string take_pretrained_init_cfg(Json& model) {
  if (!model.is_object()) return "";
  Json* backbone = model.find("backbone");
  if (!backbone || !backbone->is_object()) return "";
  Json* init = backbone->find("init_cfg");
  if (!init || !init->is_object()) return "";
  const Json* type = init->find("type");
  if (!type || !type->is_string() || type->as_string() != "Pretrained") return "";
  const Json* file = init->find("checkpoint");
  if (!file || !file->is_string())
    throw ConfigError("model.backbone.init_cfg.checkpoint: expected the path of the weights "
                      "file (a string)");
  for (size_t i = 0; i < init->size(); ++i) {
    const std::string& key = init->keys()[i];
    const Json& value = init->at(i);
    if (key != "type" && key != "checkpoint" &&
        !(key == "prefix" && value.is_string() && value.as_string() == "backbone."))
      throw ConfigError("model.backbone.init_cfg." + key +
                        ": not supported (expected type='Pretrained', checkpoint=FILE and "
                        "optionally prefix='backbone.')");
  }
  const std::string path = file->as_string();
  backbone->erase("init_cfg");
  return path;
}

} // namespace selfsup::core
