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

void write_file_atomic(const std::string& path, const std::string& bytes) {
  // The temp name carries the pid so concurrent writers (shards) never share one.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("cannot write '", path, "': ", std::strerror(errno));
  const size_t written = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool ok = written == bytes.size() && std::fflush(f) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    fail("cannot write '", path, "': ", std::strerror(ok ? errno : err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_err = errno;
    std::remove(tmp.c_str());
    fail("cannot write '", path, "': ", std::strerror(rename_err));
  }
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
