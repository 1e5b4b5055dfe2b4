#include "eoc/cli/config_file.hpp"

#include <nlohmann/json.hpp>

#include <iostream>
#include <map>
#include <set>
#include <string>

#include "eoc/base/error.hpp"
#include "eoc/io/files.hpp"

namespace eoc::cli {
namespace {

using nlohmann::json;

const std::set<std::string> kSections = {"sample", "compare", "calibrate"};
const std::set<std::string> kNotConfigurable = {"help", "config", "dry-run"};

// Keys the last apply_config_file took from the file (for --dry-run's report).
std::set<std::string>& applied_keys() {
  static std::set<std::string> keys;
  return keys;
}

json read_config(const std::string& path) {
  json doc;
  try {
    doc = json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail("--config '", path, "' is not valid JSON (", e.what(), ")");
  }
  if (!doc.is_object()) fail("--config '", path, "' must hold a JSON object of flag values");
  return doc;
}

CLI::Option* find_option(CLI::App& cmd, const std::string& key, const std::string& path) {
  if (kNotConfigurable.count(key))
    fail("--config '", path, "': key '", key, "' cannot be set from a config file");
  CLI::Option* opt = cmd.get_option_no_throw("--" + key);
  if (!opt)
    fail("--config '", path, "': unknown key '", key, "' (not a flag of eoc ", cmd.get_name(),
         "; keys are long flag names without dashes, e.g. \"cfg-scale\")");
  return opt;
}

std::string scalar_text(const json& v, const std::string& key, const std::string& path) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) return v.dump();  // integers as such, floats as the shortest round trip
  fail("--config '", path, "': key '", key, "' must be a string, number or boolean (got ",
       v.type_name(), ")");
}

void apply_value(CLI::Option* opt, const std::string& key, const json& v, const std::string& path) {
  if (opt->get_expected_min() == 0) {
    if (!v.is_boolean())
      fail("--config '", path, "': key '", key, "' is a flag: expected true or false");
    opt->add_result(opt->get_flag_value(key, v.get<bool>() ? "true" : "false"));
  } else if (v.is_array()) {
    for (const auto& item : v) opt->add_result(scalar_text(item, key, path));
  } else {
    opt->add_result(scalar_text(v, key, path));
  }
  try {
    opt->run_callback();
  } catch (const CLI::Error& e) {
    fail("--config '", path, "': key '", key, "': ", e.what());
  } catch (const Interrupted&) {
    throw;
  } catch (const Error& e) {  // a value the flag's parser refused
    fail("--config '", path, "': key '", key, "': ", e.what());
  }
}

// Checks every key of a section against its own subcommand, so typos never pass unnoticed.
void validate_section(CLI::App& app, const std::string& name, const json& section,
                      const std::string& path) {
  if (!section.is_object())
    fail("--config '", path, "': key '", name, "' must be an object of ", name, " flag values");
  CLI::App* cmd = app.get_subcommand(name);
  for (const auto& [key, value] : section.items()) find_option(*cmd, key, path);
}

// Top-level keys, then the subcommand's own section over them.
std::map<std::string, json> merged_values(CLI::App& app, CLI::App& cmd, const json& doc,
                                          const std::string& path) {
  std::map<std::string, json> values;
  for (const auto& [key, value] : doc.items()) {
    if (key == "description") continue;
    if (kSections.count(key)) {
      validate_section(app, key, value, path);
      continue;
    }
    find_option(cmd, key, path);
    values[key] = value;
  }
  if (doc.contains(cmd.get_name()))
    for (const auto& [key, value] : doc[cmd.get_name()].items()) values[key] = value;
  return values;
}

CLI::App* selected(CLI::App& app) {
  const auto subs = app.get_subcommands();
  return subs.empty() ? nullptr : subs.front();
}

}  // namespace

void add_config_flag(CLI::App* cmd) {
  cmd->add_option("--config", "JSON file of flag values (configs/*.json); flags given here win");
}

void add_dry_run_flag(CLI::App* cmd) {
  cmd->add_flag("--dry-run", "Print the resolved flag values as JSON and stop (loads no model)");
}

void apply_config_file(CLI::App& app) {
  applied_keys().clear();
  CLI::App* cmd = selected(app);
  CLI::Option* config = cmd ? cmd->get_option_no_throw("--config") : nullptr;
  if (!config || config->count() == 0) return;
  const std::string path = config->as<std::string>();
  const json doc = read_config(path);
  for (const auto& [key, value] : merged_values(app, *cmd, doc, path)) {
    CLI::Option* opt = find_option(*cmd, key, path);
    if (opt->count() > 0) continue;  // given on the command line: the flag wins
    apply_value(opt, key, value, path);
    applied_keys().insert(key);
  }
}

bool print_dry_run(CLI::App& app) {
  CLI::App* cmd = selected(app);
  CLI::Option* dry = cmd ? cmd->get_option_no_throw("--dry-run") : nullptr;
  if (!dry || dry->count() == 0) return false;
  json options = json::object();
  for (const CLI::Option* opt : cmd->get_options()) {
    if (opt->get_lnames().empty()) continue;
    const std::string name = opt->get_lnames().front();
    if (kNotConfigurable.count(name)) continue;
    const auto& results = opt->results();
    if (opt->get_expected_min() == 0)  // a flag: whether it is on (given bare, or true in the file)
      options[name] = !results.empty() && results.front() == opt->get_flag_value(name, "");
    else if (results.empty())
      options[name] = opt->get_default_str();
    else if (results.size() == 1)
      options[name] = results.front();
    else
      options[name] = results;
  }
  const CLI::Option* config = cmd->get_option_no_throw("--config");
  json doc = {{"subcommand", cmd->get_name()},
              {"config", config && config->count() ? json(config->as<std::string>()) : json()},
              {"from_config", applied_keys()},
              {"options", options}};
  std::cout << doc.dump(2) << "\n";
  return true;
}

}  // namespace eoc::cli
