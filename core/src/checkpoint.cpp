#include <selfsup/core/checkpoint.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>
#include <unordered_map>

#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/version.h>

#include "torch_archive.h"

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

// A test seam's value: the environment variable as a non-negative integer, or -1 when unset.
int64_t seam(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return -1;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  return (end && *end == 0 && n >= 0) ? int64_t(n) : -1;
}

void write_bytes_atomic(const std::string& path, const char* data, size_t size) {
  refuse_symlink(path);
  const std::string tmp = path + ".tmp";
  // Exclusive and never through a link: a leftover temp file (a killed write) or a link
  // planted under its name is removed (unlink removes the name, not a link's target).
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::open(tmp.c_str(), flags, 0644);
  if (fd < 0 && errno == EEXIST && ::unlink(tmp.c_str()) == 0)
    fd = ::open(tmp.c_str(), flags, 0644);
  if (fd < 0) throw ValueError(tmp + ": cannot create: " + std::strerror(errno));
  auto fail = [&](const std::string& what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw ValueError(path + ": " + what + ": " + std::strerror(err) +
                     "; nothing was replaced (the previous " + fs::path(path).filename().string() +
                     ", if any, is kept)");
  };
  const int64_t fail_after = seam("SELFSUP_TEST_FAIL_WRITE_AFTER");
  const int64_t slow_us = seam("SELFSUP_TEST_SLOW_WRITE_US");
  const size_t piece = slow_us > 0 ? size_t(16) << 10 : size_t(64) << 20;
  size_t done = 0;
  while (done < size) {
    size_t want = std::min(piece, size - done);
    if (fail_after >= 0 && done + want > size_t(fail_after)) {
      want = size_t(fail_after) > done ? size_t(fail_after) - done : 0;
      if (want == 0) fail("cannot write", ENOSPC); // the simulated full disk
    }
    ssize_t n = ::write(fd, data + done, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", errno);
    }
    done += size_t(n);
    if (slow_us > 0) ::usleep(useconds_t(slow_us));
  }
  if (::fsync(fd) != 0) fail("cannot flush", errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw ValueError(path + ": cannot flush: " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw ValueError(path + ": cannot rename the temp file: " + std::strerror(err));
  }
  fs::path dir = fs::path(path).parent_path();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// ---- The checksum: a CRC-32 in the zip container's end-of-archive comment ---------------
//
// The end-of-central-directory record is 22 bytes ("PK\5\6", ..., comment length) followed
// by the comment. The CRC covers every byte before the comment length.

constexpr size_t kEocdSize = 22;
constexpr const char* kCrcTag = "selfsup-crc32:";

uint32_t crc32_of(const char* data, size_t size) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  while (size > 0) {
    const uInt n = uInt(std::min<size_t>(size, size_t(1) << 30));
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(data), n);
    data += n;
    size -= n;
  }
  return uint32_t(crc);
}

std::string crc_comment(uint32_t crc) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%08x", kCrcTag, crc);
  return buf;
}

// Appends the checksum comment to the bytes torch::pickle_save wrote (a zip, no comment).
void add_checksum(std::vector<char>& bytes) {
  const size_t n = bytes.size();
  if (n < kEocdSize || std::memcmp(bytes.data() + n - kEocdSize, "PK\x05\x06", 4) != 0 ||
      bytes[n - 2] != 0 || bytes[n - 1] != 0)
    throw ValueError("checkpoint: torch::pickle_save wrote no zip archive to sign (LibTorch "
                     "changed its format?)");
  const std::string comment = crc_comment(crc32_of(bytes.data(), n - 2));
  bytes[n - 2] = char(comment.size() & 0xff);
  bytes[n - 1] = char(comment.size() >> 8);
  bytes.insert(bytes.end(), comment.begin(), comment.end());
}

