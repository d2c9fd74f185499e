#pragma once
/// \file Posterior predictive sampling (Pyro's `Predictive`) and importance sampling.
///
///     // From a guide: each of the num_samples draws runs the guide, conditions the model on
///     // the guide's latent values and records the model's other sites.
///     ember::infer::Predictive pred(model, guide, ember::infer::PredictiveOptions().num_samples(100));
///     ember::ValueMap out = pred(n, torch::Tensor());     // out["x"]: [100, n]
///     // From posterior samples (leading dim = sample index), e.g. from MCMC:
///     ember::infer::Predictive pred2(model, ember::ValueMap{{"z", z_samples}});
///
/// With a guide and no `return_sites`, every sample site of the model is returned, latents
/// included (as Pyro). Returned values have Pyro's shapes: [num_samples], singleton dims up
/// to the model's plate nesting (counted against the site's batch dims), then the site's
/// value shape in one run: a global scalar site in a model with one plate is [num_samples, 1].
///
///     ember::infer::Importance is(model, guide, 1000);     // or Importance(model, 1000): the prior
///     auto result = is.run(data);
///     result.log_evidence(); result.effective_sample_size(); result.mean("z");

#include <torch/arg.h>

#include <string>
#include <vector>

#include "inference/elbo.h"
#include "ppl/value_map.h"

namespace ember::infer {

/// Options of Predictive.
struct PredictiveOptions {
  /// Number of draws; 0 = the leading size of the posterior samples (1 with a guide).
  TORCH_ARG(int64_t, num_samples) = 0;
  /// Sites to return; empty = with a guide, every sample site of the model (latents,
  /// observations, deterministic sites); with posterior samples, the sites not among them.
  TORCH_ARG(std::vector<std::string>, return_sites) = {};
  /// Draw all samples in one vectorised run, in a plate `_num_predictive_samples` left of the
  /// model's plates (the model must broadcast correctly over it). Results have the same
  /// shapes as sequential draws.
  TORCH_ARG(bool, parallel) = false;
  /// Plates nested in model and guide (for `parallel`); -1 = guessed by a dry run.
  TORCH_ARG(int64_t, max_plate_nesting) = -1;
};

/// A guide that samples nothing: Predictive and Importance then use the model's prior.
struct NoGuide {
  template <class... A>
  void operator()(A&&...) const {}
};

namespace detail {
ValueMap predictive(const Program& model, const Program* guide, const ValueMap& posterior_samples,
                    const PredictiveOptions& options);
}

/// Pyro's Predictive (sequential draws, no gradients).
template <class Model, class Guide = NoGuide>
class Predictive {
 public:
  Predictive(Model model, Guide guide, PredictiveOptions options = {})
      : model_(std::move(model)), guide_(std::move(guide)), has_guide_(true), o_(std::move(options)) {}
  Predictive(Model model, ValueMap posterior_samples, PredictiveOptions options = {})
      : model_(std::move(model)), samples_(std::move(posterior_samples)), o_(std::move(options)) {}

  /// Draws; returns each returned site's values stacked along a new leading dim.
  template <class... A>
  ValueMap operator()(A&&... args) {
    Program g = bind_program(guide_, args...);
    return detail::predictive(bind_program(model_, args...), has_guide_ ? &g : nullptr, samples_, o_);
  }
  template <class... A>
  ValueMap get_samples(A&&... args) {
    return (*this)(std::forward<A>(args)...);
  }

 private:
  Model model_;
  Guide guide_{};
  bool has_guide_ = false;
  ValueMap samples_;
  PredictiveOptions o_;
};

template <class M>
Predictive(M, ValueMap) -> Predictive<M, NoGuide>;
template <class M>
Predictive(M, ValueMap, PredictiveOptions) -> Predictive<M, NoGuide>;
template <class M, class G>
Predictive(M, G) -> Predictive<M, G>;
template <class M, class G>
Predictive(M, G, PredictiveOptions) -> Predictive<M, G>;

/// Weighted samples from importance sampling.
struct ImportanceResult {
  /// log p(x, z_i) - log q(z_i) for each draw, shape [N].
  torch::Tensor log_weights;
  /// Values of the model's latent sites, stacked along a leading dim of size N.
  ValueMap samples;

  /// log of the mean weight: an estimate of log p(x) (its exponential is unbiased).
  double log_evidence() const;
  /// (sum w)^2 / sum w^2.
  double effective_sample_size() const;
  /// Self-normalised weights, shape [N].
  torch::Tensor normalized_weights() const;
  /// Self-normalised estimate of E[site | x] (the weighted mean over draws).
  torch::Tensor mean(const std::string& site) const;
};

namespace detail {
ImportanceResult importance(const Program& model, const Program* guide, int64_t num_samples);
}

/// Pyro's Importance: draws from the guide (or, without one, the model's prior) and weights
/// by p/q.
template <class Model, class Guide = NoGuide>
class Importance {
 public:
  Importance(Model model, Guide guide, int64_t num_samples)
      : model_(std::move(model)), guide_(std::move(guide)), has_guide_(true), n_(num_samples) {}
  Importance(Model model, int64_t num_samples) : model_(std::move(model)), n_(num_samples) {}

  template <class... A>
  ImportanceResult run(A&&... args) {
    Program g = bind_program(guide_, args...);
    return detail::importance(bind_program(model_, args...), has_guide_ ? &g : nullptr, n_);
  }

 private:
  Model model_;
  Guide guide_{};
  bool has_guide_ = false;
  int64_t n_;
};

template <class M>
Importance(M, int64_t) -> Importance<M, NoGuide>;
template <class M, class G>
Importance(M, G, int64_t) -> Importance<M, G>;

}  // namespace ember::infer
