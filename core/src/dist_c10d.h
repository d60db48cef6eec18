#pragma once
// The c10d implementation of the SDK's Distributed interface: a TCPStore rendezvous from the
// variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and a
// ProcessGroupGloo (CPU) or ProcessGroupNCCL (CUDA builds with NCCL) for the collectives.
// Every collective waits at most the configured timeout; a rank that died or never came
// makes the others throw a DistError naming the collective, the ranks and the timeout.
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <torch/nn/module.h>

#include <selfsup/core/export.h>
#include <selfsup/dist.h>
#include <selfsup/errors.h>

namespace selfsup::core {

/// A failed rendezvous or collective (a rank died, hung or never joined).
class SELFSUP_CORE_API DistError : public Error {
public:
  explicit DistError(const std::string& what);
  ~DistError() override;
};

/// Where this process sits in the job, as torchrun describes it in the environment.
struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

/// Reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (required) and LOCAL_RANK,
/// LOCAL_WORLD_SIZE (optional); a missing or malformed one is a ConfigError naming it.
[[nodiscard]] SELFSUP_CORE_API DistEnv dist_env_from_environment();

/// The default collective/rendezvous timeout (as torch.distributed's: 30 minutes).
inline constexpr std::chrono::seconds kDefaultDistTimeout{1800};

/// Joins the job: a TCPStore at master_addr:master_port (rank 0 serves it) and a process
/// group of `backend` ("gloo", "nccl", or "" for Gloo on CPU and NCCL on CUDA). Throws
/// DistError when the other ranks do not join within `timeout`.
[[nodiscard]] SELFSUP_CORE_API std::shared_ptr<Distributed>
make_c10d(const DistEnv& env, const std::string& backend, std::chrono::milliseconds timeout,
          bool cuda = false);

/// Whether this build has c10d's NCCL backend (a LibTorch with CUDA and NCCL).
[[nodiscard]] SELFSUP_CORE_API bool c10d_has_nccl();

/// Copies rank `src`'s parameters and buffers into every rank's `module` (DDP's start).
SELFSUP_CORE_API void broadcast_module(torch::nn::Module& module, int src = 0);

/// Whether any rank asked to stop (a flag all-reduced with max; false in one process).
[[nodiscard]] SELFSUP_CORE_API bool any_rank(bool flag);

} // namespace selfsup::core
