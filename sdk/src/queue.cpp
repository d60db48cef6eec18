#include <selfsup/bricks/queue.h>

#include <string>

#include <torch/torch.h>

#include <selfsup/errors.h>

namespace selfsup::bricks {

torch::Tensor make_key_queue(int64_t dim, int64_t length, const torch::TensorOptions& options) {
  if (dim <= 0 || length <= 0)
    throw ValueError("key queue: dim and length must be positive, got " + std::to_string(dim) +
                     " and " + std::to_string(length));
  auto q = torch::randn({dim, length}, options);
  return q / q.norm(2, 0, true).clamp_min(1e-12);
}

void enqueue_keys(torch::Tensor& queue, torch::Tensor& ptr, const torch::Tensor& keys) {
  if (queue.dim() != 2 || keys.dim() != 2 || keys.size(1) != queue.size(0))
    throw ValueError("key queue: keys of shape " + c10::str(keys.sizes()) +
                     " do not fit a queue of shape " + c10::str(queue.sizes()) +
                     " (expected keys [n, " + std::to_string(queue.dim() == 2 ? queue.size(0) : 0) +
                     "])");
  if (ptr.numel() != 1 || ptr.scalar_type() != torch::kLong)
    throw ValueError("key queue: the pointer must be one int64, got " + c10::str(ptr.sizes()));
  const int64_t length = queue.size(1);
  const int64_t n = keys.size(0);
  if (n > length)
    throw ValueError("key queue: " + std::to_string(n) + " keys do not fit a queue of length " +
                     std::to_string(length));
  torch::NoGradGuard no_grad;
  const int64_t p = ptr.item<int64_t>() % length;
  const auto k = keys.detach().to(queue.scalar_type()).t(); // [dim, n]
  const int64_t first = std::min(n, length - p);
  queue.narrow(1, p, first).copy_(k.narrow(1, 0, first));
  if (first < n) queue.narrow(1, 0, n - first).copy_(k.narrow(1, first, n - first));
  ptr.fill_((p + n) % length);
}

} // namespace selfsup::bricks
