#include "eoc/cache/session.hpp"

#include <algorithm>

#include "eoc/base/error.hpp"
#include "eoc/cache/correctors.hpp"

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
  auto append = [](auto& to, const auto& from) { to.insert(to.end(), from.begin(), from.end()); };
  append(image_computed_fraction, other.image_computed_fraction);
  append(image_reused_steps, other.image_reused_steps);
  append(image_decisions, other.image_decisions);
  append(image_step_signals, other.image_step_signals);
  append(gate_signals, other.gate_signals);
  append(gate_cpu_seconds, other.gate_cpu_seconds);
}

CacheSession::CacheSession(Kind kind, CachePlan plan, const Corrector& corrector,
                           FeatureCache cache)
    : kind_(kind),
      plan_(std::move(plan)),
      corrector_(&corrector),
      cache_(std::move(cache)),
      stats_(plan_.steps()),
      // An uncached run, or a cached one whose plan reuses nothing, keeps no features alive; a
      // gated one keeps them in its images' own caches.
      stores_(kind_ == Kind::shadowing || (kind_ == Kind::cached && plan_.reused_total() > 0)),
      gate_(kind_ == Kind::cached ? plan_.gate() : std::nullopt) {}

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

void CacheSession::begin_step(int64_t step, int64_t images, int64_t halves) {
  EOC_ASSERT(images >= 1 && halves >= 1 && step >= 0 && step < plan_.steps(), "step ", step, " of ",
             images, " images x ", halves, " rows");
  if (gate_ && image_states_.empty()) {
    image_states_.reserve(static_cast<size_t>(images));
    for (int64_t i = 0; i < images; ++i)
      image_states_.push_back(ImageState{ImageGate(*gate_, plan_.steps()),
                                         FeatureCache(plan_.depth(), corrector_->history()),
                                         {},
                                         {},
                                         {},
                                         {},
                                         0});
    reuse_now_.assign(static_cast<size_t>(images), 0);
  }
  EOC_ASSERT(!gate_ || static_cast<int64_t>(image_states_.size()) == images, "a gated session of ",
             image_states_.size(), " images given ", images);
  images_ = images;
  halves_ = halves;
}

bool CacheSession::reuses(int64_t step, int64_t block, Branch b) const {
  return kind_ == Kind::cached && !gate_ && plan_.reuses(step, block, b);
}

GatedTerm CacheSession::reused_term(int64_t step, int64_t block, Branch b, const at::Tensor& gate) {
  EOC_ASSERT(reuses(step, block, b), "block ", block, " ", branch_name(b), " is computed at step ",
             step);
  stats_.reused[step] += images_;
  const auto& entry = cache_.get(block, b);
  if (!corrector_->recursive())
    return GatedTerm{gate, corrector_->correction(step, block, b, entry), entry};
  CachedFeature forecast;
  forecast.value = corrector_->correct(step, block, b, entry);
  cache_.note_forecast(step, block, b, forecast.value);
  return GatedTerm{gate, Correction{}, forecast};
}

void CacheSession::computed(int64_t step, int64_t block, Branch b, const at::Tensor& feature) {
  EOC_ASSERT(!gate_, "a gated session is told of computed images (computed_images)");
  stats_.computed[step] += images_;
  if (kind_ == Kind::shadowing && plan_.reuses(step, block, b)) {
    if (observer_) observer_->on_shadowed(step, block, b, feature, cache_.get(block, b));
    return;
  }
  if (!stores_) return;
  cache_.store(step, block, b, feature);
  stats_.peak_cache_bytes = std::max(stats_.peak_cache_bytes, cache_.bytes());
}

CacheStats CacheSession::stats() const {
  CacheStats out = stats_;
  const double branches = static_cast<double>(plan_.steps() * plan_.depth() * 2);
  for (const auto& s : image_states_) {
    out.image_computed_fraction.push_back(s.computed_branches / branches);
    out.image_reused_steps.push_back(s.gate.reused_steps());
    out.image_decisions.push_back(s.gate.decisions());
    out.image_step_signals.push_back(s.gate.step_signals());
    out.gate_signals.insert(out.gate_signals.end(), s.gate.signals().begin(),
                            s.gate.signals().end());
  }
  if (gate_) out.gate_cpu_seconds = {gate_cpu_seconds_};
  return out;
}

namespace {

double abs_sum(const at::Tensor& t) { return t.abs().sum().item<double>(); }

}  // namespace

at::Tensor CacheSession::rows_of(const std::vector<int64_t>& images,
                                 const at::Device& device) const {
  std::vector<int64_t> rows;
  rows.reserve(images.size() * static_cast<size_t>(halves_));
  for (int64_t h = 0; h < halves_; ++h)
    for (int64_t i : images) rows.push_back(h * images_ + i);
  return at::tensor(rows, at::kLong).to(device);
}

