// `eoc pack DIR -o samples.npz`: the per-image PNGs of one --out-dir folder as the npz the ADM
// evaluator reads: a STORED (uncompressed) zip, written with libzip, holding one member
// `arr_0.npy` of uint8 (N, H, W, 3). The PNGs are decoded one at a time while libzip writes, so
// memory stays at one image whatever N is; files over 4 GiB get ZIP64 headers.
#include <unistd.h>
#include <zip.h>

#include <cstdint>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "eoc/error.hpp"
#include "eoc/image_io.hpp"
#include "eoc/log.hpp"
#include "eoc/npy.hpp"
#include "eoc/pipeline.hpp"
#include "eoc/sha256.hpp"
#include "run_common.hpp"
#include "sample_dir.hpp"

namespace eoc {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMember = "arr_0.npy";
constexpr std::time_t kMemberTime = 1577836800;  // 2020-01-01: fixed, so packs are reproducible

struct ImageShape {
  int64_t height = 0, width = 0;
};

// Feeds libzip the .npy header and then each image's HWC bytes, one decoded PNG at a time.
class NpyImageStream {
 public:
  NpyImageStream(std::string dir, int64_t count, ImageShape shape, log::Progress& progress)
      : dir_(std::move(dir)), count_(count), shape_(shape), progress_(progress),
        header_(npy_header("|u1", {count, shape.height, shape.width, 3})) {
    zip_error_init(&error_);
  }
  ~NpyImageStream() { zip_error_fini(&error_); }

  uint64_t total_bytes() const {
    return header_.size() + static_cast<uint64_t>(count_) * image_bytes();
  }
  // The exception that stopped the stream (decode error, interruption), or null.
  std::exception_ptr failure() const { return failure_; }

  static zip_int64_t callback(void* self, void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
    auto* stream = static_cast<NpyImageStream*>(self);
    try {
      return stream->handle(data, len, cmd);
    } catch (...) {  // nothing may unwind through libzip's C frames
      stream->failure_ = std::current_exception();
      zip_error_set(&stream->error_, ZIP_ER_INTERNAL, 0);
      return -1;
    }
  }

 private:
  uint64_t image_bytes() const { return static_cast<uint64_t>(shape_.height) * shape_.width * 3; }

  zip_int64_t handle(void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
    switch (cmd) {
      case ZIP_SOURCE_OPEN:
        buffer_ = header_;
        pos_ = 0;
        next_ = 0;
        return 0;
      case ZIP_SOURCE_READ:
        return read(static_cast<char*>(data), len);
      case ZIP_SOURCE_CLOSE:
      case ZIP_SOURCE_FREE:
        return 0;
      case ZIP_SOURCE_STAT:
        return stat(data, len);
      case ZIP_SOURCE_ERROR:
        return zip_error_to_data(&error_, data, len);
      case ZIP_SOURCE_SUPPORTS:
        return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
                                              ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE,
                                              ZIP_SOURCE_SUPPORTS, -1);
      default:
        zip_error_set(&error_, ZIP_ER_OPNOTSUPP, 0);
        return -1;
    }
  }

  zip_int64_t stat(void* data, zip_uint64_t len) {
    auto* st = ZIP_SOURCE_GET_ARGS(zip_stat_t, data, len, &error_);
    if (!st) return -1;
    zip_stat_init(st);
    st->mtime = kMemberTime;
    st->valid |= ZIP_STAT_MTIME;
    // libzip 1.7 has no public "force ZIP64" flag: a source that does not state its size gets
    // ZIP64 local and central headers from the start, which is what a member over 4 GiB needs.
    if (total_bytes() < 0xFFFFFFFFull) {
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

  // Decodes the next PNG into the buffer; false after the last one.
  bool load_next() {
    if (next_ >= count_) return false;
    check_stop();
    const std::string path = image_path(dir_, next_);
    const auto img = read_png(path);
    if (img.size(0) != shape_.height || img.size(1) != shape_.width || img.size(2) != 3)
      fail("'", path, "' is ", img.size(1), "x", img.size(0), "x", img.size(2), ", expected ",
           shape_.width, "x", shape_.height, "x3 like image 0 (mixed folders cannot be packed)");
    buffer_.assign(static_cast<const char*>(img.data_ptr()), image_bytes());
    pos_ = 0;
    ++next_;
    progress_.advance();
    return true;
  }

  std::string dir_;
  int64_t count_;
  ImageShape shape_;
  log::Progress& progress_;
  std::string header_;
  std::string buffer_;
  size_t pos_ = 0;
  int64_t next_ = 0;
  zip_error_t error_;
  std::exception_ptr failure_;
};

// N: --num, else num_samples of the (agreeing) records.
int64_t pack_count(const PackOptions& o, const std::vector<RunRecord>& records) {
  if (o.num < 0) fail("--num ", o.num, " must be >= 1");
  if (records.empty()) {
    if (o.num == 0)
      fail("folder '", o.dir, "' holds no run records (eoc-run-*.json from eoc sample --out-dir); "
           "pass --num N to pack its first N images anyway");
    log::warn(str("folder '", o.dir, "' holds no run records: samples.json will carry no settings"));
    return o.num;
  }
  const int64_t recorded = records[0].doc["settings"]["num_samples"].get<int64_t>();  // checked on read
  if (o.num > recorded)
    fail("--num ", o.num, " exceeds the ", recorded, " images the run records of '", o.dir,
         "' ask for");
  return o.num > 0 ? o.num : recorded;
}

// Every index 0..n-1 present and complete; the shape of image 0.
ImageShape check_images(const std::string& dir, int64_t n) {
  int64_t missing = 0, first_missing = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 4096 == 0) check_stop();  // a huge count must stay interruptible
    if (!png_is_complete(image_path(dir, i)) && missing++ == 0) first_missing = i;
  }
  if (missing > 0)
    fail("folder '", dir, "' lacks ", missing, " of the first ", n, " images (first: '",
         image_path(dir, first_missing), "'); finish the run (rerun the same eoc sample command) "
         "or pass --num");
  const auto first = read_png(image_path(dir, 0));
  if (first.size(2) != 3)
    fail("'", image_path(dir, 0), "' has ", first.size(2), " channel(s); the npz needs RGB images");
  return {first.size(0), first.size(1)};
}

