// The two kinds of failure, kept apart:
//  - eoc::Error is a USER error: bad input, a contradictory flag, a file that cannot be read or
//    written. Its message is one line naming the file/flag/value and what was expected; `main`
//    prints it and exits 1.
//  - eoc::InternalError is a BUG: an invariant of eoc itself broke. EOC_ASSERT throws it in every
//    build (a wrong image is worse than a stopped run); `main` prints it as a bug to report.
// Base layer: every other layer may use it; it uses nothing of eoc.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace eoc {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Thrown when SIGINT/SIGTERM asked the run to stop (base/stop.hpp); `main` exits 128 + signal.
class Interrupted : public Error {
 public:
  explicit Interrupted(int signal_number)
      : Error(signal_number == 2 ? "interrupted (SIGINT)" : "terminated (SIGTERM)"),
        signal_number_(signal_number) {}
  int signal_number() const { return signal_number_; }

 private:
  int signal_number_;
};

// Not derived from Error: code that handles user errors must never swallow a bug.
class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& what) : std::logic_error(what) {}
};

// Concatenates its arguments with operator<< (keeps error sites short without a format library).
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// A user error (eoc::Error) with the concatenated message.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(eoc::str(args...));
}

[[noreturn]] void assertion_failed(const char* condition, const char* file, int line,
                                   const std::string& message);

}  // namespace eoc

// Checks an invariant of eoc's own code (never user input): InternalError naming the condition,
// the source line and the message when it does not hold.
#define EOC_ASSERT(condition, ...)                                                      \
  do {                                                                                  \
    if (!(condition))                                                                   \
      ::eoc::assertion_failed(#condition, __FILE__, __LINE__, ::eoc::str(__VA_ARGS__)); \
  } while (0)
