// The EOC prior file (docs/EOC.md) and the corrector that applies it.
#include "eoc/eoc_prior.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "eoc/error.hpp"
#include "eoc/sha256.hpp"

namespace eoc {
namespace {

using nlohmann::json;

// A correction whose factor exceeds this is not a correction but a blow-up; refuse the prior.
constexpr double kMaxCorrection = 50.0;
constexpr double kMaxTheta = 10.0;

const char* kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(const std::string& in) {
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kB64[(v >> s) & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t v = uint8_t(in[i]) << 16;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    for (int s = 18; s >= 6; s -= 6) out += kB64[(v >> s) & 63];
    out += '=';
  }
  return out;
}

bool base64_decode(const std::string& in, std::string& out) {
  if (in.size() % 4 != 0) return false;
  out.clear();
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char ch = in[i + j];
      const char* p = ch ? std::strchr(kB64, ch) : nullptr;
      if (ch == '=' && i + 4 == in.size() && j >= 2) {
        ++pad;
        v <<= 6;
      } else if (p && pad == 0) {
        v = (v << 6) | static_cast<uint32_t>(p - kB64);
      } else {
        return false;
      }
    }
    out += static_cast<char>((v >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((v >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(v & 0xff);
  }
  return true;
}

// float32 little-endian bytes (x86 and every CUDA host are little-endian).
std::string tensor_b64(const at::Tensor& t) {
  const auto c = t.to(at::kFloat).contiguous().cpu();
  return base64_encode(std::string(static_cast<const char*>(c.data_ptr()), c.numel() * 4));
}

json assumptions_json(const PriorAssumptions& a) {
  return {{"model_sha256", a.model_sha256}, {"model_name", a.model_name}, {"depth", a.depth},
          {"hidden_size", a.hidden_size}, {"sampler", a.sampler}, {"steps", a.steps},
          {"respacing", a.respacing}, {"eta", a.eta}, {"cfg_scale", a.cfg_scale},
          {"cfg_channels", a.cfg_channels}, {"cache_spec", a.cache_spec},
          {"cache_layout", a.cache_layout}};
}

class PriorReader {
 public:
  PriorReader(const json& doc, std::string path) : doc_(doc), path_(std::move(path)) {}

  const json& field(const json& parent, const char* key, json::value_t type,
                    const std::string& where) const {
    if (!parent.is_object() || !parent.contains(key)) bad(where + key + " is missing");
    const auto& v = parent[key];
    const bool number_ok = type == json::value_t::number_float && v.is_number();
    const bool int_ok = type == json::value_t::number_integer && v.is_number_integer();
    if (v.type() != type && !number_ok && !int_ok) bad(where + key + " has the wrong type");
    if (v.is_number_float() && !std::isfinite(v.get<double>())) bad(where + key + " is not finite");
    return v;
  }
  [[noreturn]] void bad(const std::string& what) const {
    fail("prior '", path_, "' is invalid: ", what, " (re-run eoc calibrate)");
  }
  const json& doc_;
  std::string path_;
};

PriorAssumptions read_assumptions(const PriorReader& r, const json& a) {
  using T = json::value_t;
  PriorAssumptions p;
  p.model_sha256 = r.field(a, "model_sha256", T::string, "assumes.").get<std::string>();
  p.model_name = r.field(a, "model_name", T::string, "assumes.").get<std::string>();
  p.depth = r.field(a, "depth", T::number_integer, "assumes.").get<int64_t>();
  p.hidden_size = r.field(a, "hidden_size", T::number_integer, "assumes.").get<int64_t>();
  p.sampler = r.field(a, "sampler", T::string, "assumes.").get<std::string>();
  p.steps = r.field(a, "steps", T::number_integer, "assumes.").get<int64_t>();
  p.respacing = r.field(a, "respacing", T::string, "assumes.").get<std::string>();
  p.eta = r.field(a, "eta", T::number_float, "assumes.").get<double>();
  p.cfg_scale = r.field(a, "cfg_scale", T::number_float, "assumes.").get<double>();
  p.cfg_channels = r.field(a, "cfg_channels", T::string, "assumes.").get<std::string>();
  p.cache_spec = r.field(a, "cache_spec", T::string, "assumes.").get<std::string>();
  p.cache_layout = r.field(a, "cache_layout", T::string, "assumes.").get<std::string>();
  if (p.depth < 1 || p.hidden_size < 1 || p.steps < 1) r.bad("assumes has a non-positive size");
  // Far above any DiT (XL: depth 28, width 1152; 1000 diffusion steps), and small enough that
  // sizes computed from them (2 x width x 4 bytes per vector) cannot overflow.
  if (p.depth > 4096 || p.hidden_size > (1 << 20) || p.steps > 100000)
    r.bad(str("assumes has an implausible size (depth ", p.depth, ", hidden_size ", p.hidden_size,
              ", steps ", p.steps, "; expected at most 4096, 1048576, 100000)"));
  return p;
}

}  // namespace

const char* eoc_form_name(EocForm f) {
  switch (f) {
    case EocForm::scale: return "scale";
    case EocForm::extrapolate: return "extrapolate";
    case EocForm::taylor: return "taylor";
  }
  return "?";
}

EocForm parse_eoc_form(const std::string& text) {
  if (text == "scale") return EocForm::scale;
  if (text == "extrapolate") return EocForm::extrapolate;
  if (text == "taylor") return EocForm::taylor;
  fail("--eoc-form '", text, "' is not one of: scale, extrapolate, taylor");
}

bool form_has_vectors(EocForm f) { return f != EocForm::taylor; }

void save_prior(const std::string& path, const EocPrior& p) {
  json judged = json::array();
  for (const auto& j : p.judged)
    judged.push_back({{"step", j.step}, {"theta", j.theta}, {"candidates", j.candidates},
                      {"errors", j.errors}});
  json entries = json::array();
  for (const auto& [key, v] : p.vectors)
    entries.push_back({{"step", std::get<0>(key)}, {"block", std::get<1>(key)},
                       {"branch", branch_name(static_cast<Branch>(std::get<2>(key)))},
                       {"data", tensor_b64(v)}});
  json doc = {
      {"format", EocPrior::kFormat},
      {"version", EocPrior::kVersion},
      {"assumes", assumptions_json(p.assumes)},
      {"form", eoc_form_name(p.form)},
      {"judgment", p.judgment},
      {"thetas", p.thetas},
      {"step_theta", p.step_theta},
      {"judged", judged},
      {"vectors", {{"encoding", "base64 float32 little-endian"},
                   {"shape", {2, p.assumes.hidden_size}},
                   {"rows", "0: conditional half, 1: unconditional half"},
                   {"entries", entries}}},
      {"calibration", p.calibration_json.empty() ? json::object() : json::parse(p.calibration_json)},
  };
  doc["checksum"] = sha256_hex(doc.dump());
  write_file_atomic(path, doc.dump(1) + "\n");
}

EocPrior load_prior_unchecked(const std::string& path);

EocPrior load_prior(const std::string& path) {
  try {
    return load_prior_unchecked(path);
  } catch (const json::exception& e) {
    // A value of the wrong kind deep inside (a string where a number belongs, ...).
    fail("prior '", path, "' is invalid: ", e.what(), " (re-run eoc calibrate)");
  }
}

EocPrior load_prior_unchecked(const std::string& path) {
  using T = json::value_t;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail("prior file '", path, "' does not exist");
  json doc;
  try {
    doc = json::parse(read_file(path));
  } catch (const json::exception&) {
    fail("prior '", path, "' is not valid JSON (truncated or corrupt; re-run eoc calibrate)");
  }
  const PriorReader r(doc, path);
  if (!doc.is_object() || doc.value("format", std::string()) != EocPrior::kFormat)
    r.bad("\"format\" is not \"eoc-prior\"");
  if (!doc.contains("version") || doc["version"] != EocPrior::kVersion)
    fail("prior '", path, "' has version ", doc.value("version", json()).dump(),
         ", this eoc reads version ", EocPrior::kVersion, " (re-run eoc calibrate)");
  const std::string checksum = r.field(doc, "checksum", T::string, "").get<std::string>();
  json body = doc;
  body.erase("checksum");
  if (sha256_hex(body.dump()) != checksum) r.bad("its checksum does not match its content (edited?)");

  EocPrior p;
  p.assumes = read_assumptions(r, r.field(doc, "assumes", T::object, ""));
  p.form = parse_eoc_form(r.field(doc, "form", T::string, "").get<std::string>());
  p.judgment = r.field(doc, "judgment", T::string, "").get<std::string>();
  p.thetas = r.field(doc, "thetas", T::array, "").get<std::vector<double>>();
  p.step_theta = r.field(doc, "step_theta", T::array, "").get<std::vector<double>>();
  if (static_cast<int64_t>(p.step_theta.size()) != p.assumes.steps)
    r.bad(str("step_theta has ", p.step_theta.size(), " entries for ", p.assumes.steps, " steps"));
  for (double t : p.step_theta)
    if (!std::isfinite(t) || std::fabs(t) > kMaxTheta) r.bad(str("step_theta holds ", t));
  for (const auto& j : r.field(doc, "judged", T::array, "")) {
    StepJudgment s;
    s.step = r.field(j, "step", T::number_integer, "judged[].").get<int64_t>();
    s.theta = r.field(j, "theta", T::number_float, "judged[].").get<double>();
    s.candidates = r.field(j, "candidates", T::array, "judged[].").get<std::vector<double>>();
    s.errors = r.field(j, "errors", T::array, "judged[].").get<std::vector<double>>();
    if (s.candidates.size() != s.errors.size()) r.bad("judged[] candidates and errors differ in length");
    p.judged.push_back(s);
  }
  const auto& vectors = r.field(doc, "vectors", T::object, "");
  const int64_t d = p.assumes.hidden_size;
  for (const auto& e : r.field(vectors, "entries", T::array, "vectors.")) {
    const int64_t k = r.field(e, "step", T::number_integer, "vectors.entries[].").get<int64_t>();
    const int64_t l = r.field(e, "block", T::number_integer, "vectors.entries[].").get<int64_t>();
    const auto b = r.field(e, "branch", T::string, "vectors.entries[].").get<std::string>();
    if (k < 0 || k >= p.assumes.steps || l < 0 || l >= p.assumes.depth || (b != "attn" && b != "mlp"))
      r.bad(str("vector entry (", k, ", ", l, ", ", b, ") is out of range"));
    std::string bytes;
    if (!base64_decode(r.field(e, "data", T::string, "vectors.entries[].").get<std::string>(), bytes) ||
        static_cast<int64_t>(bytes.size()) != 2 * d * 4)
      r.bad(str("vector (", k, ", ", l, ", ", b, ") is not base64 of 2 x ", d, " float32"));
    auto v = at::empty({2, d}, at::kFloat);
    std::memcpy(v.data_ptr(), bytes.data(), bytes.size());
    if (!at::isfinite(v).all().item<bool>()) r.bad(str("vector (", k, ", ", l, ", ", b, ") holds NaN/Inf"));
    const double worst = std::fabs(p.step_theta[k]) * v.abs().max().item<double>();
    if (worst > kMaxCorrection)
      r.bad(str("vector (", k, ", ", l, ", ", b, ") times theta reaches ", worst,
                ", which would blow the feature up (limit ", kMaxCorrection, ")"));
    p.vectors[{k, l, b == "attn" ? 0 : 1}] = v;
  }
  p.calibration_json = doc.contains("calibration") ? doc["calibration"].dump() : "{}";
  return p;
}

void check_prior_matches(const EocPrior& prior, const PriorAssumptions& run,
                         const std::string& prior_path) {
  const auto& p = prior.assumes;
  std::string diff;
  auto note = [&](const char* what, const std::string& have, const std::string& want) {
    if (have != want) diff += str(diff.empty() ? "" : "; ", what, " ", have, " (this run: ", want, ")");
  };
  if (p.model_sha256 != run.model_sha256 || p.model_name != run.model_name)
    note("model", p.model_name + " sha256 " + p.model_sha256.substr(0, 12) + "...",
         run.model_name + " sha256 " + run.model_sha256.substr(0, 12) + "...");
  note("sampler", p.sampler, run.sampler);
  note("steps", std::to_string(p.steps), std::to_string(run.steps));
  note("respacing", p.respacing, run.respacing);
  note("eta", str(p.eta), str(run.eta));
  note("cfg scale", str(p.cfg_scale), str(run.cfg_scale));
  note("cfg channels", p.cfg_channels, run.cfg_channels);
  // The same spec gives another plan over another step count (said above already), or when a
  // mask file was edited since calibration.
  if (p.cache_layout != run.cache_layout) {
    if (p.cache_spec != run.cache_spec) note("cache plan", p.cache_spec, run.cache_spec);
    else if (p.steps == run.steps)
      note("cache plan", p.cache_spec, "the same spec, other reuse decisions: an edited mask file?");
  }
  if (!diff.empty()) fail("prior '", prior_path, "' was made for another run: ", diff);
}

EocCorrector::EocCorrector(const EocPrior& prior, const at::Device& device, at::ScalarType dtype)
    : form_(prior.form),
      theta_(prior.step_theta),
      halves_(prior.assumes.cfg_scale > 1.0 ? 2 : 1) {
  for (const auto& [key, v] : prior.vectors)
    vectors_[key] = v.narrow(0, 0, halves_).reshape({halves_, 1, 1, v.size(1)}).to(device, dtype);
  for (int64_t k = 0; k < static_cast<int64_t>(theta_.size()); ++k) set_step_theta(k, theta_[k]);
}

void EocCorrector::set_step_theta(int64_t step, double theta) {
  if (step < 0 || step >= static_cast<int64_t>(theta_.size()))
    fail("internal: step ", step, " is outside the prior's ", theta_.size(), " steps");
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
  if (form_ == EocForm::taylor) {
    c.trend = theta * taylor_tau(step, e);
    return c;
  }
  const auto it = coefs_.find({step, block, static_cast<int>(b)});
  if (it == coefs_.end()) return c;  // an entry the fit left plain
  // Rows are [conditional; unconditional] halves; each half has its own vector.
  if (form_ == EocForm::scale) c.scale_vec = it->second;
  else if (e.previous.defined()) c.trend_vec = it->second;
  return c;
}

std::unique_ptr<Corrector> make_eoc_corrector(const EocPrior& prior, const at::Device& device,
                                              at::ScalarType dtype) {
  return std::make_unique<EocCorrector>(prior, device, dtype);
}

}  // namespace eoc
