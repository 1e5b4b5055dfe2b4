#include "eoc/cache/gate.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <sstream>

#include "eoc/base/error.hpp"
#include "eoc/base/numbers.hpp"

namespace eoc {

const char* GateSpec::rule_name() const {
  switch (rule) {
    case Rule::fbcache: return "fbcache";
    case Rule::teacache: return "teacache";
    case Rule::easycache: return "easycache";
  }
  return "?";
}

std::string GateSpec::text() const {
  std::ostringstream s;
  s << rule_name() << ':' << shortest_decimal(threshold);
  if (rule == Rule::fbcache) s << ",fn=" << first_blocks << ",bn=" << last_blocks;
  if (warmup != 1) s << ",warmup=" << warmup;
  if (max_run) s << ",max-run=" << *max_run;
  if (max_total) s << ",max-total=" << *max_total;
  for (size_t i = 0; i < rescale.size(); ++i)
    s << (i ? "/" : ",poly=") << shortest_decimal(rescale[i]);
  return s.str();
}

double GateSpec::rescaled(double d) const {
  return rescale.empty() ? d : std::max(0.0, polynomial_value(rescale, d));
}

namespace {

// A count written as digits ("3"; no sign), or nothing.
std::optional<long long> whole_number(const std::string& t) {
  if (t.empty() || !std::isdigit(static_cast<unsigned char>(t[0]))) return std::nullopt;
  return parse_whole_integer(t);
}

// poly=C4/C3/C2/C1/C0's value -> the coefficients; Error naming what is wrong.
std::vector<double> parse_rescale(const std::string& text, const std::string& item,
                                  const std::string& value, const std::string& usage) {
  std::vector<double> out;
  size_t start = 0;
  while (true) {
    const auto slash = value.find('/', start);
    const std::string c = value.substr(start, slash == std::string::npos ? slash : slash - start);
    const auto v = parse_finite_number(c);
    if (!v)
      fail("'", text, "': the rescale coefficient '", c, "' in '", item, "' is not a number (",
           usage, ")");
    out.push_back(*v);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (out.size() != GateSpec::kRescaleCoefficients)
    fail("'", text, "': '", item, "' has ", out.size(), " coefficients; the rescale takes ",
         GateSpec::kRescaleCoefficients, " (degree ", GateSpec::kRescaleCoefficients - 1,
         ", highest first: ", usage, ")");
  return out;
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
                            "[,warmup=W][,max-run=M][,max-total=C]" +
                            (g.rule == Rule::teacache ? "[,poly=C4/C3/C2/C1/C0]" : "");
  if (colon == std::string::npos) fail("'", text, "': expected ", usage);
  std::stringstream in(text.substr(colon + 1));
  std::string item;
  bool first = true;
  while (std::getline(in, item, ',')) {
    if (first) {
      const auto threshold = parse_finite_number(item);
      if (!threshold || *threshold < 0)
        fail("'", text, "': the threshold '", item, "' is not a number >= 0 (", usage, ")");
      g.threshold = *threshold;
      first = false;
      continue;
    }
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq);
    if (key == "poly" && eq != std::string::npos) {
      if (g.rule != Rule::teacache)
        fail("'", text, "': '", item, "': a rescale polynomial is for teacache only (", usage, ")");
      if (!g.rescale.empty()) fail("'", text, "': two rescale polynomials");
      g.rescale = parse_rescale(text, item, item.substr(eq + 1), usage);
      continue;
    }
    const auto number = eq == std::string::npos ? std::nullopt : whole_number(item.substr(eq + 1));
    if (!number) fail("'", text, "': '", item, "' is not KEY=N (", usage, ")");
    const long long v = *number;
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

double polynomial_value(const std::vector<double>& coefficients, double x) {
  double v = 0.0;
  for (double c : coefficients) v = v * x + c;
  return v;
}

PolynomialFit fit_polynomial(const std::vector<double>& x, const std::vector<double>& y,
                             int degree) {
  EOC_ASSERT(degree >= 0 && x.size() == y.size(), "a degree-", degree, " fit of ", x.size(),
             " x to ", y.size(), " y");
  const size_t n = x.size(), m = static_cast<size_t>(degree) + 1;
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]) || !std::isfinite(y[i]))
      fail("a polynomial fit given a non-finite point (", x[i], ", ", y[i], ")");
  std::vector<double> sorted = x;
  std::sort(sorted.begin(), sorted.end());
  const size_t distinct =
      static_cast<size_t>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
  if (distinct < m)
    fail("a degree-", degree, " polynomial fit needs ", m, " distinct x; got ", distinct, " (of ",
         n, " points)");
  // t = (x - centre) / half_width lies in [-1, 1].
  const double centre = 0.5 * (sorted.front() + sorted[distinct - 1]);
  const double half = m > 1 ? 0.5 * (sorted[distinct - 1] - sorted.front()) : 1.0;
  // A (n x m, column-major: a[j * n + i] = t_i^j) and b = y, reduced by Householder reflections.
  std::vector<double> a(n * m), b = y;
  for (size_t i = 0; i < n; ++i) {
    const double t = (x[i] - centre) / half;
    double p = 1.0;
    for (size_t j = 0; j < m; ++j, p *= t) a[j * n + i] = p;
  }
  for (size_t j = 0; j < m; ++j) {
    double* col = &a[j * n];
    double norm = 0.0;
    for (size_t i = j; i < n; ++i) norm += col[i] * col[i];
    norm = std::sqrt(norm);
    EOC_ASSERT(norm > 0, "a rank-deficient polynomial fit");
    const double alpha = col[j] > 0 ? -norm : norm;
    // v = col[j..] - alpha e_j, kept in col[j..]; R's diagonal entry is alpha.
    col[j] -= alpha;
    double vv = 0.0;
    for (size_t i = j; i < n; ++i) vv += col[i] * col[i];
    auto reflect = [&](double* target) {
      double dot = 0.0;
      for (size_t i = j; i < n; ++i) dot += col[i] * target[i];
      const double f = 2.0 * dot / vv;
      for (size_t i = j; i < n; ++i) target[i] -= f * col[i];
    };
    for (size_t k = j + 1; k < m; ++k) reflect(&a[k * n]);
    reflect(b.data());
    col[j] = alpha;  // the diagonal; the rest of the column is no longer needed
  }
  // Back substitution R c = (Q^T y)[0, m): coefficients of t^j, lowest first.
  std::vector<double> ct(m);
  for (size_t j = m; j-- > 0;) {
    double v = b[j];
    for (size_t k = j + 1; k < m; ++k) v -= a[k * n + j] * ct[k];
    ct[j] = v / a[j * n + j];
  }
  // sum_j ct_j ((x - c) / h)^j expanded in powers of x: coefficient of x^i is
  // sum_{j >= i} ct_j h^-j binom(j, i) (-c)^(j - i).
  std::vector<double> cx(m, 0.0);
  for (size_t j = 0; j < m; ++j) {
    double binom = 1.0;  // binom(j, i), i from j down
    double power = 1.0;  // (-c)^(j - i)
    const double scale = ct[j] / std::pow(half, static_cast<double>(j));
    for (size_t i = j + 1; i-- > 0;) {
      cx[i] += scale * binom * power;
      binom = binom * static_cast<double>(i) / static_cast<double>(j - i + 1);
      power *= -centre;
    }
  }
  PolynomialFit fit;
  fit.coefficients.assign(cx.rbegin(), cx.rend());
  double mean = 0.0, ss_res = 0.0, ss_tot = 0.0;
  for (double v : y) mean += v / static_cast<double>(n);
  for (size_t i = 0; i < n; ++i) {
    const double r = y[i] - polynomial_value(fit.coefficients, x[i]);
    ss_res += r * r;
    ss_tot += (y[i] - mean) * (y[i] - mean);
  }
  fit.rms_residual = std::sqrt(ss_res / static_cast<double>(n));
  fit.r2 = ss_tot > 0 ? 1.0 - ss_res / ss_tot : 1.0;
  return fit;
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
  step_signals_.push_back(signal.value_or(std::numeric_limits<double>::quiet_NaN()));
  bool reuse = false;
  if (!forced(step) && signal) {
    using Rule = GateSpec::Rule;
    switch (spec_.rule) {
      case Rule::fbcache:  // against the last computed step: no sum
        signals_.push_back(*signal);
        reuse = *signal < spec_.threshold;
        break;
      case Rule::teacache:
        signals_.push_back(spec_.rescaled(*signal));
        accumulated_ += signals_.back();
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
