// Run-time gates: cache plans decided while sampling, per image, from a cheap signal of how
// much the image's features are changing (docs/EOC.md, "Run-time gates"). Each image (its CFG
// rows together) has its own gate; a step the gate reuses takes the gated blocks' branches from
// that image's own cache through the run's corrector. Three rules, as their public code defines
// them (with eoc's branch reuse in place of a cached residual):
//  - fbcache (First-Block Cache / DBCache, cache-dit): the first `first_blocks` blocks always
//    run; d = mean|R - R_last| / mean|R_last| of their residual R (tokens after them minus the
//    embedded tokens), R_last from the image's last computed step; reuse while d < threshold.
//    The last `last_blocks` blocks always run.
//  - teacache (TeaCache): d = mean|m - m_prev| / mean|m_prev| of block 0's modulated input m
//    (LayerNorm of the embedded tokens, modulated by the step's shift/scale) between
//    consecutive steps, accumulated; reuse while the sum < threshold, compute and reset it
//    otherwise. With a rescale polynomial p (TeaCache's per-model fit of the output's relative
//    change against d), max(0, p(d)) is accumulated instead of d.
//  - easycache (EasyCache): k = mean|o - o_s| / mean|x - x_s| between the image's last two
//    computed steps s < r (x: the model input, o: the guided model output); the predicted
//    change k * mean|x - x_prev| / mean|o_r| is accumulated; reuse while the sum < threshold.
// Guards, for every rule: the first `warmup` steps (at least the first) and the last step are
// computed; at most `max_run` reused steps in a row and `max_total` in all.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace eoc {

struct GateSpec {
  enum class Rule { fbcache, teacache, easycache } rule = Rule::teacache;
  double threshold = 0.0;
  int64_t first_blocks = 1;          // fbcache: Fn, always computed, their residual is the signal
  int64_t last_blocks = 0;           // fbcache: Bn, always computed
  int64_t warmup = 1;                // steps computed first (>= 1)
  std::optional<int64_t> max_run;    // reused steps in a row
  std::optional<int64_t> max_total;  // reused steps in all
  // teacache only: the rescale polynomial's kRescaleCoefficients coefficients, highest degree
  // first (as numpy's poly1d); empty: d accumulated as measured.
  std::vector<double> rescale;
  static constexpr size_t kRescaleCoefficients = 5;  // degree 4, as TeaCache fits

  // "teacache:0.1", "fbcache:0.08,fn=1,bn=0", with the guards that differ from the defaults and
  // the rescale ("teacache:0.3,poly=C4/C3/C2/C1/C0"); every number reads back exactly.
  std::string text() const;
  // The inverse: RULE:THRESHOLD[,fn=F][,bn=B][,warmup=W][,max-run=M][,max-total=C]
  // [,poly=C4/C3/C2/C1/C0] (fn/bn for fbcache only, poly for teacache only). Nothing when `text`
  // names no gate; an Error saying what is wrong when it names one badly.
  static std::optional<GateSpec> parse(const std::string& text);
  // What the rule accumulates for a measured teacache signal d: max(0, p(d)) with a rescale
  // (a negative value of the polynomial, outside the data it was fitted on, adds nothing
  // rather than paying back earlier steps' change), d itself without.
  double rescaled(double d) const;
  // The rule's name ("fbcache", ...).
  const char* rule_name() const;
  // The first block whose branches the gate may reuse, and one past the last.
  int64_t first_gated_block() const;
  int64_t end_gated_block(int64_t depth) const;
  // Whether `block` of a model of `depth` blocks is gated (may be reused).
  bool gates(int64_t block, int64_t depth) const {
    return block >= first_gated_block() && block < end_gated_block(depth);
  }
  // The block before which the rule decides: fbcache after its first blocks, others at 0.
  int64_t decision_block() const { return rule == Rule::fbcache ? first_blocks : 0; }
};

