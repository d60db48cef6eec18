#include <iostream>

#include <boost/program_options.hpp>

#include <selfsup/registry.h>

#include "cli.h"

namespace po = boost::program_options;

namespace selfsup::host {

int cmd_list(int argc, char** argv) {
  po::options_description opts("selfsup list [options]");
  std::vector<std::string> plugin_dirs;
  opts.add_options()("help,h", "show this help")("verbose,v", "also print each type's arguments")(
      "json", "machine-readable output: {plugins, types: {kind: [{name, plugin, file, doc, "
              "shared_with}]}, refused, scan: {scanned, cached}}")(
      "plugin-dir", po::value(&plugin_dirs), "also load plugins from this folder (repeatable)")(
      "allow-insecure-plugins", "load plugins from folders or files others can write to");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << "Lists every plugin (version, file) and every registered type by kind.\n"
              << opts << "\n";
    return kOk;
  }
  const bool verbose = vm.count("verbose") > 0;
  core::PluginLoader loader;
  if (vm.count("json")) loader.on_refusal = nullptr; // reported inside the JSON instead
  load_plugins(loader, plugin_dirs, vm.count("allow-insecure-plugins") > 0);
  const auto& registry = Registry::global();
  // The other plugins that provide an entry's name under its kind (a bare name is then
  // ambiguous: configs choose with "plugin.Type").
  auto shared_with = [&](const RegistryEntry& e) {
    std::vector<std::string> others;
    for (const auto* o : registry.providers(e.kind, e.name))
      if (o != &e) others.push_back(o->plugin);
    return others;
  };

  if (vm.count("json")) {
    Json plugins = Json::array();
    for (const auto& p : loader.plugins()) {
      Json types = Json::array();
      for (const auto& t : p.types) types.push_back(t);
      Json j = Json::object({{"name", p.name}, {"version", p.version}, {"file", p.file}});
      j.set("selfsup_version", p.selfsup_version);
      j.set("torch_version", p.torch_version);
      j.set("types", types);
      plugins.push_back(std::move(j));
    }
    Json types = Json::object();
    for (const auto& kind : registry.kinds()) {
      Json list = Json::array();
      for (const auto* e : registry.entries(kind)) {
        Json j = Json::object({{"name", e->name}, {"plugin", e->plugin}, {"file", e->file}});
        j.set("doc", e->schema.doc());
        Json others = Json::array();
        for (const auto& o : shared_with(*e)) others.push_back(o);
        j.set("shared_with", std::move(others));
        if (verbose)
          j.set("args", e->schema.to_json().find("args") ? *e->schema.to_json().find("args")
                                                         : Json::array());
        list.push_back(std::move(j));
      }
      types.set(kind, std::move(list));
    }
    Json refused = Json::array();
    for (const auto& r : loader.refusals())
      refused.push_back(Json::object({{"file", r.file}, {"reason", r.reason}}));
    // How many plugin files the helper process scanned, and how many verdicts came from the
    // registry cache (unchanged files).
    Json scan = Json::object({{"scanned", int64_t(loader.scan_stats().scanned)},
                              {"cached", int64_t(loader.scan_stats().cached)}});
    Json out = Json::object(
        {{"plugins", plugins}, {"types", types}, {"refused", refused}, {"scan", scan}});
    std::cout << out.dump(2) << "\n";
    return kOk;
  }

  std::cout << "Plugins:\n";
  for (const auto& p : loader.plugins())
    std::cout << "  " << p.name << " " << p.version << "  " << p.file << "\n";
  bool any_shared = false;
  for (const auto& kind : registry.kinds()) {
    auto entries = registry.entries(kind);
    if (entries.empty()) continue;
    std::cout << "\n" << kind << ":\n";
    for (const auto* e : entries) {
      std::string name = e->name;
      name.resize(std::max<size_t>(name.size(), 24), ' ');
      std::cout << "  " << name << " [" << e->plugin << "] " << e->schema.doc();
      const auto others = shared_with(*e);
      if (!others.empty()) {
        any_shared = true;
        std::cout << "  (*) also in";
        for (const auto& o : others) std::cout << " '" << o << "'";
        std::cout << ": write '" << e->plugin << "." << e->name << "'";
      }
      std::cout << "\n";
      if (!verbose) continue;
      for (const auto& a : e->schema.args()) {
        std::cout << "      " << a.name << ": " << arg_type_name(a.type);
        if (a.required) {
          std::cout << " (required)";
        } else if (!a.default_value.is_null()) {
          std::cout << " = " << a.default_value.dump();
        }
        if (!a.constraints.empty()) std::cout << "  [" << a.describe() << "]";
        std::cout << "  " << a.doc << "\n";
      }
    }
  }
  if (any_shared)
    std::cout << "\n(*) a name several plugins provide: a config chooses one with "
                 "\"plugin.Type\"; the bare name is an error.\n";
  if (!loader.refusals().empty()) {
    std::cout << "\nRefused:\n";
    for (const auto& r : loader.refusals()) std::cout << "  " << r.file << ": " << r.reason << "\n";
  }
  return kOk;
}

} // namespace selfsup::host
