#include "eoc/base/stopwatch.hpp"

#include <sys/resource.h>

#include <ctime>
#include <iomanip>
#include <sstream>

namespace eoc {

double CpuStopwatch::process_cpu_seconds() {
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0.0;
  auto seconds = [](const timeval& t) { return t.tv_sec + 1e-6 * t.tv_usec; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::ostringstream text;
  text << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  return text.str();
}

}  // namespace eoc
