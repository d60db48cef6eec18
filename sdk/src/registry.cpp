#include <selfsup/registry.h>

#include <cxxabi.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <functional>
#include <set>

#include "nearest.h"

namespace selfsup {

const std::vector<std::string>& registry_kinds() {
  static const std::vector<std::string> kinds{
      "algorithm",        "backbone",          "neck",          "head",      "loss",    "memory",
      "target_generator", "data_preprocessor", "dataset",       "transform", "sampler", "hook",
      "optimizer",        "param_scheduler",   "optim_wrapper", "train_loop"};
  return kinds;
}

Registry& Registry::global() {
  static Registry registry;
  return registry;
}

RegistryEntry::RegistryEntry(std::string kind_, std::string name_, std::string plugin_,
                             std::string file_, Schema schema_, std::type_index interface_,
                             Factory factory)
    : kind(std::move(kind_)), name(std::move(name_)), plugin(std::move(plugin_)),
      file(std::move(file_)), schema(std::move(schema_)), interface(interface_),
      factory_(std::move(factory)) {}

std::string RegistryEntry::provider() const {
  return "plugin '" + plugin + "' (" + file + ")";
}

namespace {

std::string demangle(const char* mangled) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string out = status == 0 && demangled ? demangled : mangled;
  std::free(demangled);
  return out;
}

// A kind is an identifier: lower-case letters, digits and '_', starting with a letter.
bool valid_kind(const std::string& kind) {
  if (kind.empty() || !std::islower(static_cast<unsigned char>(kind[0]))) return false;
  return std::all_of(kind.begin(), kind.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c)) || c == '_';
  });
}

size_t kind_rank(const std::string& kind) {
  const auto& order = registry_kinds();
  return size_t(std::find(order.begin(), order.end(), kind) - order.begin());
}

// Known kinds in registry_kinds() order, then the others alphabetically.
bool kind_less(const std::string& a, const std::string& b) {
  size_t ra = kind_rank(a), rb = kind_rank(b);
  return ra != rb ? ra < rb : a < b;
}

// OpenMMLab scopes name a package, not a plugin: any provider of the type will do, so
// MMSelfSup configs ("mmcls.CrossEntropyLoss") read as they are. Where that package's
// semantics differ from MMSelfSup's, a plugin registers a scope variant under the scoped name
// ("mmcls.ResNet"), which the scoped name then finds first.
bool is_openmmlab_scope(const std::string& scope) {
  static const char* const kScopes[] = {"mmcls", "mmselfsup", "mmpretrain", "mmengine", "mmdet"};
  return std::any_of(std::begin(kScopes), std::end(kScopes),
                     [&](const char* s) { return scope == s; });
}

// A type name as written: "[plugin.][openmmlab scope.]Type".
struct TypeName {
  std::string plugin; // "" for any
  std::string scope;  // an OpenMMLab scope, or ""
  std::string type;
};

TypeName parse_name(const std::string& name) {
  TypeName out;
  const auto dot = name.rfind('.');
  if (dot == std::string::npos) {
    out.type = name;
    return out;
  }
  out.type = name.substr(dot + 1);
  const std::string rest = name.substr(0, dot);
  const auto dot2 = rest.rfind('.');
  const std::string last = dot2 == std::string::npos ? rest : rest.substr(dot2 + 1);
  if (is_openmmlab_scope(last)) {
    out.scope = last;
    out.plugin = dot2 == std::string::npos ? "" : rest.substr(0, dot2);
  } else {
    out.plugin = rest;
  }
  return out;
}

// A registered name: "Type", or a scope variant "<OpenMMLab scope>.Type".
bool valid_name(const std::string& name) {
  if (name.empty()) return false;
  const auto dot = name.find('.');
  if (dot == std::string::npos) return true;
  return dot + 1 < name.size() && name.find('.', dot + 1) == std::string::npos &&
         is_openmmlab_scope(name.substr(0, dot));
}

