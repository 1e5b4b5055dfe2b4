#include "eoc/runs/out_dir.hpp"

#include <filesystem>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/files/run_record.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/io/png.hpp"

namespace eoc {
namespace {

namespace fs = std::filesystem;

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
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
  const std::string record_temp = run_record_name(shard) + ".tmp.";
  int64_t removed = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const int64_t index = temp_image_index(name);
    if ((index >= 0 && shard.owns(index)) || starts_with(name, record_temp)) {
      std::error_code ec;
      if (fs::remove(entry.path(), ec)) ++removed;
    }
  }
  if (removed > 0)
    log::info(str("removed ", removed, " temp file(s) of an interrupted run in ", dir));
}

}  // namespace

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
  write_run_record(dir, shard, settings, info);

  OutDirWork work;
  for (int64_t i : shard.indices(num_samples)) {
    if (resume && png_is_complete(image_path(dir, i)))
      ++work.present;
    else
      work.todo.push_back(i);
  }
  return work;
}

}  // namespace eoc
