// Cache plans (cache/plan.hpp) and every way a run makes one: FORA's interval rule, computed-step
// lists, layout strings, --cache specs (runs/cache_setup.hpp), mask documents
// (files/mask_file.hpp) and the shipped paper-setup masks, and the budget search's step counts.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "eoc/base/error.hpp"
#include "eoc/cache/plan.hpp"
#include "eoc/cache/schedule_search.hpp"
#include "eoc/cli/flag_values.hpp"
#include "eoc/files/mask_file.hpp"
#include "eoc/runs/cache_setup.hpp"
#include "test_util.hpp"

namespace {

using eoc::Branch;
using eoc::CachePlan;
using eoc_test::error_message;

// --cache text -> plan, as a run resolves it: parsed by the CLI, made by the runs layer.
CachePlan parse_cache_plan(const std::string& spec, int64_t steps, int64_t depth) {
  return eoc::make_cache_plan(eoc::cli::parse_cache_spec(spec), steps, depth);
}

std::vector<int64_t> computed_steps(const CachePlan& p) {
  std::vector<int64_t> out;
  for (int64_t k = 0; k < p.steps(); ++k)
    if (!p.step_reuses_any(k)) out.push_back(k);
  return out;
}

// Whole-step plans: every block and branch of a step agree.
void expect_whole_steps(const CachePlan& p) {
  for (int64_t k = 0; k < p.steps(); ++k) {
    const int64_t n = p.reused_in_step(k);
    EXPECT_TRUE(n == 0 || n == 2 * p.depth()) << "step " << k << " reuses " << n;
  }
}

TEST(CachePlan, NoneComputesEverything) {
  const auto p = CachePlan::none(20, 4);
  EXPECT_EQ(p.spec(), "none");
  EXPECT_EQ(p.steps(), 20);
  EXPECT_EQ(p.depth(), 4);
  EXPECT_EQ(p.reused_total(), 0);
  EXPECT_DOUBLE_EQ(p.caching_level(), 0.0);
  EXPECT_NO_THROW(p.validate());
}

TEST(CachePlan, Fora2Over20Steps) {
  // i = 19 - k; computed when k = 0 (i = 19) or i even, i.e. k odd.
  const auto p = CachePlan::fora(20, 3, 2);
  const std::vector<int64_t> expected = {0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19};
  EXPECT_EQ(computed_steps(p), expected);
  expect_whole_steps(p);
  EXPECT_EQ(p.reused_total(), 9 * 3 * 2);
  EXPECT_DOUBLE_EQ(p.caching_level(), 9.0 / 20.0);
  EXPECT_EQ(p.spec(), "fora:2");
  EXPECT_NO_THROW(p.validate());
}

TEST(CachePlan, Fora3Over20Steps) {
  // i in {0, 3, ..., 18} -> k = 19, 16, 13, 10, 7, 4, 1; plus k = 0.
  const auto p = CachePlan::fora(20, 2, 3);
  const std::vector<int64_t> expected = {0, 1, 4, 7, 10, 13, 16, 19};
  EXPECT_EQ(computed_steps(p), expected);
  EXPECT_DOUBLE_EQ(p.caching_level(), 12.0 / 20.0);
}

TEST(CachePlan, Fora4Over20StepsMatchesDocs) {
  const auto p = CachePlan::fora(20, 2, 4);
  const std::vector<int64_t> expected = {0, 3, 7, 11, 15, 19};
  EXPECT_EQ(computed_steps(p), expected);
  EXPECT_DOUBLE_EQ(p.caching_level(), 14.0 / 20.0);
}

TEST(CachePlan, Fora3Over250Steps) {
  // i = 249 - k, 249 = 3 * 83: i % 3 == 0 exactly when k % 3 == 0 (k = 0 included): 84 steps.
  const auto p = CachePlan::fora(250, 28, 3);
  const auto computed = computed_steps(p);
  ASSERT_EQ(computed.size(), 84u);
  EXPECT_EQ(std::vector<int64_t>(computed.begin(), computed.begin() + 5),
            (std::vector<int64_t>{0, 3, 6, 9, 12}));
  EXPECT_EQ(computed.back(), 249);
  EXPECT_EQ(p.reused_total(), 166 * 28 * 2);
  EXPECT_DOUBLE_EQ(p.caching_level(), 166.0 / 250.0);
}

TEST(CachePlan, Fora1ComputesEverything) {
  const auto p = CachePlan::fora(10, 2, 1);
  EXPECT_EQ(p.reused_total(), 0);
}

TEST(CachePlan, LayoutString) {
  // 3 steps, 2 blocks: k = 0 computes (i = 2), k = 1 reuses (i = 1), k = 2 computes (i = 0).
  const auto p = CachePlan::fora(3, 2, 2);
  EXPECT_EQ(p.layout(), "cccc|rrrr|cccc");
  auto q = CachePlan::none(2, 2);
  q.set_reuse(1, 0, Branch::mlp, true);
  q.set_reuse(1, 1, Branch::attn, true);
  // Per block: attn then mlp.
  EXPECT_EQ(q.layout(), "cccc|crrc");
  EXPECT_EQ(q.reused_in_step(1), 2);
  EXPECT_TRUE(q.step_reuses_any(1));
  EXPECT_FALSE(q.step_reuses_any(0));
  EXPECT_TRUE(q.reuses(1, 0, Branch::mlp));
  EXPECT_FALSE(q.reuses(1, 0, Branch::attn));
  EXPECT_DOUBLE_EQ(q.caching_level(), 2.0 / 8.0);
  q.set_reuse(1, 0, Branch::mlp, false);
  EXPECT_EQ(q.layout(), "cccc|ccrc");
}

TEST(CachePlan, LayoutReadsBack) {
  auto q = CachePlan::fora(5, 3, 2);
  q.set_reuse(3, 1, Branch::attn, true);
  const auto back = CachePlan::from_layout(5, 3, q.layout(), "x");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->layout(), q.layout());
  EXPECT_EQ(back->spec(), "x");
  // Not a layout of 5 x 3: nothing.
  EXPECT_FALSE(CachePlan::from_layout(5, 2, q.layout(), "x"));
  EXPECT_FALSE(CachePlan::from_layout(4, 3, q.layout(), "x"));
  auto text = q.layout();
  text[2] = 'x';
  EXPECT_FALSE(CachePlan::from_layout(5, 3, text, "x"));
  text = q.layout();
  text[6] = 'c';  // the '|' between steps 0 and 1
  EXPECT_FALSE(CachePlan::from_layout(5, 3, text, "x"));
}

