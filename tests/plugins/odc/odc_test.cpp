// ODC: ODCNeck against upstream, the ODCMemory arithmetic by hand (initialisation, momentum
// update and label re-assignment, centroids, small clusters), the class-weighted loss against
// upstream's values, ODCHook, config errors, and a tiny training run.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <torch/torch.h>

#include <selfsup/core/runner.h>
#include <selfsup/interfaces/clustering.h>
#include <selfsup/sdk.h>

#include "local_registry.h"
#include "plugins/cluster_run.h"
#include "plugins/plugin_test_support.h"
#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry("odc_test",
                                            [](Registrar& r) { test::add_pass_backbone(r); });
  return registry;
}

test::TensorDict reference() {
  return test::load_fixture("tests/fixtures/deepcluster/deepcluster_reference.pt");
}

// ODC on a pass-through backbone with AvgPool2dNeck, a ClsHead of `k` classes on `dim`
// features and a memory of `length` rows.
std::shared_ptr<Algorithm> make_odc(int64_t length, int64_t dim, int64_t k,
                                    int64_t min_cluster = 0) {
  Json cfg = Json::parse(R"({"type": "ODC", "backbone": {"type": "TestPassBackbone"},
      "neck": {"type": "AvgPool2dNeck"},
      "head": {"type": "ClsHead", "loss": {"type": "mmcls.CrossEntropyLoss"},
               "with_avg_pool": false},
      "memory_bank": {"type": "ODCMemory", "momentum": 0.5}})",
                         "t");
  cfg.find("head")->set("in_channels", dim);
  cfg.find("head")->set("num_classes", k);
  auto* m = cfg.find("memory_bank");
  m->set("length", length);
  m->set("feat_dim", dim);
  m->set("num_classes", k);
  m->set("min_cluster", min_cluster);
  return build<Algorithm>(registry().config(cfg, "model"));
}

ClusteringAlgorithm& clustering_of(Algorithm& a) {
  auto* c = dynamic_cast<ClusteringAlgorithm*>(&a);
  if (!c) throw std::runtime_error("not a ClusteringAlgorithm");
  return *c;
}

torch::Tensor buffer(Algorithm& a, const std::string& name) {
  return a.named_buffers()["memory_bank." + name];
}

torch::Tensor nrm(const torch::Tensor& x) {
  return x / (x.norm(2, 1, true) + 1e-10);
}

} // namespace

TEST(ODCTest, NeckMatchesUpstreamInEvalMode) {
  const auto d = reference();
  auto neck = build<Neck>(
      registry().config(Json::parse(R"({"type": "ODCNeck", "in_channels": 6, "hid_channels": 7,
                      "out_channels": 4, "with_avg_pool": true})",
                                    "t"),
                        "model.neck"));
  {
    torch::NoGradGuard g;
    for (auto& p : neck->named_parameters()) p.value().copy_(test::ref(d, "neck." + p.key()));
    for (auto& b : neck->named_buffers())
      if (b.key() != "bn0.num_batches_tracked") b.value().copy_(test::ref(d, "neck." + b.key()));
  }
  neck->eval();
  const auto out = neck->forward({test::ref(d, "neck_x")})[0];
  test::expect_allclose(out, test::ref(d, "neck_out"), 1e-5, 1e-6, "ODCNeck");
  // The hidden BN has no affine parameters and momentum 0.001.
  EXPECT_EQ(neck->named_parameters().size(), 4u);
  EXPECT_TRUE(
      test::has_substr(test::message_of<ConfigError>([&] {
                         (void)build<Neck>(registry().config(
                             Json::parse(R"({"type": "ODCNeck", "in_channels": 6, "hid_channels": 7,
                "out_channels": 4, "norm_cfg": {"type": "BN", "momentum": 0.1}})",
                                         "t"),
                             "model.neck"));
                       }),
                       "model.neck.norm_cfg.momentum"));
  // A norm_cfg without a momentum is accepted (the defaults filled in must not trip the check).
  EXPECT_NO_THROW((void)build<Neck>(registry().config(
      Json::parse(R"({"type": "ODCNeck", "in_channels": 6, "hid_channels": 7, "out_channels": 4,
                      "norm_cfg": {"type": "BN"}})",
                  "t"),
      "model.neck")));
}