[[noreturn]] void fail_zip(zip_t* za, const std::string& tmp, const std::string& out,
                           const NpyImageStream& stream) {
  const std::string why = za ? zip_strerror(za) : "cannot create the archive";
  if (za) zip_discard(za);
  std::error_code ec;
  fs::remove(tmp, ec);
  if (stream.failure()) std::rethrow_exception(stream.failure());
  fail("cannot write '", out, "': ", why);
}

void write_npz(const std::string& out, const std::string& dir, int64_t n, ImageShape shape) {
  const std::string tmp = out + ".tmp." + std::to_string(::getpid());
  log::Progress progress("packing", n);
  NpyImageStream stream(dir, n, shape, progress);
  int err = 0;
  zip_t* za = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (!za) fail_zip(nullptr, tmp, out, stream);
  zip_source_t* src = zip_source_function(za, &NpyImageStream::callback, &stream);
  if (!src) fail_zip(za, tmp, out, stream);
  const zip_int64_t index = zip_file_add(za, kMember, src, ZIP_FL_ENC_UTF_8);
  if (index < 0) {
    zip_source_free(src);
    fail_zip(za, tmp, out, stream);
  }
  if (zip_set_file_compression(za, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0) != 0)
    fail_zip(za, tmp, out, stream);
  if (zip_close(za) != 0) fail_zip(za, tmp, out, stream);
  progress.finish();
  if (std::rename(tmp.c_str(), out.c_str()) != 0) {
    std::error_code ec;
    fs::remove(tmp, ec);
    fail("cannot write '", out, "': rename from '", tmp, "' failed");
  }
}

// "FID-50K" for 50,000 images; fewer samples bias FID upward, so the count is in the name.
std::string fid_label(int64_t n) {
  return n % 1000 == 0 ? str("FID-", n / 1000, "K") : str("FID-", n);
}

void write_summary(const std::string& path, const PackOptions& o, int64_t n, ImageShape shape,
                   const std::vector<RunRecord>& records, const std::string& sha256) {
  nlohmann::json names = nlohmann::json::array();
  for (const auto& r : records) names.push_back(fs::path(r.path).filename().string());
  const nlohmann::json doc = {
      {"format", "eoc-samples"}, {"version", 1},
      {"npz", fs::path(o.out).filename().string()}, {"sha256", sha256},
      {"key", "arr_0"}, {"dtype", "uint8"}, {"shape", {n, shape.height, shape.width, 3}},
      {"count", n}, {"metric_label", fid_label(n)},
      {"source_dir", fs::absolute(o.dir).lexically_normal().string()}, {"records", names},
      {"settings", records.empty() ? nlohmann::json(nullptr) : records[0].doc["settings"]},
      {"eoc_version", EOC_VERSION}, {"packed", utc_now()}};
  write_json(path, doc);
}

}  // namespace

void run_pack(const PackOptions& o) {
  Stopwatch total;
  if (o.dir.empty()) fail("eoc pack needs a folder: eoc pack DIR -o samples.npz");
  if (o.out.empty()) fail("-o/--out: give the npz file to write");
  const std::string summary = fs::path(o.out).replace_extension(".json").string();
  if (summary == o.out) fail("-o '", o.out, "': expected a .npz file name (the settings go to a .json beside it)");
  const auto records = read_run_records(o.dir);
  check_records_agree(records, o.dir);
  const int64_t n = pack_count(o, records);
  const ImageShape shape = check_images(o.dir, n);
  log::info(str("packing ", n, " images of ", shape.width, "x", shape.height, " from ", o.dir,
                " (", records.size(), " run record(s) agree) into ", o.out));
  write_npz(o.out, o.dir, n, shape);
  const std::string sha256 = sha256_file_hex(o.out);
  write_summary(summary, o, n, shape, records, sha256);
  log::info(str("wrote ", o.out, " (arr_0 uint8 ", n, "x", shape.height, "x", shape.width, "x3, ",
                fs::file_size(o.out), " bytes) and ", summary, " in ", total.seconds(), " s"));
}

}  // namespace eoc
