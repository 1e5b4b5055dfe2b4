#include "eoc/npy.hpp"

#include <cstring>

#include "eoc/error.hpp"

namespace eoc {

std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape) {
  std::string dims = "(";
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  else if (shape.size() == 1) dims.resize(dims.size() - 1);
  dims += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + dims + ", }";
  // Magic, version 1.0, header length; the header is padded so the data starts 64-aligned.
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  if (header.size() > 0xffff) fail("internal: .npy header of ", header.size(), " bytes is too long");
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  return out + header;
}

std::string npy_bytes(const at::Tensor& tensor) {
  const auto t = tensor.contiguous().cpu();
  std::string descr;
  if (t.scalar_type() == at::kFloat) descr = "<f4";
  else if (t.scalar_type() == at::kByte) descr = "|u1";
  else fail("internal: .npy writer supports float32 and uint8 only");
  std::string out = npy_header(descr, t.sizes().vec());
  out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

void write_npy(const std::string& path, const at::Tensor& tensor) {
  write_file_atomic(path, npy_bytes(tensor));
}

at::Tensor read_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    fail("'", path, "' is not a .npy file");
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  if (bytes.size() < 10 + header_len) fail("'", path, "' is truncated");
  const std::string header = bytes.substr(10, header_len);
  at::ScalarType type;
  if (header.find("'<f4'") != std::string::npos) type = at::kFloat;
  else if (header.find("'|u1'") != std::string::npos) type = at::kByte;
  else fail("'", path, "' holds a dtype other than float32/uint8");
  if (header.find("'fortran_order': False") == std::string::npos)
    fail("'", path, "' is in Fortran order");
  const auto open = header.find('(', header.find("'shape'"));
  const auto close = header.find(')', open);
  std::vector<int64_t> shape;
  std::string dims = header.substr(open + 1, close - open - 1);
  for (size_t pos = 0; pos < dims.size();) {
    const auto comma = dims.find(',', pos);
    const auto item = dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (item.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(item));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  auto out = at::empty(shape, type);
  const size_t need = out.numel() * out.element_size();
  if (bytes.size() - 10 - header_len != need) fail("'", path, "' is truncated or has extra bytes");
  std::memcpy(out.data_ptr(), bytes.data() + 10 + header_len, need);
  return out;
}

}  // namespace eoc
