#include "dalle_encoder.h"

#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>

#include <torch/serialize.h>
#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::plugins::cae {

OptionTable<DalleInitCfg> DalleInitCfg::table() {
  using O = DalleInitCfg;
  using namespace selfsup::check;
  return OptionTable<O>("the encoder's weights: {type: 'Pretrained', checkpoint: FILE}", O())
      .required("type", &O::type, "'Pretrained'", one_of({"Pretrained"}))
      .required("checkpoint", &O::checkpoint,
                "a local torch.save file of the encoder's state dict (download upstream's "
                "dalle_encoder.pth first: nothing is downloaded)")
      .rule([](const O& o, const Config& cfg) {
        if (o.checkpoint.rfind("http://", 0) == 0 || o.checkpoint.rfind("https://", 0) == 0)
          cfg.fail_key("checkpoint", "expected a local file, got the URL '" + o.checkpoint +
                                         "' (download it and name the file; nothing is "
                                         "downloaded)");
      });
}

OptionTable<DalleEncoderOptions> DalleEncoderOptions::table() {
  using O = DalleEncoderOptions;
  using namespace selfsup::check;
  return OptionTable<O>("the DALL-E dVAE encoder (frozen tokenizer of CAE / BEiT v1): logits "
                        "[B, vocab_size, H / 8, W / 8]; weights from init_cfg's file",
                        O())
      .optional("n_hid", &O::n_hid_, "width of the first group", ge(64))
      .optional("n_blk_per_group", &O::n_blk_per_group_, "residual blocks per group", ge(1))
      .optional("input_channels", &O::input_channels_, "image channels", ge(1))
      .optional("vocab_size", &O::vocab_size_, "number of visual tokens", ge(512))
      .optional("device", &O::device_, "upstream's device; the module follows the model's",
                one_of({"cpu", "cuda"}))
      .optional("requires_grad", &O::requires_grad_, "false: the encoder is frozen")
      .optional("use_mixed_precision", &O::use_mixed_precision_,
                "fp16 convolutions on CUDA (but the output one)")
      .optional("init_cfg", &O::init_cfg_,
                "{type: 'Pretrained', checkpoint: FILE} (null: random weights, for tests)")
      .rule([](const O& o, const Config& cfg) {
        if (o.requires_grad())
          cfg.fail_key("requires_grad", "expected false: the DALL-E encoder is a frozen target");
      });
}

// ---- layers ----------------------------------------------------------------------------

DalleConvImpl::DalleConvImpl(int64_t n_in, int64_t n_out, int64_t kw_, bool use_float16_)
    : kw(kw_), use_float16(use_float16_) {
  TORCH_CHECK(kw % 2 == 1, "DALL-E conv: odd kernel expected, got ", kw);
  auto weight = torch::empty({n_out, n_in, kw, kw});
  weight.normal_(0.0, 1.0 / std::sqrt(double(n_in * kw * kw)));
  w = register_parameter("w", weight, /*requires_grad=*/false);
  b = register_parameter("b", torch::zeros({n_out}), /*requires_grad=*/false);
}

torch::Tensor DalleConvImpl::forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  const int64_t pad = (kw - 1) / 2;
  if (use_float16 && w.device().is_cuda())
    return F::conv2d(x.to(torch::kHalf), w.to(torch::kHalf),
                     F::Conv2dFuncOptions().padding(pad).bias(b.to(torch::kHalf)));
  return F::conv2d(x.to(torch::kFloat), w, F::Conv2dFuncOptions().padding(pad).bias(b));
}

namespace {
/// A named holder (res_path, blocks, group_i, output): children only, no forward.
class Holder : public torch::nn::Module {};
} // namespace

DalleEncoderBlockImpl::DalleEncoderBlockImpl(int64_t n_in, int64_t n_out, int64_t n_layers)
    : post_gain(1.0 / double(n_layers * n_layers)) {
  TORCH_CHECK(n_out % 4 == 0, "DALL-E block: width ", n_out, " is not divisible by 4");
  const int64_t n_hid = n_out / 4;
  if (n_in != n_out) id_path = register_module("id_path", DalleConv(n_in, n_out, 1, true));
  res_path = register_module("res_path", std::make_shared<Holder>());
  conv_1 = res_path->register_module("conv_1", DalleConv(n_in, n_hid, 3, true));
  conv_2 = res_path->register_module("conv_2", DalleConv(n_hid, n_hid, 3, true));
  conv_3 = res_path->register_module("conv_3", DalleConv(n_hid, n_hid, 3, true));
  conv_4 = res_path->register_module("conv_4", DalleConv(n_hid, n_out, 1, true));
}

