#include "eoc/runs/image_sinks.hpp"

#include <filesystem>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/files/run_record.hpp"
#include "eoc/io/files.hpp"
#include "eoc/io/npy.hpp"
#include "eoc/io/png.hpp"

namespace eoc {
namespace {

constexpr int64_t kGridMaxImages = 1024;

void prepare_out_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec)) fail("--out-dir '", dir, "' cannot be created");
  check_writable_parent((fs::path(dir) / "x").string(), "--out-dir");
}

}  // namespace

ImageSinks ImageSinks::open(OutputOptions out) {
  if (out.grid.empty() && out.dir.empty() && out.raw.empty()) out.grid = "samples.png";
  if (out.nrow < 1) fail("--nrow ", out.nrow, " must be >= 1");
  for (auto [path, flag] : {std::pair{out.grid, "--out"}, std::pair{out.raw, "--out-raw"},
                            std::pair{out.report, "--report"}})
    if (!path.empty()) check_writable_parent(path, flag);
  if (!out.dir.empty()) prepare_out_dir(out.dir);
  return ImageSinks(std::move(out));
}

void ImageSinks::add_batch(const std::vector<int64_t>& batch, const at::Tensor& images) {
  if (!out_.raw.empty()) raw_.push_back(images.to(at::kFloat).cpu());
  const auto pixels = to_uint8_hwc(images);
  if (!out_.grid.empty())
    for (size_t i = 0; i < batch.size() && batch[i] < kGridMaxImages; ++i)
      grid_.push_back(pixels[i]);
  if (!out_.dir.empty() && !batch.empty()) {
    // Each PNG is synced before its rename; the folder once per batch, not once per image.
    for (size_t i = 0; i < batch.size(); ++i) {
      write_png(image_path(out_.dir, batch[i]), pixels[i], /*rgb=*/true, FolderSync::later);
      ++written_;
    }
    sync_parent_folder(image_path(out_.dir, batch[0]));
  }
}

void ImageSinks::finish(int64_t num_samples) {
  if (!out_.grid.empty()) {
    if (num_samples > kGridMaxImages)
      log::warn(str("--out grid shows the first ", kGridMaxImages, " of ", num_samples, " images"));
    write_png(out_.grid, make_grid(at::stack(grid_), out_.nrow));
    log::info("wrote grid " + out_.grid);
  }
  if (!out_.raw.empty()) {
    write_npy(out_.raw, at::cat(raw_));
    log::info("wrote raw samples " + out_.raw);
  }
  if (!out_.dir.empty()) log::info(str("wrote ", written_, " images to ", out_.dir));
}

nlohmann::json ImageSinks::summary() const {
  return {{"grid", out_.grid}, {"dir", out_.dir}, {"raw", out_.raw}, {"images_written", written_}};
}

}  // namespace eoc
