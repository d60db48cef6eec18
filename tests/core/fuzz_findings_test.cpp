// What the fuzzers of fuzz/ found (scripts/fuzz.sh), each pinned here where it was fixed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/config_file.h>
#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/json.h>

#include "test_support.h"

namespace selfsup::core {
namespace {

namespace fs = std::filesystem;
using test::has_substr;
using test::message_of;

// fuzz/config: a --cfg-options number of 238 digits read back from the merged config's dump
// one ulp off (RapidJSON's fast number parsing); every number now reads back as written.
TEST(FuzzFindingsTest, JsonNumbersReadBackAsDumped) {
  const std::string text = "6.666666666666667e237";
  EXPECT_EQ(Json::parse(text, "t").as_number(), std::strtod(text.c_str(), nullptr));
  const Json value = parse_override_value(std::string(40, '6') + std::string(200, '2'));
  EXPECT_EQ(Json::parse(value.dump(), "t"), value) << value.dump();
}

// fuzz/config: RapidJSON read 2e308 (past the double range) as infinity, without an error,
// so a config or a {...} override value held a number written back as null.
TEST(FuzzFindingsTest, NumbersPastTheDoubleRangeAreRefused) {
  EXPECT_TRUE(has_substr(message_of<ConfigError>([] { (void)Json::parse("{\"lr\": 2e308}", "c"); }),
                         "c: a number out of the range of a double"));
  EXPECT_TRUE(
      has_substr(message_of<ConfigError>([] { (void)parse_override_value("{\"n\": -3e308}"); }),
                 "a number out of the range of a double"));
}

// fuzz/config: a --cfg-options key of 100,000 components overflowed the stack, and one of a
// few hundred made a config whose dump Json::parse refuses (over 512 levels).
TEST(FuzzFindingsTest, OverrideKeyAndValueNestAtMost512Levels) {
  auto key = [](size_t levels) {
    std::string k = "a";
    for (size_t i = 1; i < levels; ++i) k += ".a";
    return k;
  };
  Json cfg = Json::object();
  EXPECT_TRUE(has_substr(message_of<ConfigError>([&] { apply_override(cfg, key(100000) + "=1"); }),
                         "nested 100000 levels deep (key and value); at most 512"));
  EXPECT_TRUE(
      has_substr(message_of<ConfigError>([&] { apply_override(cfg, key(510) + "=[[[1]]]"); }),
                 "nested 513 levels deep"));
  apply_override(cfg, key(509) + "=[[[1]]]"); // 512 levels: accepted, and reads back
  ASSERT_TRUE(cfg.find("a"));
  EXPECT_EQ(Json::parse(cfg.dump(), "dump"), cfg);
}

// fuzz/idx: a 16-byte IDX file announcing 2^40 elements made read_idx allocate them all.
TEST(FuzzFindingsTest, IdxHeaderAnnouncingMoreThanTheFileAllocatesNoMore) {
  test::TempDir dir;
  const fs::path path = dir.path() / "huge-idx3-ubyte";
  test::write_file(path, test::idx_bytes(0x08, {1 << 20, 1 << 20}, {1, 2, 3}));
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)read_idx(path.string()); }),
                         path.string() + ": truncated IDX payload: expected 1099511627776 "
                                         "bytes of data, got 3"));
}

// A checkpoint archive of the given records, as torch.save writes it (without a checksum:
// such files are read unchecked).
std::string write_archive(const fs::path& path,
                          const std::vector<std::pair<std::string, std::string>>& records) {
  std::string out;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
      out.append(static_cast<const char*>(data), size);
      return size;
    });
    for (const auto& [name, bytes] : records) writer.writeRecord(name, bytes.data(), bytes.size());
    writer.writeEndOfFile();
  }
  std::ofstream(path, std::ios::binary) << out;
  return out;
}

