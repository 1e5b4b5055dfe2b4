// Correctors decide what a REUSED cache entry becomes at step k, before the current step's gate
// multiplies it (as FORA does). A corrector only names coefficients; the block loop applies
// them, fused with the gate, in one pass over the feature (cache/gated_update.hpp), so a
// correction costs reading F[p] beside F[r] and nothing else. To add a corrector: implement
// Corrector here (or beside it, as cache/eoc_corrector.hpp does) and name it in
// runs/run_setup.cpp's corrector factory.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "eoc/cache/feature_cache.hpp"

namespace eoc {

// A reused entry becomes F_hat = scale * F[r] + trend * (F[r] - F[p]) + sum_i series[i] * D(i+1)
// (D: the entry's derivative estimates). `scale` and `trend` are each the scalar, or, when its
// tensor is defined, one value per CFG half and channel: shape (halves, 1, 1, D) in the
// feature's dtype and device (rows of F are [conditional; unconditional], `halves` equal blocks
// of rows). A series term never comes with a scale or a trend.
struct Correction {
  double scale = 1.0;
  double trend = 0.0;
  at::Tensor scale_vec;
  at::Tensor trend_vec;
  std::vector<double> series;
  bool has_scale() const { return scale_vec.defined() || scale != 1.0; }
  bool has_trend() const { return trend_vec.defined() || trend != 0.0; }
  bool has_series() const { return !series.empty(); }
};

class Corrector {
 public:
  virtual ~Corrector() = default;
  virtual std::string name() const = 0;
  // What the cache must keep beside F[r] for this corrector.
  virtual History history() const { return {}; }
  bool needs_previous() const { return history().previous; }
  // A recursive corrector's forecast depends on its own earlier forecasts: the session makes
  // it as a tensor (correct()), notes it in the cache and adds it like a computed output,
  // which costs one more write per reused entry than a coefficient correction.
  bool recursive() const { return history().recursive; }
  // Never a trend for an entry without F[p]. Not asked of a recursive corrector.
  virtual Correction correction(int64_t step, int64_t block, Branch b,
                                const CachedFeature& entry) const = 0;
  // F_hat as a tensor (recursive correctors, calibration and tests; sampling otherwise uses
  // add_gated_terms).
  virtual at::Tensor correct(int64_t step, int64_t block, Branch b,
                             const CachedFeature& entry) const;
  // F_hat written into `dst` (entry-shaped, each row contiguous: one image's rows of a batch
  // tensor), with no temporary tensor where cache/entry_loops.hpp applies: a gated session
  // forecasts image by image, where an ATen operation's dispatch costs more than its work.
  virtual void correct_into(int64_t step, int64_t block, Branch b, const CachedFeature& entry,
                            at::Tensor& dst) const;
};

// F_hat of `entry` (rows, T, D) under `c`, with ATen operations: the reference formula.
at::Tensor corrected_feature(const Correction& c, const CachedFeature& entry);

// `none`: plain FORA reuse, F[r].
std::unique_ptr<Corrector> make_plain_corrector();
// One shared plain corrector (uncached runs, which never ask it).
const Corrector& plain_corrector();
// `taylor` (order 1): the first-order forecast F[r] + tau (F[r] - F[p]), tau = (k - r) / (r - p);
// plain F[r] while no p exists.
// `taylor:O` (O = 2..4): TaylorSeer's forecast sum_i Di (k - r)^i / i! over the derivative
// estimates the entry has (fewer than O until enough steps were computed).
std::unique_ptr<Corrector> make_taylor_corrector(int order = 1);
// The series coefficients (k - r)^i / i!, i = 1..count.
std::vector<double> taylor_series(int64_t step, const CachedFeature& entry, size_t count);

// `foca`: FoCa's forecast (Zheng et al. 2025, "Forecast then Calibrate", arXiv 2508.16211),
// recursive, in step units: with L1 and L2 the entry's values at the last two steps (computed
// or forecast), d = L1 - L2 and D = (F[r] - F[p]) / (r - p) the slope between the last two
// computed steps, F_hat = L1 + (d + D) / 2: a two-step extrapolation (BDF2's predictor, 2 L1 -
// L2) pulled halfway towards the computed slope (the Heun correction). D = d while no p exists;
// plain L1 while only one value exists. docs/EOC.md has the derivation.
std::unique_ptr<Corrector> make_foca_corrector();
// FoCa's forecast of `entry` at `step` as a tensor (the entry must keep the recursion and have
// been visited at step - 1).
at::Tensor foca_forecast(int64_t step, const CachedFeature& entry);

// The forecast step factor tau for an entry, 0 when it has no previous value.
double taylor_tau(int64_t step, const CachedFeature& entry);

}  // namespace eoc
