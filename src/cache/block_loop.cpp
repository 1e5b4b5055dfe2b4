#include "eoc/cache/block_loop.hpp"

#include "eoc/base/error.hpp"

#include <cstring>

namespace eoc {

RowGroups group_equal_rows(const at::Tensor& rows) {
  EOC_ASSERT(rows.device().is_cpu(), "group_equal_rows needs a CPU tensor");
  const auto t = rows.contiguous();
  const int64_t n = t.size(0);
  const size_t bytes = n ? static_cast<size_t>(t.numel() / n * t.element_size()) : 0;
  const auto* base = static_cast<const unsigned char*>(t.data_ptr());
  std::vector<int64_t> first, group(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t g = 0;
    while (g < static_cast<int64_t>(first.size()) &&
           std::memcmp(base + i * bytes, base + first[g] * bytes, bytes) != 0)
      ++g;
    if (g == static_cast<int64_t>(first.size())) first.push_back(i);
    group[i] = g;
  }
  RowGroups out;
  out.count = static_cast<int64_t>(first.size());
  out.first = at::tensor(first, at::kLong);
  out.group = at::tensor(group, at::kLong);
  return out;
}

namespace {

// Every block's adaLN modulations from c (rows, D). With a batch-invariant export each row's
// modulation depends on its own row of c only, and c repeats (with guidance the null half is one
// row; labels repeat), so on the CPU the modulations run once per distinct row and are gathered
// back: the same bits for a fraction of the GEMMs. Grouping reads c on the host, so CUDA (no
// host syncs in the step loop) and batch-dependent exports run every row.
std::vector<Modulation> all_modulations(const DitModel& model, const at::Tensor& c) {
  const int64_t depth = model.config().depth;
  std::vector<Modulation> mods;
  mods.reserve(depth);
  RowGroups groups;
  if (model.batch_invariant() && c.device().is_cpu()) groups = group_equal_rows(c);
  if (groups.count == 0 || groups.count == c.size(0)) {
    for (int64_t l = 0; l < depth; ++l) mods.push_back(model.modulation(l, c));
    return mods;
  }
  const auto distinct = c.index_select(0, groups.first);
  auto gather = [&](const at::Tensor& m) { return m.index_select(0, groups.group); };
  for (int64_t l = 0; l < depth; ++l) {
    const auto m = model.modulation(l, distinct);
    mods.push_back({gather(m.shift_msa), gather(m.scale_msa), gather(m.gate_msa),
                    gather(m.shift_mlp), gather(m.scale_mlp), gather(m.gate_mlp)});
  }
  return mods;
}

}  // namespace

BlockLoop::BlockLoop(const DitModel& model, const Sampler& sampler, Guidance guidance)
    : model_(model), sampler_(sampler), guidance_(guidance) {}

at::Tensor BlockLoop::time(int64_t step, int64_t rows) const {
  const double t = sampler_.model_time(step);
  const auto on = at::TensorOptions().device(model_.device());
  if (model_.config().float_time())
    return at::full({rows}, static_cast<float>(t), on.dtype(at::kFloat));
  return at::full({rows}, static_cast<int64_t>(t), on.dtype(at::kLong));
}

at::Tensor BlockLoop::output(const at::Tensor& out, int64_t step) const {
  const auto& cfg = model_.config();
  const auto velocity = cfg.prediction == "velocity" && out.size(1) == 2 * cfg.in_channels
                            ? out.narrow(1, 0, cfg.in_channels)
                            : out;
  return apply_guidance(velocity, guidance_, guidance_.guides(sampler_.interval_time(step)));
}

at::Tensor BlockLoop::run_whole_forward(const at::Tensor& x, int64_t step,
                                        const at::Tensor& y) const {
  const auto input = guidance_input(x, guidance_).to(model_.dtype());
  const auto labels = guidance_labels(y, model_.config().num_classes, guidance_);
  return output(model_.forward(input, time(step, input.size(0)), labels).to(at::kFloat), step);
}

at::Tensor BlockLoop::run(const at::Tensor& x, int64_t step, const at::Tensor& y,
                          CacheSession& session) const {
  const auto& cfg = model_.config();
  const auto input = guidance_input(x, guidance_).to(model_.dtype());
  const auto labels = guidance_labels(y, cfg.num_classes, guidance_);
  auto embedded = model_.embed(input, time(step, input.size(0)), labels);
  at::Tensor tokens = embedded.first;
  const at::Tensor c = embedded.second;
  session.begin_step(step, x.size(0), input.size(0) / x.size(0));

  // The modulations depend on c only; computing them first lets the residual updates of
  // consecutive branches wait in `pending` until a branch needs the tokens, then go in one pass.
  const std::vector<Modulation> mods = all_modulations(model_, c);
  std::vector<GatedTerm> pending;
  auto flush = [&] {
    tokens = add_gated_terms(tokens, pending);
    pending.clear();
  };
  BranchObserver* observer = session.observer();

  // The hook: a branch is reused through the session's corrector, or computed (and handed to
  // the session, which caches it); either way the current step's gate multiplies it in.
  // With a gate: the images that compute this step get the branch computed on their rows only,
  // the others their forecast, and the two go into one term (same bits as each image alone).
  auto add_gated_branch = [&](int64_t l, Branch b, const at::Tensor& shift, const at::Tensor& scale,
                              const at::Tensor& gate) {
    if (l == session.plan().gate()->decision_block() && b == Branch::attn) {
      flush();
      session.decide(step, {x, embedded.first, tokens, mods[0].shift_msa, mods[0].scale_msa});
    }
    const auto split = session.split(step, l);
    at::Tensor f;
    auto compute = [&](const at::Tensor* rows) {
      flush();
      at::Tensor out;
      if (rows) {
        at::Tensor t, sh, sc;
        {
          const auto timer = session.gate_work();
          t = tokens.index_select(0, *rows);
          sh = shift.index_select(0, *rows);
          sc = scale.index_select(0, *rows);
        }
        out = model_.branch(l, b, t, sh, sc);
      } else {
        out = model_.branch(l, b, tokens, shift, scale);
      }
      if (observer) observer->on_computed(step, l, b, out);
      session.computed_images(step, l, b, split.compute, out);
      return out;
    };
    if (split.reuse.empty()) {
      f = compute(nullptr);
    } else {
      // The reused images' forecasts go straight into their rows of the branch's output.
      f = at::empty(tokens.sizes(), tokens.options().memory_format(at::MemoryFormat::Contiguous));
      if (!split.compute.empty()) {
        at::Tensor rc;
        {
          const auto timer = session.gate_work();
          rc = session.rows_of(split.compute, tokens.device());
        }
        const auto computed = compute(&rc);
        const auto timer = session.gate_work();
        f.index_copy_(0, rc, computed);
      }
      session.forecast_images(step, l, b, split.reuse, f);
    }
    CachedFeature fresh;
    fresh.value = f;
    pending.push_back(GatedTerm{gate, Correction{}, fresh});
  };

  auto add_branch = [&](int64_t l, Branch b, const at::Tensor& shift, const at::Tensor& scale,
                        const at::Tensor& gate) {
    if (session.gated()) {
      add_gated_branch(l, b, shift, scale, gate);
    } else if (session.reuses(step, l, b)) {
      pending.push_back(session.reused_term(step, l, b, gate));
    } else {
      flush();
      auto f = model_.branch(l, b, tokens, shift, scale);
      if (observer) observer->on_computed(step, l, b, f);
      session.computed(step, l, b, f);
      CachedFeature fresh;
      fresh.value = f;
      pending.push_back(GatedTerm{gate, Correction{}, fresh});
    }
    if (observer) {
      flush();
      observer->on_added(step, l, b, tokens);
    }
  };

  for (int64_t l = 0; l < cfg.depth; ++l) {
    const auto& m = mods[l];
    add_branch(l, Branch::attn, m.shift_msa, m.scale_msa, m.gate_msa);
    add_branch(l, Branch::mlp, m.shift_mlp, m.scale_mlp, m.gate_mlp);
  }
  flush();
  auto out = output(model_.final(tokens, c).to(at::kFloat), step);
  if (session.gated()) session.step_output(step, x, out);
  return out;
}

}  // namespace eoc
