// The EOC prior file (files/prior_file.hpp): save, load, validation, the run check.
#include <gtest/gtest.h>

#include <functional>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "eoc/base/error.hpp"
#include "eoc/cache/eoc_corrector.hpp"
#include "eoc/cache/plan.hpp"
#include "eoc/files/prior_file.hpp"
#include "eoc/io/files.hpp"
#include "eoc/io/sha256.hpp"
#include "eoc_prior_fixture.hpp"
#include "test_util.hpp"

namespace {

using eoc::Branch;
using eoc::CachedFeature;
using eoc::EocForm;
using eoc::EocPrior;
using eoc::PriorFile;
using eoc_test::error_message;
using eoc_test::TempDir;
using nlohmann::json;

using eoc_test::kD;
using eoc_test::vec;

// The run settings a prior assumes (files/run_settings.hpp, rows for the prior).
json assumptions() {
  return {{"model",
           {{"sha256", std::string(32, 'a') + std::string(32, 'b')},
            {"name", "DiT-S/4"},
            {"depth", 2},
            {"hidden_size", kD}}},
          {"sampler", "ddim"},
          {"steps", 3},
          {"respacing", "even"},
          {"eta", 0.0},
          {"cfg_scale", 4.0},
          {"cfg_channels", "3"},
          {"cache", {{"spec", "fora:2"}, {"layout", eoc::CachePlan::fora(3, 2, 2).layout()}}}};
}

PriorFile sample_prior() {
  PriorFile f;
  f.assumes = assumptions();
  f.prior = eoc_test::sample_eoc_prior();
  f.calibration = {{"images", 8}, {"seed", 0}};
  return f;
}

json read_json(const std::string& path) { return json::parse(eoc::read_file(path)); }

// Rewrites a prior document with a checksum that matches its (edited) content.
void write_signed(const std::string& path, json doc) {
  doc.erase("checksum");
  doc["checksum"] = eoc::sha256_hex(doc.dump());
  eoc_test::write_text(path, doc.dump(1) + "\n");
}

// Saves the sample prior at `path`, applies `edit` to its JSON, re-signs it (so the content
// check, not the checksum, has to refuse it) and returns load_prior's error message.
std::string load_error_after_edit(const std::string& path, const std::function<void(json&)>& edit) {
  eoc::save_prior(path, sample_prior());
  auto doc = read_json(path);
  edit(doc);
  write_signed(path, doc);
  return error_message([&] { eoc::load_prior(path); });
}

TEST(Prior, RoundTrip) {
  TempDir dir;
  const auto path = dir.file("p.json");
  const auto p = sample_prior();
  eoc::save_prior(path, p);
  const auto q = eoc::load_prior(path);
  EXPECT_EQ(q.assumes, p.assumes);
  EXPECT_EQ(q.prior.form, EocForm::scale);
  EXPECT_EQ(q.prior.judgment, eoc::Judgment::local);
  EXPECT_EQ(q.prior.thetas, p.prior.thetas);
  EXPECT_EQ(q.prior.step_theta, p.prior.step_theta);
  ASSERT_EQ(q.prior.judged.size(), 1u);
  EXPECT_EQ(q.prior.judged[0].step, 1);
  EXPECT_EQ(q.prior.judged[0].theta, 1.0);
  EXPECT_EQ(q.prior.judged[0].candidates, p.prior.judged[0].candidates);
  EXPECT_EQ(q.prior.judged[0].errors, p.prior.judged[0].errors);
  ASSERT_EQ(q.prior.vectors.size(), 2u);
  for (const auto& [key, v] : p.prior.vectors) {
    ASSERT_TRUE(q.prior.vectors.count(key));
    const auto& w = q.prior.vectors.at(key);
    EXPECT_EQ(w.sizes(), (at::IntArrayRef{2, kD}));
    EXPECT_EQ(w.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(w, v));  // bit-exact through base64
  }
  EXPECT_EQ(q.calibration, p.calibration);
  // The file records what it is.
  const auto doc = read_json(path);
  EXPECT_EQ(doc["format"], "eoc-prior");
  EXPECT_EQ(doc["version"], 3);
  EXPECT_EQ(doc["step_order"], json::array({0, 1, 0}));  // 0 where theta is 0
  EXPECT_FALSE(doc["judged"][0].contains("orders"));     // no order search: none recorded
  EXPECT_EQ(doc["checksum"].get<std::string>().size(), 64u);
}

TEST(Prior, RoundTripOtherForms) {
  TempDir dir;
  for (auto form : {EocForm::extrapolate, EocForm::taylor}) {
    auto p = sample_prior();
    p.prior.form = form;
    if (form == EocForm::taylor) p.prior.vectors.clear();
    const auto path = dir.file(std::string(eoc::eoc_form_name(form)) + ".json");
    eoc::save_prior(path, p);
    const auto q = eoc::load_prior(path);
    EXPECT_EQ(q.prior.form, form);
    EXPECT_EQ(q.prior.vectors.size(), p.prior.vectors.size());
  }
}

TEST(Prior, HandEditIsRefused) {
  TempDir dir;
  const auto path = dir.file("p.json");
  eoc::save_prior(path, sample_prior());
  std::string text = eoc::read_file(path);
  const std::string from = "\"cfg_scale\": 4.0", to = "\"cfg_scale\": 4.5";
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, from.size(), to);
  eoc_test::write_text(path, text);
  const auto msg = error_message([&] { eoc::load_prior(path); });
  EXPECT_NE(msg.find("checksum"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;

  // Same with a structural edit through a JSON library, keeping the old checksum.
  eoc::save_prior(path, sample_prior());
  auto doc = read_json(path);
  doc["step_theta"][1] = 0.5;
  eoc_test::write_text(path, doc.dump(1));
  EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find("checksum"), std::string::npos);
}

TEST(Prior, ResignedEditIsAccepted) {
  // Guards the test helper itself: re-signing an edit makes a valid file.
  TempDir dir;
  const auto path = dir.file("p.json");
  eoc::save_prior(path, sample_prior());
  auto doc = read_json(path);
  doc["step_theta"][1] = 0.5;
  write_signed(path, doc);
  EXPECT_EQ(eoc::load_prior(path).prior.step_theta[1], 0.5);
}

TEST(Prior, TruncatedFileIsRefused) {
  TempDir dir;
  const auto path = dir.file("p.json");
  eoc::save_prior(path, sample_prior());
  const auto text = eoc::read_file(path);
  eoc_test::write_text(path, text.substr(0, text.size() / 2));
  const auto msg = error_message([&] { eoc::load_prior(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  eoc_test::write_text(path, "");
  EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find(path), std::string::npos);
}

TEST(Prior, MissingFileIsRefused) {
  const auto msg = error_message([] { eoc::load_prior("/nonexistent/prior.json"); });
  EXPECT_NE(msg.find("/nonexistent/prior.json"), std::string::npos) << msg;
}

TEST(Prior, OtherVersionIsRefused) {
  TempDir dir;
  const auto path = dir.file("p.json");
  for (int version : {1, 4}) {
    const auto msg = load_error_after_edit(path, [&](json& doc) { doc["version"] = version; });
    EXPECT_NE(msg.find("version " + std::to_string(version)), std::string::npos) << msg;
  }
}

// Version 2 (before forecast orders) has no step_order: order 1 wherever theta is not 0.
TEST(Prior, Version2ReadsAsOrderOne) {
  TempDir dir;
  const auto path = dir.file("p.json");
  eoc::save_prior(path, sample_prior());
  auto doc = read_json(path);
  doc["version"] = 2;
  doc.erase("step_order");
  write_signed(path, doc);
  const auto q = eoc::load_prior(path).prior;
  EXPECT_TRUE(q.step_order.empty());
  EXPECT_EQ(q.order_at(1), 1);
  EXPECT_EQ(q.highest_order(), 1);
}

TEST(Prior, OrdersRoundTrip) {
  TempDir dir;
  const auto path = dir.file("p.json");
  auto f = sample_prior();
  f.prior.form = EocForm::taylor;
  f.prior.judgment = eoc::Judgment::trajectory;
  f.prior.vectors.clear();
  f.prior.step_theta = {0.0, 0.5, 1.0};
  f.prior.step_order = {0, 3, 1};
  f.prior.fixed_order_errors = {0.4, 0.3, 0.35, 0.5};
  f.prior.judged = {{1, 0.5, {0.0, 1.0, 1.0, 0.5}, {0.3, 0.2, 0.25, 0.1}, 3, {0, 3, 1, 3}},
                    {2, 1.0, {0.0, 1.0}, {0.3, 0.2}, 1, {0, 1}}};
  eoc::save_prior(path, f);
  const auto q = eoc::load_prior(path).prior;
  EXPECT_EQ(q.step_order, f.prior.step_order);
  EXPECT_EQ(q.highest_order(), 3);
  EXPECT_EQ(q.fixed_order_errors, f.prior.fixed_order_errors);
  ASSERT_EQ(q.judged.size(), 2u);
  EXPECT_EQ(q.judged[0].order, 3);
  EXPECT_EQ(q.judged[0].orders, f.prior.judged[0].orders);
}

TEST(Prior, BadOrdersAreRefused) {
  TempDir dir;
  const auto path = dir.file("p.json");
  // sample_prior: scale form, theta 1 at step 1 only.
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& d) {
         d["step_order"] = {0, 6, 0};
       },
       "step_order holds 6"},
      {[](json& d) {
         d["step_order"] = {0, 5, 0};  // FoCa's forecast: the taylor form's only
       },
       "step_order names FoCa (5), but the scale form"},
      {[](json& d) {
         d["step_order"] = {0, -1, 0};
       },
       "step_order holds -1"},
      {[](json& d) {
         d["step_order"] = {0, 1};
       },
       "step_order has 2 entries for 3 steps"},
      {[](json& d) {
         d["step_order"] = {0, 0, 0};
       },
       "step_order is 0 at step 1"},
      {[](json& d) {
         d["step_order"] = {0, 2, 0};
       },
       "the scale form has order 1 only"},
      {[](json& d) { d.erase("step_order"); }, "step_order is missing"},
      {[](json& d) {
         d["judged"][0]["orders"] = {0, 1};
         d["judged"][0]["order"] = 1;
       },
       "candidates and orders differ in length"},
  };
  for (const auto& [edit, want] : cases) {
    const auto msg = load_error_after_edit(path, edit);
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
  }
}

