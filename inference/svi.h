#pragma once
/// \file SVI: stochastic variational inference (Pyro's `pyro.infer.SVI`).
///
///     ember::infer::SVI svi(model, guide, ember::infer::Adam(ember::infer::AdamOptions().lr(0.01)),
///                           ember::infer::Trace_ELBO());
///     for (int i = 0; i < 1000; ++i) double loss = svi.step(data);
///     svi.save("run/ckpt.ember");       // params + optimiser state + RNG state, atomically
///     ...
///     svi.load("run/ckpt.ember");       // a resumed run continues bit for bit
///
/// Each `step` traces the params that the ELBO touches (Pyro's `trace(param_only=True)`),
/// runs backward on the surrogate loss, and lets the optimiser update those params'
/// unconstrained tensors in the current param store.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "inference/elbo.h"
#include "inference/optim.h"

namespace ember::infer {

/// Runs after backward and before the optimiser step, with the names of the params the step
/// touched and the step's loss; returns the loss to report, or nullopt when it changed the
/// params' values (and zeroed their gradients), so that the step must be computed again.
/// Data-parallel training (distributed/distributed.h) averages gradients across processes here.
using GradientHook = std::function<std::optional<double>(const std::vector<std::string>& params, double loss)>;

namespace detail {
/// One SVI step on bound programs: returns the loss. `hook` (may be empty) runs between
/// backward and the optimiser step.
double svi_step(const Program& model, const Program& guide, ELBO& loss, Optimizer& optim,
                const GradientHook& hook = {});

template <class T, class Base>
std::shared_ptr<Base> share(T&& x) {
  using D = std::decay_t<T>;
  if constexpr (std::is_convertible_v<D, std::shared_ptr<Base>>) {
    return x;
  } else {
    static_assert(std::is_base_of_v<Base, D>, "expected an ember::infer optimiser / ELBO (or a shared_ptr to one)");
    return std::make_shared<D>(std::forward<T>(x));
  }
}
}  // namespace detail

/// What a checkpoint holds besides params.
struct CheckpointOptions {
  /// Save (and restore) the random generators' states, so a resumed run draws the same numbers.
  TORCH_ARG(bool, rng) = true;
};

/// Writes params (current param store), optimiser state and RNG states to `path` atomically.
void save_checkpoint(const std::string& path, const Optimizer& optim, int64_t num_steps, CheckpointOptions options = {});
/// Reads a checkpoint written by `save_checkpoint` into the current param store and `optim`;
/// returns the saved step count. Nothing changes when the file fails its checks.
int64_t load_checkpoint(const std::string& path, Optimizer& optim, CheckpointOptions options = {});

/// Stochastic variational inference on a model and guide taking the same arguments.
template <class Model, class Guide>
class SVI {
 public:
  template <class Optim, class Loss>
  SVI(Model model, Guide guide, Optim&& optim, Loss&& loss)
      : model_(std::move(model)),
        guide_(std::move(guide)),
        optim_(detail::share<Optim, Optimizer>(std::forward<Optim>(optim))),
        loss_(detail::share<Loss, ELBO>(std::forward<Loss>(loss))) {}

  /// One gradient step; returns the loss estimate (-ELBO) before the update.
  template <class... A>
  double step(A&&... args) {
    double l = detail::svi_step(bind_program(model_, args...), bind_program(guide_, args...), *loss_, *optim_, hook_);
    ++num_steps_;
    return l;
  }
  /// The loss estimate without gradients and without changing any param.
  template <class... A>
  double evaluate_loss(A&&... args) {
    return loss_->compute_loss(bind_program(model_, args...), bind_program(guide_, args...));
  }

  Optimizer& optim() { return *optim_; }
  ELBO& loss() { return *loss_; }
  Model& model() { return model_; }
  Guide& guide() { return guide_; }
  int64_t num_steps() const { return num_steps_; }
  /// Installs `hook` to run between backward and the optimiser step of every `step` (empty:
  /// none). See GradientHook.
  void set_gradient_hook(GradientHook hook) { hook_ = std::move(hook); }

  /// Checkpoint of the current param store, optimiser state and RNG state.
  void save(const std::string& path, CheckpointOptions options = {}) const {
    save_checkpoint(path, *optim_, num_steps_, options);
  }
  /// Restores a checkpoint written by `save`.
  void load(const std::string& path, CheckpointOptions options = {}) { num_steps_ = load_checkpoint(path, *optim_, options); }

 private:
  Model model_;
  Guide guide_;
  std::shared_ptr<Optimizer> optim_;
  std::shared_ptr<ELBO> loss_;
  GradientHook hook_;
  int64_t num_steps_ = 0;
};

template <class Model, class Guide, class Optim, class Loss>
SVI(Model, Guide, Optim&&, Loss&&) -> SVI<Model, Guide>;

}  // namespace ember::infer
