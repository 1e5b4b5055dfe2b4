// Correctors decide what a REUSED cache entry becomes at step k, before the current step's gate
// multiplies it (as FORA does). Each costs at most a couple of element-wise operations.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "eoc/feature_cache.hpp"

namespace eoc {

class Corrector {
 public:
  virtual ~Corrector() = default;
  virtual std::string name() const = 0;
  // True when the cache must keep F[r] - F[p] for this corrector.
  virtual bool needs_delta() const { return false; }
  virtual at::Tensor correct(int64_t step, int64_t block, Branch b,
                             const CachedFeature& entry) const = 0;
};

// `none`: plain FORA reuse, F[r].
std::unique_ptr<Corrector> make_plain_corrector();
// `taylor`: first-order forecast F[r] + tau (F[r] - F[p]), tau = (k - r) / (r - p); plain F[r]
// while no p exists.
std::unique_ptr<Corrector> make_taylor_corrector();

// The forecast step factor tau for an entry, 0 when it has no previous value.
double taylor_tau(int64_t step, const CachedFeature& entry);

}  // namespace eoc