TEST(Prior, WrongFormatIsRefused) {
  TempDir dir;
  const auto path = dir.file("p.json");
  const auto msg = load_error_after_edit(path, [](json& doc) { doc["format"] = "eoc-cache-mask"; });
  EXPECT_NE(msg.find("format"), std::string::npos) << msg;
}

TEST(Prior, NanInVectorIsRefused) {
  TempDir dir;
  const auto path = dir.file("p.json");
  auto p = sample_prior();
  p.prior.vectors[{1, 1, 1}][1][2] = std::numeric_limits<float>::quiet_NaN();
  eoc::save_prior(path, p);  // the writer signs whatever it is given
  auto msg = error_message([&] { eoc::load_prior(path); });
  EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
  p = sample_prior();
  p.prior.vectors[{1, 0, 0}][0][0] = std::numeric_limits<float>::infinity();
  eoc::save_prior(path, p);
  msg = error_message([&] { eoc::load_prior(path); });
  EXPECT_NE(msg.find("Inf"), std::string::npos) << msg;
}

TEST(Prior, BlowUpLimit) {
  TempDir dir;
  const auto path = dir.file("p.json");
  auto p = sample_prior();
  // theta 2 times |v| = 30 -> 60 > 50: refused.
  p.prior.step_theta = {0.0, 2.0, 0.0};
  p.prior.vectors[{1, 1, 1}] = vec({1, 2, 3, -30, 5, 6, 7, 8});
  p.prior.vectors.erase({1, 0, 0});
  eoc::save_prior(path, p);
  const auto msg = error_message([&] { eoc::load_prior(path); });
  EXPECT_NE(msg.find("60"), std::string::npos) << msg;
  // 2 * 20 = 40: accepted.
  p.prior.vectors[{1, 1, 1}] = vec({1, 2, 3, -20, 5, 6, 7, 8});
  eoc::save_prior(path, p);
  EXPECT_NO_THROW(eoc::load_prior(path));
  // A huge vector at a step with theta 0 is harmless.
  p.prior.step_theta = {0.0, 0.0, 0.0};
  p.prior.vectors[{1, 1, 1}] = vec({1, 2, 3, -1000, 5, 6, 7, 8});
  eoc::save_prior(path, p);
  EXPECT_NO_THROW(eoc::load_prior(path));
}