TEST(CachePlan, MaskedTakesFlagsInEntryOrderAndValidates) {
  // (step, block, branch) order: step 1 reuses block 0's mlp and block 1's attn.
  std::vector<bool> reuse(2 * 2 * 2, false);
  reuse[(1 * 2 + 0) * 2 + 1] = true;
  reuse[(1 * 2 + 1) * 2 + 0] = true;
  EXPECT_EQ(CachePlan::masked(2, 2, reuse, "m").layout(), "cccc|crrc");
  reuse[0] = true;  // step 0 reuses: nothing was computed yet
  const auto msg = error_message([&] { CachePlan::masked(2, 2, reuse, "mask:m.json"); });
  EXPECT_NE(msg.find("mask:m.json"), std::string::npos) << msg;
}

TEST(CachePlan, ValidateRejectsReuseBeforeCompute) {
  auto p = CachePlan::none(3, 4);
  p.set_reuse(0, 2, Branch::mlp, true);
  const auto msg = error_message([&] { p.validate(); });
  EXPECT_NE(msg.find("block 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mlp"), std::string::npos) << msg;
}

TEST(ParseCachePlan, ValidSpecs) {
  EXPECT_EQ(parse_cache_plan("none", 20, 2).reused_total(), 0);
  const auto p = parse_cache_plan("fora:3", 20, 2);
  EXPECT_EQ(p.spec(), "fora:3");
  EXPECT_EQ(p.layout(), CachePlan::fora(20, 2, 3).layout());
}

TEST(ParseCachePlan, Errors) {
  for (const std::string spec : {"fora:0", "fora:x", "fora:", "fora:3x", "fora:-2", "bogus", ""}) {
    const auto msg = error_message([&] { parse_cache_plan(spec, 20, 2); });
    EXPECT_NE(msg.find("'" + spec + "'"), std::string::npos) << spec << ": " << msg;
  }
  const auto msg = error_message([] { parse_cache_plan("mask:/nonexistent/m.json", 20, 2); });
  EXPECT_NE(msg.find("/nonexistent/m.json"), std::string::npos) << msg;
}

std::string mask_doc(const std::string& schedule, int steps = 3, const std::string& extra = "") {
  return R"({"format": "eoc-cache-mask", "version": 1, "steps": )" + std::to_string(steps) + extra +
         R"(, "schedule": )" + schedule + "}";
}

