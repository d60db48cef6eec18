#pragma once
// Linear evaluation on frozen features (MMSelfSup's linear-probe benchmark, run on features
// extracted once): a linear classifier (fc with bias, weights drawn from N(0, 0.01^2), bias
// 0, as mmcls's LinearClsHead) trained with SGD (momentum 0.9) and cross-entropy under a
// cosine learning-rate schedule stepped per iteration, then top-1 / top-5 on the test set.
// The defaults are MMSelfSup 1.0's ResNet linear evaluation (sgd_coslr-100e: lr 0.3 for a
// total batch of 256, weight decay 1e-6, 100 epochs), with the lr scaled linearly by the
// batch size actually used. Optionally (default on) each feature dimension is standardised
// with the training features' mean and variance, as a BatchNorm1d without affine in front of
// the head (MMSelfSup's linear evaluation of MAE-style models), which makes the lr independent
// of the features' scale (the kNN features are L2-normalised).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/types.h>

#include <selfsup/core/export.h>

namespace selfsup::core {

struct LinearProbeOptions {
  int64_t epochs = 100;
  int64_t batch_size = 256; // capped to the number of training samples
  double base_lr = 0.3;     // for a batch of 256; the lr used is base_lr * batch / 256
  double momentum = 0.9;
  double weight_decay = 1e-6;
  bool standardize = true; // BatchNorm1d without affine, with the training set's statistics
  uint64_t seed = 0;       // head init and the order of the batches
};

struct LinearProbeResult {
  double top1 = 0; // percent, on the test features
  double top5 = 0; // percent (top-min(5, classes))
  double train_top1 = 0;
  int64_t num_train = 0, num_test = 0, dim = 0, num_classes = 0;
  int64_t epochs = 0, batch_size = 0, iters = 0;
  double lr = 0;                  // the peak lr used (scaled by the batch size)
  std::vector<double> epoch_loss; // mean training loss of each epoch
};

/// Called after each epoch with (epoch (1-based), mean loss of that epoch).
using LinearProbeProgress = std::function<void(int64_t, double)>;

/// Trains the probe on (train_features [N, D] float, train_labels [N] int64) and evaluates it
/// on the test pair. Throws ValueError on mismatched shapes, negative labels or empty inputs.
/// The number of classes is the largest label of either set plus one, or `num_classes` when
/// positive (then every label must be below it).
SELFSUP_CORE_API LinearProbeResult linear_probe(const torch::Tensor& train_features,
                                                const torch::Tensor& train_labels,
                                                const torch::Tensor& test_features,
                                                const torch::Tensor& test_labels,
                                                const LinearProbeOptions& options,
                                                int64_t num_classes = -1,
                                                const LinearProbeProgress& progress = {});

} // namespace selfsup::core
