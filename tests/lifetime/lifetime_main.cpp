// Built with AddressSanitizer: modules built by plugins stay usable after every registry
// reference to their libraries is gone, because each product holds its library.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <selfsup/core/plugin_loader.h>
#include <selfsup/sdk.h>

using namespace selfsup;

TEST(LifetimeTest, ProductsOutliveRegistryAndLoader) {
  std::shared_ptr<Backbone> backbone;
  std::shared_ptr<Neck> neck;
  std::shared_ptr<Loss> loss;
  {
    Registry registry;
    core::PluginLoader loader(registry);
    loader.load_directory(SELFSUP_TEST_PLUGIN_DIR);
    ASSERT_TRUE(loader.refusals().empty());
    backbone = std::static_pointer_cast<Backbone>(registry.build_any(
        "backbone", Config(Json::parse(R"({"type": "ResNet", "depth": 18, "in_channels": 1,
            "base_channels": 4, "stem": "cifar"})",
                                       "t"))));
    neck = std::static_pointer_cast<Neck>(registry.build_any(
        "neck", Config(Json::parse(R"({"type": "NonLinearNeck", "in_channels": 32,
            "hid_channels": 16, "out_channels": 8})",
                                   "t"))));
    loss = std::static_pointer_cast<Loss>(registry.build_any(
        "loss", Config(Json::parse(R"({"type": "CosineSimilarityLoss"})", "t"))));
    registry.clear(); // every entry, and its reference to the library, is gone
  }                   // the loader is gone too
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