// "neck type 'MLP' is provided by 2 plugins: plugin 'a' (liba.so) and plugin 'b' (libb.so);
// write 'a.MLP' or 'b.MLP' to choose one".
std::string ambiguity(const std::string& kind, const std::string& name,
                      const std::vector<const RegistryEntry*>& found) {
  std::string who, choices;
  for (size_t i = 0; i < found.size(); ++i) {
    const char* sep = i == 0 ? "" : (i + 1 == found.size() ? " and " : ", ");
    const char* alt = i == 0 ? "" : (i + 1 == found.size() ? " or " : ", ");
    who += sep + found[i]->provider();
    choices += std::string(alt) + "'" + found[i]->plugin + "." + found[i]->name + "'";
  }
  return kind + " type '" + name + "' is provided by " + std::to_string(found.size()) +
         " plugins: " + who + "; write " + choices + " to choose one";
}

} // namespace

std::string RegistryEntry::interface_name() const {
  return demangle(interface.name());
}

void Registry::commit(std::vector<RegistryEntry> entries) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    if (!valid_kind(e.kind))
      throw RegistryError(e.provider() + ": invalid kind '" + e.kind + "' for type '" + e.name +
                          "' (expected an identifier of [a-z0-9_] starting with a letter)");
    if (!valid_name(e.name))
      throw RegistryError(e.provider() + ": invalid type name '" + e.name + "' (" + e.kind +
                          "; expected a non-empty name without '.', or a scope variant "
                          "'<scope>.Type' of an OpenMMLab scope: mmcls, mmselfsup, mmpretrain, "
                          "mmengine, mmdet)");
    if (!e.factory_) throw RegistryError(e.provider() + ": type '" + e.name + "' has no factory");
    for (const auto& have : entries_)
      if (have->kind == e.kind && have->name == e.name && have->plugin == e.plugin)
        throw RegistryError(e.provider() + ": " + e.kind + " type '" + e.name +
                            "' is already registered by " + have->provider() +
                            " under the same plugin name");
    for (size_t j = 0; j < i; ++j)
      if (entries[j].kind == e.kind && entries[j].name == e.name)
        throw RegistryError(e.provider() + ": " + e.kind + " type '" + e.name +
                            "' is registered twice by the same plugin");
  }
  for (auto& e : entries) entries_.push_back(std::make_unique<RegistryEntry>(std::move(e)));
}

std::vector<const RegistryEntry*> Registry::providers_locked(const std::string& kind,
                                                             const std::string& name) const {
  const TypeName n = parse_name(name);
  std::vector<const RegistryEntry*> out;
  auto collect = [&](const std::string& entry_name) {
    for (const auto& e : entries_)
      if (e->kind == kind && e->name == entry_name && (n.plugin.empty() || n.plugin == e->plugin))
        out.push_back(e.get());
  };
  // "mmcls.Type": the mmcls variant where a plugin registered one, else the plain type.
  if (!n.scope.empty()) collect(n.scope + "." + n.type);
  if (out.empty()) collect(n.type);
  return out;
}

std::vector<const RegistryEntry*> Registry::providers(const std::string& kind,
                                                      const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return providers_locked(kind, name);
}

const RegistryEntry* Registry::find(const std::string& kind, const std::string& name) const {
  auto found = providers(kind, name);
  if (found.size() > 1) throw RegistryError(ambiguity(kind, name, found));
  return found.empty() ? nullptr : found[0];
}

std::vector<const RegistryEntry*> Registry::entries(const std::string& kind) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<const RegistryEntry*> out;
  for (const auto& e : entries_)
    if (kind.empty() || e->kind == kind) out.push_back(e.get());
  std::sort(out.begin(), out.end(), [](const RegistryEntry* a, const RegistryEntry* b) {
    if (a->kind != b->kind) return kind_less(a->kind, b->kind);
    return a->name != b->name ? a->name < b->name : a->plugin < b->plugin;
  });
  return out;
}

std::vector<std::string> Registry::kinds() const {
  std::vector<std::string> out = registry_kinds();
  std::set<std::string> others;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& e : entries_)
      if (kind_rank(e->kind) == registry_kinds().size()) others.insert(e->kind);
  }
  out.insert(out.end(), others.begin(), others.end());
  return out;
}

