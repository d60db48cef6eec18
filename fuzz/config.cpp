// Fuzzes the config loader: load_config_file with `_base_` inheritance, then
// `--cfg-options` overrides (apply_override, parse_override_value).
//
// Input: parts separated by a line "---":
//   main.json \n---\n base.json \n---\n override \n---\n override ...
// main.json and base.json are written to a private folder (main.json may name "base.json",
// itself, or anything else as its `_base_`); each further part is one `key=value` override.
// Accepted configs must keep their promises: no `_delete_` left after loading, and what
// dump() writes (the merged config of a work dir) reads back as the same config.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <selfsup/core/config_file.h>
#include <selfsup/json.h>

#include "support/fuzz_support.h"

namespace {

using selfsup::Json;
namespace fuzz = selfsup::fuzz;

bool has_delete_key(const Json& j) {
  if (j.is_object()) {
    if (j.find("_delete_")) return true;
    for (size_t i = 0; i < j.size(); ++i)
      if (has_delete_key(j.at(i))) return true;
  } else if (j.is_array()) {
    for (const auto& e : j.items())
      if (has_delete_key(e)) return true;
  }
  return false;
}

void check_round_trip(const Json& cfg, const char* stage) {
  for (int indent : {-1, 2}) {
    const std::string text = cfg.dump(indent);
    Json back;
    const bool read = fuzz::run_expecting([&] { back = Json::parse(text, "dump"); });
    fuzz::check(read, std::string(stage) + ": the config's dump() is refused by Json::parse:\n" +
                          text.substr(0, 2000));
    fuzz::check(back == cfg, std::string(stage) + ": dump() reads back as another config:\n" +
                                 text.substr(0, 2000));
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts =
      fuzz::split(std::string_view(reinterpret_cast<const char*>(data), size), "\n---\n");
  const std::string main = fuzz::write_file("main.json", parts[0]);
  fuzz::write_file("base.json", parts.size() > 1 ? parts[1] : std::string_view());

  // Each override value alone, as the command line's parser reads it.
  for (size_t i = 2; i < parts.size(); ++i) {
    const std::string_view text = parts[i];
    const size_t eq = text.find('=');
    const std::string value(eq == std::string_view::npos ? text : text.substr(eq + 1));
    fuzz::run_expecting([&] {
      Json parsed = selfsup::core::parse_override_value(value);
      check_round_trip(parsed, "parse_override_value");
    });
  }

  Json cfg;
  if (!fuzz::run_expecting([&] { cfg = selfsup::core::load_config_file(main); })) return 0;
  fuzz::check(cfg.is_object(), "load_config_file returned a non-object");
  fuzz::check(!cfg.find("_base_"), "load_config_file left a top-level _base_");
  fuzz::check(!has_delete_key(cfg), "load_config_file left a _delete_ key");
  check_round_trip(cfg, "load_config_file");

  for (size_t i = 2; i < parts.size(); ++i)
    if (!fuzz::run_expecting([&] { selfsup::core::apply_override(cfg, std::string(parts[i])); }))
      return 0;
  check_round_trip(cfg, "apply_override");
  return 0;
}
