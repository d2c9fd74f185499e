#pragma once
/// \file Optimisers with one state per parameter, created lazily (Pyro's `PyroOptim`).
///
///     auto adam = ember::infer::Adam(ember::infer::AdamOptions().lr(0.01));
///     // SVI calls adam.step(names) after backward: each param name gets its own state the
///     // first time it is seen, so params created mid-training are handled.
///
/// The update rules are written out here (they follow torch.optim's formulas exactly, and
/// Pyro's ClippedAdam), so that the whole state -- step counts, per-param learning rates,
/// moment buffers -- is plain tensors that a checkpoint saves and restores bit for bit.

#include <torch/arg.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ppl/tensor_archive.h"

namespace ember {
class ParamStore;
}

namespace ember::infer {

/// torch.optim.Adam's options.
struct AdamOptions {
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(bool, amsgrad) = false;
};

/// Pyro's ClippedAdam: Adam whose gradients are clamped to [-clip_norm, clip_norm] and whose
/// learning rate is multiplied by `lrd` at every step.
struct ClippedAdamOptions {
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(double, clip_norm) = 10.0;
  TORCH_ARG(double, lrd) = 1.0;
};

/// torch.optim.SGD's options.
struct SGDOptions {
  TORCH_ARG(double, lr) = 1e-2;
  TORCH_ARG(double, momentum) = 0.0;
  TORCH_ARG(double, dampening) = 0.0;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(bool, nesterov) = false;
};

/// torch.optim.RMSprop's options.
struct RMSpropOptions {
  TORCH_ARG(double, lr) = 1e-2;
  TORCH_ARG(double, alpha) = 0.99;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(double, momentum) = 0.0;
  TORCH_ARG(bool, centered) = false;
};

/// torch.optim.Adagrad's options.
struct AdagradOptions {
  TORCH_ARG(double, lr) = 1e-2;
  TORCH_ARG(double, lr_decay) = 0.0;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(double, initial_accumulator_value) = 0.0;
  TORCH_ARG(double, eps) = 1e-10;
};

/// Gradient clipping applied to each param's gradient before its update (Pyro's `clip_args`
/// of every `PyroOptim`): `clip_norm` rescales a gradient whose 2-norm exceeds it (as
/// torch.nn.utils.clip_grad_norm_ on that param alone: factor clip_norm / (norm + 1e-6)),
/// then `clip_value` clamps its entries to [-clip_value, clip_value]. Unset: no clipping.
struct ClipOptions {
  TORCH_ARG(std::optional<double>, clip_norm) = std::nullopt;
  TORCH_ARG(std::optional<double>, clip_value) = std::nullopt;
};

/// Base class: keeps one state per parameter tensor (as Pyro's `PyroOptim`, which keys its
/// per-param optimisers by tensor) and updates the param store's unconstrained tensors in
/// place from their `.grad`. States are looked up by param name, but a state belongs to the
/// tensor it was created for: when the store's tensor of that name is another one (the store
/// was cleared, or the param replaced with `set`), the param starts with a fresh state.
class Optimizer {
 public:
  explicit Optimizer(ClipOptions clip = {});
  virtual ~Optimizer() = default;

  /// One step for each named param of `store`: its state is created on first sight (or
  /// re-created for a new tensor), `begin_step` runs (ClippedAdam decays its learning rate,
  /// with or without a gradient, as Pyro does), and params that have a gradient are updated.
  /// Then the gradients are zeroed.
  void step(const std::vector<std::string>& names, ParamStore& store);
  /// As above on the current thread's param store.
  void step(const std::vector<std::string>& names);

  /// Name of the algorithm ("Adam", ...).
  virtual std::string name() const = 0;
  /// Hyper-parameters, as JSON (saved with the state, checked on load).
  virtual nlohmann::json hyperparameters() const = 0;

  /// Number of params with a state (params stepped at least once, with or without gradient).
  size_t num_states() const { return states_.size(); }
  /// Step count of one param's state (0 if it has none).
  int64_t step_count(const std::string& param) const;
  /// Current learning rate of one param (ClippedAdam decays it per param).
  double learning_rate(const std::string& param) const;
  /// Sets the learning rate of a param that has a state (what learning-rate schedulers do).
  void set_learning_rate(const std::string& param, double lr);
  /// Names of the params that have a state, sorted.
  std::vector<std::string> state_names() const;
  /// The gradient clipping applied before each update.
  const ClipOptions& clip_options() const { return clip_; }

  /// The whole state as archive entries named `optim$<param>$<buffer>`, with the step
  /// count and learning rate in each param's meta.
  std::vector<ArchiveEntry> state_entries() const;
  /// Archive-level metadata: algorithm and hyper-parameters.
  nlohmann::json state_meta() const;
  /// Restores a state saved by `state_entries` (states of params not yet seen wait until
  /// they are). `meta` must name the same algorithm; `source` names the file in errors.
  void load_state_entries(const std::vector<ArchiveEntry>& entries, const nlohmann::json& meta, const std::string& source);
  /// Throws, naming `source`, if `state_meta()`-style `meta` cannot be loaded into this
  /// optimiser (another algorithm, an attached state that does not fit); changes nothing.
  void check_state_meta(const nlohmann::json& meta, const std::string& source) const;
  /// Forgets every state.
  void reset() { states_.clear(); }

