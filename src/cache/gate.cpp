#include "eoc/cache/gate.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "eoc/base/error.hpp"

namespace eoc {

const char* GateSpec::rule_name() const {
  switch (rule) {
    case Rule::fbcache: return "fbcache";
    case Rule::teacache: return "teacache";
    case Rule::easycache: return "easycache";
  }
  return "?";
}

namespace {

// The shortest decimal that reads back as exactly `v`.
std::string shortest(double v) {
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream s;
    s.precision(digits);
    s << v;
    if (std::stod(s.str()) == v) return s.str();
  }
  return std::to_string(v);
}

}  // namespace

std::string GateSpec::text() const {
  std::ostringstream s;
  s << rule_name() << ':' << shortest(threshold);
  if (rule == Rule::fbcache) s << ",fn=" << first_blocks << ",bn=" << last_blocks;
  if (warmup != 1) s << ",warmup=" << warmup;
  if (max_run) s << ",max-run=" << *max_run;
  if (max_total) s << ",max-total=" << *max_total;
  return s.str();
}

namespace {

bool whole_number(const std::string& t, long long& v) {
  size_t used = 0;
  try {
    v = std::stoll(t, &used);
  } catch (const std::exception&) {
    return false;
  }
  return !t.empty() && used == t.size() && std::isdigit(static_cast<unsigned char>(t[0]));
}

}  // namespace

std::optional<GateSpec> GateSpec::parse(const std::string& text) {
  GateSpec g;
  const auto colon = text.find(':');
  const std::string rule = text.substr(0, colon);
  if (rule == "fbcache")
    g.rule = Rule::fbcache;
  else if (rule == "teacache")
    g.rule = Rule::teacache;
  else if (rule == "easycache")
    g.rule = Rule::easycache;
  else
    return std::nullopt;
  const std::string usage = rule + ":THRESHOLD" +
                            (g.rule == Rule::fbcache ? "[,fn=F][,bn=B]" : "") +
                            "[,warmup=W][,max-run=M][,max-total=C]";
  if (colon == std::string::npos) fail("'", text, "': expected ", usage);
  std::stringstream in(text.substr(colon + 1));
  std::string item;
  bool first = true;
  while (std::getline(in, item, ',')) {
    if (first) {
      size_t used = 0;
      try {
        g.threshold = std::stod(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (item.empty() || used != item.size() || !std::isfinite(g.threshold) || g.threshold < 0)
        fail("'", text, "': the threshold '", item, "' is not a number >= 0 (", usage, ")");
      first = false;
      continue;
    }
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq);
    long long v = 0;
    if (eq == std::string::npos || !whole_number(item.substr(eq + 1), v))
      fail("'", text, "': '", item, "' is not KEY=N (", usage, ")");
    if (key == "fn" && g.rule == Rule::fbcache)
      g.first_blocks = v;
    else if (key == "bn" && g.rule == Rule::fbcache)
      g.last_blocks = v;
    else if (key == "warmup" && v >= 1)
      g.warmup = v;
    else if (key == "max-run")
      g.max_run = v;
    else if (key == "max-total")
      g.max_total = v;
    else
      fail("'", text, "': '", item, "' is not one of ", usage, " (warmup >= 1)");
  }
  if (first) fail("'", text, "': expected ", usage);
  if (g.rule == Rule::fbcache && g.first_blocks < 1)
    fail("'", text, "': fbcache needs fn >= 1 (its first blocks are the signal)");
  return g;
}

int64_t GateSpec::first_gated_block() const { return rule == Rule::fbcache ? first_blocks : 0; }

int64_t GateSpec::end_gated_block(int64_t depth) const {
  return rule == Rule::fbcache ? depth - last_blocks : depth;
}

double relative_l1(double sum_abs_diff, double sum_abs_base) {
  return sum_abs_base > 0 ? sum_abs_diff / sum_abs_base : 0.0;
}

ImageGate::ImageGate(const GateSpec& spec, int64_t steps) : spec_(spec), steps_(steps) {
  EOC_ASSERT(spec.warmup >= 1 && steps >= 1, "a gate with warm-up ", spec.warmup, " over ", steps,
             " steps");
}

bool ImageGate::forced(int64_t step) const {
  return step < spec_.warmup || step == steps_ - 1 || (spec_.max_run && run_ >= *spec_.max_run) ||
         (spec_.max_total && reused_ >= *spec_.max_total);
}

bool ImageGate::reuse(int64_t step, std::optional<double> signal) {
  EOC_ASSERT(step == computed_ + reused_ && step < steps_, "gate asked for step ", step, " after ",
             computed_ + reused_, " of ", steps_);
  bool reuse = false;
  if (!forced(step) && signal) {
    using Rule = GateSpec::Rule;
    switch (spec_.rule) {
      case Rule::fbcache:  // against the last computed step: no sum
        signals_.push_back(*signal);
        reuse = *signal < spec_.threshold;
        break;
      case Rule::teacache:
        signals_.push_back(*signal);
        accumulated_ += *signal;
        reuse = accumulated_ < spec_.threshold;
        break;
      case Rule::easycache:
        if (k_) {
          const double predicted = *k_ * *signal;
          signals_.push_back(predicted);
          accumulated_ += predicted;
          reuse = accumulated_ < spec_.threshold;
        }
        break;
    }
  }
  decisions_ += reuse ? 'r' : 'c';
  if (reuse) {
    ++reused_;
    ++run_;
  } else {
    ++computed_;
    run_ = 0;
    accumulated_ = 0.0;
  }
  return reuse;
}

const GateTrial& nearest_trial(const std::vector<GateTrial>& trials, double target) {
  EOC_ASSERT(!trials.empty(), "no gate trials");
  const GateTrial* best = &trials.front();
  for (const auto& t : trials) {
    const double d = std::abs(t.computed - target), bd = std::abs(best->computed - target);
    if (d < bd || (d == bd && t.error < best->error)) best = &t;
  }
  return *best;
}

std::vector<GateTrial> search_gate_threshold(const std::function<GateTrial(double)>& trial,
                                             double target, double tolerance, double start,
                                             int max_trials) {
  EOC_ASSERT(target > 0 && target < 1 && tolerance > 0 && start > 0 && max_trials >= 2,
             "a gate search for ", target, " +- ", tolerance);
  std::vector<GateTrial> trials;
  auto run = [&](double threshold) {
    trials.push_back(trial(threshold));
    trials.back().threshold = threshold;
    return trials.back();
  };
  auto close = [&](const GateTrial& t) { return std::abs(t.computed - target) <= tolerance; };
  double lo = 0.0;  // computes at least the target
  double hi = start;
  GateTrial t = run(hi);
  // Grow the upper threshold until it reuses enough; a fraction that stops falling is a floor.
  double last = 2.0;
  while (t.computed > target && !close(t)) {
    if (static_cast<int>(trials.size()) >= max_trials || (t.computed >= last && hi > 1e3))
      fail("the gate computes at least ", t.computed, " of the branches at threshold ", hi,
           " (its guards or always-computed blocks keep that much): no threshold reaches ", target);
    last = t.computed;
    lo = hi;
    hi *= 2.0;
    t = run(hi);
  }
  // Bisect between lo (computes more) and hi (computes less), geometrically once lo > 0.
  while (!close(nearest_trial(trials, target)) && static_cast<int>(trials.size()) < max_trials) {
    const double mid = lo > 0 ? std::sqrt(lo * hi) : hi / 2.0;
    t = run(mid);
    (t.computed > target ? lo : hi) = mid;
  }
  return trials;
}

}  // namespace eoc
