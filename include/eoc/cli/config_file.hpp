// `--config FILE.json` for sample, compare and calibrate: defaults < config file < flags.
//
// The file is one JSON object. Its keys are long flag names without the dashes ("cfg-scale",
// "steps", "tf32", "no-check-finite"); values are strings, numbers, booleans (flags: true/false),
// or arrays (list options). Three keys are reserved:
//   "description"                       free text, ignored;
//   "sample" / "compare" / "calibrate"  objects applied only by that subcommand (they override
//                                       the top-level keys there).
// Every key is checked against the options of the subcommand that applies it: an unknown key is
// an error naming the key and the file, never silently ignored. Flags given on the command line
// always win. Relative paths in values are relative to the working directory, as on the command
// line. See configs/*.json.
#pragma once
#include <CLI/CLI.hpp>

namespace eoc::cli {

void add_config_flag(CLI::App* cmd);   // --config FILE.json
void add_dry_run_flag(CLI::App* cmd);  // --dry-run

// After CLI11 parsed the command line: applies the selected subcommand's --config file.
// Throws eoc::Error naming the file and the key when the file or a key is invalid.
void apply_config_file(CLI::App& app);

// When the selected subcommand was given --dry-run: prints its resolved option values (and
// which came from the config file) as JSON on stdout and returns true. Loads no model.
bool print_dry_run(CLI::App& app);

}  // namespace eoc::cli
