// The untrusted-file parsers of eoc, each fed one input the way eoc reads that file. Shared by
// the libFuzzer targets (tests/fuzz/fuzz_*.cpp) and the regression test that replays every input
// they ever found (tests/cpp/test_fuzz_regressions.cpp).
//
// Contract checked: every input either parses or throws eoc::Error (one line naming the file).
// Each function here swallows eoc::Error and lets anything else escape (another exception type,
// a crash, a sanitizer report): that is a finding.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eoc/base/error.hpp"
#include "eoc/base/log.hpp"
#include "eoc/cli/commands.hpp"
#include "eoc/cli/config_file.hpp"
#include "eoc/files/mask_file.hpp"
#include "eoc/files/prior_file.hpp"
#include "eoc/files/run_record.hpp"
#include "eoc/files/run_settings.hpp"
#include "eoc/io/files.hpp"
#include "eoc/io/npy.hpp"
#include "eoc/io/sha256.hpp"
#include "eoc/runs/commands.hpp"
#include "eoc/setup/options.hpp"

namespace eoc_fuzz {

namespace fs = std::filesystem;

// A private folder for the files the parsers read, made once per process (removed at exit).
inline const fs::path& work_dir() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("eoc_fuzz_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(fs::temp_directory_path() / ("eoc_fuzz_" + std::to_string(::getpid())), ec);
    });
    eoc::log::set_level(eoc::log::Level::off);  // pack logs progress; keep fuzzing output quiet
    return d;
  }();
  return dir;
}

inline std::string put_file(const std::string& name, const std::string& bytes) {
  const std::string path = (work_dir() / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// Runs `parse`; eoc::Error is the expected way to refuse an input.
inline void expect_ok_or_eoc_error(const std::function<void()>& parse) {
  try {
    parse();
  } catch (const eoc::Error&) {
  }
}

// `--cache mask:FILE.json`: the shipped masks' setting (20 steps, DiT-XL's 28 blocks) and a tiny
// one (4 steps, 2 blocks) so per-block schedules of small seeds are reachable too.
inline void parse_mask(const std::string& bytes) {
  for (const auto& size : {std::pair<int64_t, int64_t>{20, 28}, {4, 2}})
    expect_ok_or_eoc_error([&] {
      const auto plan = eoc::plan_from_mask_json(bytes, "fuzz.json", size.first, size.second);
      (void)plan.layout();
    });
}

// `--prior FILE.json` as written, then re-signed (checksum recomputed over the content) so the
// fuzzer also reaches the fields behind the checksum, as a hand edit that fixes it would.
inline void parse_prior(const std::string& bytes) {
  expect_ok_or_eoc_error([&] { (void)eoc::load_prior(put_file("prior.json", bytes)); });
  std::string resigned;
  try {
    nlohmann::json doc = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object()) return;
    doc.erase("checksum");
    doc["checksum"] = eoc::sha256_hex(doc.dump());
    resigned = doc.dump(1);
  } catch (const nlohmann::json::exception&) {
    return;  // not something a re-signing hand edit could produce
  }
  expect_ok_or_eoc_error([&] { (void)eoc::load_prior(put_file("prior.json", resigned)); });
}

// `--config FILE.json` for each subcommand that takes one: the real flag set, then the file.
inline void parse_config(const std::string& bytes) {
  const std::string path = put_file("config.json", bytes);
  for (const char* sub : {"sample", "compare", "calibrate"}) {
    CLI::App app{"eoc"};
    app.require_subcommand(1);
    (void)eoc::cli::register_commands(app);
    std::vector<std::string> args = {"eoc", sub, "--config", path};
    if (std::string(sub) == "calibrate") args.insert(args.end(), {"--out", "prior.json"});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    app.parse(static_cast<int>(argv.size()), argv.data());  // fixed, valid command line
    expect_ok_or_eoc_error([&] { eoc::cli::apply_config_file(app); });
  }
}

// .npy reader (float32 / uint8).
inline void parse_npy(const std::string& bytes) {
  expect_ok_or_eoc_error([&] { (void)eoc::read_npy(put_file("x.npy", bytes)); });
}

// A folder's run record `eoc-run-0-of-1.json` (written by sample --out-dir, read back by a
// resumed run and by `eoc pack`): read, compared with a second valid record, then packed (the
// folder holds no images, so pack stops at its checks).
inline void parse_run_record(const std::string& bytes) {
  const fs::path dir = work_dir() / "records";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream out(dir / "eoc-run-0-of-2.json", std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  {
    std::ofstream out(dir / "eoc-run-1-of-2.json", std::ios::binary);
    out << R"({"format": "eoc-sample-dir", "version": 1, "settings": {"num_samples": 2,)"
           R"( "cache": {"spec": "none"}, "steps": 4}, "shard": {"index": 1, "count": 2}})";
  }
  expect_ok_or_eoc_error([&] {
    const auto records = eoc::read_run_records(dir.string());
    for (const auto& r : records) (void)eoc::field_text(r.doc["settings"], "cache.spec");
    eoc::check_records_agree(records, dir.string());
  });
#ifdef EOC_HAVE_LIBZIP
  expect_ok_or_eoc_error([&] {
    fs::remove(dir / "eoc-run-1-of-2.json");
    eoc::PackOptions o;
    o.dir = dir.string();
    o.out = (work_dir() / "packed.npz").string();
    eoc::run_pack(o);
  });
#endif
}

// Target name (the folder name under tests/fuzz/corpus and tests/fuzz/regressions) -> parser.
inline const std::map<std::string, void (*)(const std::string&)>& targets() {
  static const std::map<std::string, void (*)(const std::string&)> t = {
      {"fuzz_mask", parse_mask},
      {"fuzz_prior", parse_prior},
      {"fuzz_config", parse_config},
      {"fuzz_npy", parse_npy},
      {"fuzz_run_record", parse_run_record}};
  return t;
}

}  // namespace eoc_fuzz
