// SHA-256 (FIPS 180-4) for model and prior fingerprints: the same digest `sha256sum` prints.
#pragma once
#include <cstdint>
#include <string>

namespace eoc {

std::string sha256_hex(const std::string& bytes);
std::string sha256_file_hex(const std::string& path);  // streams the file; Error if unreadable

}  // namespace eoc
