// collate and the threaded DataLoader: determinism whatever the thread count, order,
// drop_last, errors, clean shutdown, and config checks.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/registry.h>

#include "local_registry.h"
#include "test_support.h"

namespace selfsup::core {
namespace {

// A synthetic dataset: `size` images of h x w x c, pixel k of sample i = (7 i + k) % 256,
// label i % 10. `fail_at` makes get() throw for that index; `delay_us` slows each get().
class LoaderTestDataset final : public Dataset {
public:
  explicit LoaderTestDataset(const Config& cfg)
      : size_(cfg.get<int64_t>("size")), h_(cfg.get<int>("height")), w_(cfg.get<int>("width")),
        c_(cfg.get<int>("channels")), fail_at_(cfg.get<int64_t>("fail_at")),
        delay_us_(cfg.get<int64_t>("delay_us")) {}
  [[nodiscard]] int64_t size() const override { return size_; }
  [[nodiscard]] int64_t num_classes() const override { return 10; }
  [[nodiscard]] Sample get(int64_t index) const override {
    if (delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us_));
    if (index == fail_at_)
      throw ValueError("LoaderTestDataset: broken sample " + std::to_string(index));
    Sample s;
    s.img = Image(h_, w_, c_);
    for (size_t k = 0; k < s.img.data.size(); ++k)
      s.img.data[k] = uint8_t((7 * index + int64_t(k)) % 256);
    s.gt_label = index % 10;
    s.sample_idx = index;
    return s;
  }

private:
  int64_t size_;
  int h_, w_, c_;
  int64_t fail_at_, delay_us_;
};

// A test-only transform that writes named values, as mask generators and pseudo-labellers
// do: "mask" (bool [2, 3], the low 6 bits of the index), "clustering_label" (int64 scalar,
// index % 4) and "img_path".
class LoaderTestMarks final : public Transform {
public:
  explicit LoaderTestMarks(const Config&) {}
  void apply(Sample& s, Rng&) const override {
    s.tensors["mask"] = expected_mask(s.sample_idx);
    s.tensors["clustering_label"] = torch::tensor(s.sample_idx % 4, torch::kInt64);
    s.strings["img_path"] = "fake/" + std::to_string(s.sample_idx) + ".png";
  }
  static torch::Tensor expected_mask(int64_t index) {
    return torch::bitwise_and(torch::full({6}, index, torch::kInt64),
                              torch::tensor({1, 2, 4, 8, 16, 32}, torch::kInt64))
        .ne(0)
        .reshape({2, 3});
  }
};

// The engine's types, the build tree's plugins and this file's test types, in a registry of
// the tests' own (configs made by registry().config() build from it).
const test::LocalRegistry& registry() {
  static const test::LocalRegistry registry("data_loader_test", [](Registrar& r) {
    r.add<Dataset>(
        "LoaderTestDataset",
        [](const Config& cfg) -> std::shared_ptr<Dataset> {
          return std::make_shared<LoaderTestDataset>(cfg);
        },
        Schema("synthetic images for the loader tests")
            .optional("size", ArgType::Int, 50, "samples")
            .optional("height", ArgType::Int, 12, "image height")
            .optional("width", ArgType::Int, 12, "image width")
            .optional("channels", ArgType::Int, 1, "image channels")
            .optional("fail_at", ArgType::Int, -1, "index whose get() throws")
            .optional("delay_us", ArgType::Int, 0, "sleep per get()"));
    r.add<Transform>(
        "LoaderTestMarks",
        [](const Config& cfg) -> std::shared_ptr<Transform> {
          return std::make_shared<LoaderTestMarks>(cfg);
        },
        Schema("writes a mask, a pseudo-label and an img_path for the loader tests"));
  });
  return registry;
}

const char* kAugment = R"([
  {"type": "ColorConvert", "channels": 3},
  {"type": "MultiView", "num_views": 2, "transforms": [[
    {"type": "RandomResizedCrop", "size": 8},
    {"type": "RandomFlip", "prob": 0.5},
    {"type": "RandomApply", "prob": 0.8, "transforms": [
      {"type": "ColorJitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}]},
    {"type": "RandomGaussianBlur", "sigma_min": 0.1, "sigma_max": 2.0, "prob": 0.5}]]},
  {"type": "PackSelfSupInputs"}])";

std::shared_ptr<PipelinedDataset> make_dataset(const std::string& extra = "",
                                               const std::string& pipeline = kAugment) {
  const std::string text = "{\"type\": \"LoaderTestDataset\", \"pipeline\": " + pipeline +
                           (extra.empty() ? "" : ", " + extra) + "}";
  return std::make_shared<PipelinedDataset>(
      registry().config(Json::parse(text, "test"), "dataset"));
}

LoaderOptions options(int workers, int64_t batch = 8, bool shuffle = true, uint64_t seed = 7) {
  LoaderOptions o;
  o.batch_size = batch;
  o.num_workers = workers;
  o.shuffle = shuffle;
  o.seed = seed;
  o.prefetch = 2;
  return o;
}

std::vector<Batch> run_epoch(DataLoader& loader, int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> out;
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

bool same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i].sample_idx, b[i].sample_idx)) return false;
    if (!torch::equal(a[i].gt_label, b[i].gt_label)) return false;
    if (a[i].views.size() != b[i].views.size()) return false;
    for (size_t v = 0; v < a[i].views.size(); ++v)
      if (!torch::equal(a[i].views[v], b[i].views[v])) return false;
  }
  return true;
}

