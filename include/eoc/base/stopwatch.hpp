// Clocks for timings in reports, calibration costs and benchmarks: wall seconds (steady clock)
// and the process's CPU seconds.
#pragma once
#include <chrono>
#include <string>

namespace eoc {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// CPU seconds (user + system, every thread) the process spent since construction: on a shared
// machine whose speed drifts, a steadier measure of work than wall time.
class CpuStopwatch {
 public:
  CpuStopwatch() : start_(process_cpu_seconds()) {}
  double seconds() const { return process_cpu_seconds() - start_; }
  static double process_cpu_seconds();

 private:
  double start_;
};

// Adds the process CPU seconds its scope took to `sink`: work timed inside a run (a gate's own
// signals and bookkeeping), so that what it costs is measured in the same process as the rest.
class ScopedCpuSeconds {
 public:
  explicit ScopedCpuSeconds(double& sink) : sink_(sink) {}
  ~ScopedCpuSeconds() { sink_ += watch_.seconds(); }
  ScopedCpuSeconds(const ScopedCpuSeconds&) = delete;
  ScopedCpuSeconds& operator=(const ScopedCpuSeconds&) = delete;

 private:
  double& sink_;
  CpuStopwatch watch_;
};

// The current time as "2026-11-28T09:30:00Z", for reports and records.
std::string utc_now();

}  // namespace eoc
