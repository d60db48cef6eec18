#pragma once
// What every libFuzzer harness of fuzz/ shares: a private folder for the files a reader
// needs, and the rule of what counts as a finding.
//
// A reader may refuse its input only with a selfsup::Error (ConfigError, ValueError, ...),
// whose text names the file. Anything else is a finding: a crash or a sanitizer report
// (libFuzzer stops by itself), another exception type escaping the reader (run_expecting
// aborts, naming it), a leak, a timeout or running out of memory (libFuzzer's -timeout,
// -rss_limit_mb and -malloc_limit_mb).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace selfsup::fuzz {

/// A folder of this process's own (made once, under $TMPDIR or /tmp, removed at exit).
const std::string& private_dir();

/// Writes `bytes` to `name` in private_dir() (replacing it) and returns its path.
std::string write_file(const std::string& name, std::string_view bytes);

/// Splits `input` at each occurrence of `separator`.
std::vector<std::string_view> split(std::string_view input, std::string_view separator);

/// Runs `body`; a selfsup::Error is an expected refusal (returns false), any other exception
/// is a finding (prints its type and text, then aborts). Returns true when `body` accepted.
bool run_expecting(const std::function<void()>& body);

/// Aborts with `what` when `ok` is false: a property of accepted inputs that does not hold.
void check(bool ok, const std::string& what);

/// When SELFSUP_FUZZ_WRITE_SEEDS names a folder, `write` is called with it, then the process
/// exits: a harness regenerates the seeds it can make with the current writer
/// (scripts/fuzz.sh --seeds). Call from LLVMFuzzerInitialize.
void maybe_write_seeds(const std::function<void(const std::string& dir)>& write);

} // namespace selfsup::fuzz