// Checks the checksum comment: true when present and right, false when absent; throws
// naming `path` when it is wrong.
bool check_checksum(const std::vector<char>& bytes, const std::string& path) {
  const size_t comment_size = crc_comment(0).size();
  const size_t n = bytes.size();
  if (n < kEocdSize + comment_size) return false;
  const char* eocd = bytes.data() + n - comment_size - kEocdSize;
  const char* comment = eocd + kEocdSize;
  if (std::memcmp(eocd, "PK\x05\x06", 4) != 0 ||
      std::memcmp(comment, kCrcTag, std::strlen(kCrcTag)) != 0 ||
      size_t(uint8_t(eocd[20])) + (size_t(uint8_t(eocd[21])) << 8) != comment_size)
    return false;
  const std::string stored(comment, comment_size);
  const std::string computed =
      crc_comment(crc32_of(bytes.data(), size_t(eocd + 20 - bytes.data())));
  if (stored != computed)
    throw ValueError(path + ": corrupt checkpoint: the checksum does not match (stored " +
                     stored.substr(std::strlen(kCrcTag)) + ", computed " +
                     computed.substr(std::strlen(kCrcTag)) + ")");
  return true;
}

c10::Dict<std::string, at::Tensor> to_dict(const TensorMap& m) {
  c10::Dict<std::string, at::Tensor> d;
  for (const auto& [k, v] : m) d.insert(k, v.detach().cpu().contiguous().clone());
  return d;
}

TensorMap from_ivalue(const c10::IValue& v, const std::string& what) {
  if (!v.isGenericDict()) throw ValueError(what + " is not a dict");
  TensorMap m;
  for (const auto& item : v.toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor())
      throw ValueError(what + " holds a non-tensor entry");
    check_tensor_in_storage(item.value().toTensor(), what + "." + item.key().toStringRef());
    m[item.key().toStringRef()] = item.value().toTensor();
  }
  return m;
}

// ---- meta: JSON values <-> pickled Python values -------------------------------------

c10::IValue to_ivalue(const Json& j) {
  switch (j.type()) {
  case Json::Type::Null:
    return c10::IValue();
  case Json::Type::Bool:
    return j.as_bool();
  case Json::Type::Int:
    return j.as_int();
  case Json::Type::Float:
    return j.as_number();
  case Json::Type::String:
    return j.as_string();
  case Json::Type::Array: {
    c10::impl::GenericList list(c10::AnyType::get());
    for (const auto& v : j.items()) list.push_back(to_ivalue(v));
    return list;
  }
  case Json::Type::Object: {
    c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
    for (size_t i = 0; i < j.size(); ++i) dict.insert(j.keys()[i], to_ivalue(j.at(i)));
    return dict;
  }
  }
  return c10::IValue();
}

// The JSON value of a pickled value, or nothing for what JSON cannot hold (a tensor, a
// tuple, a dict with non-string keys).
std::optional<Json> to_json(const c10::IValue& v) {
  if (v.isNone()) return Json();
  if (v.isBool()) return Json(v.toBool());
  if (v.isInt()) return Json(v.toInt());
  if (v.isDouble()) return Json(v.toDouble());
  if (v.isString()) return Json(v.toStringRef());
  if (v.isList()) {
    Json out = Json::array();
    for (const c10::IValue& item : v.toList().vec()) {
      auto j = to_json(item);
      if (!j) return std::nullopt;
      out.push_back(std::move(*j));
    }
    return out;
  }
  if (v.isGenericDict()) {
    Json out = Json::object();
    for (const auto& item : v.toGenericDict()) {
      if (!item.key().isString()) return std::nullopt;
      auto j = to_json(item.value());
      if (!j) return std::nullopt;
      out.set(item.key().toStringRef(), std::move(*j));
    }
    return out;
  }
  return std::nullopt;
}

std::string local_time() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d_%H%M%S", &tm);
  return buf;
}

