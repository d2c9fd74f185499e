#pragma once
/// \file Counterfactual worlds: `do_` inside a world handler keeps the factual world beside the
/// intervened one(s), so one run of a model answers "what would Y have been, had X been x'"
/// for the same unit (Pearl's abduction, action, prediction in a single program).
///
///     auto cf = ember::twin_world();                       // factual world + one counterfactual
///     auto act = ember::do_({{"X", x_prime}});
///     auto obs = ember::condition({{"X", x}, {"Y", y}});
///     auto y_worlds = model();                             // shape [2, ...] along the world dim
///     auto y_cf = cf.gather(y_worlds, {{"world", {1}}});   // Y in the counterfactual world
///
/// Semantics (after ChiRho, Pyro's causal layer):
/// - A world dim is a batch dim allocated like a plate dim, to the left of every plate of the
///   program, and counted in plate nesting (`max_plate_nesting` of TraceEnum_ELBO must cover
///   it). Index 0 along every world dim is the factual world.
/// - `do_` splits an intervened site: the site itself is sampled (or observed) once, as the
///   factual value; the program continues with that value at index 0 and the intervened value
///   at index 1 of the world dim. Sites upstream of every intervention are sampled once and
///   shared by all worlds; sites downstream broadcast across worlds through their parameters.
/// - A site downstream of an intervention shares its exogenous noise across worlds: the
///   factual value (observed, replayed from a guide, or drawn) determines the noise, and the
///   other worlds push that noise through their own mechanism. Noise is recovered exactly for
///   Normal, LogNormal, Laplace, Cauchy, Uniform, HalfNormal, Exponential, MultivariateNormal,
///   Delta, and `to_event`/TransformedDistribution wrappers of these; for other families
///   (discrete ones: Bernoulli, Categorical, ...) the noise is not identifiable, and the site is
///   an error unless the model writes the noise itself (a uniform or Gumbel site feeding a
///   Delta) or marks the site `"counterfactual": "independent"` in its infer config (its worlds
///   then vary independently: right for a site with no observed descendants).
/// - Only the factual world contributes log-density: a site's log_prob is its factual
///   log-density at index 0 and 0 in every other world, so inference (Importance, Predictive,
///   SVI, TraceEnum_ELBO) conditions on the factual observations only.
///
/// Three handlers, each a scope (RAII) and a wrapper:
/// - `SingleWorldCounterfactual`: only the intervened world (today's plain `do_` meaning).
/// - `TwinWorldCounterfactual`: one world dim named "world" of size 2, shared by every
///   intervention (0 = factual, 1 = every intervention applied).
/// - `MultiWorldCounterfactual`: one world dim per intervened site, named after the site.

#include <torch/arg.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ppl/messenger.h"
#include "ppl/trace.h"

namespace ember {

/// Worlds to select, by world name: `{{"world", {1}}}`, `{{"X", {0}}, {"M", {1}}}`.
using IndexSet = std::map<std::string, std::vector<int64_t>>;

/// Name of the twin world dim.
inline constexpr const char* kTwinWorld = "world";

/// Options of the world handlers.
struct CounterfactualOptions {
  /// The rightmost batch dim a world dim may occupy (ChiRho's `first_available_dim`). Unset:
  /// the first free dim to the left of the plates active at the first intervention. Set it
  /// when an intervention comes before a plate the program enters later (the error says so).
  TORCH_ARG(std::optional<int64_t>, first_available_dim) = std::nullopt;
};

/// Base of the world handlers: handles sample sites whose distribution depends on a world
/// dim (frames, shared exogenous noise, factual conditioning) and splits interventions.
class [[nodiscard]] CounterfactualMessenger : public Messenger {
 public:
  ~CounterfactualMessenger() override;
  void process(Message& msg) override;

  /// The value an intervention gives the program: for site `msg.name`, whose factual value is
  /// `factual`, intervened at `action` (which may carry extra batch dims).
  virtual torch::Tensor intervene(const Message& msg, const torch::Tensor& factual, const torch::Tensor& action) = 0;

