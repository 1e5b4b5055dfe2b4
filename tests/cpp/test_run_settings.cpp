// The run settings table (files/run_settings.hpp): which settings each document records, how
// they nest, and the helpers that compare documents field by field. A run of the built-in model
// (loaded, nothing sampled) gives the table real values.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "eoc/cache/plan.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/setup/run_setup.hpp"

namespace {

using nlohmann::json;

eoc::RunSetup builtin_run(const eoc::SamplingOptions& sampling) {
  eoc::ModelOptions model;
  model.model_path = EOC_SOURCE_DIR "/third_party/models/fmnist-dit-s4.ts";
  model.threads = 1;
  return eoc::prepare_run(model, sampling);
}

bool has(const std::vector<std::string>& keys, const std::string& key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

TEST(RunSettings, EachDocumentTakesItsRows) {
  // The prior's assumptions: what changes the features a prior corrects, nothing else.
  const std::vector<std::string> prior{"model.sha256",      "model.name", "model.depth",
                                       "model.hidden_size", "sampler",    "steps",
                                       "respacing",         "eta",        "cfg_scale",
                                       "cfg_channels",      "cache.spec", "cache.layout"};
  EXPECT_EQ(eoc::setting_keys(eoc::kInPrior, /*required_only=*/true), prior);
  // Rows that apply to some runs only: the flow samplers' evaluations and grid, an interval.
  const auto all = eoc::setting_keys(eoc::kInPrior);
  for (const auto& key : {"evaluations", "time_grid", "cfg_interval"})
    EXPECT_TRUE(has(all, key)) << key;
  EXPECT_EQ(all.size(), prior.size() + 3);
  const auto record = eoc::setting_keys(eoc::kInRecord);
  const auto report = eoc::setting_keys(eoc::kInReport);
  // Batch size, device index and paths never change the images: a folder can be finished with
  // another batch on another GPU.
  EXPECT_FALSE(has(record, "batch_size"));
  EXPECT_FALSE(has(record, "device"));
  EXPECT_TRUE(has(record, "device_type"));
  EXPECT_TRUE(has(report, "batch_size"));
  for (const auto& key : {"seed", "seed_mode", "labels", "num_samples", "cache.correct", "vae"})
    EXPECT_TRUE(has(record, key) && has(report, key)) << key;
}

TEST(RunSettings, NestsDottedKeysAndReadsTheRun) {
  eoc::SamplingOptions sampling;
  sampling.steps = 10;
  sampling.cfg_scale = 1.5;
  sampling.num_samples = 12;
  sampling.classes.kind = eoc::ClassChoice::Kind::list;
  sampling.classes.labels = {3, 1, 4};
  const auto run = builtin_run(sampling);
  const auto plan = eoc::CachePlan::fora(10, run.model->config().depth, 3);
  const json s = eoc::run_settings(eoc::RunFacts{run, plan, "taylor"}, eoc::kInReport);
  EXPECT_EQ(s["model"]["name"], "fmnist-dit-s4");
  EXPECT_EQ(s["model"]["depth"], 12);
  EXPECT_EQ(s["steps"], 10);
  EXPECT_EQ(s["cfg_scale"], 1.5);
  EXPECT_EQ(s["cache"]["spec"], "fora:3");
  EXPECT_EQ(s["cache"]["correct"], "taylor");
  EXPECT_EQ(s["cache"]["prior_sha256"], nullptr);
  EXPECT_FALSE(s["cache"].contains("layout"));  // records and priors only
  // The labels as their shortest cycle, not one entry per image.
  EXPECT_EQ(s["labels"], json({{"cycle", {3, 1, 4}}}));
  const json p = eoc::run_settings(eoc::RunFacts{run, plan}, eoc::kInPrior);
  EXPECT_EQ(p["cache"]["layout"], plan.layout());
  EXPECT_EQ(eoc::field_at(p, "model.hidden_size")->get<int64_t>(), 192);
}

TEST(RunSettings, BatchSizeStaysOutOfTheRecordWhileGuidanceIsIn) {
  eoc::SamplingOptions a;
  a.steps = 4;
  a.num_samples = 2;
  auto b = a;
  b.batch_size = 1;
  const auto run_a = builtin_run(a), run_b = builtin_run(b);
  const auto plan = eoc::CachePlan::none(4, run_a.model->config().depth);
  const auto rec = [&](const eoc::RunSetup& r) {
    return eoc::run_settings(eoc::RunFacts{r, plan}, eoc::kInRecord);
  };
  EXPECT_EQ(eoc::first_difference(rec(run_a), rec(run_b)), "");
  auto c = a;
  c.cfg_scale = 2.0;
  EXPECT_EQ(eoc::first_difference(rec(run_a), rec(builtin_run(c))), "cfg_scale");
}

TEST(RunSettings, FirstDifferenceNamesTheField) {
  const nlohmann::json a = {
      {"steps", 3}, {"cache", {{"spec", "none"}, {"layout", "cc"}}}, {"vae", nullptr}};
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

}  // namespace
