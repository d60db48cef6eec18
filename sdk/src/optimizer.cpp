// The optimizer kind's key function and its helper.
#include <selfsup/interfaces/optimizer.h>

#include <algorithm>

namespace selfsup {

OptimizerFactory::~OptimizerFactory() = default;

Schema group_overrides(const Schema& schema, const std::vector<std::string>& exclude) {
  Schema out(schema.doc());
  for (ArgSpec a : schema.args()) {
    if (std::find(exclude.begin(), exclude.end(), a.name) != exclude.end()) continue;
    a.required = false;
    a.default_value = Json();
    a.doc += " (this group's own value)";
    out.add(std::move(a));
  }
  return out;
}

} // namespace selfsup
