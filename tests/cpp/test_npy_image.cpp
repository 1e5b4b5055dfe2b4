// .npy files, pixel conversion, grids, PNG round trips and atomic writes.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "eoc/base/error.hpp"
#include "eoc/io/files.hpp"
#include "eoc/io/npy.hpp"
#include "eoc/io/png.hpp"
#include "test_util.hpp"

namespace {

using eoc_test::TempDir;

std::vector<std::string> folder_entries(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  return names;
}

TEST(Npy, Float32RoundTrip) {
  TempDir dir;
  const auto t = at::linspace(-3.0, 5.0, 24, at::kFloat).reshape({2, 3, 4});
  const auto path = dir.file("a.npy");
  eoc::write_npy(path, t);
  const auto back = eoc::read_npy(path);
  EXPECT_EQ(back.scalar_type(), at::kFloat);
  EXPECT_EQ(back.sizes(), t.sizes());
  EXPECT_TRUE(at::equal(back, t));
}

TEST(Npy, Uint8RoundTripAndNonContiguousInput) {
  TempDir dir;
  const auto t = at::arange(0, 250, 10, at::kByte).reshape({5, 5}).t();  // transposed view
  const auto path = dir.file("u.npy");
  eoc::write_npy(path, t);
  const auto back = eoc::read_npy(path);
  EXPECT_EQ(back.scalar_type(), at::kByte);
  EXPECT_EQ(back.sizes(), (at::IntArrayRef{5, 5}));
  EXPECT_TRUE(at::equal(back, t.contiguous()));
}

TEST(Npy, HeaderFormat) {
  const auto bytes = eoc::npy_bytes(at::zeros({5}, at::kByte));
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  // The data starts 64-byte aligned and the header ends with a newline.
  EXPECT_EQ((10 + header_len) % 64, 0u);
  EXPECT_EQ(bytes.size(), 10 + header_len + 5);
  const auto header = bytes.substr(10, header_len);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_NE(header.find("'descr': '|u1'"), std::string::npos) << header;
  EXPECT_NE(header.find("'shape': (5,)"), std::string::npos) << header;  // numpy's 1-tuple
  const auto f = eoc::npy_bytes(at::zeros({2, 3, 4}, at::kFloat));
  EXPECT_NE(f.find("'descr': '<f4'"), std::string::npos);
  EXPECT_NE(f.find("'shape': (2, 3, 4)"), std::string::npos);
  EXPECT_NE(f.find("'fortran_order': False"), std::string::npos);
}

TEST(Npy, RejectsBadFiles) {
  TempDir dir;
  const auto path = dir.file("x.npy");
  eoc_test::write_text(path, "not numpy at all");
  EXPECT_THROW(eoc::read_npy(path), eoc::Error);
  // Truncated data.
  const auto good = eoc::npy_bytes(at::ones({4, 4}, at::kFloat));
  eoc_test::write_text(path, good.substr(0, good.size() - 3));
  EXPECT_THROW(eoc::read_npy(path), eoc::Error);
  EXPECT_THROW(eoc::read_npy(dir.file("missing.npy")), eoc::Error);
  EXPECT_THROW(eoc::npy_bytes(at::zeros({2}, at::kDouble)), eoc::InternalError);
}

TEST(Pixels, DitConversion) {
  // clamp(127.5 x + 128, 0, 255) then truncation.
  const std::vector<float> xs = {-1.0f,
                                 1.0f,
                                 0.0f,
                                 -2.0f,
                                 3.0f,
                                 0.5f,
                                 -0.5f,
                                 0.25f,
                                 0.998f,
                                 72.9f / 127.5f,
                                 -127.1f / 127.5f,
                                 -126.1f / 127.5f};
  const std::vector<int> expected = {0,    // 0.5 -> 0
                                     255,  // 255.5 -> clamped 255
                                     128,  // 128
                                     0,    // clamped
                                     255,  // clamped
                                     191,  // 191.75 -> 191
                                     64,   // 64.25 -> 64
                                     159,  // 159.875 -> 159
                                     255,  // 255.245 -> 255
                                     200,  // 200.9 -> 200 (truncated, not rounded)
                                     0,    // 0.9 -> 0
                                     1};   // 1.9 -> 1
  const int64_t n = static_cast<int64_t>(xs.size());
  const auto img = at::tensor(xs, at::kFloat).reshape({1, 1, 1, n});
  const auto px = eoc::to_uint8_hwc(img);
  ASSERT_EQ(px.sizes(), (at::IntArrayRef{1, 1, n, 1}));
  EXPECT_EQ(px.scalar_type(), at::kByte);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_EQ(px[0][0][i][0].item<int>(), expected[i]) << "x = " << xs[i];
}

TEST(Pixels, LayoutIsNhwc) {
  // Channel c of pixel (h, w) in image n holds a distinct value; check it lands at [n][h][w][c].
  const auto x = at::zeros({2, 3, 2, 4}, at::kFloat);
  auto acc = x.accessor<float, 4>();
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 2; ++h)
        for (int w = 0; w < 4; ++w) acc[n][c][h][w] = (n * 40 + c * 10 + h * 4 + w + 0.5f) / 127.5f;
  const auto px = eoc::to_uint8_hwc(x);
  ASSERT_EQ(px.sizes(), (at::IntArrayRef{2, 2, 4, 3}));
  EXPECT_TRUE(px.is_contiguous());
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 2; ++h)
        for (int w = 0; w < 4; ++w)
          EXPECT_EQ(px[n][h][w][c].item<int>(), 128 + n * 40 + c * 10 + h * 4 + w);
}

