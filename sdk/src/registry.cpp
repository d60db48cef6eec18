#include <selfsup/registry.h>

#include <algorithm>

namespace selfsup {

const std::vector<std::string>& registry_kinds() {
  static const std::vector<std::string> kinds{"algorithm",
                                              "backbone",
                                              "neck",
                                              "head",
                                              "loss",
                                              "memory",
                                              "target_generator",
                                              "dataset",
                                              "transform",
                                              "optimizer",
                                              "param_scheduler",
                                              "hook"};
  return kinds;
}

Registry& Registry::global() {
  static Registry registry;
  return registry;
}

namespace {

bool known_kind(const std::string& kind) {
  const auto& k = registry_kinds();
  return std::find(k.begin(), k.end(), kind) != k.end();
}

std::string provider(const RegistryEntry& e) {
  return "plugin '" + e.plugin + "' (" + e.file + ")";
}

// Edit distance, for "did you mean".
size_t distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cur = row[j];
      bool same = std::tolower(a[i - 1]) == std::tolower(b[j - 1]);
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (same ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

} // namespace

void Registry::commit(std::vector<RegistryEntry> entries) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    if (!known_kind(e.kind))
      throw RegistryError(provider(e) + ": unknown kind '" + e.kind + "' for type '" + e.name +
                          "'");
    if (e.name.empty() || e.name.find('.') != std::string::npos)
      throw RegistryError(provider(e) + ": invalid type name '" + e.name + "' (" + e.kind + ")");
    if (!e.factory) throw RegistryError(provider(e) + ": type '" + e.name + "' has no factory");
    for (const auto& have : entries_)
      if (have->kind == e.kind && have->name == e.name)
        throw RegistryError(provider(e) + ": " + e.kind + " type '" + e.name +
                            "' is already registered by " + provider(*have));
    for (size_t j = 0; j < i; ++j)
      if (entries[j].kind == e.kind && entries[j].name == e.name)
        throw RegistryError(provider(e) + ": " + e.kind + " type '" + e.name +
                            "' is registered twice by the same plugin");
  }
  for (auto& e : entries) entries_.push_back(std::make_unique<RegistryEntry>(std::move(e)));
}

const RegistryEntry* Registry::find(const std::string& kind, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string plugin, type = name;
  if (auto dot = name.find('.'); dot != std::string::npos) {
    plugin = name.substr(0, dot);
    type = name.substr(dot + 1);
    // OpenMMLab scopes ("mmcls.CrossEntropyLoss") name a package, not a plugin: any
    // provider of the type will do, so MMSelfSup configs read as they are.
    static const char* const kScopes[] = {"mmcls", "mmselfsup", "mmpretrain", "mmengine", "mmdet"};
    for (const char* scope : kScopes)
      if (plugin == scope) plugin.clear();
  }
  for (const auto& e : entries_)
    if (e->kind == kind && e->name == type && (plugin.empty() || plugin == e->plugin))
      return e.get();
  return nullptr;
}

std::vector<const RegistryEntry*> Registry::entries(const std::string& kind) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<const RegistryEntry*> out;
  for (const auto& e : entries_)
    if (kind.empty() || e->kind == kind) out.push_back(e.get());
  const auto& order = registry_kinds();
  auto rank = [&](const std::string& k) {
    return std::find(order.begin(), order.end(), k) - order.begin();
  };
  std::sort(out.begin(), out.end(), [&](const RegistryEntry* a, const RegistryEntry* b) {
    return rank(a->kind) != rank(b->kind) ? rank(a->kind) < rank(b->kind) : a->name < b->name;
  });
  return out;
}

std::shared_ptr<void> Registry::build_any(const std::string& kind, const Config& cfg) const {
  if (!cfg.is_object())
    cfg.fail("expected a dict with a 'type' key (a " + kind + "), got " +
             describe_value(cfg.json()));
  if (!cfg.has("type"))
    cfg.fail_key("type", "required key is missing (the " + kind + " type name)");
  const std::string name = cfg["type"].as<std::string>();
  const RegistryEntry* entry = find(kind, name);
  if (!entry) {
    std::string known, best;
    size_t best_d = 4;
    for (const auto* e : entries(kind)) {
      known += (known.empty() ? "" : ", ") + e->name;
      size_t d = distance(name, e->name);
      if (d < best_d) best_d = d, best = e->name;
    }
    std::string msg = "unknown " + kind + " type '" + name + "'";
    if (!best.empty()) msg += "; did you mean '" + best + "'?";
    msg += " (registered: " + (known.empty() ? std::string("none") : known) + ")";
    for (const auto& [file, reason] : refused())
      msg += "\n  note: plugin file " + file + " was refused: " + reason;
    cfg.fail_key("type", msg);
  }
  Config filled(entry->schema.apply(cfg), cfg.path());
  std::shared_ptr<void> product;
  try {
    product = entry->factory(filled);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw ValueError(cfg.where() + " (" + kind + " '" + entry->name + "' from plugin '" +
                     entry->plugin + "'): " + e.what());
  }
  if (!product)
    throw RegistryError(cfg.where() + ": factory of " + kind + " '" + entry->name + "' from " +
                        provider(*entry) + " returned nothing");
  if (!entry->keepalive) return product;
  // Tie the product to its library: the control block holds the library reference and
  // releases it only after the product itself is gone.
  struct Holder {
    std::shared_ptr<const void> library;
    std::shared_ptr<void> product;
  };
  auto holder = std::make_shared<Holder>(Holder{entry->keepalive, product});
  void* raw = holder->product.get();
  return std::shared_ptr<void>(std::move(holder), raw);
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

Registrar::Registrar(std::string plugin, std::string file, std::shared_ptr<const void> keepalive)
    : plugin_(std::move(plugin)), file_(std::move(file)), keepalive_(std::move(keepalive)) {}

void Registrar::add_any(const std::string& kind, const std::string& name, AnyFactory factory,
                        Schema schema) {
  staged_.push_back(
      RegistryEntry{keepalive_, kind, name, plugin_, file_, std::move(schema), std::move(factory)});
}

void Registrar::commit(Registry& registry) {
  registry.commit(std::move(staged_));
  staged_.clear();
}

} // namespace selfsup
