#include "eoc/files/gate_file.hpp"

#include "eoc/base/error.hpp"
#include "eoc/io/files.hpp"
#include "eoc/io/sha256.hpp"

namespace eoc {

using json = nlohmann::json;

void save_gate_file(const std::string& path, const GateFile& file) {
  json doc = {{"format", GateFile::kFormat},
              {"version", GateFile::kVersion},
              {"gate", file.gate.text()},
              {"correct", {{"corrector", file.corrector}, {"order", file.order}}},
              {"assumes", file.assumes},
              {"calibration", file.calibration.is_null() ? json::object() : file.calibration}};
  doc["checksum"] = sha256_hex(doc.dump());
  write_file_atomic(path, doc.dump(1) + "\n");
}

bool is_gate_file(const std::string& path) {
  try {
    const json doc = json::parse(read_file(path));
    return doc.is_object() && doc.value("format", "") == GateFile::kFormat;
  } catch (const std::exception&) {
    return false;
  }
}

GateFile load_gate_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    json doc = json::parse(text);
    if (!doc.is_object() || doc.value("format", "") != GateFile::kFormat)
      fail("gate file '", path, "' is not an eoc-gate JSON file");
    if (doc.value("version", 0) != GateFile::kVersion)
      fail("gate file '", path, "' has version ", doc.value("version", 0), "; this eoc reads ",
           GateFile::kVersion);
    const std::string checksum = doc.value("checksum", "");
    doc.erase("checksum");
    if (sha256_hex(doc.dump()) != checksum)
      fail("gate file '", path, "' fails its checksum (truncated or edited)");
    GateFile f;
    const auto gate = GateSpec::parse(doc.at("gate").get<std::string>());
    if (!gate) fail("gate file '", path, "' names no gate ('", doc.at("gate").dump(), "')");
    f.gate = *gate;
    f.corrector = doc.at("correct").at("corrector").get<std::string>();
    f.order = doc.at("correct").at("order").get<int>();
    f.assumes = doc.at("assumes");
    f.calibration = doc.at("calibration");
    f.sha256 = sha256_hex(text);
    return f;
  } catch (const json::exception& e) {
    fail("gate file '", path, "' is malformed: ", e.what());
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.find(path) != std::string::npos) throw;
    fail("gate file '", path, "': ", what);
  }
}

}  // namespace eoc