class DataLoaderTest : public ::testing::Test {
protected:
  void SetUp() override { (void)registry(); }
};

TEST_F(DataLoaderTest, CollateStacksViewsAsNCHW) {
  std::vector<Sample> samples(2);
  for (int b = 0; b < 2; ++b) {
    Image img(1, 2, 3);
    img.data = {uint8_t(b), 1, 2, 3, 4, 5}; // pixels (b,1,2), (3,4,5)
    samples[size_t(b)].views = {img, Image(2, 2, 1)};
    samples[size_t(b)].gt_label = 3 + b;
    samples[size_t(b)].sample_idx = 10 + b;
  }
  const Batch batch = collate(samples);
  ASSERT_EQ(batch.views.size(), 2u);
  EXPECT_EQ(batch.views[0].sizes(), (std::vector<int64_t>{2, 3, 1, 2}));
  EXPECT_EQ(batch.views[1].sizes(), (std::vector<int64_t>{2, 1, 2, 2}));
  EXPECT_EQ(batch.views[0].dtype(), torch::kUInt8);
  // Channel 0 of sample 1 is (1, 3); channel 2 is (2, 5).
  EXPECT_EQ(batch.views[0][1][0][0][0].item<int>(), 1);
  EXPECT_EQ(batch.views[0][1][0][0][1].item<int>(), 3);
  EXPECT_EQ(batch.views[0][1][2][0][1].item<int>(), 5);
  EXPECT_EQ(batch.gt_label[1].item<int64_t>(), 4);
  EXPECT_EQ(batch.sample_idx[0].item<int64_t>(), 10);
}

TEST_F(DataLoaderTest, CollateUsesImgWithoutViewsAndChecksShapes) {
  std::vector<Sample> samples(2);
  samples[0].img = Image(2, 3, 1);
  samples[1].img = Image(2, 3, 1);
  EXPECT_EQ(collate(samples).views.at(0).sizes(), (std::vector<int64_t>{2, 1, 2, 3}));
  samples[1].img = Image(3, 3, 1);
  samples[1].sample_idx = 42;
  EXPECT_TRUE(
      test::has_substr(test::message_of<ValueError>([&] { (void)collate(samples); }), "sample 42"));
  EXPECT_THROW((void)collate({}), ValueError);
}

