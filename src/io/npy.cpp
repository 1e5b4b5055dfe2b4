#include "eoc/io/npy.hpp"

#include <algorithm>
#include <cstring>

#include "eoc/base/error.hpp"
#include "eoc/io/files.hpp"

namespace eoc {

std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape) {
  std::string dims = "(";
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1)
    dims.resize(dims.size() - 2);
  else if (shape.size() == 1)
    dims.resize(dims.size() - 1);
  dims += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + dims + ", }";
  // Magic, version 1.0, header length; the header is padded so the data starts 64-aligned.
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  EOC_ASSERT(header.size() <= 0xffff, ".npy header of ", header.size(), " bytes");
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  return out + header;
}

std::string npy_bytes(const at::Tensor& tensor) {
  const auto t = tensor.contiguous().cpu();
  std::string descr;
  if (t.scalar_type() == at::kFloat)
    descr = "<f4";
  else if (t.scalar_type() == at::kByte)
    descr = "|u1";
  else
    EOC_ASSERT(false, ".npy writer asked for ", t.scalar_type(), " (float32 and uint8 only)");
  std::string out = npy_header(descr, t.sizes().vec());
  out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

void write_npy(const std::string& path, const at::Tensor& tensor) {
  write_file_atomic(path, npy_bytes(tensor));
}

namespace {

// "(2, 3)" in the header's 'shape' entry -> {2, 3}; every dimension a plain non-negative integer.
// "()" is a scalar and "(3,)" a vector (numpy's trailing comma); anything else is refused.
std::vector<int64_t> parse_npy_shape(const std::string& header, const std::string& path) {
  const auto key = header.find("'shape'");
  const auto open = key == std::string::npos ? key : header.find('(', key);
  const auto close = open == std::string::npos ? open : header.find(')', open);
  if (close == std::string::npos) fail("'", path, "' has no readable 'shape' in its header");
  const std::string dims = header.substr(open + 1, close - open - 1);
  std::vector<std::string> items;
  for (size_t pos = 0;;) {
    const auto comma = std::min(dims.find(',', pos), dims.size());
    const auto first = dims.find_first_not_of(' ', pos);
    items.push_back(first < comma
                        ? dims.substr(first, dims.find_last_not_of(' ', comma - 1) - first + 1)
                        : std::string());
    if (comma == dims.size()) break;
    pos = comma + 1;
  }
  if (items.back().empty()) items.pop_back();  // "(3,)" and "()"
  std::vector<int64_t> shape;
  for (const auto& item : items) {
    if (item.empty() || item.size() > 15 ||
        item.find_first_not_of("0123456789") != std::string::npos)
      fail("'", path, "' has a bad dimension '", item, "' in its shape '(", dims,
           ")' (expected integers 0..10^15)");
    shape.push_back(std::stoll(item));
  }
  if (shape.size() > 8) fail("'", path, "' has ", shape.size(), " dimensions (expected at most 8)");
  return shape;
}

}  // namespace

at::Tensor read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    fail("'", path, "' is not a .npy file");
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  if (bytes.size() < 10 + header_len) fail("'", path, "' is truncated");
  const std::string header = bytes.substr(10, header_len);
  at::ScalarType type;
  if (header.find("'<f4'") != std::string::npos)
    type = at::kFloat;
  else if (header.find("'|u1'") != std::string::npos)
    type = at::kByte;
  else
    fail("'", path, "' holds a dtype other than float32/uint8");
  if (header.find("'fortran_order': False") == std::string::npos)
    fail("'", path, "' is in Fortran order");
  const auto shape = parse_npy_shape(header, path);
  const size_t element_size = type == at::kFloat ? 4 : 1;
  const size_t payload = bytes.size() - 10 - header_len;
  size_t count = 1;
  for (int64_t d : shape) {
    // Checked before any allocation: a header may claim more than the file holds.
    if (d != 0 && count > payload / element_size / static_cast<size_t>(d))
      fail("'", path, "' is truncated: its shape needs more bytes than the file holds");
    count *= static_cast<size_t>(d);
  }
  if (payload != count * element_size) fail("'", path, "' is truncated or has extra bytes");
  auto out = at::empty(shape, type);
  if (count > 0) std::memcpy(out.data_ptr(), bytes.data() + 10 + header_len, payload);
  return out;
}

}  // namespace eoc