TEST(Prior, ThetaOutOfRangeIsRefused) {
  TempDir dir;
  const auto path = dir.file("p.json");
  auto p = sample_prior();
  p.prior.vectors.clear();
  p.prior.step_theta = {0.0, 11.0, 0.0};
  eoc::save_prior(path, p);
  EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find("step_theta"), std::string::npos);
  p.prior.step_theta = {0.0, 1.0};  // 2 entries for 3 steps
  eoc::save_prior(path, p);
  EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find("step_theta"), std::string::npos);
}

TEST(Prior, NonFiniteThetaIsAnEocError) {
  // JSON has no NaN: the writer emits null, which the reader must refuse with eoc::Error.
  TempDir dir;
  const auto path = dir.file("p.json");
  auto p = sample_prior();
  p.prior.step_theta = {0.0, std::nan(""), 0.0};
  eoc::save_prior(path, p);
  const auto msg = error_message([&] { eoc::load_prior(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(Prior, WrongElementTypeIsAnEocError) {
  TempDir dir;
  const auto path = dir.file("p.json");
  const auto msg = load_error_after_edit(path, [](json& doc) { doc["thetas"][1] = "half"; });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(Prior, BadVectorEntriesAreRefused) {
  TempDir dir;
  const auto path = dir.file("p.json");
  eoc::save_prior(path, sample_prior());
  const auto base = read_json(path);
  {
    auto doc = base;
    doc["vectors"]["entries"][0]["step"] = 7;  // beyond 3 steps
    write_signed(path, doc);
    EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find("out of range"),
              std::string::npos);
  }
  {
    auto doc = base;
    doc["vectors"]["entries"][0]["branch"] = "gate";
    write_signed(path, doc);
    EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find("out of range"),
              std::string::npos);
  }
  {
    auto doc = base;
    doc["assumes"]["model"]["hidden_size"] = 8;  // the data holds 2 x 4 floats
    write_signed(path, doc);
    EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find("2 x 8"), std::string::npos);
  }
  {
    auto doc = base;
    doc["vectors"]["entries"][0]["data"] = "not*base64";
    write_signed(path, doc);
    EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find("base64"), std::string::npos);
  }
  {
    auto doc = base;
    doc["assumes"].erase("sampler");
    write_signed(path, doc);
    EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find("assumes.sampler"),
              std::string::npos);
  }
}

