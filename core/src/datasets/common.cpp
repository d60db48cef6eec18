// Helpers shared by the engine's file-backed datasets.
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <selfsup/errors.h>

namespace selfsup::core {

namespace {
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
} // namespace

std::vector<uint8_t> read_regular_file(const std::string& path, uint64_t max_bytes,
                                       const std::string& what) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0)
    throw ValueError(path + ": cannot open " + what + " (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(f.fd, &st) != 0)
    throw ValueError(path + ": cannot stat " + what + " (" + std::strerror(errno) + ")");
  if (!S_ISREG(st.st_mode)) throw ValueError(path + ": " + what + " is not a regular file");
  if (uint64_t(st.st_size) > max_bytes)
    throw ValueError(path + ": " + what + " of " + std::to_string(st.st_size) +
                     " bytes is larger than the limit of " + std::to_string(max_bytes) + " bytes");
  std::vector<uint8_t> out(size_t(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t got = ::read(f.fd, out.data() + done, out.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0)
      throw ValueError(path + ": cannot read " + what + " (" + std::strerror(errno) + ")");
    if (got == 0) break; // shrank while reading
    done += size_t(got);
  }
  out.resize(done);
  return out;
}

} // namespace selfsup::core
