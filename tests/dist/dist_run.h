#pragma once
// Starting the ranks of a multi-process test on 127.0.0.1: each rank a shell command with
// torchrun's environment variables, a free port per run, output and exit code per rank.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "test_support.h"

namespace selfsup::test {

/// A TCP port that was free a moment ago (bound to port 0, then released).
inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

struct RankResult {
  int code = -1;
  std::string output;
};

struct RanksResult {
  std::vector<RankResult> ranks;
  double seconds = 0; // wall time until the last rank ended
};

/// Runs `commands[r]` as rank r of a world of commands.size() (RANK, WORLD_SIZE, LOCAL_RANK,
/// LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT=a free port) and waits for all.
inline RanksResult run_ranks(const std::vector<std::string>& commands,
                             const std::filesystem::path& dir) {
  const int port = free_port();
  const size_t world = commands.size();
  std::string script;
  for (size_t r = 0; r < world; ++r) {
    const std::string out = (dir / ("rank" + std::to_string(r))).string();
    script += "(RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r) +
              " WORLD_SIZE=" + std::to_string(world) +
              " LOCAL_WORLD_SIZE=" + std::to_string(world) +
              " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " " + commands[r] +
              " > " + out + ".log 2>&1; echo $? > " + out + ".rc) & ";
  }
  script += "wait";
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(("sh -c '" + script + "'").c_str());
  RanksResult res;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(status, 0) << script;
  for (size_t r = 0; r < world; ++r) {
    const std::filesystem::path out = dir / ("rank" + std::to_string(r));
    RankResult rr;
    const std::string rc = read_text(out.string() + ".rc");
    rr.code = rc.empty() ? -1 : std::atoi(rc.c_str());
    rr.output = read_text(out.string() + ".log");
    res.ranks.push_back(rr);
  }
  return res;
}

} // namespace selfsup::test
