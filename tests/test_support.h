#pragma once
// Helpers shared by the tests.
#include <filesystem>
#include <string>

namespace selfsup::test {

/// Loads the build tree's plugins (and the engine's own types) once per process.
void load_plugins();

/// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

/// Writes `text` to `path` (creating parent folders).
void write_file(const std::filesystem::path& path, const std::string& text);

}  // namespace selfsup::test
