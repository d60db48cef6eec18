#include "test_support.h"

#include <fstream>
#include <mutex>
#include <random>

#include <selfsup/core/builtins.h>
#include <selfsup/core/plugin_loader.h>

namespace selfsup::test {

void load_plugins() {
  static std::once_flag once;
  std::call_once(once, [] {
    core::register_builtins();
    core::PluginLoader loader;
    loader.load_directory(SELFSUP_TEST_PLUGIN_DIR);
    if (!loader.refusals().empty())
      throw std::runtime_error("test plugins refused: " + loader.refusals()[0].file + ": " +
                               loader.refusals()[0].reason);
  });
}

TempDir::TempDir() {
  std::random_device rd;
  for (int i = 0; i < 100; ++i) {
    auto p = std::filesystem::temp_directory_path() /
             ("selfsup_test_" + std::to_string(rd()) + std::to_string(i));
    if (std::filesystem::create_directory(p)) {
      path_ = p;
      return;
    }
  }
  throw std::runtime_error("cannot create a temp dir");
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

} // namespace selfsup::test

#include <zlib.h>

namespace selfsup::test {

void write_idx(const std::filesystem::path& path, const std::vector<int32_t>& dims,
               const std::vector<uint8_t>& data, bool gzip) {
  std::string bytes;
  bytes += char(0);
  bytes += char(0);
  bytes += char(0x08);
  bytes += char(dims.size());
  for (int32_t d : dims) {
    bytes += char((d >> 24) & 0xff);
    bytes += char((d >> 16) & 0xff);
    bytes += char((d >> 8) & 0xff);
    bytes += char(d & 0xff);
  }
  bytes.append(reinterpret_cast<const char*>(data.data()), data.size());
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  if (!gzip) {
    write_file(path, bytes);
    return;
  }
  gzFile f = gzopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + path.string());
  gzwrite(f, bytes.data(), unsigned(bytes.size()));
  gzclose(f);
}

void make_fake_fmnist(const std::filesystem::path& root, int n_train, int n_test) {
  std::mt19937 gen(1234);
  auto make = [&](const std::string& prefix, int n) {
    std::vector<uint8_t> images(size_t(n) * 28 * 28);
    std::vector<uint8_t> labels(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      int c = i % 10;
      labels[size_t(i)] = uint8_t(c);
      for (int y = 0; y < 28; ++y)
        for (int x = 0; x < 28; ++x) {
          // Class c: a bar at a class-specific angle plus noise.
          bool on = ((x * (c + 1) + y * (10 - c)) / 7) % 2 == 0;
          int v = (on ? 200 : 30) + int(gen() % 40);
          images[size_t(i) * 784 + size_t(y) * 28 + size_t(x)] = uint8_t(std::min(v, 255));
        }
    }
    write_idx(root / (prefix + "-images-idx3-ubyte.gz"), {n, 28, 28}, images);
    write_idx(root / (prefix + "-labels-idx1-ubyte.gz"), {n}, labels);
  };
  make("train", n_train);
  make("t10k", n_test);
}

} // namespace selfsup::test