TEST(ODCTest, MemoryArithmeticByHand) {
  // 6 samples in 3-d, 2 clusters: {0, 1, 2} and {3, 4, 5}.
  auto model = make_odc(6, 3, 2);
  auto& c = clustering_of(*model);
  const auto f = torch::tensor({{3.0, 0.0, 0.0},
                                {2.0, 1.0, 0.0},
                                {1.0, 0.0, 1.0},
                                {0.0, 2.0, 0.0},
                                {0.0, 1.0, 1.0},
                                {0.0, 0.0, 4.0}});
  const auto labels = torch::tensor({0, 0, 0, 1, 1, 1}, torch::kInt64);
  c.init_memory(f, labels);
  const auto bank0 = nrm(f);
  test::expect_allclose(buffer(*model, "feature_bank"), bank0, 1e-6, 1e-7, "bank");
  const auto cent0 = torch::stack({bank0.slice(0, 0, 3).mean(0), bank0.slice(0, 3, 6).mean(0)});
  test::expect_allclose(buffer(*model, "centroids"), cent0, 1e-6, 1e-7, "centroids");
  // One step on samples 2 and 4 with new features: bank <- nrm(0.5 old + 0.5 nrm(new)), and
  // each takes the label of its most similar centroid.
  const auto x = torch::tensor({{0.0, 0.0, 5.0}, {4.0, 0.0, 0.0}}).reshape({2, 3, 1, 1});
  DataSamples s;
  s.sample_idx = torch::tensor({2, 4}, torch::kInt64);
  const auto losses = model->loss({x}, s);
  const auto new2 = nrm((0.5 * bank0[2] + 0.5 * torch::tensor({0.0, 0.0, 1.0})).unsqueeze(0));
  const auto new4 = nrm((0.5 * bank0[4] + 0.5 * torch::tensor({1.0, 0.0, 0.0})).unsqueeze(0));
  const auto bank = buffer(*model, "feature_bank");
  test::expect_allclose(bank[2], new2[0], 1e-6, 1e-7, "row 2");
  test::expect_allclose(bank[4], new4[0], 1e-6, 1e-7, "row 4");
  test::expect_allclose(bank[0], bank0[0], 0, 0, "row 0 untouched");
  const int64_t l2 = cent0.mv(new2[0]).argmax().item<int64_t>();
  const int64_t l4 = cent0.mv(new4[0]).argmax().item<int64_t>();
  const auto lb = buffer(*model, "label_bank");
  EXPECT_EQ(lb[2].item<int64_t>(), l2);
  EXPECT_EQ(lb[4].item<int64_t>(), l4);
  EXPECT_EQ(l4, 0); // (1, 0, 0) pulled sample 4 over to the first cluster
  const double changed = double(l2 != 0) + double(l4 != 1);
  EXPECT_NEAR(losses.at("change_ratio").item<double>(), changed / 2, 1e-7);
  EXPECT_TRUE(std::isfinite(losses.at("loss").item<double>()));
}

TEST(ODCTest, HookUpdatesCentroidsDissolvesSmallClustersAndReweights) {
  // 3 clusters: sizes 5, 5 and 1 (smaller than min_cluster 2).
  auto model = make_odc(11, 2, 3, 2);
  auto& c = clustering_of(*model);
  const auto f = torch::tensor({{1.0, 0.0},
                                {1.0, 0.1},
                                {1.0, 0.2},
                                {1.0, -0.1},
                                {1.0, -0.2},
                                {0.0, 1.0},
                                {0.1, 1.0},
                                {0.2, 1.0},
                                {-0.1, 1.0},
                                {-0.2, 1.0},
                                {1.0, 0.05}});
  c.init_memory(f, torch::tensor({0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2}, torch::kInt64));
  auto hook = build<Hook>(registry().config(Json::parse(R"({"type": "ODCHook",
      "centroids_update_interval": 10, "deal_with_small_clusters_interval": 1,
      "evaluate_interval": 1, "reweight": true, "reweight_pow": 0.5})",
                                                        "t"),
                                            "custom_hooks[0]"));
  test::ClusterRun run(model, f, nullptr);
  run.iter_ = 1;
  hook->after_train_iter(run);
  // Sample 10 joined cluster 0 (its nearest other centroid); cluster 2 then took one side of
  // a 2-means split of the largest cluster (now cluster 0 with 6 samples).
  const auto lb = buffer(*model, "label_bank");
  const auto h = torch::bincount(lb, {}, 3);
  EXPECT_EQ(h[1].item<int64_t>(), 5);
  EXPECT_EQ(h[0].item<int64_t>() + h[2].item<int64_t>(), 6);
  EXPECT_GT(h[2].item<int64_t>(), 0);
  EXPECT_GT(h[0].item<int64_t>(), 0);
  for (int i = 5; i < 10; ++i) EXPECT_EQ(lb[i].item<int64_t>(), 1);
  // The two changed centroids are the means of their new members.
  const auto bank = buffer(*model, "feature_bank");
  const auto cent = buffer(*model, "centroids");
  for (int64_t k : {0, 2})
    test::expect_allclose(cent[k], bank.index({lb == k}).mean(0), 1e-6, 1e-7, "centroid");
  // Weights (n_c + 1e-10)^-0.5, summing to 1.
  const auto hw = h.to(torch::kFloat32);
  const auto expected = (1.0 / (hw + 1e-10)).pow(0.5);
  test::expect_allclose(c.loss_weight(), expected / expected.sum(), 1e-6, 0, "weights");
  ASSERT_FALSE(run.lines.empty());
  EXPECT_TRUE(test::has_substr(run.lines.back(), "empty_num: 0"));
}

