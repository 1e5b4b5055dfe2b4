#include "eoc/files/prior_file.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "eoc/base/error.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/io/base64.hpp"
#include "eoc/io/files.hpp"
#include "eoc/io/sha256.hpp"

namespace eoc {
namespace {

using nlohmann::json;

// A correction whose factor exceeds this is not a correction but a blow-up; refuse the prior.
constexpr double kMaxCorrection = 50.0;
constexpr double kMaxTheta = 10.0;

// float32 little-endian bytes (x86 and every CUDA host are little-endian).
std::string tensor_b64(const at::Tensor& t) {
  const auto c = t.to(at::kFloat).contiguous().cpu();
  return base64_encode(std::string(static_cast<const char*>(c.data_ptr()), c.numel() * 4));
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

// The sizes the rest of the file is checked against, from "assumes" (which must hold every
// prior row of the run settings table).
struct PriorSizes {
  int64_t steps = 0, depth = 0, hidden_size = 0;
};

PriorSizes read_assumptions(const PriorReader& r, const json& a) {
  for (const auto& key : setting_keys(kInPrior, /*required_only=*/true))
    if (!field_at(a, key)) r.bad("assumes." + key + " is missing");
  auto size = [&](const char* key) {
    const json* v = field_at(a, key);
    if (!v->is_number_integer()) r.bad(str("assumes.", key, " has the wrong type"));
    return v->get<int64_t>();
  };
  // A prior has one entry per cache-plan step: per model evaluation (flow samplers record
  // "evaluations"; for DDPM/DDIM they are the steps).
  PriorSizes p{size(field_at(a, "evaluations") ? "evaluations" : "steps"), size("model.depth"),
               size("model.hidden_size")};
  if (p.depth < 1 || p.hidden_size < 1 || p.steps < 1) r.bad("assumes has a non-positive size");
  // Far above any DiT (XL: depth 28, width 1152; 1000 diffusion steps), and small enough that
  // sizes computed from them (2 x width x 4 bytes per vector) cannot overflow.
  if (p.depth > 4096 || p.hidden_size > (1 << 20) || p.steps > 100000)
    r.bad(str("assumes has an implausible size (depth ", p.depth, ", hidden_size ", p.hidden_size,
              ", steps ", p.steps, "; expected at most 4096, 1048576, 100000)"));
  return p;
}

json judged_json(const std::vector<StepJudgment>& judged) {
  json out = json::array();
  for (const auto& j : judged) {
    json entry = {
        {"step", j.step}, {"theta", j.theta}, {"candidates", j.candidates}, {"errors", j.errors}};
    if (!j.orders.empty()) {
      entry["order"] = j.order;
      entry["orders"] = j.orders;
    }
    out.push_back(entry);
  }
  return out;
}

std::vector<int> step_orders(const EocPrior& p) {
  std::vector<int> orders;
  for (size_t k = 0; k < p.step_theta.size(); ++k)
    orders.push_back(p.step_theta[k] == 0.0 ? 0 : p.order_at(static_cast<int64_t>(k)));
  return orders;
}

// 0 (plain), a Taylor order, or kFocaOrder (FoCa's forecast).
bool valid_order(int64_t o) { return o >= 0 && o <= kFocaOrder; }

json vectors_json(const EocPrior& p, int64_t hidden_size) {
  json entries = json::array();
  for (const auto& [key, v] : p.vectors)
    entries.push_back({{"step", std::get<0>(key)},
                       {"block", std::get<1>(key)},
                       {"branch", branch_name(static_cast<Branch>(std::get<2>(key)))},
                       {"data", tensor_b64(v)}});
  return {{"encoding", "base64 float32 little-endian"},
          {"shape", {2, hidden_size}},
          {"rows", "0: conditional half, 1: unconditional half"},
          {"entries", entries}};
}

std::vector<StepJudgment> read_judged(const PriorReader& r, const json& doc) {
  using T = json::value_t;
  std::vector<StepJudgment> judged;
  for (const auto& j : r.field(doc, "judged", T::array, "")) {
    StepJudgment s;
    s.step = r.field(j, "step", T::number_integer, "judged[].").get<int64_t>();
    s.theta = r.field(j, "theta", T::number_float, "judged[].").get<double>();
    s.candidates = r.field(j, "candidates", T::array, "judged[].").get<std::vector<double>>();
    s.errors = r.field(j, "errors", T::array, "judged[].").get<std::vector<double>>();
    if (s.candidates.size() != s.errors.size())
      r.bad("judged[] candidates and errors differ in length");
    if (j.contains("orders")) {
      s.orders = r.field(j, "orders", T::array, "judged[].").get<std::vector<int>>();
      s.order = r.field(j, "order", T::number_integer, "judged[].").get<int>();
      if (s.orders.size() != s.candidates.size())
        r.bad("judged[] candidates and orders differ in length");
    }
    judged.push_back(s);
  }
  return judged;
}

// step_order (version 3; version 2 priors are order 1 throughout) and the order search's record.
void read_orders(const PriorReader& r, const json& doc, int version, EocPrior& p) {
  using T = json::value_t;
  if (version < 3) return;
  for (const auto& o : r.field(doc, "step_order", T::array, "")) {
    if (!o.is_number_integer() || !valid_order(o.get<int64_t>()))
      r.bad(str("step_order holds ", o.dump(), " (expected 0..", kMaxTaylorOrder, ", or ",
                kFocaOrder, " for FoCa)"));
    p.step_order.push_back(o.get<int>());
  }
  if (p.step_order.size() != p.step_theta.size())
    r.bad(str("step_order has ", p.step_order.size(), " entries for ", p.step_theta.size(),
              " steps"));
  for (size_t k = 0; k < p.step_theta.size(); ++k)
    if (p.step_theta[k] != 0.0 && p.step_order[k] == 0)
      r.bad(str("step_order is 0 at step ", k, ", whose theta is ", p.step_theta[k]));
  if (p.highest_order() > 1 && p.form != EocForm::taylor)
    r.bad(str("step_order reaches ", p.highest_order(), ", but the ", eoc_form_name(p.form),
              " form has order 1 only"));
  if (p.uses_foca() && p.form != EocForm::taylor)
    r.bad(str("step_order names FoCa (", kFocaOrder, "), but the ", eoc_form_name(p.form),
              " form has order 1 only"));
  if (doc.contains("fixed_order_errors"))
    p.fixed_order_errors =
        r.field(doc, "fixed_order_errors", T::array, "").get<std::vector<double>>();
}

// Every vector entry, checked against the sizes and against blowing features up at its step.
void read_vectors(const PriorReader& r, const json& doc, const PriorSizes& n, EocPrior& p) {
  using T = json::value_t;
  const auto& vectors = r.field(doc, "vectors", T::object, "");
  const int64_t d = n.hidden_size;
  for (const auto& e : r.field(vectors, "entries", T::array, "vectors.")) {
    const int64_t k = r.field(e, "step", T::number_integer, "vectors.entries[].").get<int64_t>();
    const int64_t l = r.field(e, "block", T::number_integer, "vectors.entries[].").get<int64_t>();
    const auto b = r.field(e, "branch", T::string, "vectors.entries[].").get<std::string>();
    if (k < 0 || k >= n.steps || l < 0 || l >= n.depth || (b != "attn" && b != "mlp"))
      r.bad(str("vector entry (", k, ", ", l, ", ", b, ") is out of range"));
    std::string bytes;
    if (!base64_decode(r.field(e, "data", T::string, "vectors.entries[].").get<std::string>(),
                       bytes) ||
        static_cast<int64_t>(bytes.size()) != 2 * d * 4)
      r.bad(str("vector (", k, ", ", l, ", ", b, ") is not base64 of 2 x ", d, " float32"));
    auto v = at::empty({2, d}, at::kFloat);
    std::memcpy(v.data_ptr(), bytes.data(), bytes.size());
    if (!at::isfinite(v).all().item<bool>())
      r.bad(str("vector (", k, ", ", l, ", ", b, ") holds NaN/Inf"));
    const double worst = std::fabs(p.step_theta[k]) * v.abs().max().item<double>();
    if (worst > kMaxCorrection)
      r.bad(str("vector (", k, ", ", l, ", ", b, ") times theta reaches ", worst,
                ", which would blow the feature up (limit ", kMaxCorrection, ")"));
    p.vectors[{k, l, b == "attn" ? 0 : 1}] = v;
  }
}

PriorFile read_prior_document(const std::string& path) {
  using T = json::value_t;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail("prior file '", path, "' does not exist");
  const std::string text = read_file(path);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception&) {
    fail("prior '", path, "' is not valid JSON (truncated or corrupt; re-run eoc calibrate)");
  }
  const PriorReader r(doc, path);
  if (!doc.is_object() || doc.value("format", std::string()) != PriorFile::kFormat)
    r.bad("\"format\" is not \"eoc-prior\"");
  const json version = doc.value("version", json());
  if (!version.is_number_integer() || version.get<int64_t>() < PriorFile::kOldestVersion ||
      version.get<int64_t>() > PriorFile::kVersion)
    fail("prior '", path, "' has version ", version.dump(), ", this eoc reads versions ",
         PriorFile::kOldestVersion, " to ", PriorFile::kVersion, " (re-run eoc calibrate)");
  const std::string checksum = r.field(doc, "checksum", T::string, "").get<std::string>();
  json body = doc;
  body.erase("checksum");
  if (sha256_hex(body.dump()) != checksum)
    r.bad("its checksum does not match its content (edited?)");

  PriorFile file;
  file.sha256 = sha256_hex(text);
  file.assumes = r.field(doc, "assumes", T::object, "");
  const PriorSizes sizes = read_assumptions(r, file.assumes);
  EocPrior& p = file.prior;
  const auto form = r.field(doc, "form", T::string, "").get<std::string>();
  if (!kEocFormNames.parse(form))
    r.bad("form '" + form + "' is not one of: " + kEocFormNames.list());
  p.form = *kEocFormNames.parse(form);
  const auto judgment = r.field(doc, "judgment", T::string, "").get<std::string>();
  if (!kJudgmentNames.parse(judgment))
    r.bad("judgment '" + judgment + "' is not one of: " + kJudgmentNames.list());
  p.judgment = *kJudgmentNames.parse(judgment);
  p.thetas = r.field(doc, "thetas", T::array, "").get<std::vector<double>>();
  p.step_theta = r.field(doc, "step_theta", T::array, "").get<std::vector<double>>();
  if (static_cast<int64_t>(p.step_theta.size()) != sizes.steps)
    r.bad(str("step_theta has ", p.step_theta.size(), " entries for ", sizes.steps, " steps"));
  for (double t : p.step_theta)
    if (!std::isfinite(t) || std::fabs(t) > kMaxTheta) r.bad(str("step_theta holds ", t));
  p.judged = read_judged(r, doc);
  read_vectors(r, doc, sizes, p);
  read_orders(r, doc, static_cast<int>(version.get<int64_t>()), p);
  file.calibration = doc.contains("calibration") ? doc["calibration"] : json::object();
  return file;
}

}  // namespace

void save_prior(const std::string& path, const PriorFile& file) {
  const EocPrior& p = file.prior;
  const json* hidden = field_at(file.assumes, "model.hidden_size");
  EOC_ASSERT(hidden && hidden->is_number_integer(), "a prior without assumes.model.hidden_size");
  json doc = {
      {"format", PriorFile::kFormat},
      {"version", PriorFile::kVersion},
      {"assumes", file.assumes},
      {"form", eoc_form_name(p.form)},
      {"judgment", judgment_name(p.judgment)},
      {"thetas", p.thetas},
      {"step_theta", p.step_theta},
      {"step_order", step_orders(p)},
      {"judged", judged_json(p.judged)},
      {"vectors", vectors_json(p, hidden->get<int64_t>())},
      {"calibration", file.calibration.is_null() ? json::object() : file.calibration},
  };
  if (!p.fixed_order_errors.empty()) doc["fixed_order_errors"] = p.fixed_order_errors;
  doc["checksum"] = sha256_hex(doc.dump());
  write_file_atomic(path, doc.dump(1) + "\n");
}

PriorFile load_prior(const std::string& path) {
  try {
    return read_prior_document(path);
  } catch (const json::exception& e) {
    // A value of the wrong kind deep inside (a string where a number belongs, ...).
    fail("prior '", path, "' is invalid: ", e.what(), " (re-run eoc calibrate)");
  }
}

std::optional<CachePlan> plan_in_prior(const PriorFile& file, int64_t steps, int64_t depth) {
  const json* spec = field_at(file.assumes, "cache.spec");
  const json* layout = field_at(file.assumes, "cache.layout");
  if (!spec || !spec->is_string() || !layout || !layout->is_string()) return std::nullopt;
  return CachePlan::from_layout(steps, depth, layout->get<std::string>(), spec->get<std::string>());
}

void check_prior_matches(const PriorFile& file, const json& run, const std::string& prior_path) {
  check_assumptions(file.assumes, run, prior_path);
}

void check_assumptions(const json& assumes, const json& run, const std::string& prior_path) {
  std::vector<std::string> differ;
  for (const auto& key : setting_keys(kInPrior)) {
    const json* have = field_at(assumes, key);
    const json* want = field_at(run, key);
    if (!have && !want) continue;  // a row neither applies to (e.g. a DiT run's time grid)
    if (!have || !want || *have != *want) differ.push_back(key);
  }
  auto differs = [&](const std::string& key) {
    return std::find(differ.begin(), differ.end(), key) != differ.end();
  };
  std::string diff;
  for (const auto& key : differ) {
    std::string note =
        str(key, " ", field_text(assumes, key), " (this run: ", field_text(run, key), ")");
    if (key == "cache.layout") {
      // Another step count or spec gives another layout, said by that field already.
      if (differs("steps") || differs("cache.spec")) continue;
      note = "cache.layout: the same cache spec makes other reuse decisions (an edited mask file?)";
    }
    diff += (diff.empty() ? "" : "; ") + note;
  }
  if (!diff.empty()) fail("prior '", prior_path, "' was made for another run: ", diff);
}

}  // namespace eoc
