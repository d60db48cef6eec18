#pragma once
// Helpers shared by the tests: each exists once here (an error-message helper, an IDX writer,
// a fake-dataset generator, temp dirs and files).
#include <gtest/gtest.h>

#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

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

/// The what() of the exception `f` throws, or "<no exception>". With a type, `f` must throw
/// an E (or something derived from it): another exception is a test failure naming both.
/// Check the text with has_substr.
template <class E = std::exception> std::string message_of(const std::function<void()>& f) {
  if constexpr (std::is_same_v<E, std::exception>) {
    try {
      f();
    } catch (const std::exception& e) {
      return e.what();
    }
  } else {
    try {
      f();
    } catch (const E& e) {
      return e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected an exception of type " << typeid(E).name()
                    << ", got another type: " << e.what();
      return e.what();
    }
  }
  return "<no exception>";
}

/// Success if `text` contains `needle`; the failure message shows both.
::testing::AssertionResult has_substr(const std::string& text, const std::string& needle);

/// Writes `bytes` to `path` (creating parent folders), gzip-compressed if `gzip`.
void write_file(const std::filesystem::path& path, const std::string& bytes, bool gzip = false);

/// The whole content of a file ("" if it cannot be opened).
std::string read_text(const std::filesystem::path& path);

/// The "iter" of every record of a scalars.jsonl, in file order.
std::vector<int64_t> logged_iters(const std::filesystem::path& scalars);

/// The bytes of an IDX file: magic (0, 0, `type`, rank), big-endian dims, then `data`.
std::string idx_bytes(uint8_t type, const std::vector<int32_t>& dims,
                      const std::vector<uint8_t>& data);

/// Writes an IDX file of unsigned bytes (type 0x08), gzip-compressed if `gzip`.
void write_idx(const std::filesystem::path& path, const std::vector<int32_t>& dims,
               const std::vector<uint8_t>& data, bool gzip = true);

/// What make_fake_fmnist wrote for one split: n 28x28 images (n * 784 bytes) and n labels.
struct FakeSplit {
  std::vector<uint8_t> images;
  std::vector<uint8_t> labels;
  /// Image i's pixels.
  [[nodiscard]] std::vector<uint8_t> image(int i) const {
    return {images.begin() + ptrdiff_t(i) * 784, images.begin() + ptrdiff_t(i + 1) * 784};
  }
};

struct FakeFmnist {
  FakeSplit train, test;
};

/// A fake Fashion-MNIST root: `n_train` / `n_test` 28x28 images of 10 classes (label i % 10),
/// each class a distinct noisy pattern, in Debian's file names, gzip-compressed or plain.
/// Returns what it wrote.
FakeFmnist make_fake_fmnist(const std::filesystem::path& root, int n_train, int n_test,
                            bool gzip = true);

} // namespace selfsup::test