// The file's meta: mmengine's keys, then ours (see checkpoint.h).
c10::impl::GenericDict meta_dict(const Checkpoint& ckpt) {
  c10::impl::GenericDict meta(c10::StringType::get(), c10::AnyType::get());
  for (size_t i = 0; i < ckpt.meta.size(); ++i) {
    const std::string& key = ckpt.meta.keys()[i];
    if (key == "config") {
      meta.insert("cfg", ckpt.meta.at(i).dump(2)); // mmengine's meta.cfg: the config's text
    } else {
      meta.insert(key, to_ivalue(ckpt.meta.at(i)));
    }
  }
  if (!meta.contains("time")) meta.insert("time", local_time());
  meta.insert_or_assign("mmengine_version", std::string(kMmengineLayoutVersion));
  meta.insert_or_assign("selfsup_format", std::string(kCheckpointFormat));
  meta.insert_or_assign("selfsup_rng", to_dict(ckpt.rng));
  return meta;
}

// mmengine's MessageHub.state_dict() as its Runner leaves it at a checkpoint: runtime_info's
// epoch and iter are those of the last iteration trained (RuntimeInfoHook sets them before
// each epoch and iteration), 0-based, where meta counts what is done.
c10::impl::GenericDict message_hub(const c10::impl::GenericDict& meta) {
  c10::impl::GenericDict info(c10::StringType::get(), c10::AnyType::get());
  auto int_of = [&](const char* key) -> std::optional<int64_t> {
    if (!meta.contains(key) || !meta.at(key).isInt()) return std::nullopt;
    return meta.at(key).toInt();
  };
  const auto iter = int_of("iter"), epoch = int_of("epoch"), ipe = int_of("iters_per_epoch");
  for (const char* key : {"cfg", "seed", "experiment_name", "mmengine_version"})
    if (meta.contains(key)) info.insert(key, meta.at(key));
  info.insert("loop_stage", std::string("train"));
  if (epoch)
    info.insert("epoch", iter && ipe && *ipe > 0 && *iter > 0 ? (*iter - 1) / *ipe : *epoch);
  if (iter) info.insert("iter", std::max<int64_t>(*iter - 1, 0));
  for (const char* key : {"max_epochs", "max_iters"})
    if (const auto v = int_of(key)) info.insert(key, *v);
  c10::impl::GenericDict resumed(c10::StringType::get(), c10::AnyType::get());
  for (const auto& item : info) resumed.insert(item.key(), true);
  c10::impl::GenericDict hub(c10::StringType::get(), c10::AnyType::get());
  hub.insert("log_scalars", c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()));
  hub.insert("runtime_info", info);
  hub.insert("resumed_keys", resumed);
  return hub;
}

// ---- Param groups as mmengine builds them --------------------------------------------
//
// selfsup gives every parameter its own group. mmengine's DefaultOptimWrapperConstructor
// does so only with a paramwise_cfg; without one it makes a single group over
// model.parameters(), and torch's load_state_dict needs the same number of groups. So a run
// without paramwise_cfg writes its (identical) groups as one, and loading splits it again.

bool same_scalar(const c10::IValue& a, const c10::IValue& b) {
  if (a.isDouble() && b.isDouble()) return a.toDouble() == b.toDouble();
  if (a.isInt() && b.isInt()) return a.toInt() == b.toInt();
  if (a.isBool() && b.isBool()) return a.toBool() == b.toBool();
  if (a.isString() && b.isString()) return a.toStringRef() == b.toStringRef();
  return a.isNone() && b.isNone();
}

bool without_paramwise_cfg(const Json& meta) {
  const Json* cfg = meta.find("config");
  if (!cfg || !cfg->is_object()) return false; // unknown: leave the groups as they are
  const Json* wrapper = cfg->find("optim_wrapper");
  const Json* paramwise =
      wrapper && wrapper->is_object() ? wrapper->find("paramwise_cfg") : nullptr;
  return !paramwise || paramwise->is_null() || (paramwise->is_object() && paramwise->size() == 0);
}