TEST(Grid, TwoPixelBorderAndRows) {
  // Three 2x2 grey images in rows of 2: a 2 x 2 grid of 4x4 cells plus the outer border.
  auto imgs = at::zeros({3, 2, 2, 1}, at::kByte);
  imgs[0].fill_(10);
  imgs[1].fill_(20);
  imgs[2].fill_(30);
  const auto g = eoc::make_grid(imgs, 2);
  ASSERT_EQ(g.sizes(), (at::IntArrayRef{10, 10, 1}));
  auto expected = at::zeros({10, 10, 1}, at::kByte);
  expected.narrow(0, 2, 2).narrow(1, 2, 2).fill_(10);
  expected.narrow(0, 2, 2).narrow(1, 6, 2).fill_(20);
  expected.narrow(0, 6, 2).narrow(1, 2, 2).fill_(30);
  EXPECT_TRUE(at::equal(g, expected));
}

TEST(Grid, NrowLargerThanCount) {
  auto imgs = at::full({3, 4, 5, 3}, 200, at::kByte);
  const auto g = eoc::make_grid(imgs, 8);
  // One row of three: height 4 + 2 * 2, width 3 * (5 + 2) + 2.
  ASSERT_EQ(g.sizes(), (at::IntArrayRef{8, 23, 3}));
  EXPECT_EQ(g.sum().item<int64_t>(), 3 * 4 * 5 * 3 * 200);
  EXPECT_EQ(g[0][0][0].item<int>(), 0);
  EXPECT_EQ(g[2][2][0].item<int>(), 200);
  EXPECT_EQ(g[2][7][1].item<int>(), 0);  // border between images 0 and 1
  EXPECT_EQ(g[2][9][2].item<int>(), 200);
}

