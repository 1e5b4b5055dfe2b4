// Binds each subcommand's flags to its typed option struct (runs/options.hpp), each value parsed
// as it is set (cli/flag_values.hpp). Nothing here computes anything.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>

namespace eoc::cli {

// Registers every subcommand on `app`; returns the action of the one that was selected.
std::function<void()> register_commands(CLI::App& app);

}  // namespace eoc::cli