// One group of every parameter when the groups hold one parameter each and equal options;
// else `optimizer` as it is.
c10::IValue merged_groups(const c10::IValue& optimizer) {
  if (!optimizer.isGenericDict() || !optimizer.toGenericDict().contains("param_groups"))
    return optimizer;
  const c10::IValue groups_value = optimizer.toGenericDict().at("param_groups");
  if (!groups_value.isList() || groups_value.toList().size() < 2) return optimizer;
  const auto groups = groups_value.toList();
  c10::List<int64_t> params;
  c10::impl::GenericDict first(c10::StringType::get(), c10::AnyType::get());
  for (size_t i = 0; i < groups.size(); ++i) {
    if (!groups.get(i).isGenericDict()) return optimizer;
    const auto g = groups.get(i).toGenericDict();
    if (!g.contains("params") || !g.at("params").isIntList() ||
        g.at("params").toIntList().size() != 1)
      return optimizer;
    params.push_back(g.at("params").toIntList().get(0));
    if (i == 0) {
      first = g.copy();
      continue;
    }
    if (g.size() != first.size()) return optimizer;
    for (const auto& item : g)
      if (item.key().toStringRef() != "params" &&
          (!first.contains(item.key()) || !same_scalar(first.at(item.key()), item.value())))
        return optimizer;
  }
  first.insert_or_assign("params", params);
  c10::impl::GenericList one(c10::AnyType::get());
  one.push_back(first);
  c10::impl::GenericDict top = optimizer.toGenericDict().copy();
  top.insert_or_assign("param_groups", one);
  return top;
}

// A single group of several parameters split into one group per parameter (selfsup's).
c10::IValue split_groups(const c10::IValue& optimizer) {
  if (!optimizer.isGenericDict() || !optimizer.toGenericDict().contains("param_groups"))
    return optimizer;
  const c10::IValue groups_value = optimizer.toGenericDict().at("param_groups");
  if (!groups_value.isList() || groups_value.toList().size() != 1 ||
      !groups_value.toList().get(0).isGenericDict())
    return optimizer;
  const auto group = groups_value.toList().get(0).toGenericDict();
  if (!group.contains("params") || !group.at("params").isIntList() ||
      group.at("params").toIntList().size() < 2)
    return optimizer;
  c10::impl::GenericList groups(c10::AnyType::get());
  for (const int64_t index : group.at("params").toIntList().vec()) {
    c10::impl::GenericDict g = group.copy();
    g.insert_or_assign("params", c10::List<int64_t>({index}));
    groups.push_back(g);
  }
  c10::impl::GenericDict top = optimizer.toGenericDict().copy();
  top.insert_or_assign("param_groups", groups);
  return top;
}

// The scheduler states of merged_groups(): base_values and _last_value of the first group
// (all groups had the same).
c10::IValue one_group_schedulers(const c10::IValue& schedulers) {
  if (!schedulers.isList()) return schedulers;
  c10::impl::GenericList out(c10::AnyType::get());
  for (const c10::IValue& s : schedulers.toList().vec()) {
    if (!s.isGenericDict()) {
      out.push_back(s);
      continue;
    }
    c10::impl::GenericDict d = s.toGenericDict().copy();
    for (const char* key : {"base_values", "_last_value"})
      if (d.contains(key) && d.at(key).isList() && d.at(key).toList().size() > 1) {
        c10::impl::GenericList first(c10::AnyType::get());
        first.push_back(d.at(key).toList().get(0));
        d.insert_or_assign(key, first);
      }
    out.push_back(d);
  }
  return out;
}

// ---- Optimizer state: LibTorch's archive layout <-> PyTorch's state_dict layout ----------
//
// LibTorch's save() writes {"pytorch_version", "state": {<TensorImpl key>: {name: value}},
// "param_groups": {"param_groups/size", "param_groups/<i>": {"params/size",
// "params/<j>": <TensorImpl key>, "options": {name: value}}}} through the optimizer's own
// typed serialize(); PyTorch numbers the parameters instead. Converting through an archive
// keeps every optimizer (LibTorch's, ours, a plugin's) on its own serialization code.

using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

InputArchive reopen(OutputArchive& archive, c10::optional<torch::Device> device) {
  std::vector<char> bytes;
  archive.save_to([&](const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    bytes.insert(bytes.end(), p, p + size);
    return size;
  });
  InputArchive in;
  in.load_from(bytes.data(), bytes.size(), device);
  return in;
}

