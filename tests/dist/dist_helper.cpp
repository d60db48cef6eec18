// A rank of the multi-process tests (tests/core/dist_test.cpp): the test starts two of these
// with torchrun's environment variables and checks what they write.
//   dist_helper train CONFIG WORK_DIR OUT [RESUME]  trains (launcher from the environment)
//                                            and writes the model's state to OUT.rank<R>.pt
//   dist_helper gather OUT TIMEOUT_S         the differentiable all-gather's gradient
//   dist_helper die TIMEOUT_S                rank 1 dies after the rendezvous, rank 0 keeps
//                                            reducing (it must fail, naming the collective)
//   dist_helper syncbn OUT TIMEOUT_S         SyncBN (bricks::BatchNorm{1,2}d) on this rank's
//                                            half of a batch: outputs, gradients, statistics
//   dist_helper shuffle OUT TIMEOUT_S        shuffle-BN's batch_shuffle / batch_unshuffle
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <string>

#include <torch/torch.h>

#include <selfsup/bricks/norm.h>
#include <selfsup/bricks/shuffle_bn.h>
#include <selfsup/core/builtins.h>
#include <selfsup/core/checkpoint.h>
#include <selfsup/core/plugin_loader.h>
#include <selfsup/core/runner.h>
#include <selfsup/dist.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/json.h>
#include <selfsup/registry.h>

#include "../../core/src/dist_c10d.h"

