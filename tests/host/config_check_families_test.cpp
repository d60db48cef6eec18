// Issue 13, point 5: every shipped config of the clustering and pretext families (SwAV,
// DeepCluster, ODC, RelativeLoc, RotationPred) passes `selfsup config --check --no-data`, and
// each MMSelfSup 1.0 recipe of these families ships as exactly what `selfsup convert-config`
// makes of upstream's .py file (where /work/anchors has MMSelfSup's configs).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <selfsup/json.h>

#include "test_support.h"
#include "tiny_run.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

// The config folders of the five families (MMSelfSup's folder names).
const std::vector<std::string>& families() {
  static const std::vector<std::string> kFolders = {"swav", "deepcluster", "odc", "relative_loc",
                                                    "rotation_pred"};
  return kFolders;
}

std::vector<fs::path> files_in(const fs::path& dir, const std::string& extension) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == extension) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace

TEST(ConfigCheckTest, EveryClusteringAndPretextConfigPassesWithoutData) {
  const fs::path configs = fs::path(SELFSUP_SOURCE_DIR) / "configs";
  size_t checked = 0;
  for (const auto& folder : families()) {
    const auto files = files_in(configs / folder, ".json");
    EXPECT_GE(files.size(), 3u) << folder << ": a recipe, a Fashion-MNIST config and its demo";
    for (const auto& f : files) {
      const test::CliResult r = test::run_selfsup("config " + f.string() + " --check --no-data");
      EXPECT_EQ(r.code, 0) << f << ":\n" << r.output;
      EXPECT_TRUE(test::has_substr(r.output, "config OK: ")) << f << ":\n" << r.output;
      ++checked;
    }
  }
  EXPECT_GE(checked, 16u);
}

TEST(ConfigCheckTest, ClusteringAndPretextRecipesAreUpstreamsConverted) {
  const fs::path upstream = "/work/anchors/mmselfsup/configs/selfsup";
  if (!fs::is_directory(upstream))
    GTEST_SKIP() << "MMSelfSup 1.0's configs are not at " << upstream;
  test::TempDir tmp;
  size_t compared = 0;
  for (const auto& folder : families()) {
    for (const auto& py : files_in(upstream / folder, ".py")) {
      const fs::path ours =
          fs::path(SELFSUP_SOURCE_DIR) / "configs" / folder / (py.stem().string() + ".json");
      ASSERT_TRUE(fs::exists(ours)) << "no shipped config for " << py;
      const fs::path out = tmp.path() / "converted.json";
      const test::CliResult r =
          test::run_selfsup("convert-config " + py.string() + " -o " + out.string());
      ASSERT_EQ(r.code, 0) << py << ": " << r.output;
      const Json converted = Json::parse(test::read_text(out), out.string());
      const Json shipped = Json::parse(test::read_text(ours), ours.string());
      EXPECT_EQ(shipped, converted) << ours << " is not `selfsup convert-config " << py << "`";
      ++compared;
    }
  }
  EXPECT_EQ(compared, 7u); // SwAV 1, DeepCluster 2, ODC 1, RelativeLoc 1, RotationPred 2
}