c10::impl::GenericDict archive_values(InputArchive& archive) {
  c10::impl::GenericDict out(c10::StringType::get(), c10::AnyType::get());
  for (const auto& key : archive.keys()) {
    c10::IValue v;
    if (!archive.try_read(key, v)) continue;
    out.insert(key, v.isTensor() ? c10::IValue(v.toTensor().detach().contiguous()) : v);
  }
  return out;
}

std::string impl_key(const torch::Tensor& t) {
  return c10::guts::to_string(t.unsafeGetTensorImpl());
}

} // namespace

c10::impl::GenericDict optimizer_state_dict(const torch::optim::Optimizer& optimizer) {
  OutputArchive out;
  optimizer.save(out);
  InputArchive in = reopen(out, torch::Device(torch::kCPU));
  InputArchive state_archive, groups_archive;
  if (!in.try_read("state", state_archive) || !in.try_read("param_groups", groups_archive))
    throw ValueError("optimizer state: the optimizer's save() wrote no state or param_groups "
                     "(an optimizer must save itself as LibTorch's do)");

  std::unordered_map<std::string, int64_t> index;
  const auto& groups = optimizer.param_groups();
  for (const auto& g : groups)
    for (const auto& p : g.params()) index.emplace(impl_key(p), int64_t(index.size()));

  std::map<int64_t, c10::impl::GenericDict> per_param;
  for (const auto& key : state_archive.keys()) {
    auto it = index.find(key);
    if (it == index.end())
      throw ValueError("optimizer state: the optimizer holds state for a tensor that is in "
                       "none of its param groups");
    InputArchive param_archive;
    state_archive.read(key, param_archive);
    per_param.emplace(it->second, archive_values(param_archive));
  }
  c10::impl::GenericDict state(c10::IntType::get(), c10::AnyType::get());
  for (auto& [i, values] : per_param) state.insert(i, values);

  c10::impl::GenericList param_groups(c10::AnyType::get());
  int64_t next = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    InputArchive group_archive, options_archive;
    groups_archive.read("param_groups/" + std::to_string(i), group_archive);
    group_archive.read("options", options_archive);
    c10::impl::GenericDict group = archive_values(options_archive);
    c10::List<int64_t> params;
    for (size_t j = 0; j < groups[i].params().size(); ++j) params.push_back(next++);
    group.insert("params", params);
    param_groups.push_back(group);
  }

  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("state", state);
  top.insert("param_groups", param_groups);
  return top;
}

