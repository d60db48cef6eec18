// `selfsup list` (the real binary) beside plugins that crash on load (issue 7, point 1) and
// with plugin folders others can write to (point 2).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include <selfsup/json.h>

#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

struct Result {
  int code = -1;
  std::string output; // stdout (and stderr unless `quiet`)
};

Result run(const std::string& args, const std::string& env, bool with_stderr = true) {
  const std::string cmd = env + " " + std::string(SELFSUP_TEST_BIN_DIR) + "/selfsup " + args +
                          (with_stderr ? " 2>&1" : " 2>/dev/null");
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string fixture(const std::string& name) {
  return std::string(SELFSUP_TEST_FIXTURE_DIR) + "/libfixture_" + name + ".so";
}

} // namespace

TEST(PluginListTest, ListExitsZeroNamingEachCrashingPluginAndListsTheGoodOnes) {
  test::TempDir tmp;
  fs::permissions(tmp.path(), fs::perms::owner_all, fs::perm_options::replace);
  const fs::path plugins = tmp.path() / "plugins";
  fs::create_directory(plugins);
  fs::copy_file(fixture("good"), plugins / "libfixture_good.so");
  const std::pair<const char*, const char*> ways[] = {
      {"segv", "crashed with SIGSEGV"},
      {"abort", "crashed with SIGABRT"},
      {"throw", "crashed with SIGABRT"},
      {"exit", "exited with status "},
      {"hang", "hangs while being opened"},
      {"segv_register",
       "crashed with SIGSEGV (signal 11, Segmentation fault) in its register function"}};
  for (const auto& [way, _] : ways) {
    const std::string name = std::string("libfixture_x_crash_") + way + ".so";
    fs::copy_file(std::string(SELFSUP_TEST_FIXTURE_DIR) + "/crashing/" + name, plugins / name);
  }
  const std::string env = "SELFSUP_PLUGIN_CACHE=" + (tmp.path() / "cache.json").string() +
                          " SELFSUP_PLUGIN_SCAN_TIMEOUT=1.5 SELFSUP_PLUGIN_PATH=";
  const Result r = run("list --plugin-dir " + plugins.string(), env);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(test::has_substr(r.output, "FixtureInvert"));
  EXPECT_TRUE(test::has_substr(r.output, "fixture_good 1.2.3"));
  EXPECT_TRUE(test::has_substr(r.output, "ResNet")); // the build's own plugins too
  for (const auto& [way, words] : ways)
    EXPECT_TRUE(test::has_substr(
        r.output,
        (plugins / (std::string("libfixture_x_crash_") + way + ".so: ")).string() + words));

  // The second start takes every verdict from the cache.
  const Result again = run("list --json --plugin-dir " + plugins.string(), env, false);
  ASSERT_EQ(again.code, 0) << again.output;
  const Json j = Json::parse(again.output, "list --json");
  EXPECT_EQ(j.find("scan")->find("scanned")->as_int(), 0);
  EXPECT_EQ(j.find("scan")->find("cached")->as_int(),
            int64_t(j.find("plugins")->size() + j.find("refused")->size()));
  EXPECT_EQ(j.find("refused")->size(), 6u);
}

TEST(PluginListTest, PluginPathEntriesObeyThePermissionRuleUnlessAllowed) {
  test::TempDir tmp;
  fs::permissions(tmp.path(), fs::perms::owner_all, fs::perm_options::replace);
  const fs::path open = tmp.path() / "open";
  fs::create_directory(open);
  fs::copy_file(fixture("good"), open / "libfixture_good.so");
  fs::permissions(open, fs::perms(0777), fs::perm_options::replace);
  const std::string env = "SELFSUP_PLUGIN_CACHE=off SELFSUP_PLUGIN_PATH=" + open.string();
  const Result refused = run("list", env);
  ASSERT_EQ(refused.code, 0) << refused.output;
  EXPECT_TRUE(test::has_substr(refused.output, open.string() +
                                                   ": plugin folder refused: the "
                                                   "plugin folder " +
                                                   open.string() + " is world-writable"));
  EXPECT_EQ(refused.output.find("FixtureInvert"), std::string::npos) << refused.output;
  const Result allowed = run("list --allow-insecure-plugins", env);
  ASSERT_EQ(allowed.code, 0) << allowed.output;
  EXPECT_TRUE(test::has_substr(allowed.output, "FixtureInvert"));
}