torch::Tensor DalleEncoderBlockImpl::forward(const torch::Tensor& x) {
  auto h = conv_1(torch::relu(x));
  h = conv_2(torch::relu(h));
  h = conv_3(torch::relu(h));
  h = conv_4(torch::relu(h));
  const auto id = id_path ? id_path(x) : x;
  return id + post_gain * h;
}

// ---- encoder ---------------------------------------------------------------------------

DalleEncoder::DalleEncoder(const DalleEncoderOptions& options_) : options(options_) {
  const int64_t n_hid = options.n_hid(), per = options.n_blk_per_group();
  const int64_t n_layers = 4 * per;
  blocks_ = register_module("blocks", std::make_shared<Holder>());
  input_ = blocks_->register_module("input", DalleConv(options.input_channels(), n_hid, 7, true));
  const int64_t widths[] = {n_hid, 2 * n_hid, 4 * n_hid, 8 * n_hid};
  for (int g = 0; g < 4; ++g) {
    auto group =
        blocks_->register_module("group_" + std::to_string(g + 1), std::make_shared<Holder>());
    std::vector<DalleEncoderBlock> blocks;
    for (int64_t i = 0; i < per; ++i) {
      const int64_t in = i == 0 ? (g == 0 ? n_hid : widths[g - 1]) : widths[g];
      blocks.push_back(group->register_module("block_" + std::to_string(i + 1),
                                              DalleEncoderBlock(in, widths[g], n_layers)));
    }
    groups_.push_back(std::move(blocks));
  }
  auto output = blocks_->register_module("output", std::make_shared<Holder>());
  output_conv_ =
      output->register_module("conv", DalleConv(8 * n_hid, options.vocab_size(), 1, false));
  for (auto& p : parameters()) p.set_requires_grad(false);
  if (!options.use_mixed_precision())
    for (auto& m : modules(/*include_self=*/false))
      if (auto* conv = m->as<DalleConvImpl>()) conv->use_float16 = false;
}

torch::Tensor DalleEncoder::forward(const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(input.dim() == 4, "DALL-E: expected images [B, C, H, W], got ", input.sizes());
  TORCH_CHECK(input.size(1) == options.input_channels(), "DALL-E: the input has ", input.size(1),
              " channels, the encoder was built for ", options.input_channels());
  auto x = input_(input.to(torch::kFloat));
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (auto& block : groups_[g]) x = block(x);
    if (g < 3) x = torch::max_pool2d(x, 2);
  }
  return output_conv_(torch::relu(x).to(torch::kFloat));
}

void DalleEncoder::load_weights(const std::string& file, const std::string& where) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(where + ": cannot open the DALL-E weights '" + file + "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    throw ConfigError(where + ": '" + file + "' is not a torch.save file (" + e.what() + ")");
  }
  if (!value.isGenericDict())
    throw ConfigError(where + ": '" + file + "' does not hold a dict of tensors");
  auto dict = value.toGenericDict();
  if (dict.contains("state_dict") && dict.at("state_dict").isGenericDict())
    dict = dict.at("state_dict").toGenericDict();
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    if (!dict.contains(p.key()) || !dict.at(p.key()).isTensor())
      throw ConfigError(where + ": '" + file + "' has no tensor '" + p.key() + "'");
    const auto t = dict.at(p.key()).toTensor();
    if (t.sizes() != p.value().sizes()) {
      std::ostringstream msg;
      msg << where << ": '" << file << "': '" << p.key() << "' has shape " << t.sizes()
          << ", the encoder expects " << p.value().sizes()
          << " (check n_hid, n_blk_per_group, input_channels, vocab_size)";
      throw ConfigError(msg.str());
    }
    p.value().copy_(t);
  }
}

void DalleEncoder::pretty_print(std::ostream& stream) const {
  stream << "selfsup::plugins::cae::DalleEncoder(n_hid=" << options.n_hid()
         << ", n_blk_per_group=" << options.n_blk_per_group()
         << ", vocab_size=" << options.vocab_size() << ")";
}

std::shared_ptr<selfsup::TargetGenerator> make_dalle_encoder(const Config& cfg) {
  const auto options = DalleEncoderOptions::table().parse(cfg);
  auto encoder = std::make_shared<DalleEncoder>(options);
  if (options.init_cfg())
    encoder->load_weights(options.init_cfg()->checkpoint, cfg.path_of("init_cfg.checkpoint"));
  encoder->eval();
  return encoder;
}

} // namespace selfsup::plugins::cae
