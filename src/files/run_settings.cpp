#include "eoc/files/run_settings.hpp"

#include <functional>
#include <sstream>

#include "eoc/model/device.hpp"

namespace eoc {
namespace {

using nlohmann::json;

struct Row {
  const char* key;  // dotted path
  unsigned use;     // SettingUse bits
  std::function<json(const RunFacts&)> value;
  // Rows that apply to some runs only (the flow samplers' grid, a guidance interval) are left
  // out where their value is null, so documents of the runs they do not apply to stay as they
  // were before the row existed.
  bool only_when_set = false;
};

constexpr unsigned R = kInReport, D = kInRecord, P = kInPrior;

// The labels as a scheme: "random", or the shortest cycle the per-image labels repeat.
json label_scheme(const RunSetup& run) {
  if (run.random_labels) return "random";
  const auto& l = run.labels;
  // Prefix function: the shortest period of the sequence is n - pi[n - 1].
  std::vector<size_t> pi(l.size(), 0);
  for (size_t i = 1; i < l.size(); ++i) {
    size_t k = pi[i - 1];
    while (k > 0 && l[i] != l[k]) k = pi[k - 1];
    pi[i] = k + (l[i] == l[k] ? 1 : 0);
  }
  const size_t period = l.empty() ? 0 : l.size() - pi.back();
  return {{"cycle", std::vector<int64_t>(l.begin(), l.begin() + period)}};
}

// Flow samplers: the model evaluations per image (a cache plan's steps; DDPM/DDIM: the steps).
json flow_evaluations(const RunFacts& f) {
  return f.run.sampler.is_flow() ? json(f.run.sampler.evaluations()) : json(nullptr);
}

// Flow samplers: SiT's time grid (float32 values) and the SDE's settings.
json flow_time_grid(const RunFacts& f) {
  const auto& s = f.run.sampler;
  if (!s.is_flow()) return nullptr;
  json grid = {{"t", s.grid()}, {"time", "SiT: t = 0 noise, t = 1 data"}};
  if (s.kind() == SamplerKind::sde || s.kind() == SamplerKind::sde_heun) {
    grid["last_step"] = "Mean";
    grid["last_step_size"] = s.options().last_step_size;
    grid["diffusion_form"] = "sigma";
    grid["diffusion_norm"] = s.options().diffusion_norm;
  }
  return grid;
}

// With an interval: its ends and, per evaluation, whether it is guided.
json cfg_interval(const RunFacts& f) {
  const auto& i = f.run.guidance.interval;
  if (!i) return nullptr;
  std::vector<bool> guided;
  for (int64_t e = 0; e < f.run.sampler.evaluations(); ++e)
    guided.push_back(f.run.guidance.guides(f.run.sampler.interval_time(e)));
  return {{"low", i->low},
          {"high", i->high},
          {"time", "REPA: 1 = noise, 0 = data"},
          {"guided_evaluations", guided}};
}

json vae_settings(const RunFacts& f) {
  if (!f.vae) return nullptr;
  return {{"sha256", f.vae->sha256()},
          {"scale", f.vae_scale},
          {"latent_channels", f.vae->latent_channels()},
          {"upscale", f.vae->upscale()},
          {"dtype", "fp32"}};
}

// Paths, device index, batch size and timing do not change the images: they stay out of the
// record and the prior, so a folder can be finished on another machine with another batch.
const std::vector<Row>& rows() {
  static const std::vector<Row> table = {
      {"model.sha256", R | D | P, [](const RunFacts& f) { return json(f.run.model->sha256()); }},
      {"model.name", R | D | P, [](const RunFacts& f) { return json(f.run.model->config().name); }},
      {"model.depth", R | P, [](const RunFacts& f) { return json(f.run.model->config().depth); }},
      {"model.hidden_size", R | P,
       [](const RunFacts& f) { return json(f.run.model->config().hidden_size); }},
      {"model.patch_size", R,
       [](const RunFacts& f) { return json(f.run.model->config().patch_size); }},
      {"model.input_size", R | D,
       [](const RunFacts& f) { return json(f.run.model->config().input_size); }},
      {"model.in_channels", R | D,
       [](const RunFacts& f) { return json(f.run.model->config().in_channels); }},
      {"model.num_classes", R | D,
       [](const RunFacts& f) { return json(f.run.model->config().num_classes); }},
      {"device", R, [](const RunFacts& f) { return json(f.run.device.str()); }},
      {"device_type", D,
       [](const RunFacts& f) { return json(f.run.device.is_cuda() ? "cuda" : "cpu"); }},
      {"dtype", R | D, [](const RunFacts& f) { return json(dtype_name(f.run.model->dtype())); }},
      {"tf32", R | D, [](const RunFacts& f) { return json(f.run.tf32 && f.run.device.is_cuda()); }},
      {"batch_invariant", R | D,
       [](const RunFacts& f) { return json(f.run.model->batch_invariant()); }},
      {"sampler", R | D | P,
       [](const RunFacts& f) { return json(sampler_name(f.run.sampler.kind())); }},
      {"steps", R | D | P, [](const RunFacts& f) { return json(f.run.sampler.steps()); }},
      {"respacing", R | D | P,
       [](const RunFacts& f) {
         return f.run.sampler.is_flow() ? json(nullptr) : json(respacing_name(f.run.respacing));
       }},
      {"eta", R | D | P, [](const RunFacts& f) { return json(f.run.sampler.options().eta); }},
      {"evaluations", R | D | P, flow_evaluations, true},
      {"time_grid", R | D | P, flow_time_grid, true},
      {"cfg_scale", R | D | P, [](const RunFacts& f) { return json(f.run.guidance.scale); }},
      {"cfg_channels", R | D | P,
       [](const RunFacts& f) { return json(cfg_channels_name(f.run.guidance.channels)); }},
      {"cfg_interval", R | D | P, cfg_interval, true},
      {"seed", R | D, [](const RunFacts& f) { return json(f.run.seed); }},
      {"seed_mode", R | D, [](const RunFacts& f) { return json(seed_mode_name(f.run.seed_mode)); }},
      {"labels", R | D, [](const RunFacts& f) { return label_scheme(f.run); }},
      {"num_samples", R | D, [](const RunFacts& f) { return json(f.run.num_samples); }},
      {"batch_size", R, [](const RunFacts& f) { return json(f.run.batch_size); }},
      {"cache.spec", R | D | P, [](const RunFacts& f) { return json(f.plan.spec()); }},
      {"cache.layout", D | P, [](const RunFacts& f) { return json(f.plan.layout()); }},
      // A gate's level is known only after sampling (the report's cache_stats): null here.
      {"cache.caching_level", R,
       [](const RunFacts& f) {
         return f.plan.gate() ? json(nullptr) : json(f.plan.caching_level());
       }},
      {"cache.correct", R | D, [](const RunFacts& f) { return json(f.correct); }},
      {"cache.prior_sha256", R | D,
       [](const RunFacts& f) {
         return f.prior_sha256.empty() ? json(nullptr) : json(f.prior_sha256);
       }},
      {"vae", R | D, vae_settings},
      {"pixels", R | D,
       [](const RunFacts&) {
         return json("dit: clamp(127.5 x + 128, 0, 255) truncated to uint8, RGB");
       }},
  };
  return table;
}

json::json_pointer pointer(const std::string& dotted) {
  std::string path = "/" + dotted;
  for (auto& ch : path)
    if (ch == '.') ch = '/';
  return json::json_pointer(path);
}

}  // namespace

json run_settings(const RunFacts& facts, SettingUse use) {
  json doc = json::object();
  for (const auto& row : rows()) {
    if (!(row.use & use)) continue;
    json value = row.value(facts);
    if (row.only_when_set && value.is_null()) continue;
    doc[pointer(row.key)] = std::move(value);
  }
  return doc;
}

std::vector<std::string> setting_keys(SettingUse use, bool required_only) {
  std::vector<std::string> keys;
  for (const auto& row : rows())
    if ((row.use & use) && !(required_only && row.only_when_set)) keys.emplace_back(row.key);
  return keys;
}

std::string first_difference(const json& a, const json& b) {
  if (a.is_object() && b.is_object()) {
    for (const auto& [key, value] : a.items()) {
      if (!b.contains(key)) return key;
      const std::string sub = first_difference(value, b[key]);
      if (!sub.empty()) return sub == "." ? key : key + "." + sub;
    }
    for (const auto& [key, value] : b.items())
      if (!a.contains(key)) return key;
    return "";
  }
  return a == b ? "" : ".";
}

const json* field_at(const json& settings, const std::string& field) {
  const json* node = &settings;
  std::stringstream path(field);
  std::string part;
  while (std::getline(path, part, '.')) {
    if (!node->is_object() || !node->contains(part)) return nullptr;
    node = &(*node)[part];
  }
  return node;
}

std::string field_text(const json& settings, const std::string& field) {
  const json* node = field_at(settings, field);
  if (!node) return "(absent)";
  const std::string text = node->dump();
  return text.size() <= 80 ? text : text.substr(0, 77) + "...";
}

}  // namespace eoc
