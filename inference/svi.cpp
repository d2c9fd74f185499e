// SVI steps and checkpoints (params + optimiser state + RNG state in one tensor archive).
#include "inference/svi.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>

#include "core/error.h"
#include "ppl/param_store.h"
#include "ppl/trace.h"

namespace ember::infer {

double detail::svi_step(const Program& model, const Program& guide, ELBO& loss, Optimizer& optim,
                        const GradientHook& hook) {
  for (;;) {
    std::vector<std::string> params;
    double value;
    {
      TraceMessenger capture(/*param_only=*/true);
      value = loss.compute_loss_and_grads(model, guide);
      params = capture.trace().param_nodes();
    }
    if (hook) {
      // nullopt: the hook replaced param values the gradients were computed at.
      const std::optional<double> reported = hook(params, value);
      if (!reported) continue;
      value = *reported;
    }
    optim.step(params);
    return value;
  }
}

namespace {
constexpr const char* kSection = "ember_section";
}

void save_checkpoint(const std::string& path, const Optimizer& optim, int64_t num_steps, CheckpointOptions options) {
  TensorArchive a;
  for (auto& e : get_param_store().to_archive_entries()) {
    e.meta[kSection] = "param";
    a.entries.push_back(std::move(e));
  }
  for (auto& e : optim.state_entries()) {
    e.meta[kSection] = "optim";
    a.entries.push_back(std::move(e));
  }
  if (options.rng()) {
    ArchiveEntry cpu;
    cpu.name = "rng$cpu";
    cpu.tensor = at::detail::getDefaultCPUGenerator().get_state();
    cpu.meta[kSection] = "rng";
    a.entries.push_back(std::move(cpu));
    if (torch::cuda::is_available()) {
      for (int64_t d = 0; d < static_cast<int64_t>(torch::cuda::device_count()); ++d) {
        ArchiveEntry e;
        e.name = cat("rng$cuda$", d);
        e.tensor = at::globalContext().defaultGenerator(at::Device(at::kCUDA, d)).get_state();
        e.meta[kSection] = "rng";
        e.meta["device"] = d;
        a.entries.push_back(std::move(e));
      }
    }
  }
  a.meta = {{"kind", "ember-svi-checkpoint"},
            {"version", 1},
            {"num_steps", num_steps},
            {"optim", optim.state_meta()},
            {"params", get_param_store().manifest()}};
  write_tensor_archive(path, a);
}

int64_t load_checkpoint(const std::string& path, Optimizer& optim, CheckpointOptions options) {
  TensorArchive a = read_tensor_archive(path);
  if (a.meta.value("kind", std::string()) != "ember-svi-checkpoint")
    throw IOError(cat("'", path, "' is not an SVI checkpoint (meta.kind = ", a.meta.value("kind", std::string("none")),
                      "); use ParamStore::load for a param-store file"));
  std::vector<ArchiveEntry> params, states, rng;
  for (auto& e : a.entries) {
    const std::string section = e.meta.value(kSection, std::string());
    if (section == "param") params.push_back(e);
    else if (section == "optim") states.push_back(e);
    else if (section == "rng") rng.push_back(e);
    else throw IOError(cat("'", path, "': entry '", e.name, "' belongs to no known section"));
  }
  // Check the optimiser first (it throws before anything changes), then params (which check
  // everything before changing anything), then commit the optimiser state.
  optim.check_state_meta(a.meta.at("optim"), path);
  get_param_store().load_archive_entries(params, path);
  optim.load_state_entries(states, a.meta.at("optim"), path);
  if (options.rng()) {
    for (const auto& e : rng) {
      if (e.name == "rng$cpu") {
        at::Generator g = at::detail::getDefaultCPUGenerator();
        g.set_state(e.tensor);
      } else if (torch::cuda::is_available()) {
        const int64_t d = e.meta.value("device", int64_t{0});
        if (d < static_cast<int64_t>(torch::cuda::device_count())) {
          at::Generator g = at::globalContext().defaultGenerator(at::Device(at::kCUDA, d));
          g.set_state(e.tensor);
        }
      }
    }
  }
  return a.meta.value("num_steps", int64_t{0});
}

}  // namespace ember::infer