void load_optimizer_state_dict(torch::optim::Optimizer& optimizer, const c10::IValue& value,
                               const std::string& source) {
  auto fail = [&](const std::string& what) { throw ValueError(source + ": " + what); };
  if (!value.isGenericDict())
    fail("expected PyTorch's optimizer state_dict layout (a dict of state and param_groups), "
         "got " +
         value.tagKind() + " (a checkpoint written before selfsup-checkpoint-2?)");
  const auto top = value.toGenericDict();
  for (const auto& item : top)
    if (!item.key().isString() ||
        (item.key().toStringRef() != "state" && item.key().toStringRef() != "param_groups"))
      fail("unexpected entry " + item.key().tagKind() + " " +
           (item.key().isString() ? "'" + item.key().toStringRef() + "'" : std::string()) +
           " (expected state and param_groups; a selfsup-checkpoint-1 file's flat optimizer "
           "state cannot be resumed, though load_from still takes its weights)");
  if (!top.contains("state") || !top.at("state").isGenericDict()) fail("no 'state' dict");
  if (!top.contains("param_groups") || !top.at("param_groups").isList())
    fail("no 'param_groups' list");
  const auto saved_state = top.at("state").toGenericDict();
  const auto saved_groups = top.at("param_groups").toList();
  auto& groups = optimizer.param_groups();
  if (saved_groups.size() != groups.size())
    fail(std::to_string(saved_groups.size()) + " param groups saved, the optimizer has " +
         std::to_string(groups.size()) + " (did the model or paramwise_cfg change?)");

  std::vector<torch::Tensor> params;
  for (const auto& g : groups)
    for (const auto& p : g.params()) params.push_back(p);
  if (params.empty()) fail("the optimizer has no parameters");

  try {
    OutputArchive out;
    out.write("pytorch_version", c10::IValue("1.5.0"));
    OutputArchive state_archive(out.compilation_unit());
    for (const auto& item : saved_state) {
      if (!item.key().isInt() || !item.value().isGenericDict())
        fail("state: expected parameter index -> dict entries");
      const int64_t i = item.key().toInt();
      if (i < 0 || i >= int64_t(params.size()))
        fail("state[" + std::to_string(i) + "]: no such parameter (the optimizer has " +
             std::to_string(params.size()) + ")");
      OutputArchive param_archive(out.compilation_unit());
      for (const auto& entry : item.value().toGenericDict()) {
        const std::string& name = entry.key().toStringRef();
        const c10::IValue& v = entry.value();
        if (v.isTensor() && v.toTensor().dim() > 0 &&
            !v.toTensor().sizes().equals(params[size_t(i)].sizes()))
          fail("state[" + std::to_string(i) + "]." + name + " has shape " +
               c10::str(v.toTensor().sizes()) + ", the parameter has " +
               c10::str(params[size_t(i)].sizes()));
        param_archive.write(name, v);
      }
      state_archive.write(std::to_string(i), param_archive);
    }
    out.write("state", state_archive);

    OutputArchive groups_archive(out.compilation_unit());
    groups_archive.write("param_groups/size", torch::tensor(int64_t(groups.size())));
    size_t next = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      const std::string where = "param_groups[" + std::to_string(g) + "]";
      if (!saved_groups.get(g).isGenericDict()) fail(where + ": expected a dict");
      const auto saved = saved_groups.get(g).toGenericDict();
      if (!saved.contains("params") || !saved.at("params").isIntList())
        fail(where + ": no 'params' list of parameter indices");
      const auto indices = saved.at("params").toIntList();
      if (indices.size() != groups[g].params().size())
        fail(where + " has " + std::to_string(indices.size()) + " parameters, the optimizer's " +
             std::to_string(groups[g].params().size()));
      OutputArchive group_archive(out.compilation_unit());
      group_archive.write("params/size", torch::tensor(int64_t(indices.size())));
      for (size_t j = 0; j < indices.size(); ++j) {
        if (indices.get(j) != int64_t(next + j))
          fail(where + ".params: expected index " + std::to_string(next + j) + ", got " +
               std::to_string(indices.get(j)) + " (parameters are numbered in group order)");
        group_archive.write("params/" + std::to_string(j), c10::IValue(std::to_string(next + j)));
      }
      next += indices.size();

      // Only the option names this optimizer's options write, which are all it reads.
      OutputArchive current(out.compilation_unit());
      groups[g].options().serialize(current);
      InputArchive current_in = reopen(current, c10::nullopt);
      const std::vector<std::string> known = current_in.keys();
      OutputArchive options_archive(out.compilation_unit());
      for (const auto& entry : saved) {
        const std::string& name = entry.key().toStringRef();
        if (name == "params") continue;
        if (std::find(known.begin(), known.end(), name) == known.end())
          fail(where + "." + name + ": not an option of this optimizer");
        options_archive.write(name, entry.value());
      }
      group_archive.write("options", options_archive);
      groups_archive.write("param_groups/" + std::to_string(g), group_archive);
    }
    out.write("param_groups", groups_archive);

    InputArchive in = reopen(out, params.front().device());
    optimizer.state().clear();
    optimizer.load(in); // the per-parameter state, by position
    // LibTorch's load() leaves the options as they are: read each group's itself.
    InputArchive groups_in;
    in.read("param_groups", groups_in);
    for (size_t g = 0; g < groups.size(); ++g) {
      InputArchive group_in, options_in;
      groups_in.read("param_groups/" + std::to_string(g), group_in);
      group_in.read("options", options_in);
      groups[g].options().serialize(options_in);
    }
  } catch (const c10::Error& e) {
    fail(std::string("does not fit the optimizer: ") + e.what_without_backtrace());
  }
}

