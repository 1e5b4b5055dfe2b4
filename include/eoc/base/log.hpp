// A tiny logging facade: everything goes to stderr (data goes to files/stdout). spdlog stays
// behind this header so the rest of the code does not depend on it.
#pragma once
#include <string>

namespace eoc::log {

enum class Level { debug, info, warn, error, off };

void set_level(Level level);
Level level();
void debug(const std::string& message);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

// A one-line progress bar on stderr, redrawn in place when stderr is a terminal and printed at
// roughly 10% steps otherwise (log files stay short). Silent when the level is above info.
// `unit` says what is counted, e.g. "image-steps (64 images x 50 steps)": "sampling: 640/3200
// image-steps (64 images x 50 steps)".
class Progress {
 public:
  Progress(std::string label, long total, std::string unit);
  ~Progress();
  void advance(long n = 1);
  void finish();

 private:
  std::string label_;
  long total_;
  std::string unit_;
  long done_ = 0;
  int last_decile_ = -1;
  bool finished_ = false;
  bool tty_;
  double start_s_;
};

}  // namespace eoc::log
