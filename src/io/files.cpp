#include "eoc/io/files.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eoc/base/error.hpp"

namespace eoc {

namespace {

// fsync, retried when a signal interrupts it; 0 or the errno.
int fsync_fd(int fd) {
  while (::fsync(fd) != 0)
    if (errno != EINTR) return errno;
  return 0;
}

// Opens a file or a folder read-only for fsync: stdio opens a folder like a file on Linux
// (O_RDONLY; "e": close-on-exec). Null with errno set on failure.
FILE* open_for_sync(const std::string& path) { return std::fopen(path.c_str(), "re"); }

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes, FolderSync folder) {
  // The temp name carries the pid so concurrent writers (shards) never share one.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot write '", path, "': ", std::strerror(errno));
  const size_t written = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  int err = 0;
  if (written != bytes.size() || std::fflush(f) != 0)
    err = errno != 0 ? errno : EIO;
  else
    err = fsync_fd(::fileno(f));  // the bytes reach the disk before the name does
  if (std::fclose(f) != 0 && err == 0) err = errno;
  if (err != 0) {
    std::remove(tmp.c_str());
    fail("cannot write '", path, "': ", std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_err = errno;
    std::remove(tmp.c_str());
    fail("cannot write '", path, "': ", std::strerror(rename_err));
  }
  if (folder == FolderSync::now) sync_parent_folder(path);  // and the rename survives a power loss
}

void sync_file(const std::string& path, const std::string& target) {
  FILE* f = open_for_sync(path);
  if (!f)
    fail("cannot write '", target, "': cannot open '", path,
         "' to sync it: ", std::strerror(errno));
  const int err = fsync_fd(::fileno(f));
  std::fclose(f);
  if (err != 0) fail("cannot write '", target, "': fsync: ", std::strerror(err));
}

void sync_parent_folder(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  // As PostgreSQL does: a folder that cannot be opened for reading (EACCES) or a file system
  // that cannot sync folders (EINVAL, EBADF) leaves nothing to do; other failures are errors.
  FILE* f = open_for_sync(dir);
  if (!f) {
    if (errno == EACCES) return;
    fail("cannot write '", path, "': cannot open its folder '", dir,
         "' to sync it: ", std::strerror(errno));
  }
  const int err = fsync_fd(::fileno(f));
  std::fclose(f);
  if (err != 0 && err != EINVAL && err != EBADF)
    fail("cannot write '", path, "': fsync of its folder '", dir, "': ", std::strerror(err));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read '", path, "': ", std::strerror(errno));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) fail("cannot read '", path, "'");
  return out.str();
}

// Probes the folder with a temporary file of its own, so an existing output is never touched.
void check_writable_parent(const std::string& path, const char* flag) {
  namespace fs = std::filesystem;
  const auto parent = fs::absolute(path).parent_path();
  std::error_code ec;
  if (!fs::is_directory(parent, ec))
    fail(flag, " '", path, "': folder '", parent.string(), "' does not exist");
  const std::string probe = (parent / (".eoc-write-test-" + std::to_string(::getpid()))).string();
  try {
    write_file_atomic(probe, "");
  } catch (const Error&) {
    fail(flag, " '", path, "': folder '", parent.string(), "' is not writable");
  }
  fs::remove(probe, ec);
}

}  // namespace eoc