void CacheSession::decide(int64_t step, const GateView& v) {
  EOC_ASSERT(gate_ && decided_step_ < step, "deciding step ", step, " twice or without a gate");
  const auto timer = gate_work();
  using Rule = GateSpec::Rule;
  for (int64_t i = 0; i < images_; ++i) {
    auto& s = image_states_[i];
    const auto rows = rows_of({i}, v.tokens.device());
    std::optional<double> signal;
    switch (gate_->rule) {
      case Rule::fbcache: {
        const auto r =
            (v.tokens.index_select(0, rows) - v.embedded.index_select(0, rows)).to(at::kFloat);
        if (s.reference.defined())
          signal = relative_l1(abs_sum(r - s.reference), abs_sum(s.reference));
        reuse_now_[i] = s.gate.reuse(step, signal);
        if (!reuse_now_[i]) s.reference = r;
        break;
      }
      case Rule::teacache: {
        const auto e = v.embedded.index_select(0, rows).to(at::kFloat);
        const auto m = at::layer_norm(e, {e.size(-1)}, {}, {}, 1e-6) *
                           (1 + v.scale0.index_select(0, rows).to(at::kFloat).unsqueeze(1)) +
                       v.shift0.index_select(0, rows).to(at::kFloat).unsqueeze(1);
        if (s.reference.defined())
          signal = relative_l1(abs_sum(m - s.reference), abs_sum(s.reference));
        reuse_now_[i] = s.gate.reuse(step, signal);
        s.reference = m;
        break;
      }
      case Rule::easycache: {
        const auto x =
            v.x.narrow(0, i, 1).to(at::kFloat).clone();  // its own buffer: same bits in any batch
        if (s.x_prev.defined() && s.out_computed.defined()) {
          const double out_mean = s.out_computed.abs().mean().item<double>();
          if (out_mean > 0) signal = (x - s.x_prev).abs().mean().item<double>() / out_mean;
        }
        reuse_now_[i] = s.gate.reuse(step, signal);
        s.x_prev = x;
        break;
      }
    }
  }
  decided_step_ = step;
}

CacheSession::Split CacheSession::split(int64_t step, int64_t block) const {
  EOC_ASSERT(gate_, "split() of a session without a gate");
  Split out;
  const bool gated = gate_->gates(block, plan_.depth());
  EOC_ASSERT(!gated || decided_step_ == step, "block ", block, " at step ", step,
             " before the gate decided it");
  for (int64_t i = 0; i < images_; ++i)
    (gated && reuse_now_[i] ? out.reuse : out.compute).push_back(i);
  return out;
}

void CacheSession::computed_images(int64_t step, int64_t block, Branch b,
                                   const std::vector<int64_t>& images, const at::Tensor& f) {
  EOC_ASSERT(gate_ && f.size(0) == static_cast<int64_t>(images.size()) * halves_, "computed rows ",
             f.size(0), " for ", images.size(), " images");
  const auto timer = gate_work();
  stats_.computed[step] += static_cast<int64_t>(images.size());
  const bool gated = gate_->gates(block, plan_.depth());
  const int64_t n = static_cast<int64_t>(images.size());
  // (halves * n, T, D) -> (halves, n, T, D): image j's rows are [:, j].
  const auto by_image = f.view({halves_, n, f.size(1), f.size(2)});
  for (int64_t j = 0; j < n; ++j) {
    auto& s = image_states_[images[j]];
    ++s.computed_branches;
    if (!gated) continue;  // never reused: nothing to keep
    // A copy of its own: a view would keep the whole batch's output alive for this image.
    s.cache.store(step, block, b, by_image.select(1, j).clone(at::MemoryFormat::Contiguous));
  }
}

void CacheSession::forecast_images(int64_t step, int64_t block, Branch b,
                                   const std::vector<int64_t>& images, at::Tensor& out) {
  EOC_ASSERT(gate_ && !images.empty() && out.size(0) == images_ * halves_, "a forecast of ",
             images.size(), " images into ", out.size(0), " rows");
  stats_.reused[step] += static_cast<int64_t>(images.size());
  // (halves * images, T, D) -> (halves, images, T, D): image i's rows are [:, i].
  const auto by_image = out.view({halves_, images_, out.size(1), out.size(2)});
  for (int64_t i : images) {
    auto& cache = image_states_[i].cache;
    at::Tensor rows = by_image.select(1, i);
    corrector_->correct_into(step, block, b, cache.get(block, b), rows);
    // A view of `out`: kept until the forecast after next replaces it (two steps).
    if (corrector_->recursive()) cache.note_forecast(step, block, b, rows);
  }
}

void CacheSession::step_output(int64_t step, const at::Tensor& x, const at::Tensor& out) {
  EOC_ASSERT(gate_ && decided_step_ == step, "step ", step, "'s output before its decision");
  const auto timer = gate_work();
  int64_t bytes = 0;
  for (const auto& s : image_states_) bytes += s.cache.bytes();
  stats_.peak_cache_bytes = std::max(stats_.peak_cache_bytes, bytes);
  if (gate_->rule != GateSpec::Rule::easycache) return;
  for (int64_t i = 0; i < images_; ++i) {
    if (reuse_now_[i]) continue;
    auto& s = image_states_[i];
    const auto xi = x.narrow(0, i, 1).to(at::kFloat).clone();
    const auto oi = out.narrow(0, i, 1).to(at::kFloat).clone();
    if (s.out_computed.defined()) {
      const double dx = (xi - s.x_computed).abs().mean().item<double>();
      if (dx > 0) s.gate.set_k((oi - s.out_computed).abs().mean().item<double>() / dx);
    }
    s.x_computed = xi;
    s.out_computed = oi;
  }
}

}  // namespace eoc
