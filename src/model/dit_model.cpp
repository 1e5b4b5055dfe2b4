#include "eoc/model/dit_model.hpp"

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <filesystem>
#include <future>

#include "eoc/base/error.hpp"
#include "eoc/io/sha256.hpp"

namespace eoc {
namespace {

constexpr int64_t kOldestContract = 1;
constexpr int64_t kNewestContract = 2;

int64_t int_attr(const torch::jit::Module& m, const std::string& name, const std::string& path) {
  if (!m.hasattr(name) || !m.attr(name).isInt())
    fail("model '", path, "' lacks the integer attribute '", name,
         "' of the eoc model contract (export it with scripts/tools/export_dit.py)");
  return m.attr(name).toInt();
}

void require_method(const torch::jit::Module& m, const std::string& name, const std::string& path,
                    const std::string& where) {
  if (!m.find_method(name))
    fail("model '", path, "' lacks the method '", where, name,
         "' of the eoc model contract (export it with scripts/tools/export_dit.py)");
}

ModelConfig read_config(const torch::jit::Module& m, const std::string& path) {
  ModelConfig c;
  c.contract_version = int_attr(m, "contract_version", path);
  if (c.contract_version < kOldestContract || c.contract_version > kNewestContract)
    fail("model '", path, "' has contract version ", c.contract_version, ", this eoc reads ",
         kOldestContract, " to ", kNewestContract,
         " (re-export it with this version's scripts/tools/export_dit.py)");
  // Version 1: a DiT (eps, integer timesteps). Version 2 says what the model predicts.
  c.prediction = "eps";
  c.family = "dit";
  if (c.contract_version >= 2) {
    if (!m.hasattr("prediction") || !m.attr("prediction").isString())
      fail("model '", path,
           "' lacks the string attribute 'prediction' of the eoc model contract 2");
    c.prediction = m.attr("prediction").toStringRef();
    if (c.prediction != "eps" && c.prediction != "velocity")
      fail("model '", path, "' predicts '", c.prediction, "'; eoc samples 'eps' (DiT) and ",
           "'velocity' (SiT family) models");
    if (m.hasattr("model_family") && m.attr("model_family").isString())
      c.family = m.attr("model_family").toStringRef();
  }
  c.input_size = int_attr(m, "input_size", path);
  c.patch_size = int_attr(m, "patch_size", path);
  c.in_channels = int_attr(m, "in_channels", path);
  c.out_channels = int_attr(m, "out_channels", path);
  c.hidden_size = int_attr(m, "hidden_size", path);
  c.depth = int_attr(m, "depth", path);
  c.num_heads = int_attr(m, "num_heads", path);
  c.num_classes = int_attr(m, "num_classes", path);
  if (!m.hasattr("learn_sigma") || !m.attr("learn_sigma").isBool())
    fail("model '", path, "' lacks the bool attribute 'learn_sigma' of the eoc model contract");
  c.learn_sigma = m.attr("learn_sigma").toBool();
  c.name = m.hasattr("model_name") && m.attr("model_name").isString()
               ? m.attr("model_name").toStringRef()
               : std::string("unnamed");
  const bool sane = c.input_size > 0 && c.patch_size > 0 && c.input_size % c.patch_size == 0 &&
                    c.in_channels > 0 && c.hidden_size > 0 && c.depth > 0 && c.num_heads > 0 &&
                    c.num_classes > 0 && c.out_channels == c.in_channels * (c.learn_sigma ? 2 : 1);
  if (!sane)
    fail("model '", path, "' has an inconsistent configuration (input ", c.input_size, ", patch ",
         c.patch_size, ", channels ", c.in_channels, "->", c.out_channels, ", depth ", c.depth,
         ")");
  return c;
}

}  // namespace

const char* branch_name(Branch b) { return b == Branch::attn ? "attn" : "mlp"; }

int64_t ModelConfig::tokens() const {
  const int64_t side = input_size / patch_size;
  return side * side;
}

double ModelConfig::attn_gflops() const {
  const double t = tokens(), d = hidden_size;
  return (t * d * 3 * d + 2 * t * t * d + t * d * d) / 1e9;
}

double ModelConfig::mlp_gflops() const {
  const double t = tokens(), d = hidden_size;
  return (2 * t * d * 4 * d) / 1e9;
}

double ModelConfig::gflops_per_forward() const {
  const double t = tokens(), d = hidden_size, p2 = double(patch_size) * patch_size;
  const double per_block = attn_gflops() + mlp_gflops() + 6 * d * d / 1e9;
  const double embed = (t * d * in_channels * p2 + 256 * d + d * d) / 1e9;
  const double final_layer = (t * d * p2 * out_channels + 2 * d * d) / 1e9;
  return depth * per_block + embed + final_layer;
}

struct DitModel::Impl {
  torch::jit::Module module;
  std::vector<torch::jit::Method> modulation, attn, mlp;
};

DitModel::DitModel() : impl_(std::make_unique<Impl>()) {}
DitModel::~DitModel() = default;

std::shared_ptr<const DitModel> DitModel::load(const std::string& path, const at::Device& device,
                                               at::ScalarType dtype, bool batch_invariant) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("model file '", path, "' does not exist");
  if (!fs::is_regular_file(path, ec)) fail("model path '", path, "' is not a file");
  if (fs::file_size(path, ec) == 0) fail("model file '", path, "' is empty");
  std::shared_ptr<DitModel> model(new DitModel());
  // The file's fingerprint (priors and run reports name it) is read on another core while
  // TorchScript parses the file: hashing took about half of the load time.
  auto file_hash = std::async(std::launch::async, sha256_file_hex, path);
  // Plain interpreter: no profiling warm-up runs and no fusion passes that change rounding.
  torch::jit::setGraphExecutorOptimize(false);
  try {
    model->impl_->module = torch::jit::load(path, device);
  } catch (const c10::Error&) {
    fail("model file '", path,
         "' is not a TorchScript module (expected a file written by scripts/tools/export_dit.py)");
  }
  auto& m = model->impl_->module;
  model->config_ = read_config(m, path);
  for (const char* name : {"embed", "final", "forward"}) require_method(m, name, path, "");
  if (!m.hasattr("blocks") || !m.attr("blocks").isModule())
    fail("model '", path, "' lacks the 'blocks' module list of the eoc model contract");
  const auto blocks = m.attr("blocks").toModule();
  for (int64_t i = 0; i < model->config_.depth; ++i) {
    const std::string name = std::to_string(i);
    if (!blocks.hasattr(name) || !blocks.attr(name).isModule())
      fail("model '", path, "' declares depth ", model->config_.depth, " but lacks blocks.", i);
    const auto block = blocks.attr(name).toModule();
    for (const char* method : {"modulation", "attn", "mlp"})
      require_method(block, method, path, "blocks." + name + ".");
    model->impl_->modulation.push_back(block.get_method("modulation"));
    model->impl_->attn.push_back(block.get_method("attn"));
    model->impl_->mlp.push_back(block.get_method("mlp"));
  }
  m.eval();
  m.to(dtype);
  for (auto sub : m.modules())
    if (sub.hasattr("batch_invariant")) sub.setattr("batch_invariant", batch_invariant);
  model->batch_invariant_ = batch_invariant;
  for (const auto& p : m.parameters()) model->parameter_count_ += p.numel();
  model->path_ = path;
  model->sha256_ = file_hash.get();
  model->device_ = device;
  model->dtype_ = dtype;
  return model;
}

