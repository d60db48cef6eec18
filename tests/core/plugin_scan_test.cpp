// The safe scan (issue 7, point 1): plugin files are first opened in the helper process
// selfsup-plugin-scanner; one that crashes, aborts, throws, exits or hangs there is refused in
// one line and the host goes on. The registry cache keeps each verdict until the file changes.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <selfsup/core/plugin_loader.h>
#include <selfsup/errors.h>
#include <selfsup/json.h>

#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) {
  return std::string(SELFSUP_TEST_FIXTURE_DIR) + "/libfixture_" + name + ".so";
}
std::string crashing(const std::string& way) {
  return std::string(SELFSUP_TEST_FIXTURE_DIR) + "/crashing/libfixture_x_crash_" + way + ".so";
}
const char* const kWays[] = {"abort", "exit", "hang", "segv", "segv_register", "throw"};

// A temp folder only we can write (its parents, /tmp among them, are sticky or safe).
struct SafeDir {
  test::TempDir tmp;
  SafeDir() { fs::permissions(tmp.path(), fs::perms::owner_all, fs::perm_options::replace); }
  [[nodiscard]] fs::path path() const { return tmp.path(); }
};

struct Scan {
  Registry registry;
  core::PluginLoader loader{registry};
  std::vector<std::string> lines, warnings;
  explicit Scan(const std::string& cache, double timeout = 1.5) {
    loader.on_refusal = [this](const std::string& l) { lines.push_back(l); };
    loader.on_warning = [this](const std::string& l) { warnings.push_back(l); };
    loader.set_cache_path(cache);
    loader.set_scan_timeout(timeout);
  }
  bool has(const std::string& type) { return !registry.providers("transform", type).empty(); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& p : loader.plugins()) out.push_back(p.name);
    return out;
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// What each way of dying is reported as.
std::vector<std::string> expected_words(const std::string& way) {
  if (way == "segv")
    return {"crashed with SIGSEGV (signal 11", "while being opened (in a static initializer)"};
  if (way == "segv_register")
    return {"crashed with SIGSEGV (signal 11", "in its register function"};
  if (way == "abort")
    return {"crashed with SIGABRT (signal 6", "while being opened (in a static initializer)"};
  if (way == "throw") return {"crashed with SIGABRT", "fixture static initializer throws"};
  if (way == "exit")
    // (status 0 as the fixture says; a leak checker at exit may change the status)
    return {"exited with status ",
            "while being opened (in a static initializer), without answering"};
  return {"hangs while being opened (in a static initializer): no answer within 1.5 s, killed"};
}

} // namespace

TEST(PluginScanTest, EachCrashingPluginAloneIsRefusedNamingHowAndTheHostGoesOn) {
  for (const std::string way : kWays) {
    SCOPED_TRACE(way);
    Scan s(""); // no cache: every file is scanned
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(s.loader.load_file(crashing(way)));
    const double took = seconds_since(t0);
    ASSERT_EQ(s.loader.refusals().size(), 1u);
    const std::string& why = s.loader.refusals()[0].reason;
    for (const auto& w : expected_words(way)) EXPECT_TRUE(test::has_substr(why, w));
    ASSERT_EQ(s.lines.size(), 1u);
    EXPECT_TRUE(test::has_substr(s.lines[0], "libfixture_x_crash_" + way + ".so"));
    EXPECT_EQ(s.lines[0].find('\n'), std::string::npos);
    EXPECT_FALSE(s.has("FixtureCrashingInvert"));
    EXPECT_EQ(s.loader.scan_stats().scanned, 1u);
    if (way == "hang") {
      EXPECT_GE(took, 1.4) << "it was not given its time";
    }
    // This process goes on, and the same loader loads a good plugin after it.
    EXPECT_TRUE(s.loader.load_file(fixture("good")));
    EXPECT_TRUE(s.has("FixtureInvert"));
  }
}

