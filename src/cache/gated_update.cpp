// The hook's residual updates: tokens + sum over terms of gate * F_hat, added term by term in block
// order, with F_hat = scale * F[r] + trend * (F[r] - F[p]) for a reused entry and the fresh output
// itself for a computed one. With ATen ops every term costs several passes over (rows, T, D)
// tensors (the correction, the gate product, the sum, each a new tensor); on CPU, where these small
// DiT steps are bound by memory traffic, the fused loop below walks the token rows once, a block at
// a time, and applies every pending term to a block while it sits in L1, so a fully reused step
// reads each cached feature once and the tokens once. Per element it performs the same float
// operations in the same order as corrected_feature + the gate product + the sum, term after term
// (this file is compiled with -ffp-contract=off), so plain reuse and computed branches are
// bit-identical to the ATen path and corrections agree to rounding.
#include "eoc/cache/gated_update.hpp"

#include <ATen/Parallel.h>

#include "eoc/base/error.hpp"

namespace eoc {
namespace {

enum Mode { kNone = 0, kScalar = 1, kVector = 2 };

// One term's pointers for the fused loop. Row `row` of the feature uses gate row `row` and
// coefficient vector `row / rows_per_half`.
struct FusedTerm {
  const float* gate;
  int64_t gate_stride;
  const float* value;
  const float* previous;
  const float* scale_vec;
  const float* trend_vec;
  float scale, trend;
  int64_t rows_per_half;
  int scale_mode, trend_mode;
  int series_count;  // derivative terms (taylor:O); never with a scale or a trend
  const float* derivative[kMaxTaylorOrder];
  float series[kMaxTaylorOrder];
};

// Rows [first, last) of the tokens (flat index over rows x T) += gate * F_hat of one term.
template <int kScale, int kTrend>
inline void update_rows(float* tokens, const FusedTerm& a, int64_t first, int64_t last,
                        int64_t tokens_per_row, int64_t d) {
  const float scale = a.scale, trend = a.trend;
  for (int64_t i = first; i < last; ++i) {
    const int64_t row = i / tokens_per_row, half = row / a.rows_per_half, offset = i * d;
    // No two of these overlap (tokens are never cached), so the loop vectorizes as written.
    float* __restrict__ t = tokens + offset;
    const float* __restrict__ g = a.gate + row * a.gate_stride;
    const float* __restrict__ f = a.value + offset;
    const float* __restrict__ p = kTrend != kNone ? a.previous + offset : nullptr;
    const float* __restrict__ sv = kScale == kVector ? a.scale_vec + half * d : nullptr;
    const float* __restrict__ tv = kTrend == kVector ? a.trend_vec + half * d : nullptr;
    for (int64_t j = 0; j < d; ++j) {
      float x = f[j];
      if constexpr (kScale == kScalar) x = x * scale;
      if constexpr (kScale == kVector) x = x * sv[j];
      if constexpr (kTrend == kScalar) x = x + trend * (f[j] - p[j]);
      if constexpr (kTrend == kVector) x = x + tv[j] * (f[j] - p[j]);
      t[j] = t[j] + g[j] * x;
    }
  }
}

// The same for a forecast over kCount derivative estimates: x = F + c1 D1 + c2 D2 + ..., added
// in order as corrected_feature does.
template <int kCount>
inline void update_rows_series(float* tokens, const FusedTerm& a, int64_t first, int64_t last,
                               int64_t tokens_per_row, int64_t d) {
  for (int64_t i = first; i < last; ++i) {
    const int64_t row = i / tokens_per_row, offset = i * d;
    float* __restrict__ t = tokens + offset;
    const float* __restrict__ g = a.gate + row * a.gate_stride;
    const float* __restrict__ f = a.value + offset;
    const float* __restrict__ dv[kCount];
    for (int s = 0; s < kCount; ++s) dv[s] = a.derivative[s] + offset;
    for (int64_t j = 0; j < d; ++j) {
      float x = f[j];
      for (int s = 0; s < kCount; ++s) x = x + a.series[s] * dv[s][j];
      t[j] = t[j] + g[j] * x;
    }
  }
}

template <int kScale>
inline void update_rows_with(float* tokens, const FusedTerm& a, int64_t first, int64_t last,
                             int64_t tokens_per_row, int64_t d) {
  switch (a.trend_mode) {
    case kNone: update_rows<kScale, kNone>(tokens, a, first, last, tokens_per_row, d); break;
    case kScalar: update_rows<kScale, kScalar>(tokens, a, first, last, tokens_per_row, d); break;
    default: update_rows<kScale, kVector>(tokens, a, first, last, tokens_per_row, d); break;
  }
}

// Token rows [begin, end) through every term, a block of rows at a time: the block's tokens
// stay in L1 while each term's features stream past in runs of 32 KiB, rather than one row of
// each term in turn (which keeps reloading the tokens from further away). Per element the terms
// still apply in order. Cloned for AVX2 (chosen at load time when the CPU has it): the same
// float operations, eight lanes at a time instead of SSE2's four.
__attribute__((target_clones("avx2", "default"))) void apply_terms(
    float* tokens, const FusedTerm* terms, size_t count, int64_t begin, int64_t end,
    int64_t tokens_per_row, int64_t d) {
  const int64_t block = std::max<int64_t>(1, 8192 / d);
  for (int64_t first = begin; first < end; first += block) {
    const int64_t last = std::min(end, first + block);
    for (size_t k = 0; k < count; ++k) {
      const auto& a = terms[k];
      switch (a.series_count) {
        case 0: break;
        case 1: update_rows_series<1>(tokens, a, first, last, tokens_per_row, d); continue;
        case 2: update_rows_series<2>(tokens, a, first, last, tokens_per_row, d); continue;
        case 3: update_rows_series<3>(tokens, a, first, last, tokens_per_row, d); continue;
        default: update_rows_series<4>(tokens, a, first, last, tokens_per_row, d); continue;
      }
      switch (a.scale_mode) {
        case kNone: update_rows_with<kNone>(tokens, a, first, last, tokens_per_row, d); break;
        case kScalar: update_rows_with<kScalar>(tokens, a, first, last, tokens_per_row, d); break;
        default: update_rows_with<kVector>(tokens, a, first, last, tokens_per_row, d); break;
      }
    }
  }
}

void fused_terms(float* tokens, const std::vector<FusedTerm>& terms, int64_t rows,
                 int64_t tokens_per_row, int64_t d) {
  const int64_t grain = std::max<int64_t>(1, 16384 / d);
  at::parallel_for(0, rows * tokens_per_row, grain, [&](int64_t begin, int64_t end) {
    apply_terms(tokens, terms.data(), terms.size(), begin, end, tokens_per_row, d);
  });
}

bool usable(const at::Tensor& t) {
  return !t.defined() ||
         (t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous());
}

// (halves, 1, 1, D) coefficient vector -> its data, checked against the feature's shape.
const float* vector_data(const at::Tensor& v, int64_t rows, int64_t d, int64_t& halves) {
  if (!v.defined()) return nullptr;
  EOC_ASSERT(v.numel() % d == 0 && rows % (v.numel() / d) == 0, "a correction vector of ",
             v.numel(), " values for ", rows, " rows of ", d);
  halves = v.numel() / d;
  return v.data_ptr<float>();
}

void check_term(const GatedTerm& term) {
  const auto& c = term.correction;
  EOC_ASSERT(!c.has_trend() || term.entry.previous.defined(),
             "a trend correction for an entry without F[p]");
  EOC_ASSERT(!c.has_series() || (!c.has_scale() && !c.has_trend() &&
                                 c.series.size() <= term.entry.derivatives.size() &&
                                 c.series.size() <= static_cast<size_t>(kMaxTaylorOrder)),
             "a series of ", c.series.size(), " terms for an entry with ",
             term.entry.derivatives.size(), " derivatives");
}

bool fusable(const at::Tensor& tokens, const GatedTerm& term) {
  const auto& f = term.entry.value;
  const auto& c = term.correction;
  const auto& gate = term.gate;
  // The tokens need not be contiguous: add_gated_terms copies them into a contiguous tensor.
  for (size_t s = 0; s < c.series.size(); ++s)
    if (!usable(term.entry.derivatives[s])) return false;
  return tokens.dim() == 3 && tokens.sizes() == f.sizes() && gate.dim() == 2 &&
         gate.size(0) == f.size(0) && gate.size(1) == f.size(2) && gate.stride(1) == 1 &&
         gate.device().is_cpu() && gate.scalar_type() == at::kFloat && tokens.device().is_cpu() &&
         tokens.scalar_type() == at::kFloat && usable(f) &&
         usable(c.has_trend() ? term.entry.previous : at::Tensor()) && usable(c.scale_vec) &&
         usable(c.trend_vec);
}

FusedTerm fused_term(const GatedTerm& term) {
  const auto& f = term.entry.value;
  const auto& c = term.correction;
  const int64_t rows = f.size(0), d = f.size(2);
  int64_t halves = 1;
  FusedTerm a{};
  a.gate = term.gate.data_ptr<float>();
  a.gate_stride = term.gate.stride(0);
  a.value = f.data_ptr<float>();
  a.previous = c.has_trend() ? term.entry.previous.data_ptr<float>() : nullptr;
  a.scale_vec = vector_data(c.scale_vec, rows, d, halves);
  a.trend_vec = vector_data(c.trend_vec, rows, d, halves);
  a.scale = static_cast<float>(c.scale);
  a.trend = static_cast<float>(c.trend);
  a.rows_per_half = rows / halves;
  a.scale_mode = c.scale_vec.defined() ? kVector : c.scale != 1.0 ? kScalar : kNone;
  a.trend_mode = c.trend_vec.defined() ? kVector : c.has_trend() ? kScalar : kNone;
  a.series_count = static_cast<int>(c.series.size());
  for (int s = 0; s < a.series_count; ++s) {
    a.derivative[s] = term.entry.derivatives[s].data_ptr<float>();
    a.series[s] = static_cast<float>(c.series[s]);
  }
  return a;
}

// F_hat for the ATen path below. The plain forecast F[r] + tau * (F[r] - F[p]) (taylor, EOC's
// default form) is lerp(F[p], F[r], 1 + tau): one kernel and three passes instead of a
// difference and a sum (six). It rounds differently from corrected_feature only in the last
// bits, which is why it lives here: corrected_feature stays the reference formula that the
// fused loop matches operation for operation.
at::Tensor aten_feature(const GatedTerm& term) {
  const auto& c = term.correction;
  const bool plain_forecast =
      c.has_trend() && !c.trend_vec.defined() && !c.scale_vec.defined() && c.scale == 1.0;
  if (plain_forecast) return at::lerp(term.entry.previous, term.entry.value, 1.0 + c.trend);
  return corrected_feature(c, term.entry);
}

// The path for what the fused loop does not take (CUDA, bf16, fp16): one addcmul per term, so
// a term costs three passes over (rows, T, D) instead of five (a gate product, then a sum, each
// a new tensor). The first term makes a new tensor, so the caller's tokens are never written;
// later terms update that tensor in place when the types and shapes let them.
at::Tensor add_terms_with_aten(at::Tensor tokens, const std::vector<GatedTerm>& terms) {
  bool owned = false;
  for (const auto& term : terms) {
    const auto gate = term.gate.unsqueeze(1);
    const auto feature = aten_feature(term);
    const bool in_place = owned && feature.sizes() == tokens.sizes() &&
                          feature.scalar_type() == tokens.scalar_type() &&
                          gate.scalar_type() == tokens.scalar_type();
    if (in_place) {
      tokens.addcmul_(gate, feature);
    } else {
      tokens = at::addcmul(tokens, gate, feature);
      owned = true;
    }
  }
  return tokens;
}

}  // namespace

at::Tensor add_gated_terms(at::Tensor tokens, const std::vector<GatedTerm>& terms) {
  bool fused = true;
  for (const auto& term : terms) {
    check_term(term);
    fused = fused && fusable(tokens, term);
  }
  if (!fused) return add_terms_with_aten(std::move(tokens), terms);
  if (terms.empty()) return tokens;
  // The embedding's tokens come out transposed (the patch convolution's (B, D, T) viewed as
  // (B, T, D)); one copy of the tokens is far cheaper than the term-by-term ATen path.
  if (!tokens.is_contiguous()) tokens = tokens.contiguous();
  std::vector<FusedTerm> args;
  args.reserve(terms.size());
  for (const auto& term : terms) args.push_back(fused_term(term));
  fused_terms(tokens.data_ptr<float>(), args, tokens.size(0), tokens.size(1), tokens.size(2));
  return tokens;
}

}  // namespace eoc
