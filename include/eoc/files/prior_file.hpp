// The EOC prior file (docs/EOC.md): the prior (cache/eoc_corrector.hpp), the settings of the run
// it was made for, and how it was made. JSON; coefficient vectors as base64 of little-endian
// float32 with their shape; a content checksum guards against truncation and hand edits.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "eoc/cache/eoc_corrector.hpp"
#include "eoc/cache/plan.hpp"

namespace eoc {

struct PriorFile {
  static constexpr const char* kFormat = "eoc-prior";
  // 2: "assumes" holds the prior rows of the run settings table (runs/run_settings.hpp).
  // 3: the taylor form's per-step forecast orders ("step_order"; version 2 means order 1), so
  //    an eoc that knows no orders refuses a prior it would apply wrongly.
  static constexpr int kVersion = 3;
  static constexpr int kOldestVersion = 2;
  nlohmann::json assumes;  // what a run must match to use it
  EocPrior prior;
  nlohmann::json calibration;  // the calibration settings, recorded verbatim
  std::string sha256;          // of the file's bytes as read (load_prior); run reports cite it
};

// Writes atomically.
void save_prior(const std::string& path, const PriorFile& file);
// Throws eoc::Error naming the file and what is wrong; never returns a partly read prior.
PriorFile load_prior(const std::string& path);
// The cache plan the prior was made for (its spec and layout), when that layout has `steps` x
// `depth`; nothing otherwise (check_prior_matches then names what differs).
std::optional<CachePlan> plan_in_prior(const PriorFile& file, int64_t steps, int64_t depth);
// Throws eoc::Error naming every assumption that differs from the run's (`run`: the run's
// settings for kInPrior).
void check_prior_matches(const PriorFile& file, const nlohmann::json& run,
                         const std::string& prior_path);
// The same check for any file that records the kInPrior settings it assumes (`assumes`), such
// as a gate calibration (files/gate_file.hpp).
void check_assumptions(const nlohmann::json& assumes, const nlohmann::json& run,
                       const std::string& path);

}  // namespace eoc
