// Sharding (setup/shard.hpp): the --shard flag and the launcher variables.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "eoc/base/error.hpp"
#include "eoc/setup/shard.hpp"
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
  auto s = eoc::shard_from_env(env_of({{"RANK", "1"},
                                       {"WORLD_SIZE", "4"},
                                       {"LOCAL_RANK", "1"},
                                       {"SLURM_PROCID", "0"},
                                       {"SLURM_NTASKS", "2"}}));
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
  s = eoc::resolve_shard(
      std::nullopt, true,
      env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "3"}}));
  EXPECT_EQ(eoc::device_for_shard("cuda", s, 4), "cuda:3");
}

}  // namespace