std::pair<at::Tensor, at::Tensor> DitModel::embed(const at::Tensor& x, const at::Tensor& t,
                                                  const at::Tensor& y) const {
  auto out = impl_->module.get_method("embed")({x, t, y}).toTuple();
  return {out->elements()[0].toTensor(), out->elements()[1].toTensor()};
}

Modulation DitModel::modulation(int64_t block, const at::Tensor& c) const {
  auto out = impl_->modulation[block]({c}).toTuple();
  const auto& e = out->elements();
  return {e[0].toTensor(), e[1].toTensor(), e[2].toTensor(),
          e[3].toTensor(), e[4].toTensor(), e[5].toTensor()};
}

at::Tensor DitModel::branch(int64_t block, Branch b, const at::Tensor& tokens,
                            const at::Tensor& shift, const at::Tensor& scale) const {
  auto& method = b == Branch::attn ? impl_->attn[block] : impl_->mlp[block];
  return method({tokens, shift, scale}).toTensor();
}

at::Tensor DitModel::final(const at::Tensor& tokens, const at::Tensor& c) const {
  return impl_->module.get_method("final")({tokens, c}).toTensor();
}

at::Tensor DitModel::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) const {
  return impl_->module.forward({x, t, y}).toTensor();
}

}  // namespace eoc
