#include "eoc/error.hpp"
#include "eoc/pipeline.hpp"
namespace eoc {
void run_calibrate(const CalibrateOptions&) { fail("calibrate: not implemented yet"); }
}  // namespace eoc