TEST(ODCTest, MemoryLongerThanTheClusteredSetCountsOnlyItsRows) {
  // A training loader with `indices` clusters the first 8 samples into a memory of 20 rows
  // (the Fashion-MNIST demo: 20,480 of 60,000). Rows 8..19 keep label 0 and a zero feature;
  // they must not count: clusters of sizes 4, 3 and 1 (smaller than min_cluster 2).
  auto model = make_odc(20, 2, 3, 2);
  auto& c = clustering_of(*model);
  const auto f = torch::tensor({{1.0, 0.0},
                                {1.0, 0.1},
                                {1.0, -0.1},
                                {1.0, 0.2},
                                {0.0, 1.0},
                                {0.1, 1.0},
                                {-0.1, 1.0},
                                {0.0, -1.0}});
  c.init_memory(f, torch::tensor({0, 0, 0, 0, 1, 1, 1, 2}, torch::kInt64));
  const auto bank0 = nrm(f);
  // Centroid 0 is the mean of its 4 rows, not diluted by the 12 untouched ones.
  test::expect_allclose(buffer(*model, "centroids")[0], bank0.slice(0, 0, 4).mean(0), 1e-6, 1e-7,
                        "centroid 0");
  auto hook = build<Hook>(registry().config(Json::parse(R"({"type": "ODCHook",
      "centroids_update_interval": 1, "deal_with_small_clusters_interval": 1,
      "evaluate_interval": 1, "reweight": true, "reweight_pow": 0.5})",
                                                        "t"),
                                            "custom_hooks[0]"));
  test::ClusterRun run(model, f, nullptr);
  run.iter_ = 1;
  hook->after_train_iter(run);
  // Sample 7 left the small cluster 2, which then took one side of a 2-means split of the
  // largest cluster among the 8 rows (cluster 0 or 1, now with 4 or 5), never of the untouched
  // rows (with them cluster 0 would count 16 and give its zero rows away).
  const auto lb = buffer(*model, "label_bank");
  for (int64_t i = 8; i < 20; ++i) EXPECT_EQ(lb[i].item<int64_t>(), 0) << "row " << i;
  const auto h = torch::bincount(lb.slice(0, 0, 8), {}, 3);
  EXPECT_EQ(h.sum().item<int64_t>(), 8);
  EXPECT_GT(h.min().item<int64_t>(), 0);
  // Weights and the logged histogram come from the 8 rows.
  const auto hw = h.to(torch::kFloat32);
  const auto expected = (1.0 / (hw + 1e-10)).pow(0.5);
  test::expect_allclose(c.loss_weight(), expected / expected.sum(), 1e-6, 0, "weights");
  ASSERT_FALSE(run.lines.empty());
  EXPECT_TRUE(
      test::has_substr(run.lines.back(), "max_cluster: " + std::to_string(h.max().item<int64_t>())))
      << run.lines.back();
  // Every centroid is the mean of its members among the 8 rows.
  const auto bank = buffer(*model, "feature_bank").slice(0, 0, 8);
  const auto cent = buffer(*model, "centroids");
  for (int64_t k = 0; k < 3; ++k)
    test::expect_allclose(cent[k], bank.index({lb.slice(0, 0, 8) == k}).mean(0), 1e-6, 1e-7,
                          "centroid");
  // A sample the initial clustering did not cover is refused by name.
  DataSamples s;
  s.sample_idx = torch::tensor({3, 12}, torch::kInt64);
  const auto x = torch::ones({2, 2, 1, 1});
  EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] { (void)model->loss({x}, s); }),
                               "outside the 8 rows of the initial clustering"));
}

