#include "eoc/cache/feature_cache.hpp"

#include <algorithm>

#include "eoc/base/error.hpp"

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
  for (size_t i = 0; i < levels; ++i) {
    const at::Tensor& now = i == 0 ? feature : next[i - 1];
    const at::Tensor& before = i == 0 ? e.value : e.derivatives[i - 1];
    next.push_back(at::sub(now, before).div_(dk));
  }
  return next;
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
  int64_t n = 0;
  for (const auto& e : entries_) {
    n += size(e.value) + size(e.previous);
    for (const auto& d : e.derivatives) n += size(d);
  }
  return n;
}

}  // namespace eoc
