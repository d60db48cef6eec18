#include "plugins/plugin_test_support.h"

#include <filesystem>
#include <fstream>
#include <iterator>

namespace selfsup::test {

TensorDict load_fixture(const std::string& relative) {
  const std::filesystem::path path = std::filesystem::path(SELFSUP_SOURCE_DIR) / relative;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict();
}

torch::Tensor ref(const TensorDict& d, const std::string& key) {
  EXPECT_TRUE(d.contains(key)) << key;
  return d.at(key).toTensor();
}

void expect_allclose(const torch::Tensor& ours, const torch::Tensor& theirs, double rtol,
                     double atol, const std::string& what) {
  ASSERT_EQ(ours.sizes(), theirs.sizes()) << what;
  const auto a = ours.to(torch::kDouble), b = theirs.to(torch::kDouble);
  EXPECT_TRUE(torch::allclose(a, b, rtol, atol))
      << what << ": max abs difference " << (a - b).abs().max().item<double>();
}

torch::Tensor l2_rows(const torch::Tensor& x) {
  return x / x.norm(2, 1, true);
}

void add_pass_backbone(Registrar& r) {
  r.add<Backbone>(
      "TestPassBackbone", [](const Config&) { return std::make_shared<PassBackbone>(); },
      Schema("test"));
}

void add_flatten_neck(Registrar& r) {
  r.add<Neck>(
      "TestFlattenNeck", [](const Config&) { return std::make_shared<FlattenNeck>(); },
      Schema("test"));
}

std::string model_config_error(const LocalRegistry& registry, const Json& cfg) {
  return message_of<ConfigError>([&] { (void)build<Algorithm>(registry.config(cfg, "model")); });
}

Json two_view_fmnist_loader(const std::filesystem::path& data_root) {
  Json loader = Json::parse(R"({"batch_size": 16, "num_workers": 2, "drop_last": true,
      "dataset": {"type": "FashionMNIST", "split": "train", "pipeline": [
        {"type": "MultiView", "num_views": [2], "transforms": [[
          {"type": "RandomResizedCrop", "size": 16, "scale": [0.2, 1.0]},
          {"type": "RandomFlip", "prob": 0.5}]]},
        {"type": "PackSelfSupInputs"}]}})",
                            "two_view_fmnist_loader");
  loader.find("dataset")->set("data_root", data_root.string());
  return loader;
}

TinyFmnistRun::TinyFmnistRun(int n_train, int n_test) : data(root.path() / "data") {
  make_fake_fmnist(data, n_train, n_test);
  options.work_dir = (root.path() / "run").string();
  options.threads = 2;
}

Algorithm& FakeRun::model() {
  throw ValueError("FakeRun: no model");
}
torch::optim::Optimizer& FakeRun::optimizer() {
  throw ValueError("FakeRun: no optimizer");
}
const std::string& FakeRun::param_group_name(size_t) const {
  throw ValueError("FakeRun: no optimizer");
}
const Dataset& FakeRun::train_dataset() const {
  throw ValueError("FakeRun: no dataset");
}
Sampler& FakeRun::train_sampler() {
  throw ValueError("FakeRun: no sampler");
}

} // namespace selfsup::test
