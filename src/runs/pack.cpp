// `eoc pack DIR -o samples.npz`: the per-image PNGs of one --out-dir folder as the npz the ADM
// evaluator reads: one member `arr_0.npy` of uint8 (N, H, W, 3), the PNGs decoded one at a time
// while the archive is written (io/npz.hpp), plus a JSON summary of the settings beside it.
#include <cstdint>
#include <cstdlib>
#include <filesystem>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/base/stop.hpp"
#include "eoc/base/stopwatch.hpp"
#include "eoc/files/run_record.hpp"
#include "eoc/io/npy.hpp"
#include "eoc/io/npz.hpp"
#include "eoc/io/png.hpp"
#include "eoc/io/sha256.hpp"
#include "eoc/runs/commands.hpp"
#include "eoc/runs/report.hpp"

namespace eoc {
namespace {

namespace fs = std::filesystem;

struct ImageShape {
  int64_t height = 0, width = 0;
};

// N: --num, else num_samples of the (agreeing) records.
int64_t pack_count(const PackOptions& o, const std::vector<RunRecord>& records) {
  if (o.num < 0) fail("--num ", o.num, " must be >= 1");
  if (records.empty()) {
    if (o.num == 0)
      fail("folder '", o.dir,
           "' holds no run records (eoc-run-*.json from eoc sample --out-dir); "
           "pass --num N to pack its first N images anyway");
    log::warn(
        str("folder '", o.dir, "' holds no run records: samples.json will carry no settings"));
    return o.num;
  }
  const int64_t recorded =
      records[0].doc["settings"]["num_samples"].get<int64_t>();  // checked on read
  if (o.num > recorded)
    fail("--num ", o.num, " exceeds the ", recorded, " images the run records of '", o.dir,
         "' ask for");
  return o.num > 0 ? o.num : recorded;
}

// Every index 0..n-1 present and complete; the shape of image 0. A file that is there but not
// a complete PNG (cut short by a crash or a full disk) is named as unreadable, not as missing.
ImageShape check_images(const std::string& dir, int64_t n) {
  int64_t missing = 0, first_missing = -1, unreadable = 0, first_unreadable = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 4096 == 0) check_stop();  // a huge count must stay interruptible
    const std::string path = image_path(dir, i);
    if (png_is_complete(path)) continue;
    std::error_code ec;
    if (fs::exists(path, ec)) {
      if (unreadable++ == 0) first_unreadable = i;
    } else if (missing++ == 0) {
      first_missing = i;
    }
  }
  if (unreadable > 0)
    fail("'", image_path(dir, first_unreadable),
         "' is unreadable: not a complete PNG (cut short "
         "by a crash or a full disk?)",
         unreadable > 1 ? str("; ", unreadable - 1, " more such in '", dir, "'") : "",
         "; rerun the same eoc sample command to remake it, or pass --num");
  if (missing > 0)
    fail("folder '", dir, "' lacks ", missing, " of the first ", n, " images (first: '",
         image_path(dir, first_missing),
         "'); finish the run (rerun the same eoc sample command) "
         "or pass --num");
  const auto first = read_png(image_path(dir, 0));
  if (first.size(2) != 3)
    fail("'", image_path(dir, 0), "' has ", first.size(2), " channel(s); the npz needs RGB images");
  return {first.size(0), first.size(1)};
}

// EOC_PACK_FORCE_ZIP64=1 gives the member ZIP64 headers whatever its size: a testing aid
// (docs/FID.md), so CI checks the headers of a real 10 GB FID-50K npz on a small one.
bool force_zip64_from_env() {
  const char* v = std::getenv("EOC_PACK_FORCE_ZIP64");
  if (!v || !*v || std::string(v) == "0") return false;
  if (std::string(v) != "1") fail("EOC_PACK_FORCE_ZIP64 is '", v, "' (expected 1 or 0)");
  log::info(
      "EOC_PACK_FORCE_ZIP64=1: the npz member gets ZIP64 headers whatever its size (a testing "
      "aid)");
  return true;
}

void write_images_npz(const std::string& out, const std::string& dir, int64_t n, ImageShape shape,
                      bool force_zip64) {
  log::Progress progress("packing", n, "images");
  const uint64_t bytes = static_cast<uint64_t>(shape.height) * shape.width * 3;
  write_npz_stream(
      out, "arr_0.npy", npy_header("|u1", {n, shape.height, shape.width, 3}), n, bytes,
      [&](int64_t i, std::string& record) {
        check_stop();
        const std::string path = image_path(dir, i);
        const auto img = read_png(path);
        if (img.size(0) != shape.height || img.size(1) != shape.width || img.size(2) != 3)
          fail("'", path, "' is ", img.size(1), "x", img.size(0), "x", img.size(2), ", expected ",
               shape.width, "x", shape.height, "x3 like image 0 (mixed folders cannot be packed)");
        record.assign(static_cast<const char*>(img.data_ptr()), bytes);
        progress.advance();
      },
      force_zip64);
  progress.finish();
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
      {"format", "eoc-samples"},
      {"version", 1},
      {"npz", fs::path(o.out).filename().string()},
      {"sha256", sha256},
      {"key", "arr_0"},
      {"dtype", "uint8"},
      {"shape", {n, shape.height, shape.width, 3}},
      {"count", n},
      {"metric_label", fid_label(n)},
      {"source_dir", fs::absolute(o.dir).lexically_normal().string()},
      {"records", names},
      {"settings", records.empty() ? nlohmann::json(nullptr) : records[0].doc["settings"]},
      {"eoc_version", EOC_VERSION},
      {"packed", utc_now()}};
  write_json(path, doc);
}

}  // namespace

void run_pack(const PackOptions& o) {
  Stopwatch total;
  if (o.dir.empty()) fail("eoc pack needs a folder: eoc pack DIR -o samples.npz");
  if (o.out.empty()) fail("-o/--out: give the npz file to write");
  const std::string summary = fs::path(o.out).replace_extension(".json").string();
  if (summary == o.out)
    fail("-o '", o.out, "': expected a .npz file name (the settings go to a .json beside it)");
  const bool force_zip64 = force_zip64_from_env();
  const auto records = read_run_records(o.dir);
  check_records_agree(records, o.dir);
  const int64_t n = pack_count(o, records);
  const ImageShape shape = check_images(o.dir, n);
  log::info(str("packing ", n, " images of ", shape.width, "x", shape.height, " from ", o.dir, " (",
                records.size(), " run record(s) agree) into ", o.out));
  write_images_npz(o.out, o.dir, n, shape, force_zip64);
  const std::string sha256 = sha256_file_hex(o.out);
  write_summary(summary, o, n, shape, records, sha256);
  log::info(str("wrote ", o.out, " (arr_0 uint8 ", n, "x", shape.height, "x", shape.width, "x3, ",
                fs::file_size(o.out), " bytes) and ", summary, " in ", total.seconds(), " s"));
}

}  // namespace eoc
