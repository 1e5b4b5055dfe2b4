// numpy .npz writing, streamed: a STORED (uncompressed) zip, written with libzip, holding one
// .npy member whose records are produced one at a time, so memory stays at one record whatever
// the array's size. Members over 4 GiB get ZIP64 headers. Only built with libzip
// (EOC_HAVE_LIBZIP).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace eoc {

// Fills `record` (record_bytes bytes) with record `index` of the array.
using NpzRecordFill = std::function<void(int64_t index, std::string& record)>;

// Writes `path` atomically and durably (temp file, fsync, rename, fsync of the folder; as
// io/files.hpp's write_file_atomic): one member `member` made of `npy_header` (io/npy.hpp's
// npy_header) and `count` records. An exception thrown by `fill` stops the write, removes the
// temp file and propagates unchanged. `force_zip64` gives the member ZIP64 headers whatever its
// size (normally only members of 4 GiB or more get them): it lets a test exercise the ZIP64
// path of multi-GB FID packs with a small archive.
void write_npz_stream(const std::string& path, const std::string& member,
                      const std::string& npy_header, int64_t count, uint64_t record_bytes,
                      const NpzRecordFill& fill, bool force_zip64 = false);

}  // namespace eoc