namespace {

using namespace selfsup;

void save(const std::string& path, const c10::Dict<std::string, torch::Tensor>& d) {
  const std::vector<char> bytes = torch::pickle_save(d);
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

std::shared_ptr<Distributed> join(const std::string& timeout_s) {
  auto d = core::make_c10d(core::dist_env_from_environment(), "gloo",
                           std::chrono::milliseconds(int64_t(std::stod(timeout_s) * 1000)));
  set_dist(d);
  return d;
}

int train(const std::string& config, const std::string& work_dir, const std::string& out,
          const std::string& resume) {
  core::register_builtins();
  core::PluginLoader loader;
  loader.load_directory(SELFSUP_TEST_PLUGIN_DIR);
  std::ifstream in(config);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  core::TrainOptions o;
  o.work_dir = work_dir;
  o.threads = 1;
  o.resume = resume;
  int rank = 0;
  {
    core::Runner runner(Json::parse(text, config), o);
    rank = runner.rank();
    runner.train();
    c10::Dict<std::string, torch::Tensor> state;
    for (const auto& p : runner.model().named_parameters()) state.insert(p.key(), p.value());
    for (const auto& b : runner.model().named_buffers()) state.insert(b.key(), b.value());
    save(out + ".rank" + std::to_string(rank) + ".pt", state);
  }
  Registry::global().clear();
  return 0;
}

// Every rank computes one loss over the gathered batch of x = data_r * theta; theta's gradient
// averaged over the ranks (as the optimizer wrapper does) must be the one-process gradient.
int gather(const std::string& out, const std::string& timeout_s) {
  auto d = join(timeout_s);
  const int r = d->rank(), w = d->world_size();
  torch::manual_seed(0);
  const torch::Tensor all = torch::randn({4 * w, 5}, torch::kFloat64);
  torch::Tensor theta = torch::linspace(0.5, 1.5, 5, torch::kFloat64).requires_grad_(true);
  torch::Tensor x = (all.narrow(0, 4 * r, 4) * theta).detach().requires_grad_(true);
  torch::Tensor xt = all.narrow(0, 4 * r, 4) * theta;
  torch::Tensor g = d->all_gather_with_grad(xt);
  torch::Tensor loss =
      torch::logsumexp(torch::matmul(g, g.t()) / 0.5, 1).mean() + 0.01 * g.pow(3).sum();
  loss.backward();
  torch::Tensor gx = d->all_gather_with_grad(x);
  torch::Tensor loss_x =
      torch::logsumexp(torch::matmul(gx, gx.t()) / 0.5, 1).mean() + 0.01 * gx.pow(3).sum();
  loss_x.backward();
  torch::Tensor theta_grad = theta.grad().clone();
  d->all_reduce(theta_grad, ReduceOp::Mean);
  c10::Dict<std::string, torch::Tensor> res;
  res.insert("gathered", g.detach());
  res.insert("loss", loss.detach());
  res.insert("theta_grad", theta_grad);
  res.insert("x_grad", x.grad());
  save(out + ".rank" + std::to_string(r) + ".pt", res);
  return 0;
}

// SyncBN layers on this rank's rows of a global batch (tests/core/dist_test.cpp builds the
// same data and compares with torch's BatchNorm on the whole batch in one process). Two
// training steps (running statistics), then one in eval mode; the loss is the mean over this
// rank's rows of y * r (r fixed), and the parameter gradients are averaged over the ranks as
// the OptimWrapper does.
template <class Layer>
void syncbn_case(Distributed& d, const std::string& name, std::vector<int64_t> shape,
                 torch::Dtype dtype, c10::Dict<std::string, torch::Tensor>& res) {
  const int r = d.rank(), w = d.world_size();
  const int64_t channels = shape[1], rows = shape[0];
  shape[0] = rows * w;
  torch::manual_seed(7);
  const torch::Tensor all = torch::randn(shape, torch::kFloat64).mul(1.5).add(0.3).to(dtype);
  const torch::Tensor weights = torch::randn(shape, torch::kFloat64).to(dtype);
  Layer bn(torch::nn::BatchNormOptions(channels).momentum(0.1), /*sync=*/true);
  bn->to(dtype);
  {
    torch::NoGradGuard no_grad;
    bn->weight.copy_(torch::linspace(0.5, 1.5, channels));
    bn->bias.copy_(torch::linspace(-0.2, 0.3, channels));
  }
  bn->train();
  for (int step = 0; step < 2; ++step) {
    const torch::Tensor local = (all.narrow(0, rows * r, rows) * (1 + step)).detach();
    torch::Tensor x = local.clone().requires_grad_(true);
    bn->zero_grad();
    torch::Tensor y = bn(x);
    (y * weights.narrow(0, rows * r, rows)).sum().div(double(x.numel() / channels)).backward();
    torch::Tensor gw = bn->weight.grad().clone(), gb = bn->bias.grad().clone();
    d.all_reduce(gw, ReduceOp::Mean);
    d.all_reduce(gb, ReduceOp::Mean);
    const std::string k = name + "." + std::to_string(step) + ".";
    res.insert(k + "y", y.detach());
    res.insert(k + "x_grad", x.grad());
    res.insert(k + "weight_grad", gw);
    res.insert(k + "bias_grad", gb);
  }
  res.insert(name + ".running_mean", bn->running_mean.clone());
  res.insert(name + ".running_var", bn->running_var.clone());
  res.insert(name + ".num_batches_tracked", bn->num_batches_tracked.clone());
  bn->eval();
  torch::NoGradGuard no_grad;
  res.insert(name + ".eval_y", bn(all.narrow(0, rows * r, rows)));
}

int syncbn(const std::string& out, const std::string& timeout_s) {
  auto d = join(timeout_s);
  c10::Dict<std::string, torch::Tensor> res;
  for (const auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const std::string t = dtype == torch::kFloat64 ? "f64" : "f32";
    syncbn_case<bricks::BatchNorm2d>(*d, "bn2d_" + t, {4, 3, 5, 4}, dtype, res);
    syncbn_case<bricks::BatchNorm1d>(*d, "bn1d_" + t, {6, 5}, dtype, res);
    syncbn_case<bricks::BatchNorm1d>(*d, "bn1d3_" + t, {3, 4, 7}, dtype, res);
  }
  save(out + ".rank" + std::to_string(d->rank()) + ".pt", res);
  return 0;
}

// Rank r holds rows 8r..8r+7 of a [16, 3] batch (row i filled with i): batch_shuffle's slice,
// the inverse permutation, and batch_unshuffle of the slice.
int shuffle(const std::string& out, const std::string& timeout_s) {
  auto d = join(timeout_s);
  const int r = d->rank();
  torch::manual_seed(11 + r); // different generators: rank 0's permutation must win
  const torch::Tensor x =
      torch::arange(8 * r, 8 * r + 8, torch::kFloat32).unsqueeze(1).expand({8, 3}).contiguous();
  auto [shuffled, idx_unshuffle] = bricks::batch_shuffle(x, "test");
  c10::Dict<std::string, torch::Tensor> res;
  res.insert("shuffled", shuffled);
  res.insert("idx_unshuffle", idx_unshuffle);
  res.insert("unshuffled", bricks::batch_unshuffle(shuffled * 10, idx_unshuffle, "test"));
  save(out + ".rank" + std::to_string(r) + ".pt", res);
  return 0;
}

int die(const std::string& timeout_s) {
  auto d = join(timeout_s);
  d->barrier();
  if (d->rank() == 1) raise(SIGKILL);
  usleep(200 * 1000);
  for (int i = 0; i < 1000; ++i) {
    torch::Tensor t = torch::ones({4});
    d->all_reduce(t, ReduceOp::Sum);
  }
  std::cerr << "dist_helper: rank 0 reduced 1000 times without its peer\n";
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "train" && (argc == 5 || argc == 6))
      return train(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : "");
    if (mode == "gather" && argc == 4) return gather(argv[2], argv[3]);
    if (mode == "die" && argc == 3) return die(argv[2]);
    if (mode == "syncbn" && argc == 4) return syncbn(argv[2], argv[3]);
    if (mode == "shuffle" && argc == 4) return shuffle(argv[2], argv[3]);
    std::cerr
        << "usage: dist_helper train CONFIG WORK_DIR OUT [RESUME] | gather OUT TIMEOUT_S | die "
           "TIMEOUT_S | syncbn OUT TIMEOUT_S | shuffle OUT TIMEOUT_S\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "dist_helper: error: " << e.what() << "\n";
    return 1;
  }
}
