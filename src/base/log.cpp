#include "eoc/base/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace eoc::log {
namespace {

Level g_level = Level::info;

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_st("eoc");
    l->set_pattern("[%H:%M:%S] %^%l%$: %v");
    l->set_level(spdlog::level::debug);
    return l;
  }();
  return *instance;
}

double now_s() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level; }
void debug(const std::string& m) {
  if (g_level <= Level::debug) logger().debug(m);
}
void info(const std::string& m) {
  if (g_level <= Level::info) logger().info(m);
}
void warn(const std::string& m) {
  if (g_level <= Level::warn) logger().warn(m);
}
void error(const std::string& m) {
  if (g_level <= Level::error) logger().error(m);
}

Progress::Progress(std::string label, long total, std::string unit)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      tty_(::isatty(2) != 0),
      start_s_(now_s()) {}

Progress::~Progress() {
  if (tty_ && done_ > 0 && !finished_ && g_level <= Level::info) std::fputc('\n', stderr);
}

void Progress::advance(long n) {
  done_ += n;
  if (g_level > Level::info || total_ <= 0) return;
  const double elapsed = now_s() - start_s_;
  const double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  const double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
  if (tty_) {
    const int width = 30;
    const int filled = static_cast<int>(width * done_ / total_);
    std::fprintf(stderr, "\r%s [%.*s%*s] %ld/%ld %s  %.1fs elapsed, ~%.0fs left ", label_.c_str(),
                 filled, "##############################", width - filled, "", done_, total_,
                 unit_.c_str(), elapsed, eta);
    std::fflush(stderr);
  } else {
    const int decile = static_cast<int>(10 * done_ / total_);
    if (decile != last_decile_) {
      last_decile_ = decile;
      std::fprintf(stderr, "%s: %ld/%ld %s (%.1fs elapsed, ~%.0fs left)\n", label_.c_str(), done_,
                   total_, unit_.c_str(), elapsed, eta);
    }
  }
}

void Progress::finish() {
  if (tty_ && done_ > 0 && !finished_ && g_level <= Level::info) std::fputc('\n', stderr);
  finished_ = true;
}

}  // namespace eoc::log