// The records of a pickled v2 checkpoint (no format key) with one 7-element weight.
std::vector<std::pair<std::string, std::string>> v2_records(const fs::path& tmp) {
  c10::impl::GenericDict state(c10::StringType::get(), c10::AnyType::get());
  state.insert("w", torch::arange(7, torch::kFloat32));
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("meta", std::string("{}"));
  top.insert("state_dict", state);
  top.insert("optimizer", c10::IValue());
  top.insert("rng", c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
  const std::vector<char> bytes = torch::pickle_save(top);
  std::ofstream(tmp, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  caffe2::serialize::PyTorchStreamReader reader(tmp.string());
  std::vector<std::pair<std::string, std::string>> records;
  for (const std::string name : {"data.pkl", "data/0"}) {
    auto [ptr, size] = reader.getRecord(name);
    records.emplace_back(name, std::string(static_cast<const char*>(ptr.get()), size));
  }
  return records;
}

TEST(FuzzFindingsTest, CheckpointRecordsReadAsWritten) {
  test::TempDir dir;
  const fs::path path = dir.path() / "v2.pth";
  write_archive(path, v2_records(dir.path() / "orig.pth"));
  const Checkpoint c = load_checkpoint(path.string());
  EXPECT_TRUE(torch::equal(c.state_dict.at("w"), torch::arange(7, torch::kFloat32)));
}

// fuzz/checkpoint: a pickle string announcing 2 GiB in a file of a few hundred bytes made
// LibTorch's unpickler reserve it before finding the file too short.
TEST(FuzzFindingsTest, CheckpointPickleArgumentLongerThanThePickleIsRefused) {
  test::TempDir dir;
  const fs::path path = dir.path() / "long.pth";
  write_archive(path, {{"data.pkl", std::string("\x80\x02X\xf0\xff\xff\x7f", 7) + "abc."}});
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)load_checkpoint(path.string()); }),
                         path.string() + ": corrupt checkpoint: data.pkl announces 2147483636 "
                                         "bytes at offset 2, where 8 remain"));
}

// fuzz/checkpoint: LibTorch's unpickler pops without checking (BUILD on an empty stack
// crashed it) and grows its memo table to any index it is given (LONG_BINPUT 2^30: 16 GiB).
TEST(FuzzFindingsTest, CheckpointPickleThatUnderflowsOrOverreachesIsRefused) {
  test::TempDir dir;
  const fs::path path = dir.path() / "stack.pth";
  write_archive(path, {{"data.pkl", "\x80\x02"
                                    "b."}});
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)load_checkpoint(path.string()); }),
                         path.string() + ": corrupt checkpoint: data.pkl takes 2 values where 0 "
                                         "are at offset 2"));
  write_archive(path, {{"data.pkl", std::string("\x80\x02N"
                                                "r\0\0\0\x40.",
                                                9)}});
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)load_checkpoint(path.string()); }),
                         "data.pkl memoizes at index 1073741824 at offset 3 (out of sequence)"));
  write_archive(path, {{"data.pkl", "\x80\x02t."}});
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)load_checkpoint(path.string()); }),
                         "data.pkl closes a mark it never opened at offset 2"));
}

// fuzz/checkpoint: a zip record whose size field announces more than the file holds made
// LibTorch's reader allocate that size first.
TEST(FuzzFindingsTest, CheckpointRecordLargerThanTheFileIsRefused) {
  test::TempDir dir;
  const fs::path path = dir.path() / "big-record.pth";
  std::string bytes = write_archive(path, v2_records(dir.path() / "orig.pth"));
  // The central directory entry of data/0 (28 float bytes): its uncompressed size, 2 GiB.
  const size_t entry = bytes.find("PK\1\2");
  ASSERT_NE(entry, std::string::npos);
  const size_t data0 = bytes.find("data/0", bytes.find("PK\1\2"));
  size_t at = bytes.rfind("PK\1\2", data0);
  bytes.replace(at + 24, 4, std::string("\0\0\0\x80", 4));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)load_checkpoint(path.string()); }),
                         "record archive/data/0 announces 2147483648 bytes, more than the file "
                         "holds"));
}

// fuzz/checkpoint: a tensor whose pickled size exceeds its storage was accepted, and copying
// it into a model would read past the storage.
TEST(FuzzFindingsTest, CheckpointTensorReachingPastItsStorageIsRefused) {
  test::TempDir dir;
  auto records = v2_records(dir.path() / "orig.pth");
  std::string& pickle = records[0].second;
  // The size tuple (7,) before the stride tuple (1,): MARK BININT1 7 TUPLE MARK BININT1 1 TUPLE.
  const size_t size = pickle.find(std::string("(K\x07t(K\x01t", 8)) + 1;
  ASSERT_NE(size, std::string::npos + 1);
  pickle[size + 1] = '\x70';
  const fs::path path = dir.path() / "past-storage.pth";
  write_archive(path, records);
  EXPECT_TRUE(has_substr(message_of<ValueError>([&] { (void)load_checkpoint(path.string()); }),
                         path.string() + ": state_dict.w: a tensor of shape [112], strides [1] "
                                         "and offset 0 reaches past its storage of 28 bytes"));
}

} // namespace
} // namespace selfsup::core
