#pragma once
/// \file The primitives a model or guide calls: sample, param, module, factor, deterministic.

#include <torch/arg.h>

#include <torch/types.h>

#include <functional>
#include <string>

#include "distributions/constraints.h"
#include "distributions/distribution.h"
#include "ppl/message.h"

namespace torch::nn {
class Module;
}

namespace ember {

/// Optional arguments of `sample` (chainable setters, as LibTorch's options structs).
struct SampleOptions {
  /// Observed value: the site is conditioned on it (undefined = latent, like Pyro's obs=None).
  TORCH_ARG(torch::Tensor, obs);
  /// Which entries of `obs` are observed (bool, broadcasting with the batch shape), as Pyro
  /// 1.8's `obs_mask`: the site splits into `<name>_observed` (masked by obs_mask),
  /// `<name>_unobserved` (a latent site masked by ~obs_mask, which guides should sample),
  /// and a deterministic `<name>` joining them elementwise, which `sample` returns.
  TORCH_ARG(torch::Tensor, obs_mask);
  /// Per-site inference configuration.
  TORCH_ARG(InferConfig, infer);
};

/// Draws (or observes) a random variable named `name` from `fn`, through the handler stack.
/// Outside any handler it simply draws (rsample where available) or returns `obs`.
torch::Tensor sample(const std::string& name, const dist::DistPtr& fn, const SampleOptions& options = {});
/// As above, for a distribution value: `sample("z", Normal(0., 1.))`.
torch::Tensor sample(const std::string& name, const dist::Distribution& fn, const SampleOptions& options = {});
/// Observes `obs` at site `name` (latent if `obs` is undefined).
torch::Tensor sample(const std::string& name, const dist::DistPtr& fn, const torch::Tensor& obs);
torch::Tensor sample(const std::string& name, const dist::Distribution& fn, const torch::Tensor& obs);

/// A learnable parameter: returns its constrained value from the current param store,
/// creating it from `init` (a constrained value) on first use.
torch::Tensor param(const std::string& name, const torch::Tensor& init = {},
                    constraints::ConstraintPtr constraint = constraints::real());
/// As above with a lazy initialiser, called only when the param does not exist yet.
torch::Tensor param(const std::string& name, std::function<torch::Tensor()> init,
                    constraints::ConstraintPtr constraint = constraints::real());

/// Registers every parameter of `m` as a param named `name$$$<parameter path>`, so that SVI
/// trains the module. If the param store already holds a value for one of them (e.g. after
/// `load`), that value is copied into the module's parameter.
void module(const std::string& name, torch::nn::Module& m);

/// Holder overload: `module("decoder", decoder)` for `torch::nn::ModuleHolder`s and shared_ptrs.
template <class Holder, class = decltype(std::declval<Holder&>().get())>
Holder& module(const std::string& name, Holder& holder) {
  module(name, *holder.get());
  return holder;
}

/// Adds `log_weight` to the model's log density (Pyro's `factor`), through a Unit site.
void factor(const std::string& name, const torch::Tensor& log_weight);

/// Records a deterministic function of other sites (`value`) in traces, with `event_dim`
/// rightmost dims forming the event (default: all dims). Returns `value` (or the value a
/// handler substitutes). The site's distribution is a Delta masked out (as Pyro), so it adds
/// zero log-density even when a handler supplies a different value.
torch::Tensor deterministic(const std::string& name, const torch::Tensor& value, int64_t event_dim = -1);

/// Separator between a module's name and its parameter paths in param names.
inline constexpr const char* kModuleSeparator = "$$$";

}  // namespace ember
