// A small EOC prior shared by the prior file tests (test_prior.cpp) and the corrector tests
// (test_eoc_corrector.cpp); not a test file (the glob takes test_*.cpp only).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "eoc/cache/eoc_corrector.hpp"

namespace eoc_test {

constexpr int64_t kD = 4;  // hidden size

// A (2, kD) vector: the conditional row, then the unconditional one.
inline at::Tensor vec(std::vector<float> v) { return at::tensor(v, at::kFloat).reshape({2, kD}); }

// Three steps, two blocks: step 1 reused at theta 1, scale form, with one vector per branch.
inline eoc::EocPrior sample_eoc_prior() {
  eoc::EocPrior p;
  p.form = eoc::EocForm::scale;
  p.judgment = eoc::Judgment::local;
  p.thetas = {0.0, 0.5, 1.0};
  p.step_theta = {0.0, 1.0, 0.0};
  p.judged = {{1, 1.0, {0.0, 0.5, 1.0}, {0.3, 0.2, 0.125}}};
  p.vectors[{1, 0, 0}] = vec({0.1234567f, -7.5f, 1e-30f, 3.0f, -0.0f, 49.0f, 1.0f / 3.0f, -2.0f});
  p.vectors[{1, 1, 1}] = vec({1, 2, 3, 4, 5, 6, 7, 8});
  return p;
}

}  // namespace eoc_test
