#include "eoc/runs/out_dir.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/io/files.hpp"
#include "eoc/runs/report.hpp"
#include "eoc/runs/run_settings.hpp"
#include "eoc/runs/run_setup.hpp"

namespace eoc {
namespace {

namespace fs = std::filesystem;

constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
// An empty IEND chunk: length 0, type "IEND", CRC-32 of "IEND".
constexpr unsigned char kPngEnd[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};

std::string record_name(const Shard& shard) {
  return str("eoc-run-", shard.index, "-of-", shard.count, ".json");
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "000123.png.tmp.4567" -> 123; -1 for any other name.
int64_t temp_image_index(const std::string& name) {
  const auto dot = name.find(".png.tmp.");
  if (dot == std::string::npos || dot < 6 ||
      name.substr(0, dot).find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return std::stoll(name.substr(0, dot));
}

// Removes temp files a killed process of this shard left behind (only this shard writes them).
void remove_stale_temps(const std::string& dir, const Shard& shard) {
  const std::string record_temp = record_name(shard) + ".tmp.";
  int64_t removed = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const int64_t index = temp_image_index(name);
    if ((index >= 0 && shard.owns(index)) || starts_with(name, record_temp)) {
      std::error_code ec;
      if (fs::remove(entry.path(), ec)) ++removed;
    }
  }
  if (removed > 0) log::info(str("removed ", removed, " temp file(s) of an interrupted run in ", dir));
}

}  // namespace

std::string image_path(const std::string& dir, int64_t index) {
  std::ostringstream name;
  name << std::setw(6) << std::setfill('0') << index << ".png";
  return (fs::path(dir) / name.str()).string();
}

bool png_is_complete(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char head[8], tail[12];
  bool ok = std::fread(head, 1, 8, f) == 8 && std::memcmp(head, kPngSignature, 8) == 0 &&
            std::fseek(f, -12, SEEK_END) == 0 && std::ftell(f) >= 8 + 25 &&
            std::fread(tail, 1, 12, f) == 12 && std::memcmp(tail, kPngEnd, 12) == 0;
  std::fclose(f);
  return ok;
}

// Checks the fields others read without further checks: format, version, settings.num_samples.
static void check_run_record(const RunRecord& r) {
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
    fail("run record '", r.path, "': settings.num_samples is ", field_text(d["settings"], "num_samples"),
         " (expected an integer 1..", kMaxSamples, ")");
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

OutDirWork prepare_out_dir_work(const std::string& dir, const Shard& shard, int64_t num_samples,
                                const nlohmann::json& settings, const nlohmann::json& info,
                                bool resume) {
  for (const auto& record : read_run_records(dir)) {
    const std::string field = first_difference(record.doc["settings"], settings);
    if (field.empty()) continue;
    fail("--out-dir '", dir, "' holds images made with other settings: ", field, " is ",
         field_text(record.doc["settings"], field), " in '",
         fs::path(record.path).filename().string(), "' but ", field_text(settings, field),
         " now (use a new folder, or the settings recorded there)");
  }
  remove_stale_temps(dir, shard);
  nlohmann::json record = {
      {"format", kRunRecordFormat}, {"version", kRunRecordVersion}, {"settings", settings},
      {"shard", {{"index", shard.index}, {"count", shard.count}, {"source", shard.source}}},
      {"info", info}};
  record["info"]["started"] = utc_now();
  write_file_atomic((fs::path(dir) / record_name(shard)).string(), record.dump(2) + "\n");

  OutDirWork work;
  for (int64_t i : shard.indices(num_samples)) {
    if (resume && png_is_complete(image_path(dir, i))) ++work.present;
    else work.todo.push_back(i);
  }
  return work;
}

}  // namespace eoc