// Two samples with one view and named values of every sort.
std::vector<Sample> named_samples() {
  std::vector<Sample> samples(2);
  for (int b = 0; b < 2; ++b) {
    Sample& s = samples[size_t(b)];
    s.views = {Image(2, 2, 1)};
    s.sample_idx = 30 + b;
    s.data["mask"] = torch::full({2, 3}, b, torch::kUInt8);
    s.pseudo_label["rot_label"] = torch::arange(4) + 10 * b;
    s.pseudo_label["clustering_label"] = torch::tensor(int64_t(5 + b));
    s.meta["img_path"] = "img" + std::to_string(b) + ".png";
  }
  return samples;
}

TEST_F(DataLoaderTest, CollateStacksNamedTensorsAndGathersMeta) {
  const Batch batch = collate(named_samples());
  ASSERT_EQ(batch.data.size(), 1u);
  const torch::Tensor& mask = batch.data.at("mask");
  EXPECT_EQ(mask.sizes(), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(mask.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(mask[1], torch::ones({2, 3}, torch::kUInt8)));
  EXPECT_TRUE(torch::equal(batch.pseudo_label.at("rot_label"),
                           torch::stack({torch::arange(4), torch::arange(4) + 10})));
  EXPECT_TRUE(torch::equal(batch.pseudo_label.at("clustering_label"),
                           torch::tensor({5, 6}, torch::kInt64)));
  EXPECT_EQ(batch.meta.at("img_path"), (std::vector<std::string>{"img0.png", "img1.png"}));

  const DataSamples ds = to_data_samples(batch, torch::kCPU);
  EXPECT_TRUE(torch::equal(ds.sample_idx, torch::tensor({30, 31}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(ds.data_at("mask"), mask));
  EXPECT_TRUE(
      torch::equal(ds.pseudo_label_at("clustering_label"), torch::tensor({5, 6}, torch::kInt64)));
  EXPECT_EQ(ds.meta_at("img_path").at(1), "img1.png");
  const std::string msg = test::message_of<ValueError>([&] { (void)ds.data_at("masks"); });
  EXPECT_TRUE(test::has_substr(msg, "'masks'"));
  EXPECT_TRUE(test::has_substr(msg, "'mask'"));
  EXPECT_TRUE(test::has_substr(msg, "algorithm_keys"));
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { (void)ds.pseudo_label_at("patch_label"); }),
      "pseudo_label_keys"));
}

TEST_F(DataLoaderTest, CollateNamedErrorsNameKeyAndBothSamples) {
  auto collate_error = [](const std::vector<Sample>& samples) {
    return test::message_of<ValueError>([&] { (void)collate(samples); });
  };
  auto expect_all = [](const std::string& msg, const std::vector<std::string>& needles) {
    for (const auto& needle : needles) EXPECT_TRUE(test::has_substr(msg, needle));
  };
  auto shape = named_samples();
  shape[1].data["mask"] = torch::zeros({3, 3}, torch::kUInt8);
  expect_all(collate_error(shape), {"'mask'", "sample 31", "sample 30", "[3, 3]", "[2, 3]"});
  auto dtype = named_samples();
  dtype[1].pseudo_label["rot_label"] = torch::arange(4).to(torch::kFloat);
  expect_all(collate_error(dtype),
             {"pseudo-label 'rot_label'", "sample 31", "sample 30", "Float", "Long"});
  auto missing = named_samples();
  missing[0].pseudo_label.erase("clustering_label");
  expect_all(collate_error(missing), {"'clustering_label'", "sample 31", "sample 30"});
  auto extra = named_samples();
  extra[0].meta["ori_shape"] = "28x28";
  expect_all(collate_error(extra), {"meta key 'ori_shape'", "sample 30", "sample 31"});
  auto undefined = named_samples();
  undefined[1].data["mask"] = torch::Tensor();
  expect_all(collate_error(undefined), {"'mask'", "sample 31", "undefined"});
}

