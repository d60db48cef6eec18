#include "dist_c10d.h"

#include <cerrno>
#include <cstdlib>
#include <exception>
#include <map>
#include <utility>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace selfsup::core {

DistError::DistError(const std::string& what) : Error(what) {}
DistError::~DistError() = default;

namespace {

std::string seconds_text(std::chrono::milliseconds t) {
  const double s = double(t.count()) / 1000.0;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

int env_int(const char* name, bool required, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    if (required)
      throw ConfigError(std::string("--launcher pytorch: the environment variable ") + name +
                        " is not set (torchrun and 'selfsup launch' set RANK, WORLD_SIZE, "
                        "LOCAL_RANK, MASTER_ADDR and MASTER_PORT)");
    return fallback;
  }
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi)
    throw ConfigError(std::string("--launcher pytorch: the environment variable ") + name + "='" +
                      v + "' is not an integer in [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "]");
  return int(n);
}

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
  case ReduceOp::Sum:
  case ReduceOp::Mean:
    return c10d::ReduceOp::SUM;
  case ReduceOp::Max:
    return c10d::ReduceOp::MAX;
  case ReduceOp::Min:
    return c10d::ReduceOp::MIN;
  }
  return c10d::ReduceOp::SUM;
}

class C10dDistributed final : public Distributed {
public:
  C10dDistributed(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<c10d::ProcessGroup> pg,
                  std::string backend, std::chrono::milliseconds timeout)
      : store_(std::move(store)), pg_(std::move(pg)), backend_(std::move(backend)),
        timeout_(timeout), rank_(pg_->getRank()), world_(pg_->getSize()) {}
  ~C10dDistributed() override = default;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> t{tensor.is_contiguous() ? tensor : tensor.contiguous()};
    c10d::AllreduceOptions o;
    o.reduceOp = to_c10d(op);
    o.timeout = timeout_;
    wait(pg_->allreduce(t, o), "all_reduce");
    if (op == ReduceOp::Mean) t[0].div_(double(world_));
    if (!t[0].is_same(tensor)) tensor.copy_(t[0]);
  }

  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor) override {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> in{tensor.detach().contiguous()};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < world_; ++r) out[0].push_back(torch::empty_like(in[0]));
    c10d::AllgatherOptions o;
    o.timeout = timeout_;
    wait(pg_->allgather(out, in, o), "all_gather");
    return out[0];
  }

  torch::Tensor all_gather_with_grad(const torch::Tensor& tensor) override {
    return GatherWithGrad::apply(tensor);
  }

  void broadcast(torch::Tensor& tensor, int src) override {
    if (src < 0 || src >= world_)
      throw ValueError("broadcast: source rank " + std::to_string(src) + " of a world of size " +
                       std::to_string(world_));
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> t{tensor.is_contiguous() ? tensor : tensor.contiguous()};
    c10d::BroadcastOptions o;
    o.rootRank = src;
    o.timeout = timeout_;
    wait(pg_->broadcast(t, o), "broadcast");
    if (!t[0].is_same(tensor)) tensor.copy_(t[0]);
  }

  void barrier() override {
    c10d::BarrierOptions o;
    o.timeout = timeout_;
    wait(pg_->barrier(o), "barrier");
  }

private:
  // The gathered batch; backward sums the global gradient over the ranks and keeps this
  // rank's rows (torch.distributed.nn.all_gather's rule).
  struct GatherWithGrad : torch::autograd::Function<GatherWithGrad> {
    static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x) {
      ctx->saved_data["rows"] = x.size(0);
      return torch::cat(dist().all_gather(x), 0);
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
      const int64_t rows = ctx->saved_data["rows"].toInt();
      torch::Tensor g = grads[0].contiguous().clone();
      dist().all_reduce(g, ReduceOp::Sum);
      return {g.narrow(0, rows * dist().rank(), rows).clone()};
    }
  };

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) const {
    try {
      work->wait(timeout_);
    } catch (const std::exception& e) {
      std::string why = e.what();
      if (const auto* c = dynamic_cast<const c10::Error*>(&e)) why = c->what_without_backtrace();
      throw DistError("distributed " + std::string(what) + " failed on rank " +
                      std::to_string(rank_) + " of " + std::to_string(world_) + " (" + backend_ +
                      "): another rank died or did not answer within the timeout of " +
                      seconds_text(timeout_) + " (env_cfg.dist_cfg.timeout): " + why);
    }
  }

  c10::intrusive_ptr<c10d::Store> store_; // kept alive: rank 0 serves it
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  int rank_, world_;
};

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

} // namespace

