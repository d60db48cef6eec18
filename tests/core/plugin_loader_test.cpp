#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <selfsup/core/plugin_loader.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/version.h>

#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) {
  return std::string(SELFSUP_TEST_FIXTURE_DIR) + "/libfixture_" + name + ".so";
}

struct Loaded {
  Registry registry;
  core::PluginLoader loader{registry};
  std::vector<std::string> lines;
  Loaded() {
    loader.on_refusal = [this](const std::string& l) { lines.push_back(l); };
  }
  bool has(const std::string& type) { return !registry.providers("transform", type).empty(); }
};

// The value of `key` in this build's own fingerprint ("abi=1;headers=…;torch=…;…").
std::string host_field(const std::string& key) {
  const std::string fp = SELFSUP_BUILD_FINGERPRINT;
  const std::string start = key + "=";
  for (size_t at = 0; at < fp.size();) {
    size_t end = fp.find(';', at);
    if (end == std::string::npos) end = fp.size();
    if (fp.compare(at, start.size(), start) == 0)
      return fp.substr(at + start.size(), end - at - start.size());
    at = end + 1;
  }
  ADD_FAILURE() << "no field '" << key << "' in the fingerprint " << fp;
  return "";
}

// What libfixture_x_bad_fingerprint.so claims after its (matching) ABI field.
const char* const kForeignFields = ";headers=0123456789abcdef;torch=2.1;cxx11abi=0;compiler=gcc-9";

// Loads `good` then `bad` and checks that `bad` was refused with `reason` and left nothing.
void expect_refused(const std::string& bad, const std::string& reason,
                    const std::vector<std::string>& absent_types) {
  Loaded l;
  ASSERT_TRUE(l.loader.load_file(fixture("good")));
  EXPECT_FALSE(l.loader.load_file(fixture(bad)));
  ASSERT_EQ(l.loader.refusals().size(), 1u);
  EXPECT_NE(l.loader.refusals()[0].reason.find(reason), std::string::npos)
      << l.loader.refusals()[0].reason;
  ASSERT_EQ(l.lines.size(), 1u);
  EXPECT_NE(l.lines[0].find("libfixture_" + bad + ".so"), std::string::npos) << l.lines[0];
  EXPECT_EQ(l.lines[0].find('\n'), std::string::npos);
  for (const auto& t : absent_types) EXPECT_FALSE(l.has(t)) << t;
  EXPECT_TRUE(l.has("FixtureInvert"));
  EXPECT_EQ(l.loader.plugins().size(), 1u);
}

} // namespace

TEST(PluginLoaderTest, LoadsGoodPluginWithProvenance) {
  Loaded l;
  ASSERT_TRUE(l.loader.load_file(fixture("good")));
  ASSERT_EQ(l.loader.plugins().size(), 1u);
  const auto& p = l.loader.plugins()[0];
  EXPECT_EQ(p.name, "fixture_good");
  EXPECT_EQ(p.version, "1.2.3");
  EXPECT_EQ(p.types, std::vector<std::string>{"transform/FixtureInvert"});
  const RegistryEntry* e = l.registry.find("transform", "FixtureInvert");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->plugin, "fixture_good");
  EXPECT_EQ(e->file, fs::canonical(fixture("good")).string());
  // The product works and keeps its library referenced.
  auto t = l.registry.build<Transform>(Config(Json::object({{"type", "FixtureInvert"}})));
  Sample s;
  s.img = Image(1, 2, 1);
  s.img.data = {0, 200};
  Rng rng(0);
  t->apply(s, rng);
  EXPECT_EQ(s.img.data, (std::vector<uint8_t>{255, 55}));
  // The same file reached twice loads once.
  EXPECT_TRUE(l.loader.load_file(fixture("good")));
  EXPECT_EQ(l.loader.plugins().size(), 1u);
}

TEST(PluginLoaderTest, RefusesNotElf) {
  expect_refused("x_not_elf", "not a shared library", {});
}
TEST(PluginLoaderTest, RefusesMissingEntryPoint) {
  expect_refused("x_no_entry", "no selfsup entry point", {});
}
TEST(PluginLoaderTest, RefusesAbiMismatchNamingBothVersions) {
  // The fixture claims SELFSUP_ABI_VERSION + 41.
  expect_refused("x_bad_abi",
                 "plugin ABI version " + std::to_string(SELFSUP_ABI_VERSION + 41) +
                     ", this selfsup expects " + std::to_string(SELFSUP_ABI_VERSION),
                 {});
}
TEST(PluginLoaderTest, RefusesFingerprintMismatch) {
  expect_refused("x_bad_fingerprint",
                 "[abi=" + host_field("abi") + kForeignFields + "], this selfsup is [" +
                     SELFSUP_BUILD_FINGERPRINT + "]",
                 {});
}
TEST(PluginLoaderTest, RefusesThrowingRegisterWithoutHalfRegistering) {
  expect_refused("x_throws", "fixture failure while registering", {"FixtureThrowsInvert"});
}
TEST(PluginLoaderTest, RefusesATypeRegisteredTwiceByOnePluginWithoutHalfRegistering) {
  expect_refused("x_dup_type", "transform type 'FixtureDupTwice' is registered twice by the same",
                 {"FixtureDupFresh", "FixtureDupTwice"});
}