TEST(PluginScanTest, CrashingPluginsBesideGoodOnesAndTheCacheRemembersEveryVerdict) {
  SafeDir dir;
  const fs::path plugins = dir.path() / "plugins";
  fs::create_directory(plugins);
  for (const char* good : {"good", "good_twin"})
    fs::copy_file(fixture(good), plugins / fs::path(fixture(good)).filename());
  for (const std::string way : kWays)
    fs::copy_file(crashing(way), plugins / fs::path(crashing(way)).filename());
  const std::string cache = (dir.path() / "cache" / "plugin-registry.json").string();

  std::vector<core::PluginRefusal> first;
  {
    Scan s(cache);
    s.loader.load_directory(plugins.string());
    EXPECT_EQ(s.names(), (std::vector<std::string>{"fixture_good", "fixture_good_twin"}));
    EXPECT_TRUE(s.has("FixtureInvert"));
    EXPECT_TRUE(s.has("FixtureTwinInvert"));
    EXPECT_FALSE(s.has("FixtureCrashingInvert"));
    ASSERT_EQ(s.loader.refusals().size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
      EXPECT_EQ(s.loader.refusals()[i].file,
                (plugins / fs::path(crashing(kWays[i])).filename()).string());
      for (const auto& w : expected_words(kWays[i]))
        EXPECT_TRUE(test::has_substr(s.loader.refusals()[i].reason, w));
    }
    EXPECT_EQ(s.loader.scan_stats().scanned, 8u);
    EXPECT_EQ(s.loader.scan_stats().cached, 0u);
    EXPECT_TRUE(s.warnings.empty()) << s.warnings[0];
    first = s.loader.refusals();
  }
  // The cache: a file of ours alone, in a folder of ours alone, valid JSON.
  struct stat st {};
  ASSERT_EQ(::lstat(cache.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 077, 0u);
  ASSERT_EQ(::stat(fs::path(cache).parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u);
  EXPECT_NO_THROW((void)Json::parse(test::read_text(cache), cache));

  {
    // Unchanged files: nothing is scanned (the hang costs nothing), same verdicts.
    Scan s(cache);
    const auto t0 = std::chrono::steady_clock::now();
    s.loader.load_directory(plugins.string());
    EXPECT_LT(seconds_since(t0), 1.4) << "a cached hang was waited for again";
    EXPECT_EQ(s.loader.scan_stats().scanned, 0u);
    EXPECT_EQ(s.loader.scan_stats().cached, 8u);
    EXPECT_EQ(s.names(), (std::vector<std::string>{"fixture_good", "fixture_good_twin"}));
    ASSERT_EQ(s.loader.refusals().size(), first.size());
    for (size_t i = 0; i < first.size(); ++i) {
      EXPECT_EQ(s.loader.refusals()[i].file, first[i].file);
      EXPECT_EQ(s.loader.refusals()[i].reason, first[i].reason);
    }
  }
  // A touched file is scanned again; only that one.
  const fs::path touched = plugins / "libfixture_good.so";
  fs::last_write_time(touched, fs::last_write_time(touched) + std::chrono::seconds(5));
  {
    Scan s(cache);
    s.loader.load_directory(plugins.string());
    EXPECT_EQ(s.loader.scan_stats().scanned, 1u);
    EXPECT_EQ(s.loader.scan_stats().cached, 7u);
    EXPECT_TRUE(s.has("FixtureInvert"));
  }
  // A file replaced by another with the same name is scanned again too.
  fs::remove(plugins / "libfixture_x_crash_segv.so");
  fs::copy_file(fixture("shared_type"), plugins / "libfixture_x_crash_segv.so");
  {
    Scan s(cache);
    s.loader.load_directory(plugins.string());
    EXPECT_EQ(s.loader.scan_stats().scanned, 1u);
    EXPECT_TRUE(s.has("FixtureSharedFresh"));
    EXPECT_EQ(s.loader.refusals().size(), 5u);
  }
}

TEST(PluginScanTest, AHangJudgedWithAShorterTimeoutIsScannedAgain) {
  SafeDir dir;
  const std::string cache = (dir.path() / "cache.json").string();
  {
    Scan s(cache, 0.5);
    EXPECT_FALSE(s.loader.load_file(crashing("hang")));
    EXPECT_TRUE(test::has_substr(s.loader.refusals().at(0).reason, "no answer within 0.5 s"));
  }
  {
    Scan s(cache, 0.5);
    EXPECT_FALSE(s.loader.load_file(crashing("hang")));
    EXPECT_EQ(s.loader.scan_stats().cached, 1u);
  }
  {
    Scan s(cache, 1);
    EXPECT_FALSE(s.loader.load_file(crashing("hang")));
    EXPECT_EQ(s.loader.scan_stats().scanned, 1u);
    EXPECT_TRUE(test::has_substr(s.loader.refusals().at(0).reason, "no answer within 1 s"));
  }
}

TEST(PluginScanTest, CorruptOrForeignCacheIsIgnoredAndReplaced) {
  SafeDir dir;
  const fs::path cache = dir.path() / "cache.json";
  for (const std::string& bad :
       {std::string("{\"version\": 1, \"files\": {\"/x\": "), std::string("[]"),
        std::string("{\"version\": 99, \"files\": {}}"),
        std::string("{\"version\": 1, \"files\": {\"") + fs::canonical(fixture("good")).string() +
            "\": {\"ok\": \"yes\", \"size\": \"big\"}}}",
        std::string("\x7f"
                    "ELF\x01\x02 binary garbage\xff\xfe",
                    20)}) {
    SCOPED_TRACE(bad);
    test::write_file(cache, bad);
    fs::permissions(cache, fs::perms::owner_read | fs::perms::owner_write,
                    fs::perm_options::replace);
    Scan s(cache.string());
    EXPECT_TRUE(s.loader.load_file(fixture("good")));
    EXPECT_EQ(s.loader.scan_stats().scanned, 1u);
    Json j = Json::parse(test::read_text(cache), cache.string()); // replaced by a valid one
    EXPECT_EQ(j.find("version")->as_int(), 1);
    EXPECT_NE(j.find("files")->find(fs::canonical(fixture("good")).string()), nullptr);
  }
  // A cache others can write is not trusted.
  fs::permissions(cache, fs::perms::others_write, fs::perm_options::add);
  Scan s(cache.string());
  EXPECT_TRUE(s.loader.load_file(fixture("good")));
  EXPECT_EQ(s.loader.scan_stats().scanned, 1u);
  ASSERT_EQ(s.warnings.size(), 1u);
  EXPECT_TRUE(test::has_substr(s.warnings[0], "writable by others"));
}

TEST(PluginScanTest, NeverWritesThroughASymlinkPlantedAtTheCachePath) {
  SafeDir dir;
  const fs::path precious = dir.path() / "precious.txt";
  test::write_file(precious, "keep me\n");
  const fs::path cache = dir.path() / "cache.json";
  fs::create_symlink(precious, cache);
  Scan s(cache.string());
  EXPECT_TRUE(s.loader.load_file(fixture("good")));
  EXPECT_EQ(s.loader.scan_stats().scanned, 1u);
  EXPECT_EQ(test::read_text(precious), "keep me\n");
  EXPECT_FALSE(fs::is_symlink(cache));
  EXPECT_NO_THROW((void)Json::parse(test::read_text(cache), cache.string()));
  ASSERT_EQ(s.warnings.size(), 1u);
  EXPECT_TRUE(test::has_substr(s.warnings[0], "symbolic link"));
}

TEST(PluginScanTest, CacheOffScansEveryTimeAndWritesNothing) {
  SafeDir dir;
  for (int i = 0; i < 2; ++i) {
    Scan s("");
    EXPECT_TRUE(s.loader.load_file(fixture("good")));
    EXPECT_EQ(s.loader.scan_stats().scanned, 1u);
    EXPECT_EQ(s.loader.scan_stats().cached, 0u);
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(PluginScanTest, CachePathAndTimeoutFromTheEnvironment) {
  auto get = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  const auto saved_cache = get("SELFSUP_PLUGIN_CACHE"), saved_xdg = get("XDG_CACHE_HOME"),
             saved_timeout = get("SELFSUP_PLUGIN_SCAN_TIMEOUT");
  ::setenv("SELFSUP_PLUGIN_CACHE", "off", 1);
  EXPECT_EQ(core::PluginLoader::default_cache_path(), "");
  ::setenv("SELFSUP_PLUGIN_CACHE", "", 1);
  EXPECT_EQ(core::PluginLoader::default_cache_path(), "");
  ::setenv("SELFSUP_PLUGIN_CACHE", "/somewhere/cache.json", 1);
  EXPECT_EQ(core::PluginLoader::default_cache_path(), "/somewhere/cache.json");
  ::unsetenv("SELFSUP_PLUGIN_CACHE");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(core::PluginLoader::default_cache_path(), "/xdg/selfsup/plugin-registry.json");
  ::setenv("SELFSUP_PLUGIN_SCAN_TIMEOUT", "soon", 1);
  {
    Registry registry;
    core::PluginLoader loader(registry);
    loader.set_cache_path("");
    EXPECT_TRUE(test::has_substr(
        test::message_of<ConfigError>([&] { loader.load_file(fixture("good")); }),
        "SELFSUP_PLUGIN_SCAN_TIMEOUT: expected a number of seconds in (0, 86400], got 'soon'"));
  }
  ::setenv("SELFSUP_PLUGIN_SCAN_TIMEOUT", "0.5", 1);
  {
    Registry registry;
    core::PluginLoader loader(registry);
    loader.on_refusal = nullptr;
    loader.set_cache_path("");
    EXPECT_FALSE(loader.load_file(crashing("hang")));
    EXPECT_TRUE(test::has_substr(loader.refusals().at(0).reason, "no answer within 0.5 s"));
  }
  auto restore = [](const char* name, const std::optional<std::string>& v) {
    if (v)
      ::setenv(name, v->c_str(), 1);
    else
      ::unsetenv(name);
  };
  restore("SELFSUP_PLUGIN_CACHE", saved_cache);
  restore("XDG_CACHE_HOME", saved_xdg);
  restore("SELFSUP_PLUGIN_SCAN_TIMEOUT", saved_timeout);
}

TEST(PluginScanTest, EmptyAndTextSoFilesAreRefusedClearly) {
  SafeDir dir;
  test::write_file(dir.path() / "libempty.so", "");
  test::write_file(dir.path() / "libtext.so", "#!/bin/sh\necho not a library\n");
  Scan s("");
  s.loader.load_directory(dir.path().string());
  ASSERT_EQ(s.loader.refusals().size(), 2u);
  EXPECT_TRUE(test::has_substr(s.loader.refusals()[0].reason,
                               "not a shared library: the file is empty (0 bytes)"));
  EXPECT_TRUE(test::has_substr(s.loader.refusals()[1].reason,
                               "not a shared library: no ELF header (it starts with \"#!/bin/sh "));
  for (const auto& r : s.loader.refusals())
    EXPECT_EQ(r.reason.find("basic_ios"), std::string::npos) << r.reason;
}

TEST(PluginScanTest, SymlinkLoopsDanglingLinksAndFoldersNamedSoAreListedAsRefused) {
  SafeDir dir;
  fs::create_symlink("liba.so", dir.path() / "libb.so");
  fs::create_symlink("libb.so", dir.path() / "liba.so");
  fs::create_symlink("nowhere.so", dir.path() / "libdangling.so");
  fs::create_directory(dir.path() / "libdir.so");
  Scan s("");
  s.loader.load_directory(dir.path().string());
  ASSERT_EQ(s.loader.refusals().size(), 4u);
  EXPECT_TRUE(test::has_substr(s.loader.refusals()[0].reason, "a symbolic link loop"));
  EXPECT_TRUE(test::has_substr(s.loader.refusals()[1].reason, "a symbolic link loop"));
  EXPECT_TRUE(test::has_substr(s.loader.refusals()[2].reason, "a dangling symbolic link"));
  EXPECT_TRUE(test::has_substr(s.loader.refusals()[3].reason, "a directory, not a plugin file"));
  EXPECT_EQ(s.lines.size(), 4u);
}
