// Whole-file reads and atomic writes. A reader (another shard, a resumed run, `eoc pack`) never
// sees a half-written file under its final name.
#pragma once
#include <string>

namespace eoc {

// Writes `bytes` to `path` atomically: a temp file next to it, then rename. On failure the temp
// file is removed and an Error names the path.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Reads a whole file, or throws an Error naming the path.
std::string read_file(const std::string& path);

// Fails early (before any sampling) when `path` cannot be created: its folder is missing or
// not writable. `flag` names the option in the message.
void check_writable_parent(const std::string& path, const char* flag);

}  // namespace eoc