std::shared_ptr<void> Registry::build_checked(const std::string& kind, const std::type_info& type,
                                              const Config& cfg) const {
  if (!cfg.is_object())
    cfg.fail("expected a dict with a 'type' key (a " + kind + "), got " +
             describe_value(cfg.json()));
  if (!cfg.has("type"))
    cfg.fail_key("type", "required key is missing (the " + kind + " type name)");
  const std::string name = cfg["type"].as<std::string>();
  const auto found = providers(kind, name);
  if (found.size() > 1) cfg.fail_key("type", ambiguity(kind, name, found));
  if (found.empty()) cfg.fail_key("type", unknown_type(kind, name));
  const RegistryEntry& entry = *found[0];
  if (entry.interface != std::type_index(type))
    cfg.fail_key("type", kind + " type '" + name + "' from " + entry.provider() +
                             " was registered as " + entry.interface_name() +
                             ", which cannot be built as " + demangle(type.name()));
  // The factory's Config, and the children it builds from it, use this registry.
  Config filled = Config(entry.schema.apply(cfg), cfg.path()).with_registry(*this);
  std::shared_ptr<void> product;
  try {
    product = entry.factory_(filled);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw ValueError(cfg.where() + " (" + kind + " '" + entry.name + "' from plugin '" +
                     entry.plugin + "'): " + e.what());
  }
  if (!product)
    throw RegistryError(cfg.where() + ": factory of " + kind + " '" + entry.name + "' from " +
                        entry.provider() + " returned nothing");
  return product;
}

std::string Registry::unknown_type(const std::string& kind, const std::string& name) const {
  std::set<std::string> known;
  const std::string bare = parse_name(name).type;
  for (const auto* e : entries(kind)) known.insert(e->name);
  const std::string best = detail::nearest(bare, {known.begin(), known.end()});
  std::string msg = "unknown " + kind + " type '" + name + "'";
  if (bare != name && known.count(bare)) {
    msg += "; '" + bare + "' is provided by";
    for (const auto* e : providers(kind, bare)) msg += " plugin '" + e->plugin + "'";
  } else if (!best.empty()) {
    msg += "; did you mean '" + best + "'?";
  }
  std::string list;
  for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
  msg += " (registered: " + (list.empty() ? std::string("none") : list) + ")";
  for (const auto& [file, reason] : refused())
    msg += "\n  note: plugin file " + file + " was refused: " + reason;
  return msg;
}

// ---- pre-flight -----------------------------------------------------------------------

namespace {

// Walks a config along its schemas, collecting every problem.
class Walker {
public:
  using Unknown = std::function<std::string(const std::string& kind, const std::string& name)>;
  Walker(const Registry& registry, Unknown unknown, std::vector<std::string>& out)
      : registry_(registry), unknown_(std::move(unknown)), out_(out) {}

  // A dict checked against `schema`, then the components and nested dicts it declares; its
  // validator runs when nothing below was wrong. `wrapper_keys`: keys that are not the
  // validator's (read by someone else) and are dropped before it runs.
  void node(const Config& cfg, const Schema& schema,
            const std::vector<std::string>& wrapper_keys = {},
            const std::function<void(const Config&)>* validator = nullptr) {
    const size_t before = out_.size();
    schema.collect(cfg, out_);
    if (!cfg.is_object()) return;
    children(cfg, schema);
    const auto& check = validator ? *validator : schema.validator();
    if (out_.size() != before || !check) return;
    Json own = cfg.json();
    for (const auto& k : wrapper_keys) own.erase(k);
    guard(cfg, [&] { check(cfg.derive(std::move(own), cfg.path())); });
  }

