#include "eoc/correctors.hpp"

namespace eoc {
namespace {

class PlainCorrector final : public Corrector {
 public:
  std::string name() const override { return "none"; }
  at::Tensor correct(int64_t, int64_t, Branch, const CachedFeature& e) const override {
    return e.value;
  }
};

class TaylorCorrector final : public Corrector {
 public:
  std::string name() const override { return "taylor"; }
  bool needs_delta() const override { return true; }
  at::Tensor correct(int64_t step, int64_t, Branch, const CachedFeature& e) const override {
    const double tau = taylor_tau(step, e);
    return tau == 0.0 ? e.value : at::add(e.value, e.delta, tau);
  }
};

}  // namespace

double taylor_tau(int64_t step, const CachedFeature& e) {
  if (!e.delta.defined() || e.prev_step < 0) return 0.0;
  return static_cast<double>(step - e.step) / static_cast<double>(e.step - e.prev_step);
}

std::unique_ptr<Corrector> make_plain_corrector() { return std::make_unique<PlainCorrector>(); }
std::unique_ptr<Corrector> make_taylor_corrector() { return std::make_unique<TaylorCorrector>(); }

}  // namespace eoc
