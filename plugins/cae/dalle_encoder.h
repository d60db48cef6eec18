#pragma once
// The DALL-E dVAE encoder (OpenAI) as MMSelfSup registers it under 'DALL-E': CAE's and BEiT
// v1's frozen tokenizer. Architecture here, weights from a file named in the config.
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <selfsup/config.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/json.h>
#include <selfsup/options.h>

namespace selfsup::plugins::cae {

/// `init_cfg: {type: 'Pretrained', checkpoint: FILE}`: the weights to load. FILE is a local
/// torch.save file of the encoder's state dict (plain, or under 'state_dict'); URLs are
/// refused (nothing is downloaded).
struct DalleInitCfg {
  static OptionTable<DalleInitCfg> table();
  std::string type = "Pretrained";
  std::string checkpoint;
};

struct DalleEncoderOptions {
  static OptionTable<DalleEncoderOptions> table();
  TORCH_ARG(int64_t, n_hid) = 256;
  TORCH_ARG(int64_t, n_blk_per_group) = 2;
  TORCH_ARG(int64_t, input_channels) = 3;
  TORCH_ARG(int64_t, vocab_size) = 8192;
  /// Upstream's device ('cpu' / 'cuda'); the module follows the model's device here.
  TORCH_ARG(std::string, device) = "cpu";
  /// false only: the encoder is frozen.
  TORCH_ARG(bool, requires_grad) = false;
  /// Upstream runs the convolutions in fp16 on CUDA (all but the output one).
  TORCH_ARG(bool, use_mixed_precision) = true;
  /// null (random weights: tests only) or the Pretrained file.
  TORCH_ARG(std::optional<DalleInitCfg>, init_cfg) = std::nullopt;
};

/// A DALL-E convolution: parameters `w` [out, in, k, k] ~ N(0, 1 / (in k^2)) and `b` = 0,
/// 'same' padding; fp16 on CUDA when `use_float16`.
class DalleConvImpl : public torch::nn::Module {
public:
  DalleConvImpl(int64_t n_in, int64_t n_out, int64_t kw, bool use_float16);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t kw;
  bool use_float16;
  torch::Tensor w, b;
};
TORCH_MODULE(DalleConv);

/// id_path (1x1 conv when widths differ, else identity) + 1 / n_layers^2 * res_path (ReLU,
/// 3x3 to out/4, ReLU, 3x3, ReLU, 3x3, ReLU, 1x1 to out).
class DalleEncoderBlockImpl : public torch::nn::Module {
public:
  DalleEncoderBlockImpl(int64_t n_in, int64_t n_out, int64_t n_layers);
  torch::Tensor forward(const torch::Tensor& x);
  DalleConv id_path{nullptr};
  std::shared_ptr<torch::nn::Module> res_path;
  DalleConv conv_1{nullptr}, conv_2{nullptr}, conv_3{nullptr}, conv_4{nullptr};
  double post_gain;
};
TORCH_MODULE(DalleEncoderBlock);

/// The encoder: blocks.input (7x7, 3 -> n_hid), groups 1..4 of n_blk_per_group blocks
/// (widths n_hid, 2, 4, 8 x n_hid; 2x2 max-pool after groups 1-3), blocks.output (ReLU,
/// 1x1 -> vocab_size). [B, C, H, W] -> logits [B, vocab_size, H / 8, W / 8]. Frozen and run
/// without autograd; the train mode changes nothing (no dropout, no norm).
class DalleEncoder final : public selfsup::TargetGenerator {
public:
  explicit DalleEncoder(const DalleEncoderOptions& options);
  torch::Tensor forward(const torch::Tensor& x) override;
  /// Loads a state dict saved by torch.save ('blocks.input.w', ...; plain or under
  /// 'state_dict'); every tensor must be there with its shape. Errors name `where` and `file`.
  void load_weights(const std::string& file, const std::string& where);
  void pretty_print(std::ostream& stream) const override;

  DalleEncoderOptions options;

private:
  std::shared_ptr<torch::nn::Module> blocks_;
  DalleConv input_{nullptr}, output_conv_{nullptr};
  std::vector<std::vector<DalleEncoderBlock>> groups_;
};

std::shared_ptr<selfsup::TargetGenerator> make_dalle_encoder(const Config& cfg);

} // namespace selfsup::plugins::cae