  // One component of `kind`: its type, then its schema (plus the wrapper's keys).
  void component(const std::string& kind, const Config& cfg, const std::string& default_type,
                 const Schema* wrapper) {
    if (!cfg.is_object()) {
      add(cfg.where() + ": expected a dict with a 'type' key (a " + kind + "), got " +
          describe_value(cfg.json()));
      return;
    }
    std::string name = default_type;
    if (cfg.has("type")) {
      const Config t = cfg["type"];
      if (!t.json().is_string()) {
        add(t.where() + ": expected a string (the " + kind + " type name), got " +
            describe_value(t.json()));
        if (wrapper) children(cfg, *wrapper);
        return;
      }
      name = t.json().as_string();
    } else if (name.empty()) {
      add(cfg.path_of("type") + ": required key is missing (the " + kind + " type name)");
      if (wrapper) children(cfg, *wrapper);
      return;
    }
    const RegistryEntry* entry = nullptr;
    if (!guard(cfg, [&] {
          const auto found = registry_.providers(kind, name);
          if (found.size() > 1) {
            try {
              (void)registry_.find(kind, name); // throws the ambiguity
            } catch (const RegistryError& e) {
              throw ConfigError(cfg.path_of("type") + ": " + e.what());
            }
          }
          if (found.empty()) throw ConfigError(cfg.path_of("type") + ": " + unknown_(kind, name));
          entry = found[0];
        })) {
      if (wrapper) children(cfg, *wrapper); // the wrapper's keys are still worth a look
      return;
    }
    if (!wrapper) {
      node(cfg, entry->schema);
      return;
    }
    Schema with_wrapper = entry->schema; // the wrapper's keys join (its validator goes)
    with_wrapper.extend(*wrapper);
    std::vector<std::string> wrapper_keys;
    for (const auto& a : wrapper->args())
      if (!entry->schema.find(a.name)) wrapper_keys.push_back(a.name);
    node(cfg, with_wrapper, wrapper_keys, &entry->schema.validator());
  }

private:
  // The components and nested dicts `schema` declares in `cfg` (a dict).
  void children(const Config& cfg, const Schema& schema) {
    for (const auto& spec : schema.args()) {
      if (!cfg.has(spec.name)) continue;
      const Config value = cfg[spec.name];
      if (!spec.component.empty()) {
        components(value, spec);
      } else if (spec.fields && value.is_object()) {
        node(value, *spec.fields);
      }
    }
  }

  // A component value: a dict, or a list whose elements are components (lists nest).
  void components(const Config& value, const ArgSpec& spec) {
    if (value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) components(value.at(i), spec);
      return;
    }
    component(spec.component, value, spec.default_type, spec.fields.get());
  }

  // Runs `f`, collecting what it throws; returns whether it did not throw.
  template <class F> bool guard(const Config& cfg, F&& f) {
    try {
      f();
      return true;
    } catch (const ConfigError& e) {
      add(e.what());
    } catch (const RegistryError& e) {
      add(cfg.where() + ": " + e.what());
    } catch (const std::exception& e) {
      add(cfg.where() + ": " + e.what());
    }
    return false;
  }

  void add(std::string problem) {
    if (std::find(out_.begin(), out_.end(), problem) == out_.end())
      out_.push_back(std::move(problem));
  }

  const Registry& registry_;
  Unknown unknown_;
  std::vector<std::string>& out_;
};

} // namespace

std::vector<std::string> Registry::validate(const Config& cfg, const Schema& schema) const {
  std::vector<std::string> out;
  Walker walker(
      *this, [this](const std::string& k, const std::string& n) { return unknown_type(k, n); },
      out);
  walker.node(cfg.with_registry(*this), schema);
  return out;
}

std::vector<std::string> Registry::validate_component(const std::string& kind,
                                                      const Config& cfg) const {
  std::vector<std::string> out;
  Walker walker(
      *this, [this](const std::string& k, const std::string& n) { return unknown_type(k, n); },
      out);
  walker.component(kind, cfg.with_registry(*this), "", nullptr);
  return out;
}

void Registry::note_refused(const std::string& file, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  refused_.emplace_back(file, reason);
}

std::vector<std::pair<std::string, std::string>> Registry::refused() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return refused_;
}

void Registry::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.clear();
  refused_.clear();
}

Registrar::Registrar(std::string plugin, std::string file)
    : plugin_(std::move(plugin)), file_(std::move(file)) {}

void Registrar::stage(const std::string& kind, const std::type_info& type, const std::string& name,
                      RegistryEntry::Factory factory, Schema schema) {
  staged_.push_back(RegistryEntry(kind, name, plugin_, file_, std::move(schema),
                                  std::type_index(type), std::move(factory)));
}

void Registrar::commit(Registry& registry) {
  registry.commit(std::move(staged_));
  staged_.clear();
}

} // namespace selfsup
