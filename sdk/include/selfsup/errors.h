#pragma once
// The exceptions a factory or the engine may throw. Their virtual destructors live in
// libselfsup_sdk.so (key functions), so they are caught by exact type in every library.
#include <stdexcept>
#include <string>

#include <selfsup/export.h>

namespace selfsup {

/// Base of every selfsup error.
class SELFSUP_SDK_API Error : public std::runtime_error {
public:
  explicit Error(const std::string& what);
  ~Error() override;
};

/// A config value is missing, unknown or of the wrong type. The text starts with the
/// JSON path, e.g. `model.head.temperature: expected a number, got "0.1x"`.
class SELFSUP_SDK_API ConfigError : public Error {
public:
  explicit ConfigError(const std::string& what);
  ~ConfigError() override;
};

/// A type is unknown, registered twice, or of the wrong kind.
class SELFSUP_SDK_API RegistryError : public Error {
public:
  explicit RegistryError(const std::string& what);
  ~RegistryError() override;
};

/// A value is out of its allowed range at run time (shapes, sizes, files).
class SELFSUP_SDK_API ValueError : public Error {
public:
  explicit ValueError(const std::string& what);
  ~ValueError() override;
};

} // namespace selfsup