  /// The world dims allocated so far (name, dim, size), leftmost first.
  const std::vector<PlateFrame>& worlds() const { return worlds_; }
  /// The worlds `indices` selects of `value` (a tensor with `event_dim` event dims), along each
  /// named world dim; dims are kept (size = number of indices). A value that does not vary
  /// along a world dim is returned as it is there. Unknown world names are an error.
  torch::Tensor gather(const torch::Tensor& value, const IndexSet& indices, int64_t event_dim = 0) const;
  /// Index 0 of every world dim.
  IndexSet factual() const;
  /// Index 1 of every world dim (the twin world's counterfactual; in a multi-world handler, the
  /// world where every intervention is applied).
  IndexSet counterfactual() const;

 protected:
  explicit CounterfactualMessenger(CounterfactualOptions options);
  /// Allocates a world dim named `name` of size `size` (left of active plates and worlds).
  const PlateFrame& allocate_world(const std::string& name, int64_t size);
  /// The world named `name`, or null.
  const PlateFrame* find_world(const std::string& name) const;

 private:
  void resolve_worlds(Message& msg, const std::vector<PlateFrame>& depends_on);

  CounterfactualOptions options_;
  std::vector<PlateFrame> worlds_;
};

/// The intervened world only: `do_` replaces the site's value (as outside any world handler).
class [[nodiscard]] SingleWorldCounterfactual : public CounterfactualMessenger {
 public:
  explicit SingleWorldCounterfactual(CounterfactualOptions options = {});
  torch::Tensor intervene(const Message& msg, const torch::Tensor& factual, const torch::Tensor& action) override;
};

/// The factual world and one counterfactual world in which every intervention is applied,
/// along one world dim named "world".
class [[nodiscard]] TwinWorldCounterfactual : public CounterfactualMessenger {
 public:
  explicit TwinWorldCounterfactual(CounterfactualOptions options = {});
  torch::Tensor intervene(const Message& msg, const torch::Tensor& factual, const torch::Tensor& action) override;
};

/// One world dim per intervened site (named after it): every combination of interventions.
class [[nodiscard]] MultiWorldCounterfactual : public CounterfactualMessenger {
 public:
  explicit MultiWorldCounterfactual(CounterfactualOptions options = {});
  torch::Tensor intervene(const Message& msg, const torch::Tensor& factual, const torch::Tensor& action) override;
};

/// Scope forms.
inline SingleWorldCounterfactual single_world(CounterfactualOptions o = {}) { return SingleWorldCounterfactual(o); }
inline TwinWorldCounterfactual twin_world(CounterfactualOptions o = {}) { return TwinWorldCounterfactual(o); }
inline MultiWorldCounterfactual multi_world(CounterfactualOptions o = {}) { return MultiWorldCounterfactual(o); }
/// Wrapping forms: `twin_world(do_(model, {{"X", x1}}))`.
template <class Fn>
auto single_world(Fn fn, CounterfactualOptions o = {}) {
  return wrap_with<SingleWorldCounterfactual>(std::move(fn), o);
}
template <class Fn>
auto twin_world(Fn fn, CounterfactualOptions o = {}) {
  return wrap_with<TwinWorldCounterfactual>(std::move(fn), o);
}
template <class Fn>
auto multi_world(Fn fn, CounterfactualOptions o = {}) {
  return wrap_with<MultiWorldCounterfactual>(std::move(fn), o);
}

/// The innermost active world handler on this thread, or null.
CounterfactualMessenger* active_worlds();

/// `gather` with the innermost active world handler's worlds (error outside one).
torch::Tensor gather(const torch::Tensor& value, const IndexSet& indices, int64_t event_dim = 0);
/// The worlds `indices` selects of the value of site `site_name` recorded in `trace` (a site
/// that does not depend on a world is the same in each of its worlds). World names unknown to
/// the whole trace are an error that lists the trace's worlds.
torch::Tensor gather(const Trace& trace, const std::string& site_name, const IndexSet& indices);

/// The world frames of a recorded site (empty if it does not depend on an intervention).
std::vector<PlateFrame> world_frames(const Site& site);

}  // namespace ember
