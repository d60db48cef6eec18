// Built with AddressSanitizer. The rule (DESIGN.md, docs/architecture.md): plugins are never
// unloaded; the loader keeps every library it loaded mapped for the life of the process, so
// whatever a plugin made stays usable after the registry and the loader are gone.
//
// The proof uses a fixture built with -fno-gnu-unique, which glibc really unmaps when its
// last reference is closed (with GNU-unique symbols it would stay mapped anyway and hide a
// loader that closes libraries): first a copy of it is shown to unmap on dlclose, then the
// library the loader opened is shown to stay mapped after the registry is cleared, the loader
// destroyed and every product released, while its products keep working.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <filesystem>
#include <fstream>

#include <torch/torch.h>

#include <selfsup/core/plugin_loader.h>
#include <selfsup/sdk.h>

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

const std::string kUnloadable =
    fs::canonical(SELFSUP_TEST_FIXTURE_DIR "/unloadable/libfixture_unloadable.so").string();

// Whether `file` is mapped into this process (as /proc/self/maps shows it).
bool mapped(const std::string& file) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.size() >= file.size() &&
        line.compare(line.size() - file.size(), file.size(), file) == 0)
      return true;
  return false;
}

// Whether the dynamic loader still has `file` open (RTLD_NOLOAD opens nothing new).
bool loaded(const std::string& file) {
  void* h = ::dlopen(file.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!h) return false;
  ::dlclose(h); // the reference RTLD_NOLOAD just took
  return true;
}

std::vector<uint8_t> run(const Transform& t) {
  Sample s;
  s.img = Image(1, 2, 1);
  s.img.data = {0, 200};
  Rng rng(0);
  t.apply(s, rng); // a virtual call into the plugin's code
  return s.img.data;
}

} // namespace

TEST(LifetimeTest, TheUnloadableFixtureReallyUnmapsWhenClosed) {
  // A copy at another path is another library: what happens to it says nothing about the
  // loader's copy, but shows that closing this fixture unmaps it.
  const fs::path copy = fs::temp_directory_path() /
                        ("selfsup_lifetime_" + std::to_string(::getpid()) + "_unloadable.so");
  fs::copy_file(kUnloadable, copy, fs::copy_options::overwrite_existing);
  void* h = ::dlopen(copy.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(h, nullptr) << ::dlerror();
  EXPECT_TRUE(mapped(copy.string()));
  ASSERT_EQ(::dlclose(h), 0);
  EXPECT_FALSE(loaded(copy.string()));
  EXPECT_FALSE(mapped(copy.string())) << copy << " stayed mapped: built with GNU-unique symbols?";
  fs::remove(copy);
}

TEST(LifetimeTest, PluginsAreNeverUnloaded) {
  std::shared_ptr<Transform> product;
  {
    Registry registry;
    core::PluginLoader loader(registry);
    ASSERT_TRUE(loader.load_file(kUnloadable)) << loader.refusals().at(0).reason;
    product = registry.build<Transform>(
        Config(Json::object({{"type", "fixture_unloadable.FixtureUnloadableInvert"}})));
    registry.clear(); // every entry, with its factory, is gone
  }                   // and so is the loader
  EXPECT_TRUE(loaded(kUnloadable));
  EXPECT_TRUE(mapped(kUnloadable));
  EXPECT_EQ(run(*product), (std::vector<uint8_t>{255, 55}));
  product.reset(); // its destructor runs in the plugin's code
  // Its last product is gone, and still the library stays.
  EXPECT_TRUE(loaded(kUnloadable));
  EXPECT_TRUE(mapped(kUnloadable));
  // Loading it again (another loader, another registry) finds the same mapped library.
  Registry registry;
  core::PluginLoader loader(registry);
  ASSERT_TRUE(loader.load_file(kUnloadable));
  EXPECT_EQ(
      run(*registry.build<Transform>(Config(Json::object({{"type", "FixtureUnloadableInvert"}})))),
      (std::vector<uint8_t>{255, 55}));
}

TEST(LifetimeTest, ModulesOutliveRegistryAndLoader) {
  std::shared_ptr<Backbone> backbone;
  std::shared_ptr<Neck> neck;
  std::shared_ptr<Loss> loss;
  {
    Registry registry;
    core::PluginLoader loader(registry);
    loader.load_directory(SELFSUP_TEST_PLUGIN_DIR);
    ASSERT_TRUE(loader.refusals().empty());
    backbone = registry.build<Backbone>(Config(Json::parse(R"({"type": "ResNet", "depth": 18,
            "in_channels": 1, "base_channels": 4, "stem": "cifar"})",
                                                           "t")));
    neck = registry.build<Neck>(Config(Json::parse(R"({"type": "NonLinearNeck",
            "in_channels": 32, "hid_channels": 16, "out_channels": 8})",
                                                   "t")));
    loss = registry.build<Loss>(Config(Json::parse(R"({"type": "CosineSimilarityLoss"})", "t")));
    registry.clear();
  }
  auto z1 = neck->forward(backbone->forward(torch::randn({4, 1, 16, 16})))[0];
  auto z2 = neck->forward(backbone->forward(torch::randn({4, 1, 16, 16})))[0];
  auto l = loss->forward(z1, z2.detach());
  l.backward();
  EXPECT_TRUE(std::isfinite(l.item<double>()));
  std::ostringstream printed;
  backbone->pretty_print(printed); // a virtual call into the plugin's code
  EXPECT_FALSE(printed.str().empty());
  backbone.reset(); // destructors run in the plugins' code
  neck.reset();
  loss.reset();
}
