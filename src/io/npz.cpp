#include "eoc/io/npz.hpp"

#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>

#include "eoc/base/error.hpp"
#include "eoc/io/files.hpp"

namespace eoc {
namespace {

constexpr std::time_t kMemberTime = 1577836800;  // 2020-01-01: fixed, so archives are reproducible

// Feeds libzip the .npy header and then each record, filled on demand.
class RecordStream {
 public:
  RecordStream(std::string header, int64_t count, uint64_t record_bytes, const NpzRecordFill& fill,
               bool force_zip64)
      : header_(std::move(header)),
        count_(count),
        record_bytes_(record_bytes),
        fill_(fill),
        force_zip64_(force_zip64) {
    zip_error_init(&error_);
  }
  ~RecordStream() { zip_error_fini(&error_); }

  uint64_t total_bytes() const {
    return header_.size() + static_cast<uint64_t>(count_) * record_bytes_;
  }
  // The exception that stopped the stream, or null.
  std::exception_ptr failure() const { return failure_; }

  static zip_int64_t callback(void* self, void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
    auto* stream = static_cast<RecordStream*>(self);
    try {
      return stream->handle(data, len, cmd);
    } catch (...) {  // nothing may unwind through libzip's C frames
      stream->failure_ = std::current_exception();
      zip_error_set(&stream->error_, ZIP_ER_INTERNAL, 0);
      return -1;
    }
  }

 private:
  zip_int64_t handle(void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
    switch (cmd) {
      case ZIP_SOURCE_OPEN:
        buffer_ = header_;
        pos_ = 0;
        next_ = 0;
        return 0;
      case ZIP_SOURCE_READ: return read(static_cast<char*>(data), len);
      case ZIP_SOURCE_CLOSE:
      case ZIP_SOURCE_FREE: return 0;
      case ZIP_SOURCE_STAT: return stat(data, len);
      case ZIP_SOURCE_ERROR: return zip_error_to_data(&error_, data, len);
      case ZIP_SOURCE_SUPPORTS:
        return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
                                              ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE,
                                              ZIP_SOURCE_SUPPORTS, -1);
      default: zip_error_set(&error_, ZIP_ER_OPNOTSUPP, 0); return -1;
    }
  }

  zip_int64_t stat(void* data, zip_uint64_t len) {
    auto* st = ZIP_SOURCE_GET_ARGS(zip_stat_t, data, len, &error_);
    if (!st) return -1;
    zip_stat_init(st);
    st->mtime = kMemberTime;
    st->valid |= ZIP_STAT_MTIME;
    // libzip 1.7 has no public "force ZIP64" flag: a source that does not state its size gets
    // a ZIP64 local header from the start (64-bit sizes, rewritten after the data), which is
    // what a member over 4 GiB needs, and what force_zip64 asks for at any size. libzip adds the
    // central directory's ZIP64 field itself, for values over 4 GiB.
    if (!force_zip64_ && total_bytes() < 0xFFFFFFFFull) {
      st->size = total_bytes();
      st->valid |= ZIP_STAT_SIZE;
    }
    return sizeof(zip_stat_t);
  }

  zip_int64_t read(char* out, zip_uint64_t len) {
    zip_uint64_t done = 0;
    while (done < len) {
      if (pos_ == buffer_.size() && !load_next()) break;
      const size_t n = std::min<size_t>(buffer_.size() - pos_, len - done);
      std::memcpy(out + done, buffer_.data() + pos_, n);
      pos_ += n;
      done += n;
    }
    return static_cast<zip_int64_t>(done);
  }

  // Fills the buffer with the next record; false after the last one.
  bool load_next() {
    if (next_ >= count_) return false;
    buffer_.clear();
    fill_(next_, buffer_);
    EOC_ASSERT(buffer_.size() == record_bytes_, "npz record ", next_, " has ", buffer_.size(),
               " bytes, expected ", record_bytes_);
    pos_ = 0;
    ++next_;
    return true;
  }

  std::string header_;
  int64_t count_;
  uint64_t record_bytes_;
  const NpzRecordFill& fill_;
  bool force_zip64_;
  std::string buffer_;
  size_t pos_ = 0;
  int64_t next_ = 0;
  zip_error_t error_;
  std::exception_ptr failure_;
};

[[noreturn]] void fail_zip(zip_t* za, const std::string& tmp, const std::string& path,
                           const RecordStream& stream) {
  const std::string why = za ? zip_strerror(za) : "cannot create the archive";
  if (za) zip_discard(za);
  std::error_code ec;
  std::filesystem::remove(tmp, ec);
  if (stream.failure()) std::rethrow_exception(stream.failure());
  fail("cannot write '", path, "': ", why);
}

}  // namespace

void write_npz_stream(const std::string& path, const std::string& member,
                      const std::string& npy_header, int64_t count, uint64_t record_bytes,
                      const NpzRecordFill& fill, bool force_zip64) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  RecordStream stream(npy_header, count, record_bytes, fill, force_zip64);
  int err = 0;
  zip_t* za = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (!za) fail_zip(nullptr, tmp, path, stream);
  zip_source_t* src = zip_source_function(za, &RecordStream::callback, &stream);
  if (!src) fail_zip(za, tmp, path, stream);
  const zip_int64_t index = zip_file_add(za, member.c_str(), src, ZIP_FL_ENC_UTF_8);
  if (index < 0) {
    zip_source_free(src);
    fail_zip(za, tmp, path, stream);
  }
  if (zip_set_file_compression(za, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0) != 0)
    fail_zip(za, tmp, path, stream);
  if (zip_close(za) != 0) fail_zip(za, tmp, path, stream);
  // libzip has closed the temp file: sync it by name before it takes the final name, then sync
  // the folder so the rename survives a power loss (io/files.hpp).
  try {
    sync_file(tmp, path);
  } catch (const Error&) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    fail("cannot write '", path, "': rename from '", tmp, "' failed: ", std::strerror(err));
  }
  sync_parent_folder(path);
}

}  // namespace eoc
