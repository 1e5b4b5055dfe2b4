#include "eoc/cache/eoc_corrector.hpp"

#include <algorithm>

#include "eoc/base/error.hpp"
#include "eoc/cache/block_loop.hpp"

namespace eoc {

bool form_has_vectors(EocForm f) { return f != EocForm::taylor; }

std::string forecast_name(int order) {
  return order == kFocaOrder ? std::string("foca") : std::to_string(order);
}

std::vector<int> forecast_orders(int max_order, bool foca) {
  std::vector<int> out;
  for (int o = 1; o <= max_order; ++o) out.push_back(o);
  if (foca) out.push_back(kFocaOrder);
  return out;
}

int EocPrior::highest_order() const {
  int highest = 0;
  for (size_t k = 0; k < step_theta.size(); ++k) {
    const int o = order_at(static_cast<int64_t>(k));
    if (step_theta[k] != 0.0 && o != kFocaOrder) highest = std::max(highest, o);
  }
  return highest;
}

bool EocPrior::uses_foca() const {
  for (size_t k = 0; k < step_theta.size(); ++k)
    if (step_theta[k] != 0.0 && order_at(static_cast<int64_t>(k)) == kFocaOrder) return true;
  return false;
}

EocCorrector::EocCorrector(const EocPrior& prior, int64_t halves, const at::Device& device,
                           at::ScalarType dtype, bool room_for_foca)
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
  foca_ = room_for_foca || prior.uses_foca();
  EOC_ASSERT(!foca_ || form_ == EocForm::taylor, "FoCa steps in the ", eoc_form_name(form_),
             " form");
  for (const auto& [key, v] : prior.vectors)
    vectors_[key] = v.narrow(0, 0, halves_).reshape({halves_, 1, 1, v.size(1)}).to(device, dtype);
  for (int64_t k = 0; k < static_cast<int64_t>(theta_.size()); ++k) set_step_theta(k, theta_[k]);
}

History EocCorrector::history() const {
  if (foca_) return {true, series_order_, true};
  if (series_order_ > 0) return {false, series_order_};
  return {form_ != EocForm::scale, 0};
}

void EocCorrector::set_step(int64_t step, double theta, int order) {
  EOC_ASSERT((order >= 1 && order <= std::max(series_order_, 1)) || (foca_ && order == kFocaOrder),
             "order ", order, " beyond the corrector's ", std::max(series_order_, 1));
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
  EOC_ASSERT(order_[step] != kFocaOrder, "FoCa's forecast at step ", step,
             " is a tensor (correct()), not coefficients");
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

at::Tensor EocCorrector::correct(int64_t step, int64_t block, Branch b,
                                 const CachedFeature& e) const {
  if (theta_[step] == 0.0 || order_[step] != kFocaOrder)
    return corrected_feature(correction(step, block, b, e), e);
  const auto forecast = foca_forecast(step, e);
  // theta 1 is FoCa's forecast itself (lerp returns its end point exactly at weight 1).
  return theta_[step] == 1.0 ? forecast : at::lerp(e.value, forecast, theta_[step]);
}

std::unique_ptr<EocCorrector> make_eoc_corrector(const EocPrior& prior, const BlockLoop& loop,
                                                 bool room_for_foca) {
  return std::make_unique<EocCorrector>(prior, loop.guidance().batch_multiplier(),
                                        loop.model().device(), loop.model().dtype(), room_for_foca);
}

}  // namespace eoc
