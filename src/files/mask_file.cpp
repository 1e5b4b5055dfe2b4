#include "eoc/files/mask_file.hpp"

#include <nlohmann/json.hpp>

#include "eoc/base/error.hpp"

namespace eoc {

namespace {

using nlohmann::json;

// Flags of entry (step k, block l, branch b) in CachePlan::masked's order.
struct MaskFlags {
  int64_t depth;
  std::vector<bool> reuse;
  void set(int64_t k, int64_t l, Branch b, bool r) {
    reuse[static_cast<size_t>((k * depth + l) * 2 + static_cast<int>(b))] = r;
  }
};

void apply_mask_entry(MaskFlags& plan, const json& entry, int64_t k, const std::string& source) {
  const int64_t depth = plan.depth;
  if (entry.is_string()) {
    const auto s = entry.get<std::string>();
    if (s != "compute" && s != "reuse")
      fail("cache mask '", source, "': schedule[", k, "] is '", s,
           "', expected \"compute\", \"reuse\" or {\"attn\": [...], \"mlp\": [...]}");
    for (int64_t l = 0; l < depth; ++l)
      for (Branch b : {Branch::attn, Branch::mlp}) plan.set(k, l, b, s == "reuse");
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
      plan.set(k, l, b, v.get<int64_t>() == 0);
    }
  }
  for (const auto& item : entry.items())
    if (item.key() != "attn" && item.key() != "mlp")
      fail("cache mask '", source, "': schedule[", k, "] has unknown key '", item.key(), "'");
}

}  // namespace

CachePlan plan_from_mask_json(const std::string& text, const std::string& source, int64_t steps,
                              int64_t depth) {
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
    fail("cache mask '", source, "' is for depth ", doc["depth"].dump(), ", the model has ", depth,
         " blocks");
  if (!doc.contains("schedule") || !doc["schedule"].is_array() ||
      static_cast<int64_t>(doc["schedule"].size()) != steps)
    fail("cache mask '", source, "' needs a \"schedule\" list of ", steps, " entries");
  for (const auto& item : doc.items())
    if (item.key() != "format" && item.key() != "version" && item.key() != "steps" &&
        item.key() != "depth" && item.key() != "schedule" && item.key() != "description")
      fail("cache mask '", source, "' has unknown key '", item.key(), "'");
  MaskFlags flags{depth, std::vector<bool>(static_cast<size_t>(steps * depth * 2), false)};
  for (int64_t k = 0; k < steps; ++k) {
    if (doc["schedule"][k].is_object() && !doc.contains("depth"))
      fail("cache mask '", source, "': schedule[", k,
           "] is per block, so the mask must give "
           "\"depth\" (the model's block count)");
    apply_mask_entry(flags, doc["schedule"][k], k, source);
  }
  return CachePlan::masked(steps, depth, flags.reuse, "mask:" + source);
}

std::string mask_json_text(const CachePlan& plan, const std::string& description) {
  json schedule = json::array();
  bool per_block = false;
  for (int64_t k = 0; k < plan.steps(); ++k) {
    const int64_t reused = plan.reused_in_step(k);
    if (reused == 0 || reused == plan.depth() * 2) {
      schedule.push_back(reused ? "reuse" : "compute");
      continue;
    }
    per_block = true;
    json entry = json::object();
    for (Branch b : {Branch::attn, Branch::mlp}) {
      json flags = json::array();
      for (int64_t l = 0; l < plan.depth(); ++l) flags.push_back(plan.reuses(k, l, b) ? 0 : 1);
      entry[branch_name(b)] = flags;
    }
    schedule.push_back(entry);
  }
  json doc = {{"format", "eoc-cache-mask"},
              {"version", 1},
              {"steps", plan.steps()},
              {"description", description}};
  if (per_block) doc["depth"] = plan.depth();
  doc["schedule"] = schedule;
  return doc.dump(1) + "\n";
}

}  // namespace eoc