void refuse_symlink(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
    throw ValueError(path + ": is a symbolic link; refusing to write through it (remove the "
                            "link, or choose another work dir)");
}

void write_file_atomic(const std::string& path, const std::string& text) {
  write_bytes_atomic(path, text.data(), text.size());
}

std::string first_nonfinite(const TensorMap& state) {
  for (const auto& [name, t] : state)
    if (t.defined() && t.is_floating_point() && !torch::isfinite(t).all().item<bool>()) return name;
  return "";
}

c10::impl::GenericDict mmengine_scheduler_state(const std::string& param_name, int64_t begin,
                                                int64_t end, bool by_epoch, int64_t global_step,
                                                const std::vector<double>& base_values,
                                                const std::vector<double>& last_values) {
  auto list = [](const std::vector<double>& values) {
    c10::impl::GenericList out(c10::AnyType::get());
    for (double v : values) out.push_back(v);
    return out;
  };
  // mmengine's step(): _global_step += 1, then last_step += 1 when begin <= _global_step < end.
  const int64_t inside =
      std::max<int64_t>(0, std::min(global_step + 1, end) - std::max<int64_t>(begin, 0));
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("param_name", param_name);
  d.insert("begin", begin);
  d.insert("end", end);
  d.insert("by_epoch", by_epoch);
  d.insert("base_values", list(base_values));
  d.insert("last_step", inside - 1);
  d.insert("_global_step", global_step);
  d.insert("verbose", false);
  d.insert("_last_value", list(last_values));
  return d;
}

void save_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  if (const std::string bad = first_nonfinite(ckpt.state_dict); !bad.empty())
    throw ValueError(path + ": refusing to write a checkpoint whose weights are not finite (" +
                     bad + " holds NaN or Inf: the run diverged)");
  const c10::impl::GenericDict meta = meta_dict(ckpt);
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("meta", meta);
  top.insert("state_dict", to_dict(ckpt.state_dict));
  top.insert("message_hub", message_hub(meta));
  const c10::IValue optimizer =
      without_paramwise_cfg(ckpt.meta) ? merged_groups(ckpt.optimizer) : ckpt.optimizer;
  if (!optimizer.isNone()) top.insert("optimizer", optimizer);
  if (!ckpt.param_schedulers.isNone())
    top.insert("param_schedulers", optimizer.isSameIdentity(ckpt.optimizer)
                                       ? ckpt.param_schedulers
                                       : one_group_schedulers(ckpt.param_schedulers));
  std::vector<char> bytes = torch::pickle_save(c10::IValue(top));
  add_checksum(bytes);
  write_bytes_atomic(path, bytes.data(), bytes.size());
}

