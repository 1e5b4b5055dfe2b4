#include "eoc/cache/session.hpp"

#include <algorithm>

#include "eoc/base/error.hpp"

namespace eoc {

int64_t CacheStats::total_computed() const {
  int64_t n = 0;
  for (auto v : computed) n += v;
  return n;
}

int64_t CacheStats::total_reused() const {
  int64_t n = 0;
  for (auto v : reused) n += v;
  return n;
}

double CacheStats::caching_level() const {
  const int64_t all = total_computed() + total_reused();
  return all ? static_cast<double>(total_reused()) / all : 0.0;
}

void CacheStats::add(const CacheStats& other) {
  EOC_ASSERT(other.computed.size() == computed.size(), "adding statistics of ",
             other.computed.size(), " steps to ", computed.size());
  for (size_t k = 0; k < computed.size(); ++k) {
    computed[k] += other.computed[k];
    reused[k] += other.reused[k];
  }
  peak_cache_bytes = std::max(peak_cache_bytes, other.peak_cache_bytes);
}

CacheSession::CacheSession(Kind kind, CachePlan plan, const Corrector& corrector,
                           FeatureCache cache)
    : kind_(kind),
      plan_(std::move(plan)),
      corrector_(&corrector),
      cache_(std::move(cache)),
      stats_(plan_.steps()),
      // An uncached run, or a cached one whose plan reuses nothing, keeps no features alive.
      stores_(kind_ == Kind::shadowing || (kind_ == Kind::cached && plan_.reused_total() > 0)) {}

CacheSession::CacheSession(CachePlan plan, const Corrector& corrector)
    : CacheSession(Kind::cached, plan, corrector, FeatureCache(plan.depth(), corrector.history())) {
}

CacheSession CacheSession::uncached(int64_t steps, int64_t depth) {
  return CacheSession(Kind::uncached, CachePlan::none(steps, depth), plain_corrector(),
                      FeatureCache(depth, false));
}

CacheSession CacheSession::shadowing(CachePlan plan) {
  const int64_t depth = plan.depth();
  return CacheSession(Kind::shadowing, std::move(plan), plain_corrector(),
                      FeatureCache(depth, true));
}

CacheSession CacheSession::cached_from_here(const Corrector& corrector) const {
  EOC_ASSERT(!corrector.recursive() || cache_.history().recursive, "continuing a trajectory under ",
             corrector.name(), " from a cache that kept no recursion");
  CacheSession next(Kind::cached, plan_, corrector, cache_);
  next.observer_ = observer_;
  return next;
}

CacheSession CacheSession::replanned(CachePlan plan) const {
  EOC_ASSERT(
      kind_ == Kind::cached && plan.steps() == plan_.steps() && plan.depth() == plan_.depth(),
      "replanning a session that is not cached, or to another shape");
  CacheSession next(Kind::cached, std::move(plan), *corrector_, cache_);
  next.stats_ = stats_;
  next.observer_ = observer_;
  return next;
}

bool CacheSession::reuses(int64_t step, int64_t block, Branch b) const {
  return kind_ == Kind::cached && plan_.reuses(step, block, b);
}

GatedTerm CacheSession::reused_term(int64_t step, int64_t block, Branch b, const at::Tensor& gate) {
  EOC_ASSERT(reuses(step, block, b), "block ", block, " ", branch_name(b), " is computed at step ",
             step);
  ++stats_.reused[step];
  const auto& entry = cache_.get(block, b);
  if (!corrector_->recursive())
    return GatedTerm{gate, corrector_->correction(step, block, b, entry), entry};
  CachedFeature forecast;
  forecast.value = corrector_->correct(step, block, b, entry);
  cache_.note_forecast(step, block, b, forecast.value);
  return GatedTerm{gate, Correction{}, forecast};
}

void CacheSession::computed(int64_t step, int64_t block, Branch b, const at::Tensor& feature) {
  ++stats_.computed[step];
  if (kind_ == Kind::shadowing && plan_.reuses(step, block, b)) {
    if (observer_) observer_->on_shadowed(step, block, b, feature, cache_.get(block, b));
    return;
  }
  if (!stores_) return;
  cache_.store(step, block, b, feature);
  stats_.peak_cache_bytes = std::max(stats_.peak_cache_bytes, cache_.bytes());
}

}  // namespace eoc
