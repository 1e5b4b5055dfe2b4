// A gate calibration (`eoc calibrate --gate RULE --target F`): the gate with the threshold that
// computes F of the branches on the judge images, the corrector it was measured with, the run
// settings it assumes (the prior rows of files/run_settings), and every threshold tried. `eoc
// sample --prior FILE` takes the gate from it, so a user never chooses a threshold by hand.
// JSON ("format": "eoc-gate"); a content checksum guards against truncation and hand edits.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

#include "eoc/cache/gate.hpp"

namespace eoc {

struct GateFile {
  static constexpr const char* kFormat = "eoc-gate";
  static constexpr int kVersion = 1;
  GateSpec gate;
  std::string corrector = "none";  // none | taylor | foca (as --correct names them)
  int order = 1;                   // taylor's order
  nlohmann::json assumes;          // what a run must match to use it
  nlohmann::json calibration;      // target, trials, chosen, cost: recorded verbatim
  std::string sha256;              // of the file's bytes as read
};

// Writes atomically.
void save_gate_file(const std::string& path, const GateFile& file);
// Throws eoc::Error naming the file and what is wrong.
GateFile load_gate_file(const std::string& path);
// Whether the JSON file at `path` says it is a gate calibration (false for anything else,
// including unreadable files: the prior loader then says what is wrong).
bool is_gate_file(const std::string& path);

}  // namespace eoc
