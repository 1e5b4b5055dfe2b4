// The EOC prior file (save/load/validation) and the corrector built from it.
#include <gtest/gtest.h>

#include <functional>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "eoc/cache/plan.hpp"
#include "eoc/cache/eoc_corrector.hpp"
#include "eoc/runs/prior_file.hpp"
#include "eoc/base/error.hpp"
#include "eoc/io/files.hpp"
#include "eoc/io/sha256.hpp"
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

constexpr int64_t kD = 4;

// The run settings a prior assumes (runs/run_settings.hpp, rows for the prior).
json assumptions() {
  return {{"model", {{"sha256", std::string(32, 'a') + std::string(32, 'b')},
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

at::Tensor vec(std::vector<float> v) { return at::tensor(v, at::kFloat).reshape({2, kD}); }

PriorFile sample_prior() {
  PriorFile f;
  f.assumes = assumptions();
  EocPrior& p = f.prior;
  p.form = EocForm::scale;
  p.judgment = eoc::Judgment::local;
  p.thetas = {0.0, 0.5, 1.0};
  p.step_theta = {0.0, 1.0, 0.0};
  p.judged = {{1, 1.0, {0.0, 0.5, 1.0}, {0.3, 0.2, 0.125}}};
  p.vectors[{1, 0, 0}] = vec({0.1234567f, -7.5f, 1e-30f, 3.0f, -0.0f, 49.0f, 1.0f / 3.0f, -2.0f});
  p.vectors[{1, 1, 1}] = vec({1, 2, 3, 4, 5, 6, 7, 8});
  f.calibration = {{"images", 8}, {"seed", 0}};
  return f;
}

// The EOC corrector of a prior, for a run with (halves 2) or without (1) guidance.
std::unique_ptr<eoc::EocCorrector> corrector_of(const EocPrior& p, int64_t halves = 2) {
  return std::make_unique<eoc::EocCorrector>(p, halves, at::kCPU, at::kFloat);
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
      {[](json& d) { d["step_order"] = {0, 5, 0}; }, "step_order holds 5"},
      {[](json& d) { d["step_order"] = {0, -1, 0}; }, "step_order holds -1"},
      {[](json& d) { d["step_order"] = {0, 1}; }, "step_order has 2 entries for 3 steps"},
      {[](json& d) { d["step_order"] = {0, 0, 0}; }, "step_order is 0 at step 1"},
      {[](json& d) { d["step_order"] = {0, 2, 0}; }, "the scale form has order 1 only"},
      {[](json& d) { d.erase("step_order"); }, "step_order is missing"},
      {[](json& d) { d["judged"][0]["orders"] = {0, 1}; d["judged"][0]["order"] = 1; },
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

// A cache entry over the doubled CFG batch: B = 2 -> 4 rows, T = 3 tokens, D = 4.
CachedFeature cfg_entry(int64_t r, int64_t p) {
  CachedFeature e;
  e.value = at::linspace(-2.0, 3.0, 4 * 3 * kD, at::kFloat).reshape({4, 3, kD});
  e.step = r;
  if (p >= 0) {
    e.previous = e.value - at::linspace(0.7, -0.4, 4 * 3 * kD, at::kFloat).reshape({4, 3, kD});
    e.prev_step = p;
  }
  return e;
}

TEST(EocCorrector, ZeroThetaReturnsCachedValueExactly) {
  auto p = sample_prior().prior;
  p.step_theta = {0.0, 0.0, 0.0};
  for (auto form : {EocForm::scale, EocForm::extrapolate, EocForm::taylor}) {
    p.form = form;
    const auto c = corrector_of(p);
    EXPECT_EQ(c->name(), "eoc");
    const auto e = cfg_entry(0, form == EocForm::scale ? -1 : 0);
    const auto out = c->correct(1, 0, Branch::attn, e);
    EXPECT_TRUE(at::equal(out, e.value));
    EXPECT_EQ(out.data_ptr(), e.value.data_ptr());
  }
}

TEST(EocCorrector, ScaleMultipliesEachHalfPerChannel) {
  auto p = sample_prior().prior;  // theta 1 at step 1; cfg 4 -> two halves
  const auto c = corrector_of(p);
  EXPECT_FALSE(c->needs_previous());
  const auto e = cfg_entry(0, -1);
  const auto out = c->correct(1, 0, Branch::attn, e);
  ASSERT_EQ(out.sizes(), e.value.sizes());
  const auto E = p.vectors.at({1, 0, 0});
  const auto v = e.value.accessor<float, 3>();
  const auto out_c = out.contiguous();
  const auto o = out_c.accessor<float, 3>();
  const auto ea = E.accessor<float, 2>();
  for (int64_t row = 0; row < 4; ++row)
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t d = 0; d < kD; ++d) {
        const int64_t half = row < 2 ? 0 : 1;  // [0, B) conditional, [B, 2B) unconditional
        const double expected = static_cast<double>(v[row][t][d]) * (1.0 + ea[half][d]);
        EXPECT_NEAR(o[row][t][d], expected, 1e-5 * std::max(1.0, std::fabs(expected)))
            << row << " " << t << " " << d;
      }
  // The other (block, branch) with a vector uses its own coefficients; keys without one stay plain.
  const auto out_mlp1 = c->correct(1, 1, Branch::mlp, e);
  const auto F = p.vectors.at({1, 1, 1});
  EXPECT_TRUE(at::allclose(out_mlp1.narrow(0, 2, 2),
                           e.value.narrow(0, 2, 2) * (1 + F[1]).view({1, 1, kD})));
  EXPECT_TRUE(at::equal(c->correct(1, 1, Branch::attn, e), e.value));
  // Steps with theta 0 are plain.
  EXPECT_TRUE(at::equal(c->correct(2, 0, Branch::attn, e), e.value));
}

TEST(EocCorrector, ScaleWithPartialTheta) {
  auto p = sample_prior().prior;
  p.step_theta = {0.0, 0.5, 0.0};
  const auto c = corrector_of(p);
  const auto e = cfg_entry(0, -1);
  const auto E = p.vectors.at({1, 1, 1});
  const auto out = c->correct(1, 1, Branch::mlp, e);
  const auto expected = at::cat({e.value.narrow(0, 0, 2) * (1 + 0.5 * E[0]).view({1, 1, kD}),
                                 e.value.narrow(0, 2, 2) * (1 + 0.5 * E[1]).view({1, 1, kD})});
  EXPECT_TRUE(at::allclose(out, expected, 1e-5, 1e-6));
}

TEST(EocCorrector, ScaleWithoutCfgUsesConditionalRow) {
  auto p = sample_prior().prior;
  // Without guidance the batch is not doubled: every row is "conditional".
  const auto c = corrector_of(p, 1);
  const auto e = cfg_entry(0, -1);
  const auto E = p.vectors.at({1, 1, 1});
  const auto out = c->correct(1, 1, Branch::mlp, e);
  EXPECT_TRUE(at::allclose(out, e.value * (1 + E[0]).view({1, 1, kD}), 1e-5, 1e-6));
}

TEST(EocCorrector, ExtrapolateAddsThetaWDelta) {
  auto p = sample_prior().prior;
  p.form = EocForm::extrapolate;
  p.step_theta = {0.0, 0.75, 0.0};
  const auto c = corrector_of(p);
  EXPECT_TRUE(c->needs_previous());
  const auto e = cfg_entry(0, -1);
  const auto with_delta = [&] {
    auto x = cfg_entry(0, -1);
    x.previous = x.value - at::linspace(0.7, -0.4, 4 * 3 * kD, at::kFloat).reshape({4, 3, kD});
    x.prev_step = 0;
    x.step = 0;
    return x;
  }();
  const auto W = p.vectors.at({1, 0, 0});
  const auto out = c->correct(1, 0, Branch::attn, with_delta);
  const auto expected =
      at::cat({with_delta.value.narrow(0, 0, 2) +
                   0.75 * W[0].view({1, 1, kD}) * (with_delta.value - with_delta.previous).narrow(0, 0, 2),
               with_delta.value.narrow(0, 2, 2) +
                   0.75 * W[1].view({1, 1, kD}) * (with_delta.value - with_delta.previous).narrow(0, 2, 2)});
  EXPECT_TRUE(at::allclose(out, expected, 1e-5, 1e-5));
  // No previous value yet: plain.
  EXPECT_TRUE(at::equal(c->correct(1, 0, Branch::attn, e), e.value));
}

TEST(EocCorrector, SetStepThetaRescales) {
  auto p = sample_prior().prior;  // scale form, theta 1 at step 1
  eoc::EocCorrector c(p, 2, at::kCPU, at::kFloat);
  EXPECT_EQ(c.step_theta(1), 1.0);
  const auto e = cfg_entry(0, -1);
  const auto E = p.vectors.at({1, 0, 0});
  c.set_step_theta(1, 0.25);
  EXPECT_EQ(c.step_theta(1), 0.25);
  const auto expected = at::cat({e.value.narrow(0, 0, 2) * (1 + 0.25 * E[0]).view({1, 1, kD}),
                                 e.value.narrow(0, 2, 2) * (1 + 0.25 * E[1]).view({1, 1, kD})});
  EXPECT_TRUE(at::allclose(c.correct(1, 0, Branch::attn, e), expected, 1e-5, 1e-6));
  // Turning a plain step on uses the vectors of that step only.
  c.set_step_theta(1, 0.0);
  EXPECT_TRUE(at::equal(c.correct(1, 0, Branch::attn, e), e.value));
  c.set_step_theta(2, 1.0);  // step 2 has no vectors: plain
  EXPECT_TRUE(at::equal(c.correct(2, 0, Branch::attn, e), e.value));
}

// Orders above 1: the corrector keeps derivative estimates up to the highest order used and
// forecasts each step with theta times the Taylor series of that step's order.
// The sample prior in the taylor form (which has no vectors).
EocPrior taylor_prior() {
  auto p = sample_prior().prior;
  p.form = EocForm::taylor;
  p.vectors.clear();
  return p;
}

TEST(EocCorrector, TaylorOrdersScaleTheSeries) {
  auto p = taylor_prior();
  p.step_theta = {0.0, 0.5, 2.0};
  p.step_order = {0, 1, 3};
  const auto c = corrector_of(p);
  EXPECT_EQ(c->history().order, 3);
  EXPECT_FALSE(c->history().previous);
  CachedFeature e = cfg_entry(0, -1);
  e.derivatives = {at::full_like(e.value, 1.0), at::full_like(e.value, 10.0), at::full_like(e.value, 100.0)};
  // Step 2 from r = 0: dt = 2, order 3: F + 2 (2 D1 + 2 D2 + 4/3 D3).
  const auto at2 = c->correct(2, 0, Branch::mlp, e);
  EXPECT_TRUE(at::allclose(at2, e.value + 2.0 * (2.0 + 20.0 + 400.0 / 3.0), 1e-5, 1e-4));
  // Step 1 is order 1 (series of D1 only): F + 0.5 * 1 * D1.
  EXPECT_TRUE(at::allclose(c->correct(1, 0, Branch::mlp, e), e.value + 0.5, 1e-6, 1e-6));
  // Fewer estimates than the order (early steps): the series stops where they do.
  e.derivatives.resize(1);
  EXPECT_TRUE(at::allclose(c->correct(2, 0, Branch::mlp, e), e.value + 2.0 * 2.0, 1e-6, 1e-6));
  // Calibration may lower a step's order within what the cache keeps, not raise it above.
  c->set_step(2, 1.0, 2);
  EXPECT_EQ(c->step_order(2), 2);
  EXPECT_THROW(c->set_step(2, 1.0, 4), eoc::InternalError);
}

// A taylor prior of order 1 keeps F[p] and its first-order formula (as before orders existed).
TEST(EocCorrector, TaylorOrderOneKeepsThePreviousValue) {
  auto p = taylor_prior();
  p.step_order = {0, 1, 0};
  const auto c = corrector_of(p);
  EXPECT_TRUE(c->history().previous);
  EXPECT_EQ(c->history().order, 0);
}

TEST(EocCorrector, TaylorScalesTheForecast) {
  auto p = taylor_prior();
  p.step_theta = {0.0, 0.0, 2.0};
  const auto c = corrector_of(p);
  // r = 1, p = 0 (say steps 1 and 0 computed), k = 2: tau = 1.
  CachedFeature e = cfg_entry(1, 0);
  const auto out = c->correct(2, 0, Branch::mlp, e);
  EXPECT_TRUE(at::allclose(out, e.value + 2.0 * 1.0 * (e.value - e.previous), 1e-5, 1e-6));
}

}  // namespace
