// Who may write the code we run (issue 7, point 2): the plugin file, its folder and every
// folder above it up to `/` (symlinks resolved first) must be owned by us or root and not
// writable by group or others; a folder above the plugin folder may be world-writable only if
// sticky (as /tmp). Otherwise refused, unless allow_insecure (--allow-insecure-plugins).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <selfsup/core/plugin_loader.h>

#include "test_support.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) {
  return std::string(SELFSUP_TEST_FIXTURE_DIR) + "/libfixture_" + name + ".so";
}

// A temp folder only we can write; `sub` makes a folder in it with the given mode holding a
// copy of the good fixture.
struct SafeDir {
  test::TempDir tmp;
  SafeDir() { fs::permissions(tmp.path(), fs::perms::owner_all, fs::perm_options::replace); }
  [[nodiscard]] fs::path path() const { return tmp.path(); }
  fs::path plugin_folder(const fs::path& rel, fs::perms mode = fs::perms(0755)) {
    const fs::path d = tmp.path() / rel;
    fs::create_directories(d);
    fs::copy_file(fixture("good"), d / "libfixture_good.so");
    fs::permissions(d, mode, fs::perm_options::replace);
    return d;
  }
};

struct Loaded {
  Registry registry;
  core::PluginLoader loader{registry};
  explicit Loaded(bool allow_insecure = false) {
    loader.on_refusal = nullptr;
    loader.set_cache_path("");
    loader.allow_insecure(allow_insecure);
  }
  [[nodiscard]] std::string only_refusal() const {
    if (loader.refusals().size() != 1) {
      ADD_FAILURE() << "expected one refusal, got " << loader.refusals().size();
      return "";
    }
    return loader.refusals()[0].reason;
  }
  bool loaded() { return !registry.providers("transform", "FixtureInvert").empty(); }
};

} // namespace

TEST(PluginPermissionsTest, GroupWritableFolderIsRefused) {
  SafeDir d;
  const fs::path folder = d.plugin_folder("plugins", fs::perms(0775));
  Loaded l;
  l.loader.load_directory(folder.string());
  EXPECT_FALSE(l.loaded());
  const std::string why = l.only_refusal();
  EXPECT_TRUE(test::has_substr(why, "plugin folder refused: the plugin folder " + folder.string() +
                                        " is group-writable (gid"));
  EXPECT_TRUE(test::has_substr(why, "mode 0775"));
  EXPECT_TRUE(test::has_substr(why, "--allow-insecure-plugins"));
}

TEST(PluginPermissionsTest, GroupOrWorldWritableFileIsRefused) {
  for (const fs::perms mode : {fs::perms(0664), fs::perms(0646)}) {
    SafeDir d;
    const fs::path folder = d.plugin_folder("plugins");
    fs::permissions(folder / "libfixture_good.so", mode, fs::perm_options::replace);
    Loaded l;
    l.loader.load_directory(folder.string());
    EXPECT_FALSE(l.loaded());
    EXPECT_TRUE(test::has_substr(l.only_refusal(),
                                 "the plugin file " + (folder / "libfixture_good.so").string()));
    EXPECT_TRUE(test::has_substr(l.only_refusal(),
                                 mode == fs::perms(0664) ? "group-writable" : "world-writable"));
  }
}

TEST(PluginPermissionsTest, AnInsecureParentFolderIsRefused) {
  SafeDir d;
  const fs::path folder = d.plugin_folder("open/deeper/plugins");
  fs::permissions(d.path() / "open", fs::perms(0777), fs::perm_options::replace);
  {
    Loaded l;
    l.loader.load_directory(folder.string());
    EXPECT_FALSE(l.loaded());
    EXPECT_TRUE(test::has_substr(l.only_refusal(), "the parent folder " +
                                                       (d.path() / "open").string() +
                                                       " is world-writable (mode 0777)"));
  }
  {
    Loaded l; // the file alone, too
    EXPECT_FALSE(l.loader.load_file((folder / "libfixture_good.so").string()));
    EXPECT_TRUE(test::has_substr(l.only_refusal(), (d.path() / "open").string()));
  }
  fs::permissions(d.path() / "open", fs::perms(0775), fs::perm_options::replace);
  Loaded l;
  l.loader.load_directory(folder.string());
  EXPECT_TRUE(test::has_substr(l.only_refusal(), "is group-writable"));
}

TEST(PluginPermissionsTest, AStickyWorldWritableParentIsAcceptedButNotAsThePluginFolder) {
  // As /tmp: others cannot rename or delete what is ours in it.
  SafeDir d;
  const fs::path folder = d.plugin_folder("sticky/plugins");
  fs::permissions(d.path() / "sticky", fs::perms(01777), fs::perm_options::replace);
  {
    Loaded l;
    l.loader.load_directory(folder.string());
    EXPECT_TRUE(l.loaded()) << l.only_refusal();
  }
  Loaded l; // but others could add files to a sticky plugin folder
  l.loader.load_directory((d.path() / "sticky").string());
  EXPECT_TRUE(test::has_substr(l.only_refusal(), "is world-writable (mode 1777)"));
}

TEST(PluginPermissionsTest, ASymlinkInASafeFolderToAFileInAnInsecureFolderIsRefused) {
  SafeDir d;
  const fs::path unsafe = d.plugin_folder("unsafe", fs::perms(0777));
  const fs::path safe = d.path() / "safe";
  fs::create_directory(safe);
  fs::create_symlink(unsafe / "libfixture_good.so", safe / "liblinked.so");
  {
    Loaded l;
    l.loader.load_directory(safe.string());
    EXPECT_FALSE(l.loaded());
    EXPECT_EQ(l.loader.refusals().at(0).file, (unsafe / "libfixture_good.so").string());
    EXPECT_TRUE(
        test::has_substr(l.only_refusal(), "its folder " + unsafe.string() + " is world-writable"));
  }
  Loaded l(true);
  l.loader.load_directory(safe.string());
  EXPECT_TRUE(l.loaded());
}

TEST(PluginPermissionsTest, AllowInsecureLoadsFromWritableFoldersAndFiles) {
  SafeDir d;
  const fs::path folder = d.plugin_folder("open/plugins", fs::perms(0777));
  fs::permissions(d.path() / "open", fs::perms(0777), fs::perm_options::replace);
  fs::permissions(folder / "libfixture_good.so", fs::perms(0666), fs::perm_options::replace);
  Loaded l(true);
  l.loader.load_directory(folder.string());
  EXPECT_TRUE(l.loaded());
  EXPECT_TRUE(l.loader.refusals().empty());
}

TEST(PluginPermissionsTest, OwnedByAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "only root can give a file away";
  SafeDir d;
  const fs::path folder = d.plugin_folder("theirs/plugins");
  const fs::path file = folder / "libfixture_good.so";
  ASSERT_EQ(::chown(file.c_str(), 65534, 65534), 0);
  {
    Loaded l;
    l.loader.load_directory(folder.string());
    EXPECT_TRUE(test::has_substr(l.only_refusal(), "the plugin file " + file.string() +
                                                       " is owned by another user (uid 65534)"));
  }
  ASSERT_EQ(::chown(file.c_str(), 0, 0), 0);
  ASSERT_EQ(::chown((d.path() / "theirs").c_str(), 65534, 65534), 0);
  Loaded l;
  l.loader.load_directory(folder.string());
  EXPECT_TRUE(test::has_substr(l.only_refusal(), "the parent folder " +
                                                     (d.path() / "theirs").string() +
                                                     " is owned by another user (uid 65534)"));
}
