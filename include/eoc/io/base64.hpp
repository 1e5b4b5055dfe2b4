// Base64 (RFC 4648, standard alphabet, '=' padding) of a byte string: how priors store their
// float32 vectors inside JSON.
#pragma once
#include <string>

namespace eoc {

std::string base64_encode(const std::string& bytes);
// False (and `bytes` unspecified) when `text` is not canonical padded base64.
bool base64_decode(const std::string& text, std::string& bytes);

}  // namespace eoc
