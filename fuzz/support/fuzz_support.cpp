#include "fuzz_support.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <typeinfo>

#include <cxxabi.h>
#include <unistd.h>

#include <selfsup/errors.h>

namespace fs = std::filesystem;

namespace selfsup::fuzz {

namespace {

std::string demangled(const char* name) {
  int status = 0;
  char* text = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && text ? text : name;
  std::free(text);
  return out;
}

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "\nselfsup fuzz finding: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

} // namespace

const std::string& private_dir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/selfsup-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) finding("cannot create a private folder from " + pattern);
    static std::string removed;
    removed = pattern;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(removed, ec);
    });
    return pattern;
  }();
  return dir;
}

std::string write_file(const std::string& name, std::string_view bytes) {
  const std::string path = private_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  out.close();
  if (!out) finding("cannot write " + path);
  return path;
}

std::vector<std::string_view> split(std::string_view input, std::string_view separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t at = input.find(separator, start);
    if (at == std::string_view::npos) break;
    parts.push_back(input.substr(start, at - start));
    start = at + separator.size();
  }
  parts.push_back(input.substr(start));
  return parts;
}

bool run_expecting(const std::function<void()>& body) {
  try {
    body();
    return true;
  } catch (const selfsup::Error&) {
    return false; // refused with a message: what a reader should do
  } catch (const std::exception& e) {
    finding("an exception other than selfsup::Error escaped: " + demangled(typeid(e).name()) +
            ": " + e.what());
  } catch (...) {
    finding("an exception of unknown type escaped");
  }
}

void check(bool ok, const std::string& what) {
  if (!ok) finding(what);
}

void maybe_write_seeds(const std::function<void(const std::string& dir)>& write) {
  const char* dir = std::getenv("SELFSUP_FUZZ_WRITE_SEEDS");
  if (!dir || !*dir) return;
  fs::create_directories(dir);
  write(dir);
  std::exit(0);
}

} // namespace selfsup::fuzz
