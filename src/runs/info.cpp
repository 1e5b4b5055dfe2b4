// `eoc info`: the model's configuration, size and cost.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

#include "eoc/model/dit_model.hpp"
#include "eoc/model/runtime_env.hpp"
#include "eoc/runs/commands.hpp"
#include "eoc/setup/run_setup.hpp"

namespace eoc {
namespace {

// The variables of the CPU runtime settings as this process sees them: what the launcher set,
// or the user's own values.
nlohmann::json runtime_env() {
  nlohmann::json env = nlohmann::json::object();
  for (const auto& [name, default_value] : kCpuRuntimeEnv) {
    const char* value = std::getenv(name);
    env[name] = value ? nlohmann::json(value) : nlohmann::json(nullptr);
  }
  return env;
}

}  // namespace

void run_info(const InfoOptions& options) {
  const auto device = checked_device(options.model.device);
  const std::string path =
      options.model.model_path.empty() ? default_model_path() : options.model.model_path;
  const auto model = DitModel::load(path, device, options.model.dtype);
  const auto& c = model->config();
  nlohmann::json j = {{"path", path},
                      {"sha256", model->sha256()},
                      {"name", c.name},
                      {"contract_version", c.contract_version},
                      {"prediction", c.prediction},
                      {"family", c.family},
                      {"input_size", c.input_size},
                      {"patch_size", c.patch_size},
                      {"tokens", c.tokens()},
                      {"in_channels", c.in_channels},
                      {"out_channels", c.out_channels},
                      {"hidden_size", c.hidden_size},
                      {"depth", c.depth},
                      {"num_heads", c.num_heads},
                      {"num_classes", c.num_classes},
                      {"learn_sigma", c.learn_sigma},
                      {"parameters", model->parameter_count()},
                      {"gflops_per_forward", c.gflops_per_forward()},
                      {"runtime_env", runtime_env()}};
  if (options.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::cout << "model          " << c.name << "\n"
            << "file           " << path << "\n"
            << "sha256         " << model->sha256() << "\n"
            << "predicts       " << c.prediction << " (" << c.family << ", contract "
            << c.contract_version << "; samplers: "
            << (c.prediction == "velocity" ? "euler, heun, sde, sde-heun" : "ddim, ddpm") << ")\n"
            << "input          " << c.input_size << "x" << c.input_size << "x" << c.in_channels
            << " (" << c.tokens() << " tokens of patch " << c.patch_size << ")\n"
            << "depth          " << c.depth << "\n"
            << "hidden size    " << c.hidden_size << "\n"
            << "heads          " << c.num_heads << "\n"
            << "patch size     " << c.patch_size << "\n"
            << "classes        " << c.num_classes << " (null label " << c.num_classes << ")\n"
            << "learn_sigma    " << (c.learn_sigma ? "yes" : "no") << " (" << c.out_channels
            << " output channels)\n"
            << "parameters     " << model->parameter_count() << "\n"
            << "GFLOPs/forward " << c.gflops_per_forward()
            << " (multiply-adds per image, as the DiT paper counts)\n"
            << "CPU runtime   ";
  for (const auto& [name, value] : j["runtime_env"].items())
    std::cout << " " << name << "=" << (value.is_null() ? "(unset)" : value.get<std::string>());
  std::cout << "\n";
}

}  // namespace eoc