// Named values written by a transform travel through PackSelfSupInputs and the threaded
// loader to the algorithm's DataSamples, each in its sample's row.
TEST_F(DataLoaderTest, PacksAndCollatesNamedValuesThroughThreadedLoader) {
  auto ds = make_dataset("\"size\": 21", R"([
      {"type": "LoaderTestMarks"},
      {"type": "PackSelfSupInputs", "algorithm_keys": ["mask", "sample_idx"],
       "pseudo_label_keys": ["clustering_label"], "meta_keys": ["img_path"]}])");
  DataLoader loader(ds, options(2, 8));
  const auto batches = run_epoch(loader, 1);
  ASSERT_EQ(batches.size(), 3u);
  std::set<int64_t> seen;
  for (const Batch& batch : batches) {
    const DataSamples samples = to_data_samples(batch, torch::kCPU);
    const int64_t B = samples.sample_idx.size(0);
    ASSERT_EQ(samples.data.size(), 1u);
    const torch::Tensor& mask = samples.data_at("mask");
    const torch::Tensor& label = samples.pseudo_label_at("clustering_label");
    const std::vector<std::string>& paths = samples.meta_at("img_path");
    ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{B, 2, 3}));
    EXPECT_EQ(mask.scalar_type(), torch::kBool);
    ASSERT_EQ(label.sizes(), (std::vector<int64_t>{B}));
    ASSERT_EQ(paths.size(), size_t(B));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t index = samples.sample_idx[b].item<int64_t>();
      seen.insert(index);
      EXPECT_TRUE(torch::equal(mask[b], LoaderTestMarks::expected_mask(index))) << index;
      EXPECT_EQ(label[b].item<int64_t>(), index % 4);
      EXPECT_EQ(paths[size_t(b)], "fake/" + std::to_string(index) + ".png");
    }
  }
  EXPECT_EQ(seen.size(), 21u);
  // The test transform lives in the test's registry only.
  EXPECT_EQ(Registry::global().find("transform", "LoaderTestMarks"), nullptr);
}

TEST_F(DataLoaderTest, PackMissingKeyFailsTheBatchNamingPathAndKey) {
  auto ds = make_dataset("\"size\": 8", R"([{"type": "PackSelfSupInputs",
                                             "pseudo_label_keys": ["rot_label"]}])");
  DataLoader loader(ds, options(2, 4));
  loader.start_epoch(0);
  const std::string msg = test::message_of<ValueError>([&] { (void)loader.next(); });
  EXPECT_TRUE(test::has_substr(msg, "dataset.pipeline[0].pseudo_label_keys[0]"));
  EXPECT_TRUE(test::has_substr(msg, "'rot_label'"));
}

TEST_F(DataLoaderTest, SameSeedSameBatchesWithAnyWorkerCount) {
  auto ds = make_dataset("\"size\": 45");
  std::vector<std::vector<Batch>> runs;
  for (int workers : {0, 1, 3}) {
    DataLoader loader(ds, options(workers));
    runs.push_back(run_epoch(loader, 2));
  }
  ASSERT_EQ(runs[0].size(), 6u); // ceil(45 / 8)
  EXPECT_TRUE(same_batches(runs[0], runs[1]));
  EXPECT_TRUE(same_batches(runs[0], runs[2]));
  EXPECT_EQ(runs[0][0].views.size(), 2u);
  EXPECT_EQ(runs[0][0].views[0].sizes(), (std::vector<int64_t>{8, 3, 8, 8}));
  EXPECT_EQ(runs[0].back().views[0].size(0), 5);
}

TEST_F(DataLoaderTest, EveryIndexOnceAndEpochsDiffer) {
  auto ds = make_dataset("\"size\": 40");
  DataLoader loader(ds, options(2));
  const auto e0 = run_epoch(loader, 0);
  const auto e1 = run_epoch(loader, 1);
  const auto e0_again = run_epoch(loader, 0);
  EXPECT_TRUE(same_batches(e0, e0_again));
  EXPECT_FALSE(same_batches(e0, e1));
  for (const auto* epoch : {&e0, &e1}) {
    std::set<int64_t> seen;
    for (const auto& b : *epoch)
      for (int64_t i = 0; i < b.sample_idx.size(0); ++i)
        seen.insert(b.sample_idx[i].item<int64_t>());
    EXPECT_EQ(seen.size(), 40u);
  }
  EXPECT_FALSE(torch::equal(e0[0].sample_idx, e1[0].sample_idx));
}