TEST(Prior, JudgedCandidatesAndErrorsMustPair) {
  TempDir dir;
  const auto path = dir.file("p.json");
  auto p = sample_prior();
  p.prior.judged[0].errors.pop_back();
  eoc::save_prior(path, p);
  EXPECT_NE(error_message([&] { eoc::load_prior(path); }).find("judged"), std::string::npos);
}

TEST(PriorMatch, NamesTheDifferingField) {
  const auto p = sample_prior();
  EXPECT_NO_THROW(eoc::check_prior_matches(p, assumptions(), "p.json"));
  auto run = assumptions();
  run["steps"] = 20;
  auto msg = error_message([&] { eoc::check_prior_matches(p, run, "p.json"); });
  EXPECT_NE(msg.find("steps 3 (this run: 20)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("p.json"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("sampler"), std::string::npos) << msg;

  run = assumptions();
  run["sampler"] = "ddpm";
  run["cfg_scale"] = 1.5;
  msg = error_message([&] { eoc::check_prior_matches(p, run, "p.json"); });
  EXPECT_NE(msg.find("sampler \"ddim\" (this run: \"ddpm\")"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cfg_scale 4.0 (this run: 1.5)"), std::string::npos) << msg;

  run = assumptions();
  run["model"]["sha256"] = std::string(64, 'c');
  msg = error_message([&] { eoc::check_prior_matches(p, run, "p.json"); });
  EXPECT_NE(msg.find("model.sha256"), std::string::npos) << msg;

  for (const char* key : {"respacing", "eta", "cfg_channels"}) {
    run = assumptions();
    run[key] = std::string(key) == "eta" ? json(0.5) : json("other");
    msg = error_message([&] { eoc::check_prior_matches(p, run, "p.json"); });
    EXPECT_NE(msg.find(std::string(key) + " "), std::string::npos) << key << ": " << msg;
  }

  run = assumptions();
  run["cache"]["layout"] = eoc::CachePlan::fora(3, 2, 1).layout();
  run["cache"]["spec"] = "fora:1";
  msg = error_message([&] { eoc::check_prior_matches(p, run, "p.json"); });
  EXPECT_NE(msg.find("cache.spec \"fora:2\" (this run: \"fora:1\")"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("cache.layout"), std::string::npos) << msg;

  // Same spec and steps, other decisions (an edited mask): said as such.
  run = assumptions();
  run["cache"]["layout"] = eoc::CachePlan::fora(3, 2, 1).layout();
  msg = error_message([&] { eoc::check_prior_matches(p, run, "p.json"); });
  EXPECT_NE(msg.find("other reuse decisions"), std::string::npos) << msg;

  // Another step count: the steps field explains the other plan; no second, vaguer note.
  run = assumptions();
  run["steps"] = 20;
  run["cache"]["layout"] = eoc::CachePlan::fora(20, 2, 2).layout();
  msg = error_message([&] { eoc::check_prior_matches(p, run, "p.json"); });
  EXPECT_NE(msg.find("steps"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("cache.layout"), std::string::npos) << msg;
}

}  // namespace
