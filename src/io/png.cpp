#include "eoc/io/png.hpp"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb_image_write.h>
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#include <stb_image.h>

#include <cstdio>
#include <cstring>

#include "eoc/base/error.hpp"
#include "eoc/io/files.hpp"

namespace eoc {
namespace {

constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
// An empty IEND chunk: length 0, type "IEND", CRC-32 of "IEND".
constexpr unsigned char kPngEnd[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};

}  // namespace

at::Tensor to_uint8_hwc(const at::Tensor& images) {
  // DiT: clamp(127.5 x + 128, 0, 255) then truncation to uint8.
  auto pixels = (images.to(at::kFloat) * 127.5 + 128.0).clamp(0.0, 255.0).to(at::kByte);
  return pixels.permute({0, 2, 3, 1}).contiguous().cpu();
}

std::string encode_png(const at::Tensor& hwc) {
  const auto img = hwc.contiguous();
  const int h = static_cast<int>(img.size(0)), w = static_cast<int>(img.size(1));
  const int c = static_cast<int>(img.size(2));
  std::string bytes;
  auto sink = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), size);
  };
  if (!stbi_write_png_to_func(sink, &bytes, w, h, c, img.data_ptr<uint8_t>(), w * c))
    fail("PNG encoding of a ", w, "x", h, "x", c, " image failed");
  return bytes;
}

void write_png(const std::string& path, const at::Tensor& hwc, bool rgb, FolderSync folder) {
  const auto img = (rgb && hwc.size(2) == 1) ? hwc.expand({-1, -1, 3}).contiguous() : hwc;
  write_file_atomic(path, encode_png(img), folder);
}

at::Tensor make_grid(const at::Tensor& nhwc, int64_t nrow) {
  const int64_t n = nhwc.size(0), h = nhwc.size(1), w = nhwc.size(2), c = nhwc.size(3);
  const int64_t pad = 2;
  EOC_ASSERT(n >= 1 && nrow >= 1, "a grid of ", n, " images in rows of ", nrow);
  const int64_t cols = std::min(nrow, n), rows = (n + cols - 1) / cols;
  auto grid = at::zeros({rows * (h + pad) + pad, cols * (w + pad) + pad, c}, at::kByte);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, col = i % cols;
    grid.narrow(0, pad + r * (h + pad), h).narrow(1, pad + col * (w + pad), w).copy_(nhwc[i]);
  }
  return grid;
}

at::Tensor read_png(const std::string& path) {
  const std::string bytes = read_file(path);
  int w = 0, h = 0, c = 0;
  unsigned char* data = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()),
                                              static_cast<int>(bytes.size()), &w, &h, &c, 0);
  if (!data) fail("'", path, "' is not a readable PNG (", stbi_failure_reason(), ")");
  auto out = at::from_blob(data, {h, w, c}, at::kByte).clone();
  stbi_image_free(data);
  return out;
}

bool png_is_complete(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char head[8], tail[12];
  bool ok = std::fread(head, 1, 8, f) == 8 && std::memcmp(head, kPngSignature, 8) == 0 &&
            std::fseek(f, -12, SEEK_END) == 0 && std::ftell(f) >= 8 + 25 &&
            std::fread(tail, 1, 12, f) == 12 && std::memcmp(tail, kPngEnd, 12) == 0;
  std::fclose(f);
  return ok;
}

}  // namespace eoc
