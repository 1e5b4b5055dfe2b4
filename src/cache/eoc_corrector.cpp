#include "eoc/cache/eoc_corrector.hpp"

#include <algorithm>

#include "eoc/base/error.hpp"
#include "eoc/cache/block_loop.hpp"

namespace eoc {

bool form_has_vectors(EocForm f) { return f != EocForm::taylor; }

int EocPrior::highest_order() const {
  int highest = 0;
  for (size_t k = 0; k < step_theta.size(); ++k)
    if (step_theta[k] != 0.0) highest = std::max(highest, order_at(static_cast<int64_t>(k)));
  return highest;
}

EocCorrector::EocCorrector(const EocPrior& prior, int64_t halves, const at::Device& device,
                           at::ScalarType dtype)
    : form_(prior.form), theta_(prior.step_theta), halves_(halves) {
  EOC_ASSERT(halves == 1 || halves == 2, "a CFG batch multiplier of ", halves);
  EOC_ASSERT(prior.step_order.empty() || prior.step_order.size() == theta_.size(),
             "step orders for ", prior.step_order.size(), " of ", theta_.size(), " steps");
  for (int64_t k = 0; k < static_cast<int64_t>(theta_.size()); ++k)
    order_.push_back(prior.order_at(k));
  const int highest = prior.highest_order();
  EOC_ASSERT(highest <= kMaxTaylorOrder && (highest <= 1 || form_ == EocForm::taylor), "order ",
             highest, " for the ", eoc_form_name(form_), " form");
  series_order_ = highest >= 2 ? highest : 0;
  for (const auto& [key, v] : prior.vectors)
    vectors_[key] = v.narrow(0, 0, halves_).reshape({halves_, 1, 1, v.size(1)}).to(device, dtype);
  for (int64_t k = 0; k < static_cast<int64_t>(theta_.size()); ++k) set_step_theta(k, theta_[k]);
}

History EocCorrector::history() const {
  if (series_order_ > 0) return {false, series_order_};
  return {form_ != EocForm::scale, 0};
}

void EocCorrector::set_step(int64_t step, double theta, int order) {
  EOC_ASSERT(order >= 1 && order <= std::max(series_order_, 1), "order ", order,
             " beyond the corrector's ", std::max(series_order_, 1));
  set_step_theta(step, theta);
  order_[step] = order;
}

void EocCorrector::set_step_theta(int64_t step, double theta) {
  EOC_ASSERT(step >= 0 && step < static_cast<int64_t>(theta_.size()), "step ", step,
             " is outside the prior's ", theta_.size(), " steps");
  theta_[step] = theta;
  for (auto it = vectors_.lower_bound({step, 0, 0});
       it != vectors_.end() && std::get<0>(it->first) == step; ++it)
    coefs_[it->first] = form_ == EocForm::scale ? 1.0 + theta * it->second : theta * it->second;
}

Correction EocCorrector::correction(int64_t step, int64_t block, Branch b,
                                    const CachedFeature& e) const {
  Correction c;
  const double theta = theta_[step];
  if (theta == 0.0) return c;
  if (form_ == EocForm::taylor && series_order_ > 0) {
    const auto count = std::min<size_t>(static_cast<size_t>(order_[step]), e.derivatives.size());
    c.series = taylor_series(step, e, count);
    for (double& term : c.series) term *= theta;
    return c;
  }
  if (form_ == EocForm::taylor) {
    c.trend = theta * taylor_tau(step, e);
    return c;
  }
  const auto it = coefs_.find({step, block, static_cast<int>(b)});
  if (it == coefs_.end()) return c;  // an entry the fit left plain
  // Rows are [conditional; unconditional] halves; each half has its own vector.
  if (form_ == EocForm::scale)
    c.scale_vec = it->second;
  else if (e.previous.defined())
    c.trend_vec = it->second;
  return c;
}

std::unique_ptr<EocCorrector> make_eoc_corrector(const EocPrior& prior, const BlockLoop& loop) {
  return std::make_unique<EocCorrector>(prior, loop.guidance().batch_multiplier(),
                                        loop.model().device(), loop.model().dtype());
}

}  // namespace eoc
