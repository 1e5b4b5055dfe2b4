// One library function per subcommand: the entry points the CLI calls. Data flows one way:
// options -> model (+ VAE) -> timestep schedule -> cache plan (+ corrector) -> sampler loop ->
// images -> sinks (PNG grid, PNG files, .npy) + a JSON run report.
#pragma once

#include "eoc/setup/options.hpp"

namespace eoc {

// Prints the model's configuration, parameter count and GFLOPs per forward to stdout.
void run_info(const InfoOptions& options);
void run_sample(const SampleOptions& options);
// Samples the same seeds uncached and cached and prints paired quality and both wall times.
void run_compare(const CompareOptions& options);
// Prior extraction and judgment; writes the JSON prior.
void run_calibrate(const CalibrateOptions& options);
// Packs DIR/000000.png.. into an npz (key arr_0, uint8 (N, H, W, 3)) plus a settings JSON.
void run_pack(const PackOptions& options);

}  // namespace eoc
