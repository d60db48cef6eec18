#pragma once
// Helpers shared by the tests.
#include <filesystem>
#include <functional>
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

/// The what() of the exception `f` throws, or "<no exception>".
std::string message_of(const std::function<void()>& f);

/// Writes `text` to `path` (creating parent folders).
void write_file(const std::filesystem::path& path, const std::string& text);

} // namespace selfsup::test

#include <cstdint>
#include <vector>

namespace selfsup::test {

/// Writes an IDX file of unsigned bytes, gzip-compressed if `gzip`.
void write_idx(const std::filesystem::path& path, const std::vector<int32_t>& dims,
               const std::vector<uint8_t>& data, bool gzip = true);

/// A fake Fashion-MNIST root: `n_train` / `n_test` 28x28 images of 10 classes, each class a
/// distinct noisy pattern, in Debian's file names.
void make_fake_fmnist(const std::filesystem::path& root, int n_train, int n_test);

} // namespace selfsup::test
