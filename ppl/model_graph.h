#pragma once
/// \file The model's DAG, read from the program by running it (Pyro's `get_model_relations`).
///
///     auto model = [](const torch::Tensor& data) {
///       auto mu = sample("mu", dist::Normal(0., 10.));
///       auto points = plate("data", data.size(0));
///       sample("x", dist::Normal(mu, 1.), data);
///     };
///     ModelGraph g = get_model_graph(model, data);   // edges: mu -> x; x observed, in plate data
///
/// Which sample sites a site's distribution depends on is found from the values, not the
/// code, in two ways whose results are united:
///
/// 1. **Autograd provenance.** The model runs once with every sampled or observed
///    floating-point value replaced by a fresh leaf tensor that requires grad; at each later
///    site, the leaves reachable in the autograd graph of its distribution's log-density
///    (and of a Delta's point, for deterministic sites) are its parents. Exact for values
///    used arithmetically; it cannot see integer/bool values (they carry no autograd) nor
///    non-differentiable uses of floats (comparisons, `.item()`, indexing by a value).
/// 2. **Perturbation.** For each site S, the model reruns under the same seed with every
///    other site held at its recorded value and S set to another value (each value of an
///    enumerable support up to `max_support`, else `draws` fresh draws from S's distribution
///    and the mirror image -value where it lies in the support); a later site whose
///    distribution changes (its type or shape, or its log-density beyond float rounding at
///    its recorded value, at a fresh draw, or over its enumerable support) depends on S.
///    This sees discrete and non-differentiable dependencies, but only those the tried
///    values exercise: a child that reacts to S only on a region no tried value reaches is
///    missed.
///
/// Edges are direct dependencies: with every other site held fixed, a site depends on S
/// only if S's value reaches its distribution without passing through another site
/// (a deterministic site included: `d = deterministic("d", a + b)` gives a -> d, b -> d and
/// d -> c for `c ~ Normal(d, 1)`).

#include <torch/arg.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace ember {

/// One sample site of the model, in the order the program reached it.
struct ModelGraphNode {
  /// The site's name.
  std::string name;
  /// Name of the site's distribution with Independent/Masked wrappers removed, e.g. "Normal".
  std::string distribution;
  /// The value is data (conditioned or `obs`), not a draw. False for deterministic sites.
  bool is_observed = false;
  /// The site was created by `deterministic`.
  bool is_deterministic = false;
  /// Enclosing plates, outermost first.
  std::vector<std::string> plates;
  /// The sample sites this site's distribution depends on directly, in model order.
  std::vector<std::string> parents;
};

/// One plate of the model.
struct ModelGraphPlate {
  /// The plate's name.
  std::string name;
  /// Full size of the plate (before subsampling).
  int64_t size = 0;
  /// False for a sequential plate (`plate_range`).
  bool vectorized = true;
};

/// The model's sample sites, their direct dependencies and plates.
struct ModelGraph {
  /// Sample sites in model order (plate subsample sites are left out).
  std::vector<ModelGraphNode> nodes;
  /// Plates in the order the program first used them.
  std::vector<ModelGraphPlate> plates;

  /// All edges (parent, child), children in model order, each child's parents in model order.
  std::vector<std::pair<std::string, std::string>> edges() const;
  /// The node named `name`; throws ValueError listing the nodes if there is none.
  const ModelGraphNode& node(const std::string& name) const;
  /// The plate named `name`; throws ValueError listing the plates if there is none.
  const ModelGraphPlate& plate(const std::string& name) const;
};

/// How `trace_model_graph` explores the program.
struct ModelGraphOptions {
  /// Seed of every run of the program (so they all draw the same random numbers).
  TORCH_ARG(uint64_t, seed) = 0;
  /// Run the perturbation check (one rerun per tried value per site) on top of autograd.
  TORCH_ARG(bool, perturb) = true;
  /// Values of an enumerable support tried per site (the first ones in support order).
  TORCH_ARG(int64_t, max_support) = 16;
  /// Fresh draws tried per site whose support is not enumerable.
  TORCH_ARG(int64_t, draws) = 2;
};

/// Runs `program` (a model bound to its arguments; it runs several times, so it must be
/// repeatable) and returns its DAG. Params the program creates stay in the param store.
ModelGraph trace_model_graph(const std::function<void()>& program, const ModelGraphOptions& options = {});

/// `trace_model_graph` of `model(args...)` with default options.
template <class Fn, class... Args>
ModelGraph get_model_graph(Fn&& model, Args&&... args) {
  return trace_model_graph([&] { model(args...); });
}

}  // namespace ember
