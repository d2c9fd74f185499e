#pragma once
/// \file The message: what one primitive call (`sample`, `param`) carries through the handler stack.
///
/// As in Pyro, every primitive builds a Message and hands it to `apply_stack`; handlers read
/// and rewrite its fields (value, scale, mask, plates, infer config) on the way in
/// (`process`) and observe the result on the way out (`postprocess`).

#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "distributions/distribution.h"

namespace ember {

/// One enclosing vectorised plate, as recorded on each site (Pyro's CondIndepStackFrame).
struct PlateFrame {
  std::string name;
  /// Negative batch dim the plate occupies (counted from the right of the batch shape).
  int64_t dim = -1;
  /// Size of the plate as seen by this run (the subsample size when subsampling).
  int64_t size = 0;
  /// Full size of the plate (size / full_size is the subsampling ratio).
  int64_t full_size = 0;
  /// False for a sequential plate (`plate_range`): it has no batch dim (`dim` is unused) and
  /// only marks conditional independence and scales log-probs.
  bool vectorized = true;
  /// A counterfactual world dim (see counterfactual.h), not a plate: index 0 is the factual
  /// world. Traces and ELBOs treat it as a plate dim.
  bool world = false;
};

/// Variance-reducing baseline of a non-reparameterised guide site under TraceGraph_ELBO (Pyro's
/// `infer={"baseline": {...}}`): the score-function term uses (downstream cost - baseline).
/// The baselines add up: a decaying average plus a learned one (nn or value, not both).
struct BaselineOptions {
  /// Subtract a decaying average of the site's downstream cost, kept in the param store as
  /// `__baseline_avg_downstream_cost_<site>` and updated avg <- beta avg + (1 - beta) cost.
  TORCH_ARG(bool, use_decaying_avg_baseline) = false;
  /// The decay `beta` of the average.
  TORCH_ARG(double, baseline_beta) = 0.9;
  /// A learned baseline: `nn_baseline(nn_baseline_input.detach())`, e.g. a module's forward
  /// (register the module with `module(...)` in the guide so SVI trains it). Trained by the
  /// squared error to the downstream cost, added to the surrogate loss.
  TORCH_ARG(std::function<torch::Tensor(const torch::Tensor&)>, nn_baseline);
  /// The input of `nn_baseline`.
  TORCH_ARG(torch::Tensor, nn_baseline_input);
  /// A learned baseline given as a tensor computed from params (trained as nn_baseline is).
  TORCH_ARG(torch::Tensor, baseline_value);
};

/// Per-site inference configuration (Pyro's `infer` dict). Known keys are typed fields;
/// anything else a user or algorithm needs goes into `extra`.
struct InferConfig {
  /// "" (none), "parallel" or "sequential": how TraceEnum_ELBO treats this discrete site.
  std::string enumerate;
  /// Whether enumerated values are expanded to the full batch shape.
  bool expand = false;
  /// Number of samples drawn instead of full enumeration (0 = enumerate exactly).
  int64_t num_samples = 0;
  /// Batch dim allocated to this site by enumeration (0 = none allocated).
  int64_t enum_dim = 0;
  /// Set by enumeration on every sample site: which enumerated variable (a unique id) each
  /// enumeration dim of its log-prob stands for (a dim recycled by `markov` stands for
  /// different variables at different sites).
  std::map<int64_t, int64_t> enum_ids;
  /// Set by `markov`: the sites this one may depend on (name -> number of enclosing markov
  /// handlers that see it), and the number of enclosing markov handlers (0: none).
  std::map<std::string, int64_t> markov_scope;
  int64_t markov_depth = 0;
  /// Auxiliary guide site that has no model counterpart.
  bool is_auxiliary = false;
  /// Set by `uncondition`: the site was observed; its observation is in `obs`.
  bool was_observed = false;
  /// The observation an `uncondition` handler removed.
  torch::Tensor obs;
  /// Site created by `deterministic`.
  bool is_deterministic = false;
  /// TraceGraph_ELBO's baseline for this (non-reparameterised guide) site.
  std::optional<BaselineOptions> baseline;
  /// Site created by `plate` to draw its subsample indices.
  bool is_subsample = false;
  /// Do not record this site in traces.
  bool do_not_trace = false;
  /// Free-form keys.
  nlohmann::json extra;
};

/// Kind of primitive a message stands for.
enum class SiteType { sample, param };

/// Returns "sample" or "param".
const char* to_string(SiteType t);

/// Everything one primitive call carries through the handler stack; traces store these as sites.
struct Message {
  SiteType type = SiteType::sample;
  std::string name;
  /// The distribution of a sample site (null for param sites).
  dist::DistPtr fn;
  /// The site's value: set by a handler (condition, replay, ...) or drawn by default.
  torch::Tensor value;
  /// The value is an observation, not a draw.
  bool is_observed = false;
  /// Multiplier of the site's log-prob (plates' size / subsample_size, `scale` handlers).
  double scale = 1.0;
  /// Elementwise multiplier of the log-prob from tensor-valued `scale` handlers, broadcast
  /// against the batch shape (undefined = none); applied on top of `scale`.
  torch::Tensor scale_tensor;
  /// Boolean mask of the site's log-prob (undefined = all true).
  torch::Tensor mask;
  /// Enclosing vectorised plates, outermost first.
  std::vector<PlateFrame> cond_indep_stack;
  InferConfig infer;
  /// Set by a handler to hide the message from handlers further out (block).
  bool stop = false;
  /// Set once the value is final: later handlers and the default behaviour leave it alone.
  bool done = false;

  // --- param sites
  /// Initial constrained value (or lazy initialiser) of a param site.
  torch::Tensor param_init;
  std::function<torch::Tensor()> param_init_fn;
  /// Constraint of a param site.
  constraints::ConstraintPtr param_constraint;
  /// The param is an `nn::Module` parameter: the store keeps the module's own tensor.
  bool param_is_module = false;

  // --- bookkeeping of particular handlers
  /// Identity of the `do` handler that split this site (Pyro's _intervener_id).
  const void* intervener = nullptr;
  /// Identity of the counterfactual world handler that handles this site (see
  /// counterfactual.h); that handler skips messages it has already seen.
  const void* world_resolver = nullptr;
  /// Set by a world handler once this site's value is settled in every world: value-setting
  /// handlers further out (condition, replay, uncondition) leave it alone, since its factual
  /// part already went through them.
  bool world_settled = false;

  // --- filled by Trace::compute_log_prob
  /// log p(value) with scale and mask applied (shape = batch shape).
  torch::Tensor log_prob;
  /// log p(value) without scale and mask.
  torch::Tensor unscaled_log_prob;
  /// Sum of `log_prob`.
  torch::Tensor log_prob_sum;

  /// Rendering of the enclosing plates, e.g. `plate('data', 100, dim=-1)`, for messages.
  std::string plates_str() const;
};

}  // namespace ember