DistEnv dist_env_from_environment() {
  DistEnv e;
  e.world_size = env_int("WORLD_SIZE", true, 1, 1, 1 << 20);
  e.rank = env_int("RANK", true, 0, 0, e.world_size - 1);
  e.local_rank = env_int("LOCAL_RANK", false, e.rank, 0, e.world_size - 1);
  e.local_world_size = env_int("LOCAL_WORLD_SIZE", false, 1, 1, e.world_size);
  e.master_port = env_int("MASTER_PORT", true, 0, 1, 65535);
  const char* addr = std::getenv("MASTER_ADDR");
  if (!addr || !*addr)
    throw ConfigError("--launcher pytorch: the environment variable MASTER_ADDR is not set "
                      "(the host of rank 0)");
  e.master_addr = addr;
  return e;
}

std::shared_ptr<Distributed> make_c10d(const DistEnv& env, const std::string& backend_in,
                                       std::chrono::milliseconds timeout, bool cuda) {
  std::string backend = backend_in.empty() ? (cuda ? "nccl" : "gloo") : backend_in;
#if !defined(USE_C10D_NCCL)
  if (backend == "nccl" && backend_in.empty()) backend = "gloo"; // auto: Gloo handles CUDA too
  if (backend == "nccl")
    throw ConfigError("env_cfg.dist_cfg.backend: 'nccl' needs a LibTorch built with CUDA and "
                      "NCCL; this build has Gloo only (backend='gloo')");
#endif
  if (backend != "gloo" && backend != "nccl")
    throw ConfigError("env_cfg.dist_cfg.backend: expected 'gloo' or 'nccl', got '" + backend + "'");
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  const std::string who =
      "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size);

  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions o;
    o.port = uint16_t(env.master_port);
    o.isServer = env.rank == 0;
    o.numWorkers = size_t(env.world_size);
    o.waitWorkers = true;
    o.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
  } catch (const std::exception& e) {
    std::string why = e.what();
    if (const auto* c = dynamic_cast<const c10::Error*>(&e)) why = c->what_without_backtrace();
    throw DistError("rendezvous at " + where + " failed for " + who + " within the timeout of " +
                    seconds_text(timeout) + " (env_cfg.dist_cfg.timeout): " + why +
                    (env.rank == 0 ? " (the other ranks never joined: are they started, with "
                                     "the same WORLD_SIZE, MASTER_ADDR and MASTER_PORT?)"
                                   : " (is rank 0 running, and MASTER_ADDR/MASTER_PORT its "
                                     "address?)"));
  }

  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  try {
    if (backend == "gloo") {
      auto o = c10d::ProcessGroupGloo::Options::create(timeout);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(env.master_addr)) {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, o);
    } else {
#if defined(USE_C10D_NCCL)
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, o);
#endif
    }
  } catch (const std::exception& e) {
    std::string why = e.what();
    if (const auto* c = dynamic_cast<const c10::Error*>(&e)) why = c->what_without_backtrace();
    throw DistError("rendezvous at " + where + " failed for " + who + " within the timeout of " +
                    seconds_text(timeout) + " (env_cfg.dist_cfg.timeout): connecting the " +
                    backend + " process group: " + why +
                    " (are all WORLD_SIZE ranks started, with the same MASTER_ADDR and "
                    "MASTER_PORT?)");
  }
  return std::make_shared<C10dDistributed>(store, pg, backend, timeout);
}

bool c10d_has_nccl() {
#if defined(USE_C10D_NCCL)
  return true;
#else
  return false;
#endif
}

void broadcast_module(torch::nn::Module& module, int src) {
  Distributed& d = dist();
  if (d.world_size() <= 1) return;
  torch::NoGradGuard no_grad;
  // One broadcast per dtype over the flattened tensors.
  std::vector<torch::Tensor> all;
  for (auto& p : module.parameters()) all.push_back(p);
  for (auto& b : module.buffers()) all.push_back(b);
  std::map<std::pair<std::string, int>, std::vector<torch::Tensor>> groups;
  for (auto& t : all)
    if (t.defined() && t.numel() > 0) groups[{t.device().str(), int(t.scalar_type())}].push_back(t);
  for (auto& [key, tensors] : groups) {
    std::vector<torch::Tensor> flat_parts;
    for (auto& t : tensors) flat_parts.push_back(t.reshape(-1));
    torch::Tensor flat = torch::cat(flat_parts);
    d.broadcast(flat, src);
    int64_t offset = 0;
    for (auto& t : tensors) {
      t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

bool any_rank(bool flag) {
  Distributed& d = dist();
  if (d.world_size() <= 1) return flag;
  torch::Tensor t = torch::tensor({flag ? 1.f : 0.f});
  d.all_reduce(t, ReduceOp::Max);
  return t.item<float>() > 0.f;
}

} // namespace selfsup::core
