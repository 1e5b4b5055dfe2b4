// eoc::Error: the one exception type the library throws for bad input or failed I/O.
// Its message is one line naming the file/flag/value and what was expected; `main` prints it.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace eoc {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Concatenates its arguments with operator<< (keeps error sites short without a format library).
// Thrown when SIGINT/SIGTERM asked the run to stop; `main` exits 128 + signal.
class Interrupted : public Error {
 public:
  explicit Interrupted(int signal_number)
      : Error(signal_number == 2 ? "interrupted (SIGINT)" : "terminated (SIGTERM)"),
        signal_number_(signal_number) {}
  int signal_number() const { return signal_number_; }

 private:
  int signal_number_;
};

template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(eoc::str(args...));
}

// Writes `bytes` to `path` atomically: a temp file next to it, then rename. A reader never sees a
// half-written file; on failure the temp file is removed and an Error names the path.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Reads a whole file, or throws an Error naming the path.
std::string read_file(const std::string& path);

}  // namespace eoc
