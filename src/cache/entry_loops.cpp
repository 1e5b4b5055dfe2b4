// Compiled with -ffp-contract=off (CMakeLists.txt): a multiply and an add stay two roundings,
// as in ATen's separate operations and the fused residual update, whatever the compiler
// vectorizes.
#include "eoc/cache/entry_loops.hpp"

#include <ATen/Parallel.h>

#include <algorithm>

#include "eoc/base/error.hpp"

namespace eoc {
namespace {

// An (R, T, D) float CPU tensor whose rows are each contiguous: row r starts at
// data + r * row_stride and holds `row` floats.
struct Rows {
  float* data = nullptr;
  int64_t count = 0, row = 0, row_stride = 0;
  float* at(int64_t r) const { return data + r * row_stride; }
};

bool rows_of(const at::Tensor& t, Rows& out) {
  if (!t.defined() || !t.device().is_cpu() || t.scalar_type() != at::kFloat || t.dim() != 3 ||
      t.stride(2) != 1 || t.stride(1) != t.size(2))
    return false;
  out = Rows{t.data_ptr<float>(), t.size(0), t.size(1) * t.size(2), t.stride(0)};
  return true;
}

bool same_shape(const Rows& a, const Rows& b) { return a.count == b.count && a.row == b.row; }

// fn(r, first, last) over elements [first, last) of row r, in chunks across threads.
template <typename Fn>
void for_each_chunk(int64_t rows, int64_t row, Fn fn) {
  constexpr int64_t kGrain = 32768;
  const int64_t chunks_per_row = std::max<int64_t>(1, (row + kGrain - 1) / kGrain);
  at::parallel_for(0, rows * chunks_per_row, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t r = k / chunks_per_row, c = k % chunks_per_row;
      fn(r, c * kGrain, std::min(row, (c + 1) * kGrain));
    }
  });
}

// The spans below are the loops' inner work over `n` contiguous elements, specialised so that
// each compiles to one branch-free loop (a branch on a possibly absent pointer, or a division
// the compiler cannot vectorize, cost more than the ATen passes they replace). Cloned for AVX2
// as the fused update is: the same float operations, more lanes.
// One level of the estimates over a chunk: out = (now - before) / step, a loop of three
// streams the compiler vectorizes (the levels in one loop, through arrays of pointers, it did
// not, and scalar divisions cost more than ATen's passes).
inline void difference_span(float* __restrict__ out, const float* __restrict__ now,
                            const float* __restrict__ before, float step, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = (now[j] - before[j]) / step;
}

// Level by level over chunks small enough to stay in L1 between levels: the same operations
// per element as the levels one after another.
__attribute__((target_clones("avx2", "default"))) void derivative_span_any(
    int levels, float* const* out, const float* now, const float* value, const float* const* old,
    float step, int64_t n) {
  constexpr int64_t kChunk = 1024;
  for (int64_t first = 0; first < n; first += kChunk) {
    const int64_t count = std::min(kChunk, n - first);
    difference_span(out[0] + first, now + first, value + first, step, count);
    for (int i = 1; i < levels; ++i)
      difference_span(out[i] + first, out[i - 1] + first, old[i - 1] + first, step, count);
  }
}

template <bool kScale, bool kTrend>
inline void corrected_span(float* __restrict__ o, const float* __restrict__ f,
                           const float* __restrict__ p, float scale, float trend, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    float x = f[j];
    if constexpr (kScale) x = x * scale;
    if constexpr (kTrend) x = x + trend * (f[j] - p[j]);
    o[j] = x;
  }
}

template <int kCount>
inline void series_span(float* __restrict__ o, const float* __restrict__ f, const float* const* d,
                        const float* coef, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    float x = f[j];
    for (int s = 0; s < kCount; ++s) x = x + coef[s] * d[s][j];
    o[j] = x;
  }
}

__attribute__((target_clones("avx2", "default"))) void corrected_span_any(
    bool scaled, bool trend, int series, float* o, const float* f, const float* p,
    const float* const* d, float scale, float tr, const float* coef, int64_t n) {
  switch (series) {
    case 0: break;
    case 1: return series_span<1>(o, f, d, coef, n);
    case 2: return series_span<2>(o, f, d, coef, n);
    case 3: return series_span<3>(o, f, d, coef, n);
    default: return series_span<4>(o, f, d, coef, n);
  }
  if (scaled && trend) return corrected_span<true, true>(o, f, p, scale, tr, n);
  if (scaled) return corrected_span<true, false>(o, f, p, scale, tr, n);
  if (trend) return corrected_span<false, true>(o, f, p, scale, tr, n);
  corrected_span<false, false>(o, f, p, scale, tr, n);
}

