#include "eoc/cache/feature_cache.hpp"

#include <algorithm>
#include <initializer_list>

#include "eoc/base/error.hpp"
#include "eoc/cache/entry_loops.hpp"

namespace eoc {
namespace {

// TaylorSeer's recursive finite differences: the new estimates at `step` from the new output
// and the estimates stored at the entry's previous computed step.
std::vector<at::Tensor> next_derivatives(const CachedFeature& e, int64_t step,
                                         const at::Tensor& feature, int order) {
  std::vector<at::Tensor> next;
  if (!e.value.defined()) return next;
  const double dk = static_cast<double>(step - e.step);
  const size_t levels = std::min<size_t>(order, e.derivatives.size() + 1);
  // One pass and one tensor for every level where the loop applies (same bits).
  next = derivative_estimates_loop(feature, e, dk, levels);
  if (!next.empty()) return next;
  for (size_t i = 0; i < levels; ++i) {
    const at::Tensor& now = i == 0 ? feature : next[i - 1];
    const at::Tensor& before = i == 0 ? e.value : e.derivatives[i - 1];
    next.push_back(at::sub(now, before).div_(dk));
  }
  return next;
}

// Every step visits every entry (computed or reused), so the latest value is the previous
// step's; a gap (never in a session) drops the older value rather than mislabel it.
void advance_latest(CachedFeature& e, int64_t step, const at::Tensor& value) {
  e.before_latest = e.latest_step == step - 1 ? e.latest : at::Tensor();
  e.latest = value;
  e.latest_step = step;
}

}  // namespace

FeatureCache::FeatureCache(int64_t depth, History history)
    : history_(history), entries_(static_cast<size_t>(depth * 2)) {
  EOC_ASSERT(history.order >= 0 && history.order <= kMaxTaylorOrder, "derivative order ",
             history.order);
}

void FeatureCache::store(int64_t step, int64_t block, Branch b, const at::Tensor& feature) {
  auto& e = entries_[block * 2 + static_cast<int>(b)];
  if (history_.order > 0) e.derivatives = next_derivatives(e, step, feature, history_.order);
  if (history_.previous) {
    e.previous = e.value;  // a reference: the difference is formed inside the fused correction
    e.prev_step = e.value.defined() ? e.step : -1;
  }
  e.value = feature;
  e.step = step;
  if (history_.recursive) advance_latest(e, step, feature);
}

void FeatureCache::note_forecast(int64_t step, int64_t block, Branch b,
                                 const at::Tensor& forecast) {
  EOC_ASSERT(history_.recursive, "a forecast noted in a cache that keeps no recursion");
  advance_latest(entries_[block * 2 + static_cast<int>(b)], step, forecast);
}

const CachedFeature& FeatureCache::get(int64_t block, Branch b) const {
  const auto& e = entries_[block * 2 + static_cast<int>(b)];
  EOC_ASSERT(e.value.defined(), "block ", block, " ", branch_name(b),
             " reused before it was computed (CachePlan::validate lets no plan do that)");
  return e;
}

void FeatureCache::clear() {
  for (auto& e : entries_) e = CachedFeature{};
}

int64_t FeatureCache::bytes() const {
  auto size = [](const at::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; };
  // A tensor held twice (F[r] is also the latest value after a computed step) counts once.
  auto other = [&](const at::Tensor& t, std::initializer_list<const at::Tensor*> seen) {
    for (const auto* s : seen)
      if (s->defined() && t.defined() && s->is_same(t)) return int64_t{0};
    return size(t);
  };
  int64_t n = 0;
  for (const auto& e : entries_) {
    n += size(e.value) + other(e.previous, {&e.value});
    for (const auto& d : e.derivatives) n += size(d);
    n += other(e.latest, {&e.value, &e.previous});
    n += other(e.before_latest, {&e.value, &e.previous, &e.latest});
  }
  return n;
}

}  // namespace eoc
