#include <selfsup/bricks/norm.h>

#include <torch/torch.h>

#include <selfsup/dist.h>

// LibTorch declares BatchNormImplBase<D, Derived>::pretty_print in its header but exports no
// instance of it; a class derived from BatchNorm{1,2}dImpl needs one for the construction
// vtables of its (virtually inherited) bases. This is the definition libtorch compiles (a
// hidden copy here; never called: our layers override pretty_print).
template <size_t D, typename Derived>
void torch::nn::BatchNormImplBase<D, Derived>::pretty_print(std::ostream& stream) const {
  stream << std::boolalpha << "torch::nn::BatchNorm" << D << "d(" << this->options.num_features()
         << ", eps=" << this->options.eps() << ", momentum=";
  if (this->options.momentum())
    stream << *this->options.momentum();
  else
    stream << "None";
  stream << ", affine=" << this->options.affine()
         << ", track_running_stats=" << this->options.track_running_stats() << ")";
}

namespace selfsup::bricks {

OptionTable<NormCfg> NormCfg::table() {
  using namespace check;
  return OptionTable<NormCfg>("norm layer, as MMCV's norm_cfg", NormCfg())
      .required("type", &NormCfg::type,
                "'BN' or 'SyncBN' (statistics of the global batch; BN in one process)",
                one_of({"BN", "SyncBN"}))
      .optional("requires_grad", &NormCfg::requires_grad, "learn the affine weight and bias")
      .optional("eps", &NormCfg::eps, "added to the variance", gt(0))
      .optional("momentum", &NormCfg::momentum, "running statistics update", in(0, 1));
}

NormCfg NormCfg::from_config(const Config& cfg) {
  return table().parse(cfg);
}

namespace {

// Training-mode batch norm over the global batch. Each rank contributes [count, mean, M2] per
// channel (M2: sum of squared deviations from its mean), gathered with the gradient; Chan's
// parallel formula combines them. The (x - mean) of the rows stays local, so the autograd
// graph is that of one BatchNorm whose statistics happen to come from every rank.
torch::Tensor sync_batch_norm(const torch::Tensor& input, const torch::nn::BatchNormOptions& o,
                              const torch::Tensor& weight, const torch::Tensor& bias,
                              torch::Tensor& running_mean, torch::Tensor& running_var,
                              torch::Tensor& num_batches_tracked) {
  const int64_t channels = input.size(1);
  // Statistics in fp32 at least: bf16/fp16 inputs lose too much in the sums.
  const auto stat_type = input.is_floating_point() && c10::elementSize(input.scalar_type()) < 4
                             ? torch::kFloat
                             : input.scalar_type();
  const torch::Tensor x = input.to(stat_type);
  std::vector<int64_t> dims{0};
  std::vector<int64_t> shape{1, channels};
  for (int64_t d = 2; d < x.dim(); ++d) {
    dims.push_back(d);
    shape.push_back(1);
  }
  const int64_t local_n = channels > 0 ? x.numel() / channels : 0;
  const auto opts = x.options();
  torch::Tensor local_mean = local_n > 0 ? x.mean(dims) : torch::zeros({channels}, opts);
  torch::Tensor local_m2 =
      local_n > 0 ? (x - local_mean.view(shape)).pow(2).sum(dims) : torch::zeros({channels}, opts);
  const torch::Tensor count = torch::full({channels}, double(local_n), opts);
  const torch::Tensor all =
      dist()
          .all_gather_with_grad(
              torch::stack({count, local_mean, local_m2}).unsqueeze(0)) // [W, 3, C]
          .to(stat_type);
  const torch::Tensor counts = all.select(1, 0), means = all.select(1, 1), m2s = all.select(1, 2);
  const double total = counts.select(1, 0).sum().item<double>();
  TORCH_CHECK(total > 1,
              "SyncBN: expected more than 1 value per channel over the global batch "
              "when training, got input ",
              input.sizes(), " on rank ", dist().rank(), " and ", int64_t(total), " in all");
  const torch::Tensor mean = (counts * means).sum(0) / total;
  const torch::Tensor m2 = (m2s + counts * (means - mean).pow(2)).sum(0);
  const torch::Tensor var = m2 / total; // biased, for the normalisation
  torch::Tensor y = (x - mean.view(shape)) * torch::rsqrt(var + o.eps()).view(shape);
  if (weight.defined()) y = y * weight.to(stat_type).view(shape) + bias.to(stat_type).view(shape);
  if (o.track_running_stats() && running_mean.defined()) {
    torch::NoGradGuard no_grad;
    double factor = o.momentum() ? *o.momentum() : 0.0;
    if (num_batches_tracked.defined()) {
      num_batches_tracked += 1;
      if (!o.momentum()) factor = 1.0 / num_batches_tracked.item<double>();
    }
    running_mean.mul_(1 - factor).add_(mean.detach().to(running_mean.scalar_type()), factor);
    running_var.mul_(1 - factor)
        .add_((var.detach() * (total / (total - 1))).to(running_var.scalar_type()), factor);
  }
  return y.to(input.scalar_type());
}

// A copy of `self` as the same class: fresh parameters and buffers holding copies of its own.
template <class Impl>
std::shared_ptr<torch::nn::Module> clone_norm(const Impl& self, bool sync,
                                              const c10::optional<torch::Device>& device) {
  auto copy = std::make_shared<Impl>(self.options, sync);
  copy->train(self.is_training());
  torch::NoGradGuard no_grad;
  auto copy_into = [&](torch::Tensor& dst, const torch::Tensor& src) {
    if (!src.defined()) return;
    const bool requires_grad = src.requires_grad();
    dst.set_data(device ? src.to(*device).clone() : src.clone());
    dst.set_requires_grad(requires_grad);
  };
  copy_into(copy->weight, self.weight);
  copy_into(copy->bias, self.bias);
  copy_into(copy->running_mean, self.running_mean);
  copy_into(copy->running_var, self.running_var);
  copy_into(copy->num_batches_tracked, self.num_batches_tracked);
  return copy;
}

template <class Impl> void print_norm(const Impl& self, const char* name, std::ostream& stream) {
  const auto& o = self.options;
  stream << name << "(" << o.num_features() << ", eps=" << o.eps() << ", momentum=";
  if (o.momentum())
    stream << *o.momentum();
  else
    stream << "None";
  stream << ", affine=" << (o.affine() ? "true" : "false")
         << ", track_running_stats=" << (o.track_running_stats() ? "true" : "false") << ")";
}

bool synchronised(bool sync, const torch::nn::Module& m) {
  return sync && m.is_training() && dist().world_size() > 1;
}

} // namespace

BatchNorm1dImpl::BatchNorm1dImpl(const torch::nn::BatchNormOptions& options, bool sync)
    : torch::nn::BatchNorm1dImpl(options), sync_(sync) {}

torch::Tensor BatchNorm1dImpl::forward(const torch::Tensor& input) {
  if (!synchronised(sync_, *this)) return torch::nn::BatchNorm1dImpl::forward(input);
  _check_input_dim(input);
  return sync_batch_norm(input, options, weight, bias, running_mean, running_var,
                         num_batches_tracked);
}

std::shared_ptr<torch::nn::Module>
BatchNorm1dImpl::clone(const c10::optional<torch::Device>& device) const {
  return clone_norm(*this, sync_, device);
}

void BatchNorm1dImpl::pretty_print(std::ostream& stream) const {
  print_norm(*this, sync_ ? "selfsup::bricks::SyncBatchNorm1d" : "torch::nn::BatchNorm1d", stream);
}

BatchNorm2dImpl::BatchNorm2dImpl(const torch::nn::BatchNormOptions& options, bool sync)
    : torch::nn::BatchNorm2dImpl(options), sync_(sync) {}

torch::Tensor BatchNorm2dImpl::forward(const torch::Tensor& input) {
  if (!synchronised(sync_, *this)) return torch::nn::BatchNorm2dImpl::forward(input);
  _check_input_dim(input);
  return sync_batch_norm(input, options, weight, bias, running_mean, running_var,
                         num_batches_tracked);
}

std::shared_ptr<torch::nn::Module>
BatchNorm2dImpl::clone(const c10::optional<torch::Device>& device) const {
  return clone_norm(*this, sync_, device);
}

void BatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  print_norm(*this, sync_ ? "selfsup::bricks::SyncBatchNorm2d" : "torch::nn::BatchNorm2d", stream);
}

namespace {
template <class BN> BN init(BN bn, bool requires_grad) {
  torch::NoGradGuard no_grad;
  if (bn->weight.defined()) bn->weight.fill_(1.0);
  if (bn->bias.defined()) bn->bias.zero_();
  if (!requires_grad)
    for (auto& p : bn->parameters()) p.set_requires_grad(false);
  return bn;
}
} // namespace

BatchNorm1d NormCfg::make_1d(int64_t channels, bool affine) const {
  return init(
      BatchNorm1d(torch::nn::BatchNormOptions(channels).eps(eps).momentum(momentum).affine(affine),
                  type == "SyncBN"),
      requires_grad);
}

BatchNorm2d NormCfg::make_2d(int64_t channels) const {
  return init(BatchNorm2d(torch::nn::BatchNormOptions(channels).eps(eps).momentum(momentum),
                          type == "SyncBN"),
              requires_grad);
}

} // namespace selfsup::bricks
