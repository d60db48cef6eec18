#include "test_support.h"

#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <stdexcept>

#include <selfsup/core/builtins.h>
#include <selfsup/json.h>
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

::testing::AssertionResult has_substr(const std::string& text, const std::string& needle) {
  if (text.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "message: " << text << "\nexpected to contain: " << needle;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {(std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()};
}

std::vector<int64_t> logged_iters(const std::filesystem::path& scalars) {
  std::vector<int64_t> iters;
  std::ifstream in(scalars);
  for (std::string line; std::getline(in, line);)
    iters.push_back(Json::parse(line, scalars.string()).find("iter")->as_int());
  return iters;
}

void write_file(const std::filesystem::path& path, const std::string& bytes, bool gzip) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write " + path.string());
    const int written = gzwrite(f, bytes.data(), unsigned(bytes.size()));
    if (gzclose(f) != Z_OK || written != int(bytes.size()))
      throw std::runtime_error("cannot write " + path.string());
    return;
  }
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string idx_bytes(uint8_t type, const std::vector<int32_t>& dims,
                      const std::vector<uint8_t>& data) {
  std::string out = {'\0', '\0', char(type), char(dims.size())};
  for (const int32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(char((uint32_t(d) >> shift) & 0xFF));
  out.append(data.begin(), data.end());
  return out;
}

void write_idx(const std::filesystem::path& path, const std::vector<int32_t>& dims,
               const std::vector<uint8_t>& data, bool gzip) {
  write_file(path, idx_bytes(0x08, dims, data), gzip);
}

FakeFmnist make_fake_fmnist(const std::filesystem::path& root, int n_train, int n_test, bool gzip) {
  std::mt19937 gen(1234);
  auto make = [&](const std::string& prefix, int n) {
    FakeSplit split;
    split.images.resize(size_t(n) * 28 * 28);
    split.labels.resize(size_t(n));
    for (int i = 0; i < n; ++i) {
      const int c = i % 10;
      split.labels[size_t(i)] = uint8_t(c);
      for (int y = 0; y < 28; ++y)
        for (int x = 0; x < 28; ++x) {
          // Class c: a bar at a class-specific angle plus noise.
          const bool on = ((x * (c + 1) + y * (10 - c)) / 7) % 2 == 0;
          const int v = (on ? 200 : 30) + int(gen() % 40);
          split.images[size_t(i) * 784 + size_t(y) * 28 + size_t(x)] = uint8_t(std::min(v, 255));
        }
    }
    const std::string ext = gzip ? ".gz" : "";
    write_idx(root / (prefix + "-images-idx3-ubyte" + ext), {n, 28, 28}, split.images, gzip);
    write_idx(root / (prefix + "-labels-idx1-ubyte" + ext), {n}, split.labels, gzip);
    return split;
  };
  FakeFmnist out;
  out.train = make("train", n_train);
  out.test = make("t10k", n_test);
  return out;
}

} // namespace selfsup::test