TEST(ODCTest, LossMatchesUpstreamWeightedCrossEntropy) {
  const auto d = reference();
  auto model = make_odc(8, 6, 5);
  auto& c = clustering_of(*model);
  {
    torch::NoGradGuard g;
    auto params = model->named_parameters();
    params["head.fc_cls.weight"].copy_(test::ref(d, "fc_weight"));
    params["head.fc_cls.bias"].copy_(test::ref(d, "fc_bias"));
  }
  const auto x = test::ref(d, "x");
  const auto y = test::ref(d, "labels");
  c.init_memory(x.mean({2, 3}), y);
  c.loss_weight().copy_(test::ref(d, "class_weight"));
  DataSamples s;
  s.sample_idx = torch::arange(8);
  const double loss = model->loss({x}, s).at("loss").item<double>();
  EXPECT_NEAR(loss, test::ref(d, "loss_0x_weighted").item<double>(), 1e-5 * loss);
  // Before the initial clustering the loss names the hook.
  auto fresh = make_odc(8, 6, 5);
  EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] { (void)fresh->loss({x}, s); }),
                               "init_memory=true"));
  // An initial clustering with an empty cluster is refused (upstream asserts).
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] {
        clustering_of(*fresh).init_memory(x.mean({2, 3}), torch::zeros({8}, torch::kInt64));
      }),
      "clusters empty"));
}

namespace {
Json tiny_config(const fs::path& data) {
  Json cfg = Json::parse(R"({
    "model": {"type": "ODC",
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4,
                   "base_channels": 4, "stem": "cifar", "out_indices": [4]},
      "neck": {"type": "ODCNeck", "in_channels": 32, "hid_channels": 16, "out_channels": 8,
               "with_avg_pool": true},
      "head": {"type": "ClsHead", "loss": {"type": "mmcls.CrossEntropyLoss"},
               "with_avg_pool": false, "in_channels": 8, "num_classes": 4},
      "memory_bank": {"type": "ODCMemory", "length": 64, "feat_dim": 8, "momentum": 0.5,
                      "num_classes": 4, "min_cluster": 2}},
    "train_dataloader": {"batch_size": 16, "num_workers": 2, "drop_last": true,
      "sampler": {"type": "DeepClusterSampler", "shuffle": true, "replace": true},
      "dataset": {"type": "FashionMNIST", "split": "train", "pipeline": [
        {"type": "RandomResizedCrop", "size": 16, "scale": [0.2, 1.0]},
        {"type": "RandomFlip", "prob": 0.5},
        {"type": "PackSelfSupInputs", "algorithm_keys": ["sample_idx"]}]}},
    "custom_hooks": [{"type": "DeepClusterHook",
      "extract_dataloader": {"batch_size": 32, "num_workers": 2,
        "sampler": {"type": "DefaultSampler", "shuffle": false, "round_up": true},
        "dataset": {"type": "FashionMNIST", "split": "train", "pipeline": [
          {"type": "Resize", "scale": [16, 16]}, {"type": "PackSelfSupInputs"}]}},
      "clustering": {"type": "Kmeans", "k": 4, "pca_dim": -1},
      "unif_sampling": false, "reweight": true, "reweight_pow": 0.5,
      "init_memory": true, "initial": true, "interval": 9999999999},
      {"type": "ODCHook", "centroids_update_interval": 2,
       "deal_with_small_clusters_interval": 1, "evaluate_interval": 2,
       "reweight": true, "reweight_pow": 0.5}],
    "optim_wrapper": {"type": "OptimWrapper",
      "optimizer": {"type": "SGD", "lr": 0.06, "momentum": 0.9, "weight_decay": 1e-5},
      "paramwise_cfg": {"custom_keys": {"head": {"momentum": 0.0}}}},
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 2},
    "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1}},
    "randomness": {"seed": 3}
  })",
                         "t");
  cfg.find("train_dataloader")->find("dataset")->set("data_root", data.string());
  cfg.find("custom_hooks")
      ->at(0)
      .find("extract_dataloader")
      ->find("dataset")
      ->set("data_root", data.string());
  return cfg;
}
} // namespace

TEST(ODCTest, TrainsOnTinyFashionMnist) {
  test::load_plugins();
  test::TinyFmnistRun tiny(64, 8);
  core::Runner runner(tiny_config(tiny.data), tiny.options);
  runner.train();
  const auto log = test::read_text(fs::path(tiny.options.work_dir) / "scalars.jsonl");
  EXPECT_NE(log.find("\"loss\""), std::string::npos);
  EXPECT_NE(log.find("change_ratio"), std::string::npos);
  EXPECT_EQ(log.find("nan"), std::string::npos);
}