TEST(PluginLoaderTest, TwoPluginsMayProvideOneTypeNameAndPluginDotTypeChooses) {
  Loaded l;
  ASSERT_TRUE(l.loader.load_file(fixture("good")));
  ASSERT_TRUE(l.loader.load_file(fixture("shared_type")));
  EXPECT_TRUE(l.loader.refusals().empty());
  ASSERT_EQ(l.loader.plugins().size(), 2u);
  EXPECT_EQ(l.loader.plugins()[1].types,
            (std::vector<std::string>{"transform/FixtureInvert", "transform/FixtureSharedFresh"}));
  auto run = [&](const std::string& type) {
    Sample s;
    s.img = Image(1, 2, 1);
    s.img.data = {0, 200};
    Rng rng(0);
    l.registry.build<Transform>(Config(Json::object({{"type", type}})))->apply(s, rng);
    return s.img.data;
  };
  EXPECT_EQ(run("fixture_good.FixtureInvert"), (std::vector<uint8_t>{255, 55}));
  EXPECT_EQ(run("fixture_shared_type.FixtureInvert"), (std::vector<uint8_t>{7, 7}));
  EXPECT_EQ(run("FixtureSharedFresh"), (std::vector<uint8_t>{255, 55})); // one provider
  // A bare name two plugins provide is an error at `type` naming both plugins and files.
  Json j = Json::parse(R"({"pipeline": [{"type": "FixtureInvert"}]})", "t");
  std::string msg =
      test::message_of([&] { (void)l.registry.build<Transform>(Config(j)["pipeline"].at(0)); });
  for (const std::string& part :
       {std::string("pipeline[0].type: transform type 'FixtureInvert' is provided by 2 plugins"),
        "plugin 'fixture_good' (" + fs::canonical(fixture("good")).string() + ")",
        "plugin 'fixture_shared_type' (" + fs::canonical(fixture("shared_type")).string() + ")",
        std::string("write 'fixture_good.FixtureInvert' or 'fixture_shared_type.FixtureInvert'")})
    EXPECT_NE(msg.find(part), std::string::npos) << part << "\n in: " << msg;
}
TEST(PluginLoaderTest, RefusesDuplicatePluginName) {
  expect_refused("x_dup_name", "plugin name 'fixture_good' is already provided",
                 {"FixtureDupNameInvert"});
}
TEST(PluginLoaderTest, RefusesAPluginNameTheRegistryAlreadyHas) {
  // The plugin name is the scope of its types ("fixture_good.Type"), so a name that another
  // loader (or the engine, as "core") put into the same registry is refused too.
  Loaded l;
  Registrar other("fixture_good", "elsewhere.so");
  other.add<Transform>(
      "Other", [](const Config&) { return std::shared_ptr<Transform>(); }, Schema("doc"));
  other.commit(l.registry);
  EXPECT_FALSE(l.loader.load_file(fixture("good")));
  ASSERT_EQ(l.loader.refusals().size(), 1u);
  EXPECT_NE(l.loader.refusals()[0].reason.find(
                "plugin name 'fixture_good' is already provided by elsewhere.so"),
            std::string::npos)
      << l.loader.refusals()[0].reason;
  EXPECT_FALSE(l.has("FixtureInvert"));
}
TEST(PluginLoaderTest, RefusesPluginThatRegistersNothing) {
  expect_refused("x_empty", "registers no types", {});
}

TEST(PluginLoaderTest, FolderWithBrokenFilesStillLoadsGoodOnes) {
  test::TempDir dir;
  fs::permissions(dir.path(), fs::perms::owner_all, fs::perm_options::replace);
  for (const auto& entry : fs::directory_iterator(SELFSUP_TEST_FIXTURE_DIR))
    if (entry.path().extension() == ".so")
      fs::copy_file(entry.path(), dir.path() / entry.path().filename());
  test::write_file(dir.path() / "README.txt", "not a plugin, not considered");
  fs::create_directory(dir.path() / "libdir.so"); // not a plugin file: refused, saying so
  Loaded l;
  l.loader.load_directory(dir.str());
  std::vector<std::string> names;
  for (const auto& p : l.loader.plugins()) names.push_back(p.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"fixture_good", "fixture_good_twin", "fixture_shared_type"}));
  EXPECT_EQ(l.loader.refusals().size(), 9u);
  EXPECT_EQ(l.lines.size(), 9u);
  EXPECT_EQ(l.loader.refusals()[0].file, (dir.path() / "libdir.so").string());
  EXPECT_EQ(l.loader.refusals()[0].reason, "a directory, not a plugin file");
  EXPECT_TRUE(l.has("FixtureInvert"));
  EXPECT_TRUE(l.has("FixtureTwinInvert"));
  EXPECT_TRUE(l.has("FixtureSharedFresh"));
  for (const char* t : {"FixtureThrowsInvert", "FixtureDupFresh", "FixtureDupNameInvert"})
    EXPECT_FALSE(l.has(t)) << t;
  // A config naming a type of a refused plugin hears why.
  EXPECT_TRUE(test::has_substr(
      test::message_of([&] {
        (void)l.registry.build<Transform>(Config(Json::object({{"type", "FixtureDupFresh"}})));
      }),
      "libfixture_x_dup_type.so was refused"));
}

