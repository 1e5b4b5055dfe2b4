// SHA-256 against the FIPS 180-2 examples and padding-boundary lengths.
#include <gtest/gtest.h>

#include <string>

#include "eoc/base/error.hpp"
#include "eoc/io/sha256.hpp"
#include "test_util.hpp"

namespace {

TEST(Sha256, StandardVectors) {
  EXPECT_EQ(eoc::sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(eoc::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(eoc::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(eoc::sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundaries) {
  // 55 bytes: length fits the first block; 56: needs a second; 64: exactly one block of data.
  EXPECT_EQ(eoc::sha256_hex(std::string(55, 'a')),
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(eoc::sha256_hex(std::string(56, 'a')),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(eoc::sha256_hex(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

std::string all_bytes_repeated() {
  std::string s;
  for (int rep = 0; rep < 300; ++rep)
    for (int b = 0; b < 256; ++b) s += static_cast<char>(b);
  return s;
}

TEST(Sha256, BinaryContentAndFile) {
  // 76,800 bytes: more than one 64 KiB read buffer, every byte value including NUL.
  const std::string data = all_bytes_repeated();
  const std::string expected = "f8b0585eb91f58c007a5634362c9f90d8543822c113f702523bc7b73408a9392";
  EXPECT_EQ(eoc::sha256_hex(data), expected);
  eoc_test::TempDir dir;
  const auto path = dir.file("blob.bin");
  eoc_test::write_text(path, data);
  EXPECT_EQ(eoc::sha256_file_hex(path), expected);
  const auto empty = dir.file("empty.bin");
  eoc_test::write_text(empty, "");
  EXPECT_EQ(eoc::sha256_file_hex(empty),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256, MissingFileIsAnError) {
  const auto msg = eoc_test::error_message([] { eoc::sha256_file_hex("/nonexistent/model.ts"); });
  EXPECT_NE(msg.find("/nonexistent/model.ts"), std::string::npos) << msg;
}

}  // namespace
