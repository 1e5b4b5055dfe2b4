// The hook's reuse path: tokens + gate * F_hat, with F_hat = scale * F[r] + trend * (F[r] - F[p]).
// With ATen ops a reused entry costs several passes over (rows, T, D) tensors (the correction,
// the gate product, the sum, each a new tensor); on CPU, where these small DiT steps are bound
// by memory traffic, the fused loop below reads F[r] (and F[p]) and updates the tokens once.
// It performs the same float operations in the same order as corrected_feature + the gate
// product + the sum, so results agree with the ATen path to rounding.
#include <ATen/Parallel.h>

#include "eoc/correctors.hpp"
#include "eoc/error.hpp"

namespace eoc {
namespace {

enum Mode { kNone = 0, kScalar = 1, kVector = 2 };

struct FusedArgs {
  float* tokens;
  const float* gate;
  int64_t gate_stride;
  const float* value;
  const float* previous;
  const float* scale_vec;
  const float* trend_vec;
  float scale, trend;
  int64_t rows, tokens_per_row, channels, rows_per_half;
};

template <int kScale, int kTrend>
void fused_rows(const FusedArgs& a) {
  const int64_t d = a.channels;
  const int64_t grain = std::max<int64_t>(1, 16384 / d);
  at::parallel_for(0, a.rows * a.tokens_per_row, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t row = i / a.tokens_per_row, half = row / a.rows_per_half;
      // No two of these overlap (tokens are never cached), so the loop vectorizes as written.
      float* __restrict__ t = a.tokens + i * d;
      const float* __restrict__ g = a.gate + row * a.gate_stride;
      const float* __restrict__ f = a.value + i * d;
      const float* __restrict__ p = kTrend != kNone ? a.previous + i * d : nullptr;
      const float* __restrict__ sv = kScale == kVector ? a.scale_vec + half * d : nullptr;
      const float* __restrict__ tv = kTrend == kVector ? a.trend_vec + half * d : nullptr;
      const float scale = a.scale, trend = a.trend;
      for (int64_t j = 0; j < d; ++j) {
        float x = f[j];
        if constexpr (kScale == kScalar) x = x * scale;
        if constexpr (kScale == kVector) x = x * sv[j];
        if constexpr (kTrend == kScalar) x = x + trend * (f[j] - p[j]);
        if constexpr (kTrend == kVector) x = x + tv[j] * (f[j] - p[j]);
        t[j] = t[j] + g[j] * x;
      }
    }
  });
}

bool usable(const at::Tensor& t) {
  return !t.defined() || (t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous());
}

// (halves, 1, 1, D) coefficient vector -> its data, checked against the feature's shape.
const float* vector_data(const at::Tensor& v, int64_t rows, int64_t d, int64_t& halves) {
  if (!v.defined()) return nullptr;
  if (v.numel() % d != 0 || rows % (v.numel() / d) != 0)
    fail("internal: a correction vector of ", v.numel(), " values for ", rows, " rows of ", d);
  halves = v.numel() / d;
  return v.data_ptr<float>();
}

}  // namespace

at::Tensor add_gated_correction(at::Tensor tokens, const at::Tensor& gate, const Correction& c,
                                const CachedFeature& e) {
  const auto& f = e.value;
  const bool trend = c.has_trend();
  if (trend && !e.previous.defined()) fail("internal: a trend correction for an entry without F[p]");
  const bool fused = tokens.dim() == 3 && tokens.sizes() == f.sizes() && gate.dim() == 2 &&
                     gate.stride(1) == 1 && gate.device().is_cpu() &&
                     gate.scalar_type() == at::kFloat && usable(tokens) && usable(f) &&
                     usable(trend ? e.previous : at::Tensor()) && usable(c.scale_vec) &&
                     usable(c.trend_vec);
  if (!fused) return tokens + gate.unsqueeze(1) * corrected_feature(c, e);

  FusedArgs a{};
  a.rows = f.size(0);
  a.tokens_per_row = f.size(1);
  a.channels = f.size(2);
  int64_t halves = 1;
  a.tokens = tokens.data_ptr<float>();
  a.gate = gate.data_ptr<float>();
  a.gate_stride = gate.stride(0);
  a.value = f.data_ptr<float>();
  a.previous = trend ? e.previous.data_ptr<float>() : nullptr;
  a.scale_vec = vector_data(c.scale_vec, a.rows, a.channels, halves);
  a.trend_vec = vector_data(c.trend_vec, a.rows, a.channels, halves);
  a.scale = static_cast<float>(c.scale);
  a.trend = static_cast<float>(c.trend);
  a.rows_per_half = a.rows / halves;
  const int scale = c.scale_vec.defined() ? kVector : c.scale != 1.0 ? kScalar : kNone;
  const int trend_mode = c.trend_vec.defined() ? kVector : trend ? kScalar : kNone;
  if (scale != kNone && trend_mode != kNone) return tokens + gate.unsqueeze(1) * corrected_feature(c, e);
  switch (scale * 3 + trend_mode) {
    case kNone * 3 + kNone: fused_rows<kNone, kNone>(a); break;
    case kScalar * 3 + kNone: fused_rows<kScalar, kNone>(a); break;
    case kVector * 3 + kNone: fused_rows<kVector, kNone>(a); break;
    case kNone * 3 + kScalar: fused_rows<kNone, kScalar>(a); break;
    default: fused_rows<kNone, kVector>(a); break;
  }
  return tokens;
}

}  // namespace eoc