TEST(PluginLoaderTest, MissingFolderIsReportedNotFatal) {
  Loaded l;
  l.loader.load_directory("/nonexistent/selfsup/plugins");
  EXPECT_EQ(l.loader.refusals().size(), 1u);
}

TEST(PluginLoaderTest, RefusesHeadersTorchOrStringAbiMismatchNamingWhatDiffers) {
  Loaded l;
  EXPECT_FALSE(l.loader.load_file(fixture("x_bad_fingerprint")));
  ASSERT_EQ(l.loader.refusals().size(), 1u);
  const std::string& why = l.loader.refusals()[0].reason;
  const std::pair<std::string, std::string> theirs[] = {
      {"headers", "0123456789abcdef"}, {"torch", "2.1"}, {"cxx11abi", "0"}, {"compiler", "gcc-9"}};
  for (const auto& [key, value] : theirs) {
    const std::string expected = key + "=" + value + " (host: " + key + "=" + host_field(key) + ")";
    EXPECT_NE(why.find(expected), std::string::npos) << why;
  }
}

TEST(PluginLoaderTest, FingerprintCarriesTheSdkHeadersHash) {
  // The hash of sdk/include/**/*.h computed when CMake last ran (cmake/SelfSupAbi.cmake);
  // the SdkAbi.HeadersHashIsCurrent test checks it against the sources.
  EXPECT_EQ(host_field("headers"), SELFSUP_SDK_HEADERS_HASH);
  EXPECT_EQ(host_field("headers").size(), 16u);
  EXPECT_EQ(host_field("headers").find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(host_field("abi"), std::to_string(SELFSUP_ABI_VERSION));
}

TEST(PluginLoaderTest, RefusesWritableByOthersUnlessAllowed) {
  test::TempDir dir;
  fs::permissions(dir.path(), fs::perms::owner_all, fs::perm_options::replace);
  fs::copy_file(fixture("good"), dir.path() / "libfixture_good.so");
  fs::permissions(dir.path(), fs::perms::others_write, fs::perm_options::add);
  {
    Loaded l;
    l.loader.load_directory(dir.str());
    EXPECT_TRUE(l.loader.plugins().empty());
    ASSERT_EQ(l.loader.refusals().size(), 1u);
    EXPECT_NE(l.loader.refusals()[0].reason.find("world-writable"), std::string::npos);
  }
  {
    Loaded l;
    l.loader.allow_insecure(true);
    l.loader.load_directory(dir.str());
    EXPECT_EQ(l.loader.plugins().size(), 1u);
  }
  fs::permissions(dir.path(), fs::perms::others_write, fs::perm_options::remove);
  fs::permissions(dir.path() / "libfixture_good.so", fs::perms::others_write,
                  fs::perm_options::add);
  {
    Loaded l;
    l.loader.load_directory(dir.str());
    EXPECT_TRUE(l.loader.plugins().empty());
    ASSERT_EQ(l.loader.refusals().size(), 1u);
    EXPECT_NE(l.loader.refusals()[0].file.find("libfixture_good.so"), std::string::npos);
  }
  fs::permissions(dir.path() / "libfixture_good.so", fs::perms::others_write,
                  fs::perm_options::remove);
  if (::geteuid() == 0) { // only root can give a file away
    ASSERT_EQ(::chown((dir.path() / "libfixture_good.so").c_str(), 65534, 65534), 0);
    Loaded l;
    l.loader.load_directory(dir.str());
    EXPECT_TRUE(l.loader.plugins().empty());
    ASSERT_EQ(l.loader.refusals().size(), 1u);
    EXPECT_NE(l.loader.refusals()[0].reason.find("owned by another user"), std::string::npos);
  }
}

TEST(PluginLoaderTest, SymlinkedSameFileLoadsOnceAndOnlySoFilesCount) {
  test::TempDir dir;
  fs::permissions(dir.path(), fs::perms::owner_all, fs::perm_options::replace);
  fs::copy_file(fixture("good"), dir.path() / "libfixture_good.so");
  fs::create_symlink(dir.path() / "libfixture_good.so", dir.path() / "liblink.so");
  fs::copy_file(fixture("good_twin"), dir.path() / "libfixture_good_twin.so.bak");
  Loaded l;
  l.loader.load_directory(dir.str());
  EXPECT_EQ(l.loader.plugins().size(), 1u);
  EXPECT_TRUE(l.loader.refusals().empty());
  EXPECT_FALSE(l.has("FixtureTwinInvert"));
}
