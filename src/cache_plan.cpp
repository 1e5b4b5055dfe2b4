#include "eoc/cache_plan.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <filesystem>

#include "eoc/error.hpp"

namespace eoc {

CachePlan::CachePlan(int64_t steps, int64_t depth, std::string spec)
    : steps_(steps), depth_(depth), spec_(std::move(spec)), reuse_(steps * depth * 2, 0) {}

CachePlan CachePlan::none(int64_t steps, int64_t depth) { return CachePlan(steps, depth, "none"); }

CachePlan CachePlan::fora(int64_t steps, int64_t depth, int64_t interval) {
  if (interval < 1) fail("cache spec 'fora:", interval, "' needs an interval >= 1");
  CachePlan plan(steps, depth, "fora:" + std::to_string(interval));
  for (int64_t k = 0; k < steps; ++k) {
    const int64_t i = steps - 1 - k;
    const bool compute = i == steps - 1 || i % interval == 0;
    for (int64_t l = 0; l < depth && !compute; ++l) {
      plan.set_reuse(k, l, Branch::attn, true);
      plan.set_reuse(k, l, Branch::mlp, true);
    }
  }
  return plan;
}

namespace {

using nlohmann::json;

void apply_mask_entry(CachePlan& plan, const json& entry, int64_t k, const std::string& source) {
  const int64_t depth = plan.depth();
  if (entry.is_string()) {
    const auto s = entry.get<std::string>();
    if (s != "compute" && s != "reuse")
      fail("cache mask '", source, "': schedule[", k, "] is '", s,
           "', expected \"compute\", \"reuse\" or {\"attn\": [...], \"mlp\": [...]}");
    for (int64_t l = 0; l < depth; ++l)
      for (Branch b : {Branch::attn, Branch::mlp}) plan.set_reuse(k, l, b, s == "reuse");
    return;
  }
  if (!entry.is_object())
    fail("cache mask '", source, "': schedule[", k, "] must be a string or an object");
  for (Branch b : {Branch::attn, Branch::mlp}) {
    const char* name = branch_name(b);
    if (!entry.contains(name) || !entry[name].is_array() ||
        static_cast<int64_t>(entry[name].size()) != depth)
      fail("cache mask '", source, "': schedule[", k, "].", name, " must be a list of ", depth,
           " 0/1 values (one per block of this model)");
    for (int64_t l = 0; l < depth; ++l) {
      const auto& v = entry[name][l];
      if (!v.is_number_integer() || (v.get<int64_t>() != 0 && v.get<int64_t>() != 1))
        fail("cache mask '", source, "': schedule[", k, "].", name, "[", l, "] must be 0 or 1");
      plan.set_reuse(k, l, b, v.get<int64_t>() == 0);
    }
  }
  for (const auto& item : entry.items())
    if (item.key() != "attn" && item.key() != "mlp")
      fail("cache mask '", source, "': schedule[", k, "] has unknown key '", item.key(), "'");
}

}  // namespace

CachePlan CachePlan::from_mask_json(const std::string& text, const std::string& source,
                                    int64_t steps, int64_t depth) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    fail("cache mask '", source, "' is not valid JSON (", e.what(), ")");
  }
  if (!doc.is_object() || !doc.contains("format") || doc["format"] != "eoc-cache-mask")
    fail("cache mask '", source, "' lacks \"format\": \"eoc-cache-mask\"");
  if (!doc.contains("version") || doc["version"] != 1)
    fail("cache mask '", source, "' has an unsupported version (expected 1)");
  if (!doc.contains("steps") || !doc["steps"].is_number_integer() || doc["steps"] != steps)
    fail("cache mask '", source, "' is for ", doc.value("steps", json()).dump(),
         " steps, this run has ", steps, " (--steps)");
  if (doc.contains("depth") && (!doc["depth"].is_number_integer() || doc["depth"] != depth))
    fail("cache mask '", source, "' is for depth ", doc["depth"].dump(), ", the model has ",
         depth, " blocks");
  if (!doc.contains("schedule") || !doc["schedule"].is_array() ||
      static_cast<int64_t>(doc["schedule"].size()) != steps)
    fail("cache mask '", source, "' needs a \"schedule\" list of ", steps, " entries");
  for (const auto& item : doc.items())
    if (item.key() != "format" && item.key() != "version" && item.key() != "steps" &&
        item.key() != "depth" && item.key() != "schedule" && item.key() != "description")
      fail("cache mask '", source, "' has unknown key '", item.key(), "'");
  CachePlan plan(steps, depth, "mask:" + source);
  for (int64_t k = 0; k < steps; ++k) {
    if (doc["schedule"][k].is_object() && !doc.contains("depth"))
      fail("cache mask '", source, "': schedule[", k, "] is per block, so the mask must give "
           "\"depth\" (the model's block count)");
    apply_mask_entry(plan, doc["schedule"][k], k, source);
  }
  plan.validate();
  return plan;
}

void CachePlan::set_reuse(int64_t step, int64_t block, Branch b, bool reuse) {
  reuse_[index(step, block, b)] = reuse ? 1 : 0;
}

bool CachePlan::step_reuses_any(int64_t step) const { return reused_in_step(step) > 0; }

int64_t CachePlan::reused_in_step(int64_t step) const {
  int64_t n = 0;
  for (int64_t l = 0; l < depth_; ++l)
    n += reuses(step, l, Branch::attn) + reuses(step, l, Branch::mlp);
  return n;
}

int64_t CachePlan::reused_total() const {
  int64_t n = 0;
  for (auto r : reuse_) n += r;
  return n;
}

double CachePlan::caching_level() const {
  return reuse_.empty() ? 0.0 : static_cast<double>(reused_total()) / reuse_.size();
}

void CachePlan::validate() const {
  for (int64_t l = 0; l < depth_; ++l)
    for (Branch b : {Branch::attn, Branch::mlp})
      for (int64_t k = 0; k < steps_; ++k) {
        if (!reuses(k, l, b)) break;
        fail("cache plan '", spec_, "' reuses block ", l, " ", branch_name(b), " at step ", k,
             " before it was ever computed (step 0 must compute everything)");
      }
}

std::string CachePlan::layout() const {
  std::string out;
  for (int64_t k = 0; k < steps_; ++k) {
    if (k) out += '|';
    for (int64_t l = 0; l < depth_; ++l)
      for (Branch b : {Branch::attn, Branch::mlp}) out += reuses(k, l, b) ? 'r' : 'c';
  }
  return out;
}

CachePlan parse_cache_plan(const std::string& spec, int64_t steps, int64_t depth) {
  if (spec == "none") return CachePlan::none(steps, depth);
  if (spec.rfind("fora:", 0) == 0) {
    const std::string n = spec.substr(5);
    size_t used = 0;
    long long interval = 0;
    try {
      interval = std::stoll(n, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != n.size() || n.empty() || !std::isdigit(static_cast<unsigned char>(n[0])) ||
        interval < 1)
      fail("--cache '", spec, "': the FORA interval must be an integer >= 1 (e.g. fora:3)");
    return CachePlan::fora(steps, depth, interval);
  }
  if (spec.rfind("mask:", 0) == 0) {
    const std::string path = spec.substr(5);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
      fail("--cache '", spec, "': mask file '", path, "' does not exist");
    return CachePlan::from_mask_json(read_file(path), path, steps, depth);
  }
  fail("--cache '", spec, "' is not one of: none, fora:N, mask:FILE.json");
}

}  // namespace eoc