Checkpoint load_checkpoint(const std::string& path) {
  std::error_code ec;
  if (fs::exists(path, ec) && !fs::is_regular_file(path, ec))
    throw ValueError(path + ": not a checkpoint file (a folder or a special file)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ValueError(path + ": cannot open checkpoint");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw ValueError(path + ": cannot read checkpoint");
  const bool checked = check_checksum(bytes, path);
  check_torch_archive(bytes, path); // what LibTorch would allocate is within the file
  c10::IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    throw ValueError(path + ": not a readable checkpoint (truncated or foreign format)");
  }
  if (!v.isGenericDict()) throw ValueError(path + ": not a selfsup checkpoint (no dict)");
  auto top = v.toGenericDict();
  auto get = [&](const char* key) -> c10::IValue {
    if (!top.contains(key))
      throw ValueError(path + ": not a selfsup checkpoint (no '" + key + "')");
    return top.at(key);
  };
  const std::string readable = std::string("this selfsup reads ") + kCheckpointFormat +
                               ", selfsup-checkpoint-3 and selfsup-checkpoint-2";
  auto unsigned_file = [&](const std::string& format) {
    return ValueError(path + ": corrupt checkpoint: " + format +
                      " without its checksum (truncated or rewritten)");
  };
  Checkpoint c;
  if (get("meta").isGenericDict()) { // selfsup-checkpoint-4: mmengine's layout
    const auto meta = get("meta").toGenericDict();
    if (!meta.contains("selfsup_format") || !meta.at("selfsup_format").isString())
      throw ValueError(path +
                       ": not a selfsup checkpoint (meta has no selfsup_format: an "
                       "mmengine checkpoint? " +
                       readable + ")");
    const std::string format = meta.at("selfsup_format").toStringRef();
    if (format != kCheckpointFormat)
      throw ValueError(path + ": checkpoint format '" + format + "' is not known (" + readable +
                       "; a newer selfsup wrote it?)");
    if (!checked) throw unsigned_file(format);
    for (const auto& item : meta) {
      if (!item.key().isString()) continue;
      const std::string& key = item.key().toStringRef();
      if (key == "selfsup_rng") {
        c.rng = from_ivalue(item.value(), path + ": meta.selfsup_rng");
      } else if (key == "cfg" && item.value().isString()) {
        c.meta.set("config", Json::parse(item.value().toStringRef(), path + ":meta.cfg"));
      } else if (auto j = to_json(item.value())) {
        c.meta.set(key, std::move(*j));
      }
    }
    c.state_dict = from_ivalue(get("state_dict"), path + ": state_dict");
    if (top.contains("optimizer")) c.optimizer = split_groups(top.at("optimizer"));
    if (top.contains("param_schedulers")) c.param_schedulers = top.at("param_schedulers");
    return c;
  }
  // selfsup-checkpoint-3 (with a format key and the checksum) and -2 (neither).
  if (top.contains("format")) {
    const std::string format =
        top.at("format").isString() ? top.at("format").toStringRef() : "(not a string)";
    if (format != "selfsup-checkpoint-3")
      throw ValueError(path + ": checkpoint format '" + format + "' is not known (" + readable +
                       ")");
    if (!checked) throw unsigned_file(format);
  }
  if (!get("meta").isString()) throw ValueError(path + ": not a selfsup checkpoint (meta)");
  c.meta = Json::parse(get("meta").toStringRef(), path + ":meta");
  c.state_dict = from_ivalue(get("state_dict"), path + ": state_dict");
  c.optimizer = get("optimizer"); // checked when an optimizer loads it
  c.rng = from_ivalue(get("rng"), path + ": rng");
  return c;
}

TensorMap module_state(const torch::nn::Module& module) {
  TensorMap m;
  for (const auto& p : module.named_parameters(true)) m[p.key()] = p.value().detach().clone();
  for (const auto& b : module.named_buffers(true)) m[b.key()] = b.value().detach().clone();
  return m;
}

void load_module_state(torch::nn::Module& module, const TensorMap& state,
                       const std::string& source) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> missing, bad;
  size_t used = 0;
  auto copy = [&](const std::string& name, torch::Tensor& dst) {
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
      return;
    }
    ++used;
    if (!it->second.sizes().equals(dst.sizes())) {
      bad.push_back(name + " " + c10::str(it->second.sizes()) + " vs " + c10::str(dst.sizes()));
      return;
    }
    dst.copy_(it->second);
  };
  for (auto& p : module.named_parameters(true)) copy(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) copy(b.key(), b.value());
  std::string msg;
  if (!missing.empty())
    msg += " missing: " + missing.front() +
           (missing.size() > 1 ? " (+" + std::to_string(missing.size() - 1) + " more)" : "") + ";";
  if (!bad.empty()) msg += " shape mismatch: " + bad.front() + ";";
  if (used != state.size())
    msg += " " + std::to_string(state.size() - used) + " unexpected entries;";
  if (!msg.empty()) throw ValueError(source + ": the weights do not fit the model:" + msg);
}

} // namespace selfsup::core