  /// State kept elsewhere that belongs with this optimiser's in checkpoints: a learning-rate
  /// scheduler's per-param counters. Saved as JSON in `state_meta()` under its key.
  struct AttachedState {
    virtual ~AttachedState() = default;
    virtual nlohmann::json save() const = 0;
    /// Throws, naming `source` (the file), if `saved` cannot be restored here.
    virtual void check(const nlohmann::json& saved, const std::string& source) const = 0;
    /// Restores what `save` wrote (after `check`).
    virtual void load(const nlohmann::json& saved) = 0;
  };
  /// Saves and restores `state` with this optimiser's state under `key` while `state` lives
  /// (held weakly). Throws if another live state has the key (two schedulers on one optimiser).
  void attach_state(const std::string& key, const std::shared_ptr<AttachedState>& state);

 protected:
  struct State {
    int64_t step = 0;
    double lr = 0.0;
    std::map<std::string, torch::Tensor> buffers;
    /// The unconstrained tensor this state belongs to (unset for a state loaded from a
    /// checkpoint until its param is first stepped). Weak: a dropped param is not kept alive.
    std::optional<c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>> tensor;
    /// Set by `update` when it has already zeroed the gradient in its own pass (reset each
    /// step): the step then does not zero it again.
    bool gradient_zeroed = false;
  };
  /// Initial learning rate of a new state.
  virtual double initial_lr() const = 0;
  /// Called once per step for every param stepped, before its update and whether or not it
  /// has a gradient.
  virtual void begin_step(State& state) const {}
  /// Applies one update to `p` (a leaf; called under NoGradGuard) with gradient `grad`.
  virtual void update(torch::Tensor& p, torch::Tensor grad, State& state) const = 0;
  /// The state of param `name` whose unconstrained tensor is `p`: created on first sight,
  /// re-created when `p` is not the tensor it was made for, bound to `p` if loaded.
  State& state_for(const std::string& name, const torch::Tensor& p);
  /// The buffer `key` of `state`, created as zeros like `p` (or `fill`) if absent.
  static torch::Tensor& buffer(State& state, const std::string& key, const torch::Tensor& p, double fill = 0.0);

 private:
  void clip_gradient(torch::Tensor& grad) const;
  ClipOptions clip_;
  std::map<std::string, std::weak_ptr<AttachedState>> attached_;
  std::map<std::string, State> states_;
};

using OptimizerPtr = std::shared_ptr<Optimizer>;

class Adam : public Optimizer {
 public:
  explicit Adam(AdamOptions o = {}, ClipOptions clip = {}) : Optimizer(clip), o_(o) {}
  std::string name() const override { return "Adam"; }
  nlohmann::json hyperparameters() const override;

 protected:
  double initial_lr() const override { return o_.lr(); }
  void update(torch::Tensor& p, torch::Tensor grad, State& s) const override;

 private:
  AdamOptions o_;
};

class ClippedAdam : public Optimizer {
 public:
  explicit ClippedAdam(ClippedAdamOptions o = {}, ClipOptions clip = {}) : Optimizer(clip), o_(o) {}
  std::string name() const override { return "ClippedAdam"; }
  nlohmann::json hyperparameters() const override;

 protected:
  double initial_lr() const override { return o_.lr(); }
  void begin_step(State& s) const override { s.lr *= o_.lrd(); }
  void update(torch::Tensor& p, torch::Tensor grad, State& s) const override;

 private:
  ClippedAdamOptions o_;
};

class SGD : public Optimizer {
 public:
  explicit SGD(SGDOptions o = {}, ClipOptions clip = {}) : Optimizer(clip), o_(o) {}
  std::string name() const override { return "SGD"; }
  nlohmann::json hyperparameters() const override;

 protected:
  double initial_lr() const override { return o_.lr(); }
  void update(torch::Tensor& p, torch::Tensor grad, State& s) const override;

 private:
  SGDOptions o_;
};

class RMSprop : public Optimizer {
 public:
  explicit RMSprop(RMSpropOptions o = {}, ClipOptions clip = {}) : Optimizer(clip), o_(o) {}
  std::string name() const override { return "RMSprop"; }
  nlohmann::json hyperparameters() const override;

 protected:
  double initial_lr() const override { return o_.lr(); }
  void update(torch::Tensor& p, torch::Tensor grad, State& s) const override;

 private:
  RMSpropOptions o_;
};

class Adagrad : public Optimizer {
 public:
  explicit Adagrad(AdagradOptions o = {}, ClipOptions clip = {}) : Optimizer(clip), o_(o) {}
  std::string name() const override { return "Adagrad"; }
  nlohmann::json hyperparameters() const override;

 protected:
  double initial_lr() const override { return o_.lr(); }
  void update(torch::Tensor& p, torch::Tensor grad, State& s) const override;

 private:
  AdagradOptions o_;
};

}  // namespace ember::infer
