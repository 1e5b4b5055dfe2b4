// Whole-file reads and atomic, durable writes. A reader (another shard, a resumed run, `eoc pack`)
// never sees a half-written file under its final name, and after a power loss or a kernel crash
// a file under its final name holds the complete bytes (or the previous version, or is absent).
#pragma once
#include <string>

namespace eoc {

// Whether write_file_atomic syncs the folder after its rename (now), or leaves it to the caller,
// who writes several files into one folder and then calls sync_parent_folder once (later).
enum class FolderSync { now, later };

// Writes `bytes` to `path` atomically and durably: a temp file next to it, fsync, rename, then
// fsync of the folder (so the rename itself survives a power loss). On failure the temp file is
// removed and an Error names the path. With FolderSync::later a crash before the caller's folder
// sync may lose the file's name, never show it half written.
void write_file_atomic(const std::string& path, const std::string& bytes,
                       FolderSync folder = FolderSync::now);

// fsync of a finished file (its data and size), so a rename that follows publishes complete
// bytes. On failure an Error says "cannot write 'target': ..." (`target`: the final name).
void sync_file(const std::string& path, const std::string& target);

// fsync of the folder holding `path`, so the entry a rename or create made there survives a
// power loss. A file system that cannot sync folders (EINVAL) or a folder that cannot be opened
// for reading (EACCES) is skipped, as PostgreSQL does; any other failure is an Error naming
// `path`.
void sync_parent_folder(const std::string& path);

// Reads a whole file, or throws an Error naming the path.
std::string read_file(const std::string& path);

// Fails early (before any sampling) when `path` cannot be created: its folder is missing or
// not writable. `flag` names the option in the message.
void check_writable_parent(const std::string& path, const char* flag);

}  // namespace eoc