template <bool kSlope>
inline void foca_span(float* __restrict__ o, const float* __restrict__ a,
                      const float* __restrict__ b, const float* __restrict__ fr,
                      const float* __restrict__ fp, float step, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float local = a[j] - b[j];
    float slope = local;
    if constexpr (kSlope) slope = (fr[j] - fp[j]) / step;
    o[j] = a[j] + 0.5f * (local + slope);
  }
}

__attribute__((target_clones("avx2", "default"))) void foca_span_any(bool has_slope, float* o,
                                                                     const float* a, const float* b,
                                                                     const float* fr,
                                                                     const float* fp, float step,
                                                                     int64_t n) {
  if (has_slope)
    foca_span<true>(o, a, b, fr, fp, step, n);
  else
    foca_span<false>(o, a, b, fr, fp, step, n);
}

}  // namespace

std::vector<at::Tensor> derivative_estimates_loop(const at::Tensor& feature, const CachedFeature& e,
                                                  double dk, size_t levels) {
  EOC_ASSERT(levels >= 1 && levels <= e.derivatives.size() + 1 &&
                 levels <= static_cast<size_t>(kMaxTaylorOrder),
             levels, " derivative levels from ", e.derivatives.size(), " estimates");
  Rows f, v, old[kMaxTaylorOrder];
  if (!rows_of(feature, f) || !rows_of(e.value, v) || !same_shape(f, v)) return {};
  for (size_t i = 0; i + 1 < levels; ++i)
    if (!rows_of(e.derivatives[i], old[i]) || !same_shape(f, old[i])) return {};
  auto out =
      at::empty({static_cast<int64_t>(levels), feature.size(0), feature.size(1), feature.size(2)},
                feature.options().memory_format(at::MemoryFormat::Contiguous));
  float* o = out.data_ptr<float>();
  const int64_t level_size = f.count * f.row;
  const float step = static_cast<float>(dk);
  const int n = static_cast<int>(levels);
  for_each_chunk(f.count, f.row, [&](int64_t r, int64_t first, int64_t last) {
    float* dst[kMaxTaylorOrder];
    const float* before[kMaxTaylorOrder] = {};
    for (int i = 0; i < n; ++i) dst[i] = o + i * level_size + r * f.row + first;
    for (int i = 0; i + 1 < n; ++i) before[i] = old[i].at(r) + first;
    derivative_span_any(n, dst, f.at(r) + first, v.at(r) + first, before, step, last - first);
  });
  std::vector<at::Tensor> estimates;
  for (int64_t i = 0; i < static_cast<int64_t>(levels); ++i) estimates.push_back(out[i]);
  return estimates;
}

bool write_corrected_loop(at::Tensor& dst, const Correction& c, const CachedFeature& e) {
  if (c.scale_vec.defined() || c.trend_vec.defined()) return false;
  Rows out, v, p, d[kMaxTaylorOrder];
  const int series = static_cast<int>(c.series.size());
  if (series > kMaxTaylorOrder || !rows_of(dst, out) || !rows_of(e.value, v) || !same_shape(out, v))
    return false;
  const bool trend = c.has_trend();
  if (trend && (!rows_of(e.previous, p) || !same_shape(out, p))) return false;
  for (int s = 0; s < series; ++s)
    if (!rows_of(e.derivatives[s], d[s]) || !same_shape(out, d[s])) return false;
  const float scale = static_cast<float>(c.scale), tr = static_cast<float>(c.trend);
  float coef[kMaxTaylorOrder] = {};
  for (int s = 0; s < series; ++s) coef[s] = static_cast<float>(c.series[s]);
  const bool scaled = c.scale != 1.0;
  for_each_chunk(out.count, out.row, [&](int64_t r, int64_t first, int64_t last) {
    const float* ds[kMaxTaylorOrder] = {};
    for (int s = 0; s < series; ++s) ds[s] = d[s].at(r) + first;
    corrected_span_any(scaled, trend, series, out.at(r) + first, v.at(r) + first,
                       trend ? p.at(r) + first : nullptr, ds, scale, tr, coef, last - first);
  });
  return true;
}

bool write_foca_loop(at::Tensor& dst, const CachedFeature& e, bool has_slope, double dk) {
  Rows out, l1, l2, v, p;
  if (!e.before_latest.defined() || !rows_of(dst, out) || !rows_of(e.latest, l1) ||
      !same_shape(out, l1) || !rows_of(e.before_latest, l2) || !same_shape(out, l2))
    return false;
  if (has_slope && (!rows_of(e.value, v) || !rows_of(e.previous, p) || !same_shape(out, v) ||
                    !same_shape(out, p)))
    return false;
  const float step = static_cast<float>(dk);
  for_each_chunk(out.count, out.row, [&](int64_t r, int64_t first, int64_t last) {
    foca_span_any(has_slope, out.at(r) + first, l1.at(r) + first, l2.at(r) + first,
                  has_slope ? v.at(r) + first : nullptr, has_slope ? p.at(r) + first : nullptr,
                  step, last - first);
  });
  return true;
}

}  // namespace eoc
