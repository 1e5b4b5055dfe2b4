// The --out-dir folder's files (files/run_record.hpp): image names, records written and read
// back, and records that disagree named by their field.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "eoc/files/run_record.hpp"
#include "eoc/io/files.hpp"
#include "test_util.hpp"

namespace {

using eoc_test::error_message;
using nlohmann::json;

TEST(RunRecord, ImageAndRecordNames) {
  EXPECT_EQ(std::filesystem::path(eoc::image_path("d", 42)).filename().string(), "000042.png");
  EXPECT_EQ(eoc::image_path("d", 1234567), "d/1234567.png");
  eoc::Shard shard;
  shard.index = 2;
  shard.count = 4;
  EXPECT_EQ(eoc::run_record_name(shard), "eoc-run-2-of-4.json");
}

TEST(RunRecord, WrittenRecordsReadBackAndMustAgree) {
  eoc_test::TempDir dir;
  const json settings = {{"num_samples", 8}, {"cfg_scale", 4.0}};
  eoc::Shard a, b;
  a.count = b.count = 2;
  b.index = 1;
  eoc::write_run_record(dir.path().string(), a, settings, {{"host", "x"}});
  eoc::write_run_record(dir.path().string(), b, settings, {{"host", "y"}});
  const auto records = eoc::read_run_records(dir.path().string());
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].doc["format"], eoc::kRunRecordFormat);
  EXPECT_EQ(records[1].doc["settings"], settings);
  EXPECT_EQ(records[1].doc["shard"]["index"], 1);
  EXPECT_TRUE(records[0].doc["info"].contains("started"));
  EXPECT_NO_THROW(eoc::check_records_agree(records, dir.path().string()));

  json other = settings;
  other["cfg_scale"] = 1.5;
  eoc::write_run_record(dir.path().string(), b, other, {});
  const auto msg = error_message([&] {
    eoc::check_records_agree(eoc::read_run_records(dir.path().string()), dir.path().string());
  });
  EXPECT_NE(msg.find("cfg_scale is 4.0 in 'eoc-run-0-of-2.json' but 1.5 in 'eoc-run-1-of-2.json'"),
            std::string::npos)
      << msg;
}

TEST(RunRecord, MalformedRecordsAreNamed) {
  eoc_test::TempDir dir;
  eoc_test::write_text(dir.file("eoc-run-0-of-1.json"), R"({"format": "other"})");
  auto msg = error_message([&] { eoc::read_run_records(dir.path().string()); });
  EXPECT_NE(msg.find("is not an eoc run record"), std::string::npos) << msg;
  eoc_test::write_text(dir.file("eoc-run-0-of-1.json"),
                       R"({"format": "eoc-sample-dir", "version": 1, "settings": {}})");
  msg = error_message([&] { eoc::read_run_records(dir.path().string()); });
  EXPECT_NE(msg.find("settings.num_samples"), std::string::npos) << msg;
  eoc_test::write_text(dir.file("eoc-run-0-of-1.json"), "{");
  msg = error_message([&] { eoc::read_run_records(dir.path().string()); });
  EXPECT_NE(msg.find("is not valid JSON"), std::string::npos) << msg;
  EXPECT_NE(error_message([] { eoc::read_run_records("/nonexistent/dir"); }).find("does not exist"),
            std::string::npos);
}

}  // namespace
