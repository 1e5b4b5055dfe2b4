// Sharding (flag and launcher variables), the per-image folder helpers and the .npy header.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "eoc/base/error.hpp"
#include "eoc/io/files.hpp"
#include "eoc/io/png.hpp"
#include "eoc/io/npy.hpp"
#include "eoc/runs/shard.hpp"
#include "eoc/runs/out_dir.hpp"
#include "eoc/runs/run_settings.hpp"
#include "test_util.hpp"

namespace {

eoc::EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(Shard, ParsesFlag) {
  const auto s = eoc::parse_shard("2/5");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(s.source, "flag");
  EXPECT_EQ(s.indices(13), (std::vector<int64_t>{2, 7, 12}));
  for (const char* bad : {"5/5", "1", "a/2", "-1/2", "1/0", "1/2/3", "", "/2"})
    EXPECT_THROW(eoc::parse_shard(bad), eoc::Error) << bad;
}

TEST(Shard, ReadsTorchrunThenSlurm) {
  auto s = eoc::shard_from_env(env_of({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"},
                                       {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}));
  EXPECT_EQ(s.index, 1);
  EXPECT_EQ(s.count, 4);
  EXPECT_EQ(s.source, "torchrun");
  s = eoc::shard_from_env(env_of({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "8"}}));
  EXPECT_EQ(s.index, 3);
  EXPECT_EQ(s.count, 8);
  EXPECT_EQ(s.source, "slurm");
  s = eoc::shard_from_env(env_of({}));
  EXPECT_EQ(s.count, 1);
  EXPECT_EQ(s.source, "none");
  EXPECT_THROW(eoc::shard_from_env(env_of({{"RANK", "4"}, {"WORLD_SIZE", "4"}})), eoc::Error);
  EXPECT_THROW(eoc::shard_from_env(env_of({{"RANK", "0"}})), eoc::Error);
  EXPECT_THROW(eoc::shard_from_env(env_of({{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "2"}})),
               eoc::Error);
}

TEST(Shard, FlagWinsAndEnvironmentOnlyWhenAsked) {
  const auto env = env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}});
  auto s = eoc::resolve_shard(eoc::parse_shard("0/3"), true, env);
  EXPECT_EQ(s.count, 3);
  EXPECT_EQ(s.local_rank, 1);
  s = eoc::resolve_shard(std::nullopt, false, env);
  EXPECT_EQ(s.count, 1);
  EXPECT_EQ(s.local_rank, -1);
  s = eoc::resolve_shard(std::nullopt, true, env);
  EXPECT_EQ(s.index, 1);
  EXPECT_EQ(eoc::device_for_shard("cuda", s, 8), "cuda:1");
  EXPECT_EQ(eoc::device_for_shard("cuda", s, 1), "cuda:0");  // one visible GPU per process
  EXPECT_EQ(eoc::device_for_shard("cuda:0", s, 8), "cuda:0");
  EXPECT_EQ(eoc::device_for_shard("cpu", s, 8), "cpu");
  s = eoc::resolve_shard(std::nullopt, true, env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"},
                                            {"SLURM_LOCALID", "3"}}));
  EXPECT_EQ(eoc::device_for_shard("cuda", s, 4), "cuda:3");
}

TEST(SampleDir, ImagePathAndPngCompleteness) {
  eoc_test::TempDir dir;
  const std::string path = eoc::image_path(dir.path().string(), 42);
  EXPECT_EQ(std::filesystem::path(path).filename().string(), "000042.png");
  EXPECT_FALSE(eoc::png_is_complete(path));
  eoc::write_png(path, at::zeros({4, 5, 3}, at::kByte));
  EXPECT_TRUE(eoc::png_is_complete(path));
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 1);
  EXPECT_FALSE(eoc::png_is_complete(path));
  eoc::write_file_atomic(path, "not a png at all, but long enough to be checked at both ends");
  EXPECT_FALSE(eoc::png_is_complete(path));
}

TEST(SampleDir, FirstDifferenceNamesTheField) {
  const nlohmann::json a = {{"steps", 3}, {"cache", {{"spec", "none"}, {"layout", "cc"}}},
                            {"vae", nullptr}};
  auto b = a;
  EXPECT_EQ(eoc::first_difference(a, b), "");
  b["cache"]["layout"] = "cr";
  EXPECT_EQ(eoc::first_difference(a, b), "cache.layout");
  EXPECT_EQ(eoc::field_text(b, "cache.layout"), "\"cr\"");
  b = a;
  b["vae"] = {{"sha256", "x"}};
  EXPECT_EQ(eoc::first_difference(a, b), "vae");
  b = a;
  b.erase("steps");
  EXPECT_EQ(eoc::first_difference(a, b), "steps");
  EXPECT_EQ(eoc::field_text(b, "steps"), "(absent)");
  b = a;
  b["extra"] = 1;
  EXPECT_EQ(eoc::first_difference(a, b), "extra");
}

TEST(Npy, HeaderIsAlignedVersion1) {
  const std::string h = eoc::npy_header("|u1", {50000, 256, 256, 3});
  EXPECT_EQ(h.size() % 64, 0u);
  EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(h.find("'shape': (50000, 256, 256, 3)"), std::string::npos);
  EXPECT_EQ(h.back(), '\n');
  EXPECT_NE(eoc::npy_header("<f4", {7}).find("(7,)"), std::string::npos);
}

}  // namespace