TEST_F(DataLoaderTest, SampleContentDependsOnIndexNotPosition) {
  // With and without shuffling, sample k of an epoch gets the same augmentation.
  auto ds = make_dataset("\"size\": 16");
  DataLoader shuffled(ds, options(2, 16, true));
  DataLoader ordered(ds, options(0, 16, false));
  const Batch a = run_epoch(shuffled, 3).at(0);
  const Batch b = run_epoch(ordered, 3).at(0);
  for (int64_t i = 0; i < 16; ++i) {
    const int64_t idx = a.sample_idx[i].item<int64_t>();
    EXPECT_TRUE(torch::equal(a.views[0][i], b.views[0][idx])) << "index " << idx;
  }
}

TEST_F(DataLoaderTest, UnshuffledBatchesArriveInOrder) {
  auto ds = make_dataset("\"size\": 100, \"delay_us\": 200");
  DataLoader loader(ds, options(3, 10, false));
  const auto batches = run_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 10u);
  for (int64_t b = 0; b < 10; ++b)
    for (int64_t i = 0; i < 10; ++i)
      EXPECT_EQ(batches[size_t(b)].sample_idx[i].item<int64_t>(), 10 * b + i);
  EXPECT_FALSE(loader.next().has_value()); // stays at the end
}

TEST_F(DataLoaderTest, DropLast) {
  auto ds = make_dataset("\"size\": 10");
  for (bool drop : {false, true}) {
    auto o = options(2, 4);
    o.drop_last = drop;
    DataLoader loader(ds, o);
    EXPECT_EQ(loader.num_batches(), drop ? 2 : 3);
    const auto batches = run_epoch(loader, 0);
    ASSERT_EQ(batches.size(), drop ? 2u : 3u);
    EXPECT_EQ(batches.back().sample_idx.size(0), drop ? 4 : 2);
  }
}

// Destroying or restarting a loader with work in flight must join its workers (a hang here
// shows as the CTest timeout).
TEST_F(DataLoaderTest, AbandonedEpochStopsPromptly) {
  auto ds = make_dataset("\"size\": 400, \"delay_us\": 2000");
  {
    DataLoader loader(ds, options(3, 4));
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next().has_value());
    ASSERT_TRUE(loader.next().has_value());
    // Restart midway, take one batch, then destroy the loader with work in flight.
    loader.start_epoch(1);
    ASSERT_TRUE(loader.next().has_value());
  }
  {
    DataLoader never_read(ds, options(3, 4));
    never_read.start_epoch(0);
  }
}

TEST_F(DataLoaderTest, WorkerErrorIsRethrownInOrder) {
  for (int workers : {0, 3}) {
    auto ds = make_dataset("\"size\": 40, \"fail_at\": 21");
    DataLoader loader(ds, options(workers, 5, false));
    loader.start_epoch(0);
    for (int b = 0; b < 4; ++b) ASSERT_TRUE(loader.next().has_value()) << "batch " << b;
    EXPECT_TRUE(test::has_substr(test::message_of<ValueError>([&] { (void)loader.next(); }),
                                 "broken sample 21"))
        << "workers " << workers;
    EXPECT_THROW((void)loader.next(), ValueError); // the epoch stays failed
    loader.start_epoch(1);                         // and a new one starts cleanly
    EXPECT_TRUE(loader.next().has_value());
  }
}

TEST_F(DataLoaderTest, NextWithoutStartEpochRunsEpochZero) {
  auto ds = make_dataset("\"size\": 12");
  DataLoader a(ds, options(2, 4));
  std::vector<Batch> implicit;
  while (auto b = a.next()) implicit.push_back(std::move(*b));
  DataLoader b(ds, options(0, 4));
  EXPECT_TRUE(same_batches(implicit, run_epoch(b, 0)));
}

TEST_F(DataLoaderTest, ManyWorkersSmallDataset) {
  auto ds = make_dataset("\"size\": 3");
  DataLoader loader(ds, options(8, 2));
  EXPECT_EQ(run_epoch(loader, 0).size(), 2u);
  auto empty = make_dataset("\"size\": 3, \"indices\": 0");
  DataLoader none(empty, options(2, 2));
  EXPECT_EQ(run_epoch(none, 0).size(), 0u);
}