TEST(CacheMask, StringAndPerBlockEntries) {
  const auto p =
      eoc::plan_from_mask_json(mask_doc(R"(["compute", "reuse", {"attn": [1, 0], "mlp": [0, 1]}])",
                                        3, R"(, "depth": 2, "description": "hand-made")"),
                               "m.json", 3, 2);
  // Per block 1 = compute, 0 = reuse. Block 0: attn c, mlp r; block 1: attn r, mlp c.
  EXPECT_EQ(p.layout(), "cccc|rrrr|crrc");
  EXPECT_EQ(p.spec(), "mask:m.json");
  EXPECT_DOUBLE_EQ(p.caching_level(), 6.0 / 12.0);
}

TEST(CacheMask, FromFileThroughParse) {
  eoc_test::TempDir dir;
  const auto path = dir.file("mask.json");
  eoc_test::write_text(path, mask_doc(R"(["compute", "reuse", "compute", "reuse"])", 4));
  const auto p = parse_cache_plan("mask:" + path, 4, 3);
  EXPECT_EQ(p.layout(), "cccccc|rrrrrr|cccccc|rrrrrr");
  EXPECT_DOUBLE_EQ(p.caching_level(), 0.5);
}

struct BadMask {
  const char* name;
  std::string text;
  const char* expect_in_message;
};

TEST(CacheMask, RejectsMalformedDocuments) {
  const std::vector<BadMask> cases = {
      {"wrong steps", mask_doc(R"(["compute", "reuse"])", 2), "steps"},
      {"schedule too short", mask_doc(R"(["compute", "reuse"])", 3), "schedule"},
      {"wrong depth", mask_doc(R"(["compute", "reuse", "compute"])", 3, R"(, "depth": 5)"),
       "depth"},
      {"per-block list length",
       mask_doc(R"(["compute", {"attn": [1, 0, 1], "mlp": [0, 1, 1]}, "compute"])", 3,
                R"(, "depth": 2)"),
       "attn"},
      {"per-block value 2",
       mask_doc(R"(["compute", {"attn": [1, 2], "mlp": [0, 1]}, "compute"])", 3, R"(, "depth": 2)"),
       "0 or 1"},
      {"per-block missing mlp",
       mask_doc(R"(["compute", {"attn": [1, 0]}, "compute"])", 3, R"(, "depth": 2)"), "mlp"},
      {"unknown top-level key",
       mask_doc(R"(["compute", "reuse", "compute"])", 3, R"(, "interval": 2)"), "interval"},
      {"unknown entry key",
       mask_doc(R"(["compute", {"attn": [1, 0], "mlp": [0, 1], "gate": [1, 1]}, "compute"])", 3,
                R"(, "depth": 2)"),
       "gate"},
      {"unknown entry word", mask_doc(R"(["compute", "skip", "compute"])", 3), "skip"},
      {"number entry", mask_doc(R"(["compute", 1, "compute"])", 3), "schedule[1]"},
      {"reuse at step 0", mask_doc(R"(["reuse", "compute", "compute"])", 3), "block 0"},
      {"per-block reuse at step 0",
       mask_doc(R"([{"attn": [1, 1], "mlp": [1, 0]}, "compute", "compute"])", 3, R"(, "depth": 2)"),
       "block 1 mlp"},
      {"invalid JSON", R"({"format": "eoc-cache-mask", "version": 1,)", "JSON"},
      {"missing format",
       R"({"version": 1, "steps": 3, "schedule": ["compute", "compute", "compute"]})", "format"},
      {"wrong format", R"({"format": "eoc-prior", "version": 1, "steps": 3, "schedule": []})",
       "format"},
      {"version 2",
       R"({"format": "eoc-cache-mask", "version": 2, "steps": 3, )"
       R"("schedule": ["compute", "compute", "compute"]})",
       "version"},
      {"not an object", R"(["compute", "reuse", "compute"])", "format"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto msg = error_message([&] { eoc::plan_from_mask_json(c.text, "bad.json", 3, 2); });
    EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expect_in_message), std::string::npos) << msg;
  }
}

TEST(CacheMask, NonStringFormatIsAnEocError) {
  // A mistyped field must still give eoc's one-line error, not a JSON library exception.
  const auto msg = error_message([] {
    eoc::plan_from_mask_json(R"({"format": 5, "version": 1, "steps": 1, "schedule": ["compute"]})",
                             "typed.json", 1, 2);
  });
  EXPECT_NE(msg.find("typed.json"), std::string::npos) << msg;
}

