#include <selfsup/core/checkpoint.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <torch/torch.h>

#include <selfsup/errors.h>
#include <selfsup/version.h>

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

void write_bytes_atomic(const std::string& path, const char* data, size_t size) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw ValueError(tmp + ": cannot create: " + std::strerror(errno));
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw ValueError(tmp + ": write failed: " + std::strerror(err));
    }
    done += size_t(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw ValueError(tmp + ": cannot flush: " + std::strerror(errno));
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
    m[item.key().toStringRef()] = item.value().toTensor();
  }
  return m;
}

} // namespace

void write_file_atomic(const std::string& path, const std::string& text) {
  write_bytes_atomic(path, text.data(), text.size());
}

void save_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("format", std::string("selfsup-checkpoint-1"));
  top.insert("meta", ckpt.meta.dump());
  top.insert("state_dict", to_dict(ckpt.state_dict));
  top.insert("optimizer", to_dict(ckpt.optimizer));
  top.insert("rng", to_dict(ckpt.rng));
  std::vector<char> bytes = torch::pickle_save(c10::IValue(top));
  write_bytes_atomic(path, bytes.data(), bytes.size());
}

Checkpoint load_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ValueError(path + ": cannot open checkpoint");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
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
  Checkpoint c;
  c.meta = Json::parse(get("meta").toStringRef(), path + ":meta");
  c.state_dict = from_ivalue(get("state_dict"), path + ": state_dict");
  c.optimizer = from_ivalue(get("optimizer"), path + ": optimizer");
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
