# Resolves eoc's dependencies into small imported targets, so the rest of the build does not
# care where they came from:
#   eoc::torch  LibTorch (Debian's libtorch-dev, or any LibTorch via CMAKE_PREFIX_PATH)
#   eoc::cli11, eoc::spdlog, eoc::json, eoc::stb   header-only libraries: from Debian packages
#       through find_package, or all from one folder given as -DEOC_HEADER_DIR=... (used where only
#       LibTorch is installed, e.g. a GPU machine with pip's torch). That folder holds
#       CLI/CLI.hpp, spdlog/, fmt/, nlohmann/json.hpp and stb_image_write.h (or stb/stb_image_write.h).
#   eoc::zip    libzip, optional (only `eoc pack` needs it); EOC_HAVE_LIBZIP tells whether found.
# Nothing here is third-party code: these are build rules only (see third_party/README.md).

find_package(Torch REQUIRED)
add_library(eoc_torch INTERFACE)
target_link_libraries(eoc_torch INTERFACE ${TORCH_LIBRARIES})
# TORCH_CXX_FLAGS carries the C++ ABI choice LibTorch was built with.
if(TORCH_CXX_FLAGS)
  separate_arguments(_eoc_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(eoc_torch INTERFACE ${_eoc_torch_flags})
endif()
add_library(eoc::torch ALIAS eoc_torch)

foreach(_lib cli11 spdlog json stb)
  add_library(eoc_${_lib} INTERFACE)
  add_library(eoc::${_lib} ALIAS eoc_${_lib})
endforeach()

if(EOC_HEADER_DIR)
  foreach(_hdr CLI/CLI.hpp spdlog/spdlog.h fmt/format.h nlohmann/json.hpp)
    if(NOT EXISTS "${EOC_HEADER_DIR}/${_hdr}")
      message(FATAL_ERROR "EOC_HEADER_DIR=${EOC_HEADER_DIR} lacks ${_hdr}")
    endif()
  endforeach()
  target_include_directories(eoc_cli11 SYSTEM INTERFACE "${EOC_HEADER_DIR}")
  target_include_directories(eoc_json SYSTEM INTERFACE "${EOC_HEADER_DIR}")
  target_include_directories(eoc_spdlog SYSTEM INTERFACE "${EOC_HEADER_DIR}")
  # Header-only spdlog over header-only fmt: no compiled library is needed.
  target_compile_definitions(eoc_spdlog INTERFACE SPDLOG_HEADER_ONLY SPDLOG_FMT_EXTERNAL FMT_HEADER_ONLY)
  find_path(EOC_STB_DIR stb_image_write.h PATHS "${EOC_HEADER_DIR}" "${EOC_HEADER_DIR}/stb"
            NO_DEFAULT_PATH REQUIRED)
else()
  find_package(CLI11 CONFIG REQUIRED)
  find_package(spdlog CONFIG REQUIRED)
  find_package(nlohmann_json CONFIG REQUIRED)
  target_link_libraries(eoc_cli11 INTERFACE CLI11::CLI11)
  target_link_libraries(eoc_spdlog INTERFACE spdlog::spdlog)
  target_link_libraries(eoc_json INTERFACE nlohmann_json::nlohmann_json)
  find_path(EOC_STB_DIR stb_image_write.h PATH_SUFFIXES stb REQUIRED)
endif()
target_include_directories(eoc_stb SYSTEM INTERFACE "${EOC_STB_DIR}")

# libzip's own CMake package insists on its command-line tools being installed; the library and
# header are all eoc needs, so look for those directly.
find_library(EOC_LIBZIP_LIBRARY NAMES zip)
find_path(EOC_LIBZIP_INCLUDE zip.h)
if(EOC_LIBZIP_LIBRARY AND EOC_LIBZIP_INCLUDE)
  set(EOC_HAVE_LIBZIP ON)
  add_library(eoc_zip INTERFACE)
  target_link_libraries(eoc_zip INTERFACE ${EOC_LIBZIP_LIBRARY})
  target_include_directories(eoc_zip SYSTEM INTERFACE ${EOC_LIBZIP_INCLUDE})
  add_library(eoc::zip ALIAS eoc_zip)
else()
  set(EOC_HAVE_LIBZIP OFF)
  message(STATUS "libzip not found: `eoc pack` is left out of this build")
endif()