// mean|a - b| / mean|b| over the given values (the rules' relative L1 change); 0 when b is 0.
double relative_l1(double sum_abs_diff, double sum_abs_base);

// p(x) for coefficients highest degree first (Horner).
double polynomial_value(const std::vector<double>& coefficients, double x);

// A least-squares polynomial: coefficients highest degree first, the root mean square of the
// residuals and R^2 = 1 - SS_res / SS_tot (1 when y is constant and fitted exactly).
struct PolynomialFit {
  std::vector<double> coefficients;
  double rms_residual = 0.0;
  double r2 = 1.0;
};
// The degree-`degree` polynomial nearest (x, y) in least squares, as numpy's polyfit: in double,
// by Householder QR on x centred and scaled to [-1, 1] (the Vandermonde matrix stays well
// conditioned), then expanded back to powers of x. Error with fewer than degree + 1 distinct x
// or non-finite values.
PolynomialFit fit_polynomial(const std::vector<double>& x, const std::vector<double>& y,
                             int degree);

// One image's gate over a run of `steps` steps: its state (accumulators, run lengths) and the
// decision rule, on plain numbers so that the rule can be tested on hand-made sequences.
class ImageGate {
 public:
  ImageGate(const GateSpec& spec, int64_t steps);

  // Whether step `step` (steps come in order, each once) is reused, given the rule's signal
  // at that step: fbcache and teacache the relative L1 change (teacache: against the previous
  // step, rescaled here; fbcache: against the last computed step); easycache the relative input
  // change mean|x - x_prev| / mean|o_r| (multiplied by k here). Unknown (nullopt) signals
  // compute.
  bool reuse(int64_t step, std::optional<double> signal);
  // easycache: the output change ratio k measured at the last computed step, once known.
  void set_k(double k) { k_ = k; }
  std::optional<double> k() const { return k_; }

  int64_t computed_steps() const { return computed_; }
  int64_t reused_steps() const { return reused_; }
  // The signals the rule saw at steps it could have reused (for the report's percentiles):
  // teacache's rescaled, easycache's multiplied by k.
  const std::vector<double>& signals() const { return signals_; }
  // Every step's signal as given to reuse(), forced steps included, NaN where unknown (what
  // calibration fits teacache's rescale to).
  const std::vector<double>& step_signals() const { return step_signals_; }
  // One character per step decided so far: 'c' computed, 'r' reused.
  const std::string& decisions() const { return decisions_; }

 private:
  bool forced(int64_t step) const;
  GateSpec spec_;
  int64_t steps_;
  double accumulated_ = 0.0;
  int64_t run_ = 0;  // reused steps in a row so far
  int64_t computed_ = 0, reused_ = 0;
  std::optional<double> k_;
  std::vector<double> signals_, step_signals_;
  std::string decisions_;
};

// One try of a threshold on the calibration's judge images: the mean over the images of their
// computed fraction of branches, and the error against their uncached samples.
struct GateTrial {
  double threshold = 0.0;
  double computed = 1.0;
  double error = 0.0;
};

// Finds the threshold whose computed fraction is nearest `target`: from 0 (nothing reused)
// doubles an upper threshold from `start` until the fraction falls to the target (Error when it
// never does: the gate's guards or forced blocks keep more), then bisects (geometrically) until
// a trial lies within `tolerance` of the target or `max_trials` were run. The fraction falls as
// the threshold grows (not strictly: decisions feed back into the signals, so the nearest trial
// is kept, not the last). Returns every trial in the order run; the chosen one is
// nearest_trial() of them.
std::vector<GateTrial> search_gate_threshold(const std::function<GateTrial(double)>& trial,
                                             double target, double tolerance, double start = 0.01,
                                             int max_trials = 24);
// The trial nearest `target`; of equally near ones the lower error.
const GateTrial& nearest_trial(const std::vector<GateTrial>& trials, double target);

}  // namespace eoc
