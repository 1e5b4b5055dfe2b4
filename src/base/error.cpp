#include "eoc/base/error.hpp"

#include <cstring>

namespace eoc {

void assertion_failed(const char* condition, const char* file, int line,
                      const std::string& message) {
  // The path below src/ is enough to find the line.
  const char* short_file = std::strstr(file, "src/");
  throw InternalError(
      str(message, " (", condition, " failed at ", short_file ? short_file : file, ":", line, ")"));
}

}  // namespace eoc
