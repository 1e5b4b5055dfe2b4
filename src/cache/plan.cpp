#include "eoc/cache/plan.hpp"

#include <algorithm>

#include "eoc/base/error.hpp"

namespace eoc {

CachePlan::CachePlan(int64_t steps, int64_t depth, std::string spec)
    : steps_(steps), depth_(depth), spec_(std::move(spec)), reuse_(steps * depth * 2, 0) {}

CachePlan CachePlan::none(int64_t steps, int64_t depth) { return CachePlan(steps, depth, "none"); }

CachePlan CachePlan::fora(int64_t steps, int64_t depth, int64_t interval) {
  EOC_ASSERT(interval >= 1, "FORA interval ", interval);
  CachePlan plan(steps, depth, "fora:" + std::to_string(interval));
  for (int64_t k = 0; k < steps; ++k) {
    const int64_t i = steps - 1 - k;
    const bool compute = i == steps - 1 || i % interval == 0;
    for (int64_t l = 0; l < depth && !compute; ++l) {
      plan.set_reuse(k, l, Branch::attn, true);
      plan.set_reuse(k, l, Branch::mlp, true);
    }
  }
  return plan;
}

CachePlan CachePlan::computing(int64_t steps, int64_t depth, const std::vector<int64_t>& computed,
                               std::string spec) {
  CachePlan plan(steps, depth, std::move(spec));
  std::fill(plan.reuse_.begin(), plan.reuse_.end(), 1);
  for (int64_t k : computed) {
    EOC_ASSERT(k >= 0 && k < steps, "computed step ", k, " of ", steps);
    std::fill(plan.reuse_.begin() + k * depth * 2, plan.reuse_.begin() + (k + 1) * depth * 2, 0);
  }
  return plan;
}

CachePlan CachePlan::masked(int64_t steps, int64_t depth, const std::vector<bool>& reuse,
                            std::string spec) {
  EOC_ASSERT(static_cast<int64_t>(reuse.size()) == steps * depth * 2, "a mask of ", reuse.size(),
             " flags for ", steps, " x ", depth, " x 2 entries");
  CachePlan plan(steps, depth, std::move(spec));
  std::copy(reuse.begin(), reuse.end(), plan.reuse_.begin());
  plan.validate();
  return plan;
}

CachePlan CachePlan::gated(int64_t steps, int64_t depth, const GateSpec& gate) {
  EOC_ASSERT(gate.first_gated_block() < gate.end_gated_block(depth), "gate '", gate.text(),
             "' gates no block of ", depth);
  CachePlan plan(steps, depth, gate.text());
  plan.gate_ = gate;
  return plan;
}

std::optional<CachePlan> CachePlan::from_layout(int64_t steps, int64_t depth,
                                                const std::string& layout, std::string spec) {
  if (static_cast<int64_t>(layout.size()) != steps * (depth * 2 + 1) - 1) return std::nullopt;
  CachePlan plan(steps, depth, std::move(spec));
  size_t i = 0;
  for (int64_t k = 0; k < steps; ++k, ++i) {  // ++i skips the '|' between steps
    for (int64_t l = 0; l < depth; ++l)
      for (Branch b : {Branch::attn, Branch::mlp}) {
        const char c = layout[i++];
        if (c != 'c' && c != 'r') return std::nullopt;
        plan.set_reuse(k, l, b, c == 'r');
      }
    if (k + 1 < steps && layout[i] != '|') return std::nullopt;
  }
  return plan;
}

void CachePlan::set_reuse(int64_t step, int64_t block, Branch b, bool reuse) {
  reuse_[index(step, block, b)] = reuse ? 1 : 0;
}

void CachePlan::compute_first(int64_t k) {
  EOC_ASSERT(k >= 0 && k <= steps_, "a warm-up of ", k, " steps of ", steps_);
  if (k == 0) return;
  if (gate_) {  // the gate's own warm-up guard
    gate_->warmup = std::max(gate_->warmup, k);
    spec_ = gate_->text();
    return;
  }
  std::fill(reuse_.begin(), reuse_.begin() + k * depth_ * 2, 0);
  spec_ += "+warmup:" + std::to_string(k);
}

bool CachePlan::step_reuses_any(int64_t step) const { return reused_in_step(step) > 0; }

int64_t CachePlan::reused_in_step(int64_t step) const {
  int64_t n = 0;
  for (int64_t l = 0; l < depth_; ++l)
    n += reuses(step, l, Branch::attn) + reuses(step, l, Branch::mlp);
  return n;
}

int64_t CachePlan::reused_total() const {
  int64_t n = 0;
  for (auto r : reuse_) n += r;
  return n;
}

double CachePlan::caching_level() const {
  return reuse_.empty() ? 0.0 : static_cast<double>(reused_total()) / reuse_.size();
}

void CachePlan::validate() const {
  for (int64_t l = 0; l < depth_; ++l)
    for (Branch b : {Branch::attn, Branch::mlp})
      for (int64_t k = 0; k < steps_; ++k) {
        if (!reuses(k, l, b)) break;
        fail("cache plan '", spec_, "' reuses block ", l, " ", branch_name(b), " at step ", k,
             " before it was ever computed (step 0 must compute everything)");
      }
}

std::string CachePlan::layout() const {
  std::string out;
  for (int64_t k = 0; k < steps_; ++k) {
    if (k) out += '|';
    for (int64_t l = 0; l < depth_; ++l)
      for (Branch b : {Branch::attn, Branch::mlp}) out += reuses(k, l, b) ? 'r' : 'c';
  }
  return out;
}

}  // namespace eoc