TEST(CacheMask, PerBlockEntriesRequireDepth) {
  // docs/CACHE_MASKS.md: `depth` is required when any entry is per-block.
  const auto msg = error_message([] {
    eoc::plan_from_mask_json(mask_doc(R"(["compute", {"attn": [1, 0], "mlp": [0, 1]}, "compute"])"),
                             "nodepth.json", 3, 2);
  });
  EXPECT_NE(msg.find("depth"), std::string::npos) << msg;
}

std::string shipped(const std::string& name) {
  return std::string(EOC_SOURCE_DIR) + "/configs/cache/" + name;
}

TEST(CacheMask, ShippedPaperMasks) {
  struct Case {
    const char* file;
    double level;
    std::vector<int64_t> computed;
  };
  const std::vector<Case> cases = {
      {"eoc-ddim20-25.json", 0.25, {0, 2, 4, 6, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}},
      {"eoc-ddim20-50.json", 0.50, {0, 2, 4, 6, 8, 10, 12, 14, 16, 18}},
      {"eoc-ddim20-75.json", 0.75, {0, 4, 8, 12, 16}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    for (int64_t depth : {28, 6}) {
      const auto p = parse_cache_plan("mask:" + shipped(c.file), 20, depth);
      EXPECT_DOUBLE_EQ(p.caching_level(), c.level);
      EXPECT_EQ(computed_steps(p), c.computed);
      expect_whole_steps(p);
    }
    // Tied to 20 steps.
    EXPECT_THROW(parse_cache_plan("mask:" + shipped(c.file), 50, 28), eoc::Error);
  }
}

}  // namespace

// The budget search's plans (cache/schedule_search.hpp) and the mask files that carry them.
namespace {

TEST(BudgetPlans, ForcedStepsAndWhetherTheBudgetFits) {
  auto n = eoc::budget_steps(0.4, 0, 20);
  EXPECT_EQ(n.forced, 1);  // step 0 is always computed
  EXPECT_TRUE(n.fits());
  n = eoc::budget_steps(0.2, 5, 20);
  EXPECT_EQ(n.total, 4);
  EXPECT_EQ(n.forced, 5);
  EXPECT_FALSE(n.fits());                              // fewer computed steps than the warm-up
  EXPECT_TRUE(eoc::budget_steps(0.99, 0, 20).fits());  // 19 of 20 steps
  EXPECT_FALSE(eoc::budget_steps(1.0, 0, 20).fits());  // computes everything
}

TEST(BudgetPlans, BudgetStepsRoundDown) {
  EXPECT_EQ(eoc::budget_steps(0.4, 0, 20).total, 8);
  EXPECT_EQ(eoc::budget_steps(0.55, 0, 20).total, 11);
  EXPECT_EQ(eoc::budget_steps(0.3, 0, 250).total, 75);  // 0.3 * 250 is 74.99999... in binary
  EXPECT_EQ(eoc::budget_steps(0.39, 0, 20).total, 7);
  EXPECT_EQ(eoc::budget_steps(0.04, 0, 20).total, 0);
}

TEST(BudgetPlans, PlanComputingComputesExactlyThoseSteps) {
  const std::vector<int64_t> c{0, 1, 3, 6, 9, 12, 15, 18};
  const auto p = CachePlan::computing(20, 3, c, "budget:0.4");
  EXPECT_EQ(computed_steps(p), c);
  expect_whole_steps(p);
  EXPECT_EQ(p.spec(), "budget:0.4");
  EXPECT_DOUBLE_EQ(p.caching_level(), 12.0 / 20.0);
  p.validate();
}

TEST(BudgetPlans, MaskTextReadsBackToTheSameLayout) {
  // Whole steps: "compute"/"reuse" entries, no depth needed.
  const auto whole = CachePlan::computing(10, 2, {0, 2, 5, 9}, "budget:0.4");
  const auto text = eoc::mask_json_text(whole, "test");
  EXPECT_EQ(text.find("\"depth\""), std::string::npos);
  EXPECT_EQ(eoc::plan_from_mask_json(text, "m.json", 10, 2).layout(), whole.layout());
  // A step that mixes: per-block lists (and the depth).
  auto mixed = whole;
  mixed.set_reuse(3, 1, Branch::attn, false);
  const auto mixed_text = eoc::mask_json_text(mixed, "test");
  EXPECT_NE(mixed_text.find("\"depth\": 2"), std::string::npos);
  EXPECT_EQ(eoc::plan_from_mask_json(mixed_text, "m.json", 10, 2).layout(), mixed.layout());
}

}  // namespace