Config loader_cfg(const std::string& body) {
  return registry().config(Json::parse(body, "test"), "train_dataloader");
}

const std::string kDataset = R"("dataset": {"type": "LoaderTestDataset", "size": 20,
                                           "pipeline": [{"type": "PackSelfSupInputs"}]})";

TEST_F(DataLoaderTest, FromConfig) {
  auto loader = DataLoader::from_config(
      loader_cfg(R"({"batch_size": 6, "num_workers": 1, "persistent_workers": true,
                     "drop_last": true, "prefetch_factor": 3, "pin_memory": false,
                     "sampler": {"type": "DefaultSampler", "shuffle": false},
                     "collate_fn": {"type": "default_collate"}, )" +
                 kDataset + "}"),
      11);
  EXPECT_EQ(loader->options().batch_size, 6);
  EXPECT_EQ(loader->options().num_workers, 1);
  EXPECT_EQ(loader->options().prefetch, 3);
  EXPECT_TRUE(loader->options().drop_last);
  std::vector<int64_t> in_order(20);
  for (int64_t i = 0; i < 20; ++i) in_order[size_t(i)] = i;
  EXPECT_EQ(loader->sampler().indices(0), in_order); // sampler.shuffle false
  EXPECT_EQ(loader->options().seed, 11u);
  EXPECT_EQ(loader->num_batches(), 3);
  loader->start_epoch(0);
  auto first = loader->next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->sample_idx[5].item<int64_t>(), 5);

  auto defaults = DataLoader::from_config(loader_cfg(R"({"batch_size": 4, )" + kDataset + "}"), 1);
  EXPECT_EQ(defaults->options().num_workers, 2);
  EXPECT_NE(defaults->sampler().indices(0), in_order); // DefaultSampler shuffles by default
  EXPECT_FALSE(defaults->options().drop_last);
}

TEST_F(DataLoaderTest, FromConfigErrorsNamePath) {
  auto expect_error = [](const std::string& body, const std::string& needle) {
    EXPECT_TRUE(test::has_substr(
        test::message_of<ConfigError>([&] { (void)DataLoader::from_config(loader_cfg(body), 0); }),
        needle));
  };
  expect_error("{" + kDataset + "}", "train_dataloader.batch_size");
  expect_error(R"({"batch_size": 0, )" + kDataset + "}", "train_dataloader.batch_size");
  expect_error(R"({"batch_size": 2, "num_workers": -1, )" + kDataset + "}",
               "train_dataloader.num_workers");
  expect_error(R"({"batch_size": 2, "prefetch_factor": 0, )" + kDataset + "}",
               "train_dataloader.prefetch_factor");
  expect_error(R"({"batch_size": 2, "shuffle": true, )" + kDataset + "}",
               "train_dataloader.shuffle");
  expect_error(R"({"batch_size": 2, "sampler": {"type": "InfiniteSampler"}, )" + kDataset + "}",
               "train_dataloader.sampler.type");
  expect_error(R"({"batch_size": 2, "sampler": {"type": "DefaultSampler", "shufle": true}, )" +
                   kDataset + "}",
               "train_dataloader.sampler.shufle");
  expect_error(R"({"batch_size": 2, "collate_fn": {"type": "pseudo_collate"}, )" + kDataset + "}",
               "train_dataloader.collate_fn.type");
  expect_error(R"({"batch_size": 2})", "train_dataloader.dataset");
  expect_error(R"({"batch_size": 2, "dataset": {"type": "LoaderTestDataset", "indices": 99}})",
               "train_dataloader.dataset.indices");
  expect_error(R"({"batch_size": 2, "dataset": {"type": "LoaderTestDataset", "pipeline": [
                   {"type": "RandomFlip", "prob": 0.5}, {"type": "RandomFlip", "prob": -1}]}})",
               "train_dataloader.dataset.pipeline[1].prob");
}

} // namespace
} // namespace selfsup::core
