#include "eoc/cache/correctors.hpp"

#include "eoc/base/error.hpp"
#include "eoc/cache/entry_loops.hpp"

namespace eoc {
namespace {

class PlainCorrector final : public Corrector {
 public:
  std::string name() const override { return "none"; }
  Correction correction(int64_t, int64_t, Branch, const CachedFeature&) const override {
    return {};
  }
};

// Order 1 keeps F[p] and forms the difference inside the fused update (its long-standing
// formula, kept bit for bit); higher orders keep their derivative estimates.
class TaylorCorrector final : public Corrector {
 public:
  explicit TaylorCorrector(int order) : order_(order) {
    EOC_ASSERT(order >= 1 && order <= kMaxTaylorOrder, "taylor order ", order);
  }
  std::string name() const override {
    return order_ == 1 ? "taylor" : "taylor:" + std::to_string(order_);
  }
  History history() const override {
    return order_ == 1 ? History{true, 0} : History{false, order_};
  }
  Correction correction(int64_t step, int64_t, Branch, const CachedFeature& e) const override {
    Correction c;
    if (order_ == 1)
      c.trend = taylor_tau(step, e);
    else
      c.series = taylor_series(step, e, e.derivatives.size());
    return c;
  }

 private:
  int order_;
};

void foca_check(int64_t step, const CachedFeature& e) {
  EOC_ASSERT(e.latest.defined() && e.latest_step == step - 1, "foca at step ", step,
             " without the value of step ", step - 1);
}
bool foca_has_slope(const CachedFeature& e) { return e.previous.defined() && e.prev_step >= 0; }
double foca_dk(const CachedFeature& e) {
  return foca_has_slope(e) ? static_cast<double>(e.step - e.prev_step) : 1.0;
}
// The formula with ATen operations (the loop's fallback: CUDA, bf16, fp16).
at::Tensor foca_with_aten(const CachedFeature& e) {
  const auto local = at::sub(e.latest, e.before_latest);
  at::Tensor slope = local;
  if (foca_has_slope(e)) slope = at::sub(e.value, e.previous).div_(foca_dk(e));
  return at::add(e.latest, local.add(slope), 0.5);
}

class FocaCorrector final : public Corrector {
 public:
  std::string name() const override { return "foca"; }
  History history() const override { return History{true, 0, true}; }
  Correction correction(int64_t, int64_t, Branch, const CachedFeature&) const override {
    EOC_ASSERT(false, "foca's forecast is a tensor (Corrector::correct), not coefficients");
    return {};
  }
  at::Tensor correct(int64_t step, int64_t, Branch, const CachedFeature& e) const override {
    return foca_forecast(step, e);
  }
  void correct_into(int64_t step, int64_t, Branch, const CachedFeature& e,
                    at::Tensor& dst) const override {
    foca_check(step, e);
    if (!e.before_latest.defined())
      dst.copy_(e.latest);
    else if (!write_foca_loop(dst, e, foca_has_slope(e), foca_dk(e)))
      dst.copy_(foca_with_aten(e));
  }
};

// (rows, T, D) -> (halves, rows / halves, T, D), so a (halves, 1, 1, D) vector broadcasts.
at::Tensor by_halves(const at::Tensor& t, const at::Tensor& vec) {
  const int64_t halves = vec.size(0);
  return t.view({halves, t.size(0) / halves, t.size(1), t.size(2)});
}

}  // namespace

at::Tensor Corrector::correct(int64_t step, int64_t block, Branch b, const CachedFeature& e) const {
  return corrected_feature(correction(step, block, b, e), e);
}

void Corrector::correct_into(int64_t step, int64_t block, Branch b, const CachedFeature& e,
                             at::Tensor& dst) const {
  if (!recursive()) {
    const auto c = correction(step, block, b, e);
    if (!write_corrected_loop(dst, c, e)) dst.copy_(corrected_feature(c, e));
    return;
  }
  dst.copy_(correct(step, block, b, e));
}

at::Tensor corrected_feature(const Correction& c, const CachedFeature& e) {
  at::Tensor out = e.value;
  if (c.scale_vec.defined())
    out = (by_halves(out, c.scale_vec) * c.scale_vec).view_as(e.value);
  else if (c.scale != 1.0)
    out = out * c.scale;
  EOC_ASSERT(c.series.size() <= e.derivatives.size(), c.series.size(),
             " series terms for an entry with ", e.derivatives.size(), " derivatives");
  for (size_t i = 0; i < c.series.size(); ++i) out = at::add(out, e.derivatives[i], c.series[i]);
  if (!c.has_trend()) return out;
  EOC_ASSERT(e.previous.defined(), "a trend correction for an entry without F[p]");
  const auto diff = e.value - e.previous;
  if (c.trend_vec.defined())
    return at::addcmul(by_halves(out, c.trend_vec), c.trend_vec, by_halves(diff, c.trend_vec))
        .view_as(e.value);
  return at::add(out, diff, c.trend);
}

double taylor_tau(int64_t step, const CachedFeature& e) {
  if (!e.previous.defined() || e.prev_step < 0) return 0.0;
  return static_cast<double>(step - e.step) / static_cast<double>(e.step - e.prev_step);
}

std::unique_ptr<Corrector> make_plain_corrector() { return std::make_unique<PlainCorrector>(); }

const Corrector& plain_corrector() {
  static const PlainCorrector plain;
  return plain;
}
std::unique_ptr<Corrector> make_foca_corrector() { return std::make_unique<FocaCorrector>(); }

// With one value so far (no value before the latest) the forecast is that value.
at::Tensor foca_forecast(int64_t step, const CachedFeature& e) {
  foca_check(step, e);
  if (!e.before_latest.defined()) return e.latest;
  auto out = at::empty(e.latest.sizes(), e.latest.options());
  if (write_foca_loop(out, e, foca_has_slope(e), foca_dk(e))) return out;
  return foca_with_aten(e);
}

std::unique_ptr<Corrector> make_taylor_corrector(int order) {
  return std::make_unique<TaylorCorrector>(order);
}

std::vector<double> taylor_series(int64_t step, const CachedFeature& e, size_t count) {
  std::vector<double> series;
  const double dt = static_cast<double>(step - e.step);
  double term = 1.0;
  for (size_t i = 1; i <= count; ++i) {
    term *= dt / static_cast<double>(i);
    series.push_back(term);
  }
  return series;
}

}  // namespace eoc
