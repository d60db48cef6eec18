#include <selfsup/dist.h>

#include <selfsup/errors.h>

namespace selfsup {

Distributed::~Distributed() = default;
SingleProcess::~SingleProcess() = default;

void SingleProcess::all_reduce(torch::Tensor&, ReduceOp) {}

std::vector<torch::Tensor> SingleProcess::all_gather(const torch::Tensor& tensor) {
  return {tensor.detach()};
}

torch::Tensor SingleProcess::all_gather_with_grad(const torch::Tensor& tensor) {
  return tensor;
}

void SingleProcess::broadcast(torch::Tensor&, int src) {
  if (src != 0)
    throw ValueError("broadcast: source rank " + std::to_string(src) + " of a world of size 1");
}

namespace {
std::shared_ptr<Distributed>& current() {
  static std::shared_ptr<Distributed> impl = std::make_shared<SingleProcess>();
  return impl;
}
} // namespace

Distributed& dist() {
  return *current();
}

void set_dist(std::shared_ptr<Distributed> impl) {
  current() = impl ? std::move(impl) : std::make_shared<SingleProcess>();
}

} // namespace selfsup
