#include "eoc/cache/feature_cache.hpp"

#include "eoc/base/error.hpp"

namespace eoc {

FeatureCache::FeatureCache(int64_t depth, bool keep_previous)
    : keep_previous_(keep_previous), entries_(static_cast<size_t>(depth * 2)) {}

void FeatureCache::store(int64_t step, int64_t block, Branch b, const at::Tensor& feature) {
  auto& e = entries_[block * 2 + static_cast<int>(b)];
  if (keep_previous_) {
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
  int64_t n = 0;
  for (const auto& e : entries_) {
    if (e.value.defined()) n += e.value.numel() * e.value.element_size();
    if (e.previous.defined()) n += e.previous.numel() * e.previous.element_size();
  }
  return n;
}

}  // namespace eoc
