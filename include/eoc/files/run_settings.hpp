// The settings that define a run's images, in ONE table (run_settings.cpp). Three documents are
// derived from it, each taking the rows marked for it:
//  - the run report (`--report`):                    what the run was, for people and scripts;
//  - the out-dir run record (eoc-run-I-of-N.json):   what every process writing one folder, and
//                                                    a resumed run, must agree on
//                                                    (files/run_record);
//  - the prior's assumptions (files/prior_file):     what a run must match to use the prior.
// Each is a JSON object nested at the rows' dotted keys ("model.sha256" -> {"model": {"sha256"}}),
// compared key by key. Adding a sampling flag: its option (setup/options.hpp), its parser
// (cli/), and one row here.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "eoc/cache/plan.hpp"
#include "eoc/model/vae.hpp"
#include "eoc/setup/run_setup.hpp"

namespace eoc {

enum SettingUse : unsigned { kInReport = 1, kInRecord = 2, kInPrior = 4 };

// What the table reads: a resolved run and its cache, and the VAE that decodes its images.
struct RunFacts {
  const RunSetup& run;
  const CachePlan& plan;
  std::string correct = "none";  // the corrector's name
  std::string prior_sha256{};    // "" without a prior
  const VaeDecoder* vae = nullptr;
  double vae_scale = 0.0;
};

// The rows marked for `use`, nested at their dotted keys (rows that apply only to some runs, such
// as the flow samplers' time grid, only where they apply).
nlohmann::json run_settings(const RunFacts& facts, SettingUse use);
// The dotted keys of the rows marked for `use`, in table order; `required_only` leaves out the
// rows that apply only to some runs (a document may lack them).
std::vector<std::string> setting_keys(SettingUse use, bool required_only = false);

// The first field (a dotted path such as "cfg_scale" or "vae.sha256") whose value differs
// between `a` and `b`; "." when they differ but are not both objects; "" when they are equal.
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b);
// The value at a dotted path (nullptr when absent).
const nlohmann::json* field_at(const nlohmann::json& settings, const std::string& field);
// The value at a dotted path for messages, as JSON, long ones cut; "(absent)" when missing.
std::string field_text(const nlohmann::json& settings, const std::string& field);

}  // namespace eoc
