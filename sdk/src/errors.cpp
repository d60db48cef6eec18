#include <selfsup/errors.h>

namespace selfsup {

Error::Error(const std::string& what) : std::runtime_error(what) {}
Error::~Error() = default;
ConfigError::ConfigError(const std::string& what) : Error(what) {}
ConfigError::~ConfigError() = default;
RegistryError::RegistryError(const std::string& what) : Error(what) {}
RegistryError::~RegistryError() = default;
ValueError::ValueError(const std::string& what) : Error(what) {}
ValueError::~ValueError() = default;

} // namespace selfsup