TEST(Png, EncodeAndReadBack) {
  TempDir dir;
  const auto rgb =
      at::arange(0, 4 * 6 * 3, at::kInt).remainder(256).to(at::kByte).reshape({4, 6, 3});
  const auto bytes = eoc::encode_png(rgb);
  ASSERT_GE(bytes.size(), 8u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const auto path = dir.file("rgb.png");
  eoc::write_file_atomic(path, bytes);
  const auto back = eoc::read_png(path);
  EXPECT_EQ(back.sizes(), rgb.sizes());
  EXPECT_TRUE(at::equal(back, rgb));

  const auto grey = at::randint(0, 256, {5, 3, 1}, at::kByte);
  const auto gpath = dir.file("grey.png");
  eoc::write_png(gpath, grey);
  EXPECT_TRUE(at::equal(eoc::read_png(gpath), grey));
  // rgb = true replicates grey into three equal channels.
  const auto cpath = dir.file("grey_rgb.png");
  eoc::write_png(cpath, grey, /*rgb=*/true);
  const auto c = eoc::read_png(cpath);
  ASSERT_EQ(c.sizes(), (at::IntArrayRef{5, 3, 3}));
  for (int64_t ch = 0; ch < 3; ++ch) EXPECT_TRUE(at::equal(c.narrow(2, ch, 1), grey));
}

TEST(Png, UnreadableFileNamesIt) {
  TempDir dir;
  const auto path = dir.file("broken.png");
  eoc_test::write_text(path, "\x89PNG but not really");
  const auto msg = eoc_test::error_message([&] { eoc::read_png(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(AtomicWrite, LeavesOnlyTheTarget) {
  TempDir dir;
  const auto path = dir.file("out.txt");
  eoc::write_file_atomic(path, "first");
  eoc::write_file_atomic(path, "second, longer");  // replaces
  EXPECT_EQ(eoc::read_file(path), "second, longer");
  eoc::write_file_atomic(dir.file("empty.txt"), "");
  EXPECT_EQ(eoc::read_file(dir.file("empty.txt")), "");
  auto names = folder_entries(dir.path());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"empty.txt", "out.txt"}));
}

TEST(AtomicWrite, MissingFolderIsAnError) {
  TempDir dir;
  const auto path = dir.file("no/such/folder/out.txt");
  const auto msg = eoc_test::error_message([&] { eoc::write_file_atomic(path, "x"); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_TRUE(folder_entries(dir.path()).empty());
  EXPECT_THROW(eoc::read_file(dir.file("missing.txt")), eoc::Error);
}

// Atomic writes fsync the file before the rename and the folder after it; a failing fsync is a
// write error naming the final path.
TEST(AtomicWrite, SyncHelpers) {
  TempDir dir;
  const auto path = dir.file("out.txt");
  eoc::write_file_atomic(path, "x");
  eoc::sync_file(path, path);
  eoc::sync_parent_folder(path);
  eoc::sync_parent_folder("relative-name-in-the-working-folder.txt");  // folder "."
  // procfs cannot fsync a file (EINVAL): an error naming the target, not the synced path.
  auto msg = eoc_test::error_message([&] { eoc::sync_file("/proc/self/status", path); });
  EXPECT_NE(msg.find("cannot write '" + path + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fsync"), std::string::npos) << msg;
  // ... nor a folder, which is skipped as a file system that cannot sync folders.
  eoc::sync_parent_folder("/proc/self/status");
  msg = eoc_test::error_message([&] { eoc::sync_file(dir.file("missing.txt"), path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  const auto lost = dir.file("no/such/folder/out.txt");
  msg = eoc_test::error_message([&] { eoc::sync_parent_folder(lost); });
  EXPECT_NE(msg.find(lost), std::string::npos) << msg;
}

TEST(Npy, HeaderIsAlignedVersion1) {
  const std::string h = eoc::npy_header("|u1", {50000, 256, 256, 3});
  EXPECT_EQ(h.size() % 64, 0u);
  EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(h.find("'shape': (50000, 256, 256, 3)"), std::string::npos);
  EXPECT_EQ(h.back(), '\n');
  EXPECT_NE(eoc::npy_header("<f4", {7}).find("(7,)"), std::string::npos);
}

TEST(Png, CompleteOnlyWithSignatureAndEnd) {
  eoc_test::TempDir dir;
  const std::string path = dir.file("x.png");
  EXPECT_FALSE(eoc::png_is_complete(path));
  eoc::write_png(path, at::zeros({4, 5, 3}, at::kByte));
  EXPECT_TRUE(eoc::png_is_complete(path));
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 1);
  EXPECT_FALSE(eoc::png_is_complete(path));
  eoc::write_file_atomic(path, "not a png at all, but long enough to be checked at both ends");
  EXPECT_FALSE(eoc::png_is_complete(path));
}

}  // namespace
