#include "eoc/files/run_record.hpp"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "eoc/base/error.hpp"
#include "eoc/base/stopwatch.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/io/files.hpp"
#include "eoc/setup/run_setup.hpp"

namespace eoc {
namespace {

namespace fs = std::filesystem;

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Checks the fields others read without further checks: format, version, settings.num_samples.
void check_run_record(const RunRecord& r) {
  const auto& d = r.doc;
  if (!d.is_object() || !d.contains("format") || d["format"] != kRunRecordFormat ||
      !d.contains("settings") || !d["settings"].is_object())
    fail("'", r.path, "' is not an eoc run record (expected format '", kRunRecordFormat, "')");
  if (!d.contains("version") || d["version"] != kRunRecordVersion)
    fail("run record '", r.path, "' has version ", field_text(d, "version"), ", this eoc reads ",
         kRunRecordVersion);
  const auto& settings = d["settings"];
  const auto n = settings.find("num_samples");
  if (n == settings.end() || !n->is_number_integer() || n->get<int64_t>() < 1 ||
      n->get<int64_t>() > kMaxSamples)
    fail("run record '", r.path, "': settings.num_samples is ",
         field_text(d["settings"], "num_samples"), " (expected an integer 1..", kMaxSamples, ")");
}

}  // namespace

std::string image_path(const std::string& dir, int64_t index) {
  std::ostringstream name;
  name << std::setw(6) << std::setfill('0') << index << ".png";
  return (fs::path(dir) / name.str()).string();
}

std::string run_record_name(const Shard& shard) {
  return str("eoc-run-", shard.index, "-of-", shard.count, ".json");
}

void write_run_record(const std::string& dir, const Shard& shard, const nlohmann::json& settings,
                      const nlohmann::json& info) {
  nlohmann::json record = {
      {"format", kRunRecordFormat},
      {"version", kRunRecordVersion},
      {"settings", settings},
      {"shard", {{"index", shard.index}, {"count", shard.count}, {"source", shard.source}}},
      {"info", info}};
  record["info"]["started"] = utc_now();
  write_file_atomic((fs::path(dir) / run_record_name(shard)).string(), record.dump(2) + "\n");
}

std::vector<RunRecord> read_run_records(const std::string& dir) {
  std::vector<RunRecord> records;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("folder '", dir, "' does not exist");
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!starts_with(name, "eoc-run-") || !ends_with(name, ".json")) continue;
    RunRecord r{entry.path().string(), nullptr};
    try {
      r.doc = nlohmann::json::parse(read_file(r.path));
    } catch (const nlohmann::json::exception& e) {
      fail("run record '", r.path, "' is not valid JSON (", e.what(), ")");
    }
    check_run_record(r);
    records.push_back(std::move(r));
  }
  std::sort(records.begin(), records.end(),
            [](const RunRecord& a, const RunRecord& b) { return a.path < b.path; });
  return records;
}

void check_records_agree(const std::vector<RunRecord>& records, const std::string& dir) {
  for (size_t i = 1; i < records.size(); ++i) {
    const auto& a = records[0].doc["settings"];
    const auto& b = records[i].doc["settings"];
    const std::string field = first_difference(a, b);
    if (field.empty()) continue;
    const std::string where = field == "." ? "settings" : field;
    fail("folder '", dir, "' holds images from different settings: ", where, " is ",
         field_text(a, field), " in '", fs::path(records[0].path).filename().string(), "' but ",
         field_text(b, field), " in '", fs::path(records[i].path).filename().string(), "'");
  }
}

}  // namespace eoc
