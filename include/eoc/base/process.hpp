// Facts about the running process that several layers need once each.
#pragma once
#include <string>

namespace eoc {

// The absolute path of this process's executable (/proc/self/exe resolved); "" when the kernel
// does not say. The launcher starts eoc-torch beside it, eoc-torch re-executes itself with the
// CPU runtime settings, and the built-in model is looked up from its install prefix.
std::string executable_path();

}  // namespace eoc
