#pragma once
/// \file Autoguides (Pyro's `pyro.infer.autoguide`): guides built automatically from a model.
///
///     auto model = [](const torch::Tensor& data) { ... sample("mu", Normal(0., 10.)); ... };
///     ember::infer::AutoNormal guide(model);
///     ember::infer::SVI svi(model, guide, ember::infer::Adam(ember::infer::AdamOptions().lr(0.05)),
///                           ember::infer::Trace_ELBO());
///     for (int i = 0; i < 2000; ++i) svi.step(data);
///     ember::ValueMap med = guide.median();                  // med["mu"]
///     ember::ValueMap q = guide.quantiles({0.05, 0.5, 0.95}); // q["mu"]: [3, ...]
///
/// On its first call an autoguide runs the model once (the *prototype*), hidden from every
/// handler outside it, with the latent sites' values taken from an init strategy
/// (`init_to_median` by default). Each continuous latent site becomes a guide site; the
/// guide works in unconstrained space through `biject_to(support)` and adds the
/// log-det-Jacobian of that bijection to the density of each site (through a Delta with a
/// `log_density`), exactly as Pyro 1.8.4. Param names are Pyro's: `AutoNormal.locs.<site>`,
/// `AutoNormal.scales.<site>`, `AutoDelta.<site>`, `AutoDiagonalNormal.loc`, ...
///
/// Guides are cheap handles sharing their state: the copy that `SVI` keeps and the one the
/// user holds see the same prototype and params.

#include <torch/arg.h>

#include <functional>
#include <map>
#include <memory>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

#include "distributions/transforms.h"
#include "inference/elbo.h"
#include "ppl/trace.h"
#include "ppl/value_map.h"

namespace ember::infer {

// ---------------------------------------------------------------- init strategies

/// How an autoguide initialises a latent site from the prototype run (Pyro's `init_loc_fn`):
/// maps the site (its distribution in `fn`) to a constrained value of the site's shape.
struct InitStrategy {
  /// The strategy proper.
  std::function<torch::Tensor(const Site&)> fn;
  /// Sites the strategy names explicitly (init_to_value): an autoguide checks that its model
  /// has each of them as a latent site.
  std::vector<std::string> named_sites;
  torch::Tensor operator()(const Site& site) const { return fn(site); }
};

/// A point of the support: `transform_to(support)` of zeros (Pyro's init_to_feasible).
InitStrategy init_to_feasible();
/// A draw from the prior.
InitStrategy init_to_sample();
/// The elementwise median of `num_samples` prior draws; `init_to_feasible` for multivariate
/// sites or when the median is not finite (Pyro's default strategy).
InitStrategy init_to_median(int64_t num_samples = 15);
/// The prior mean; `init_to_median` where the mean is undefined or not finite.
InitStrategy init_to_mean();
/// A uniform draw from (-radius, radius) in unconstrained space.
InitStrategy init_to_uniform(double radius = 2.0);
/// The given constrained values; `fallback` for sites not named. Every name must be a
/// latent site of the model (the autoguide checks, naming the site).
InitStrategy init_to_value(ValueMap values, InitStrategy fallback = init_to_uniform());

// ---------------------------------------------------------------- shared machinery

/// Options of every autoguide.
struct AutoGuideOptions {
  /// Initial values of the latents (constrained), from the prototype run.
  TORCH_ARG(InitStrategy, init_loc_fn) = init_to_median();
  /// Initial scale of the Normal guides (unconstrained space).
  TORCH_ARG(double, init_scale) = 0.1;
  /// Prefix of the param names; empty = the guide's class name, as Pyro.
  TORCH_ARG(std::string, prefix) = "";
  /// Rank of AutoLowRankMultivariateNormal's covariance factor; 0 = round(sqrt(latent dim)).
  TORCH_ARG(int64_t, rank) = 0;
};

/// One latent site of the prototype run.
struct LatentSite {
  std::string name;
  /// The model's distribution at the prototype run.
  dist::DistPtr fn;
  /// biject_to(fn->support()).
  transforms::TransformPtr transform;
  /// Enclosing vectorised plates, outermost first (sizes as in the prototype run).
  std::vector<PlateFrame> frames;
  /// Initial value (constrained, detached), repeated to the plates' full sizes.
  torch::Tensor init_value;
  /// Its unconstrained image.
  torch::Tensor init_unconstrained;
  /// Event dims of the site in constrained and in unconstrained space.
  int64_t event_dim = 0, unconstrained_event_dim = 0;
};

namespace detail {

/// The type-erased core of every autoguide: the prototype and the guide's computations.
class AutoGuideCore {
 public:
  /// `kind`: "AutoNormal", "AutoDelta", "AutoDiagonalNormal", ...
  AutoGuideCore(std::string kind, AutoGuideOptions options);
  virtual ~AutoGuideCore() = default;

  /// Runs the model once (hidden) and records its latent sites; a no-op after the first call.
  void setup(const Program& model);
  bool has_prototype() const { return prototyped_; }
  /// The latent sites, in the model's order; throws if the guide has not run yet.
  const std::vector<LatentSite>& latents() const;
  /// The param name prefix.
  const std::string& prefix() const { return prefix_; }

  /// One run of the guide: samples every latent site, returns their constrained values.
  ValueMap forward(const Program& model);
  virtual ValueMap sample_sites() = 0;
  /// Posterior medians (constrained), one full-size tensor per site.
  virtual ValueMap median() = 0;
  /// Posterior quantiles: a leading dim of size qs.size() per site.
  virtual ValueMap quantiles(const std::vector<double>& qs);

  const std::string kind;

 protected:
  /// Draws each plate's subsample once for this run (the model replays them).
  std::map<std::string, torch::Tensor> draw_subsamples() const;
  /// `p` (full size) restricted to this run's subsample along each subsampled plate of `site`.
  static torch::Tensor subsample_param(const torch::Tensor& p, const LatentSite& site, int64_t event_dim,
                                       const std::map<std::string, torch::Tensor>& subsamples);
  /// Samples `site` with value `transform(u)` and log-density `-log|J|` of the bijection,
  /// inside the site's plates.
  torch::Tensor sample_transformed(const LatentSite& site, const torch::Tensor& u,
                                   const std::map<std::string, torch::Tensor>& subsamples) const;

  AutoGuideOptions options_;
  std::string prefix_;
  std::vector<LatentSite> latents_;
  std::map<std::string, PlateFrame> frames_;
  bool prototyped_ = false;
  /// Flattened guides cannot give local latents per-datapoint params.
  bool supports_subsampling_ = true;
};

/// Enters the vectorised plates of a site with the given subsamples, hiding the plates'
/// subsample sites (drawn once per run by `draw_subsamples`).
class SitePlates {
 public:
  SitePlates(const std::vector<PlateFrame>& frames, const std::map<std::string, torch::Tensor>& subsamples);
  ~SitePlates();
  SitePlates(const SitePlates&) = delete;
  SitePlates& operator=(const SitePlates&) = delete;

 private:
  std::unique_ptr<Messenger> hide_;
  std::vector<std::unique_ptr<Messenger>> plates_;
};

/// Sets an AutoMultivariateNormal's params `<prefix>.loc/.scale/.scale_tril` to `loc`, `cov`.
void set_mvn_params(const std::string& prefix, const torch::Tensor& loc, const torch::Tensor& cov);

class AutoNormalCore : public AutoGuideCore {
 public:
  explicit AutoNormalCore(AutoGuideOptions options);
  ValueMap sample_sites() override;
  ValueMap median() override;
  ValueMap quantiles(const std::vector<double>& qs) override;
  /// Full-size loc and scale of a site (unconstrained space).
  std::pair<torch::Tensor, torch::Tensor> loc_scale(const LatentSite& site) const;
  /// The site's full-size posterior: biject_to(support) of Normal(loc, scale).to_event(d).
  dist::DistPtr posterior(const std::string& site) const;
};

class AutoDeltaCore : public AutoGuideCore {
 public:
  explicit AutoDeltaCore(AutoGuideOptions options);
  ValueMap sample_sites() override;
  ValueMap median() override;
  torch::Tensor value(const LatentSite& site) const;
};

/// Guides over all latents flattened into one unconstrained vector.
class AutoContinuousCore : public AutoGuideCore {
 public:
  /// kind: AutoDiagonalNormal | AutoMultivariateNormal | AutoLowRankMultivariateNormal.
  AutoContinuousCore(std::string kind, AutoGuideOptions options);
  ValueMap sample_sites() override;
  ValueMap median() override;
  ValueMap quantiles(const std::vector<double>& qs) override;
  /// Size of the flattened latent vector.
  int64_t latent_dim() const;
  /// Splits a flat unconstrained vector (trailing dim latent_dim) into per-site
  /// unconstrained tensors.
  ValueMap unpack_latent(const torch::Tensor& latent) const;
  /// The posterior of the flat latent vector (creates the params on first use).
  dist::DistPtr get_posterior() const;
  /// AutoLaplaceApproximation: the MAP `loc` and the inverse Hessian of
  /// -log p(x, z) at it (in the flat unconstrained space, Jacobians included).
  std::pair<torch::Tensor, torch::Tensor> laplace(const Program& model);

 private:
  torch::Tensor init_loc() const;
};

}  // namespace detail

/// Wraps a core and a model into a callable guide with Pyro's accessors.
template <class Model, class Core>
class AutoGuideHandle {
 public:
  AutoGuideHandle(Model model, std::shared_ptr<Core> core) : model_(std::move(model)), core_(std::move(core)) {}

  /// Runs the guide (the prototype on first call) with the model's arguments.
  template <class... A>
  ValueMap operator()(A&&... args) {
    Program program = [this, &args...] { model_(args...); };
    return core_->forward(program);
  }
  /// Runs the prototype without sampling the guide (e.g. to inspect `latents()` or the params
  /// before any SVI step); params are created on the next call.
  template <class... A>
  void setup(A&&... args) {
    Program program = [this, &args...] { model_(args...); };
    core_->setup(program);
  }
  /// Posterior medians, one full-size constrained tensor per latent site.
  ValueMap median() const { return core_->median(); }
  /// Posterior quantiles per site, stacked along a leading dim of size `qs.size()`.
  ValueMap quantiles(const std::vector<double>& qs) const { return core_->quantiles(qs); }
  /// The latent sites found by the prototype run.
  const std::vector<LatentSite>& latents() const { return core_->latents(); }
  /// The shared core.
  Core& core() const { return *core_; }

 protected:
  Model model_;
  std::shared_ptr<Core> core_;
};

/// Mean-field Normal guide in unconstrained space, site by site (Pyro's AutoNormal): params
/// `AutoNormal.locs.<site>` and `AutoNormal.scales.<site>` of each site's unconstrained
/// shape (full plate sizes; a subsampled plate indexes them by the run's subsample).
template <class Model>
class AutoNormal : public AutoGuideHandle<Model, detail::AutoNormalCore> {
 public:
  explicit AutoNormal(Model model, AutoGuideOptions options = {})
      : AutoGuideHandle<Model, detail::AutoNormalCore>(std::move(model),
                                                       std::make_shared<detail::AutoNormalCore>(std::move(options))) {}
  /// The full-size posterior of one site: biject_to(support) applied to its Normal.
  dist::DistPtr get_posterior(const std::string& site) const { return this->core_->posterior(site); }
};

/// Point-mass (MAP) guide (Pyro's AutoDelta): one constrained param `AutoDelta.<site>` per site.
template <class Model>
class AutoDelta : public AutoGuideHandle<Model, detail::AutoDeltaCore> {
 public:
  explicit AutoDelta(Model model, AutoGuideOptions options = {})
      : AutoGuideHandle<Model, detail::AutoDeltaCore>(std::move(model),
                                                      std::make_shared<detail::AutoDeltaCore>(std::move(options))) {}
};

/// Flattened guides: one auxiliary site `_<Kind>_latent` over all latents' unconstrained
/// values, unpacked back into the sites.
template <class Model>
class AutoContinuous : public AutoGuideHandle<Model, detail::AutoContinuousCore> {
 public:
  AutoContinuous(Model model, std::string kind, AutoGuideOptions options)
      : AutoGuideHandle<Model, detail::AutoContinuousCore>(
            std::move(model), std::make_shared<detail::AutoContinuousCore>(std::move(kind), std::move(options))) {}
  /// The posterior of the flat latent vector (a Normal.to_event(1) or an MVN).
  dist::DistPtr get_posterior() const { return this->core_->get_posterior(); }
  /// Size of the flat latent vector.
  int64_t latent_dim() const { return this->core_->latent_dim(); }
};

/// Diagonal Normal over the flattened latents: params `AutoDiagonalNormal.loc`, `.scale`.
template <class Model>
class AutoDiagonalNormal : public AutoContinuous<Model> {
 public:
  explicit AutoDiagonalNormal(Model model, AutoGuideOptions options = {})
      : AutoContinuous<Model>(std::move(model), "AutoDiagonalNormal", std::move(options)) {}
};

/// Full-covariance Normal: params `AutoMultivariateNormal.loc`, `.scale` (positive) and
/// `.scale_tril` (unit lower Cholesky); covariance = (diag(scale) L)(diag(scale) L)^T.
template <class Model>
class AutoMultivariateNormal : public AutoContinuous<Model> {
 public:
  explicit AutoMultivariateNormal(Model model, AutoGuideOptions options = {})
      : AutoContinuous<Model>(std::move(model), "AutoMultivariateNormal", std::move(options)) {}
};

/// MAP in unconstrained space (a Delta on the flat latents, param `AutoLaplaceApproximation.loc`),
/// then `laplace_approximation(args...)`: an AutoMultivariateNormal centred at the MAP with
/// covariance the inverse Hessian of -log p(x, z) there (Pyro's AutoLaplaceApproximation).
template <class Model>
class AutoLaplaceApproximation : public AutoContinuous<Model> {
 public:
  explicit AutoLaplaceApproximation(Model model, AutoGuideOptions options = {})
      : AutoContinuous<Model>(std::move(model), "AutoLaplaceApproximation", std::move(options)) {}
  /// The Gaussian guide at the current MAP estimate. Its params (`AutoMultivariateNormal.loc`,
  /// `.scale`, `.scale_tril`) are set in the current param store; covariance = inverse Hessian.
  template <class... A>
  auto laplace_approximation(A&&... args);
};

/// Low-rank plus diagonal Normal: params `.loc`, `.scale`, `.cov_factor`.
template <class Model>
class AutoLowRankMultivariateNormal : public AutoContinuous<Model> {
 public:
  explicit AutoLowRankMultivariateNormal(Model model, AutoGuideOptions options = {})
      : AutoContinuous<Model>(std::move(model), "AutoLowRankMultivariateNormal", std::move(options)) {}
};

template <class Model>
template <class... A>
auto AutoLaplaceApproximation<Model>::laplace_approximation(A&&... args) {
  Program program = [this, &args...] { this->model_(args...); };
  auto [loc, cov] = this->core_->laplace(program);
  AutoMultivariateNormal<Model> gaussian(this->model_);
  gaussian.setup(args...);
  detail::set_mvn_params(gaussian.core().prefix(), loc, cov);
  return gaussian;
}

namespace detail {
template <class G, class = void>
struct has_median : std::false_type {};
template <class G>
struct has_median<G, std::void_t<decltype(std::declval<const G&>().median())>> : std::true_type {};
template <class G, class = void>
struct has_quantiles : std::false_type {};
template <class G>
struct has_quantiles<G, std::void_t<decltype(std::declval<const G&>().quantiles(std::vector<double>{}))>>
    : std::true_type {};
/// Adds `part` to `out`, rejecting a site that two guides both cover.
void merge_sites(ValueMap& out, const ValueMap& part, const char* what);
}  // namespace detail

/// A guide made of several guides run one after another (Pyro's AutoGuideList), e.g. an
/// autoguide for most sites and a hand-written guide for others. Give each autoguide the model
/// with the other guides' sites hidden (`block`), so that no site is guided twice:
///
///     AutoGuideList<const torch::Tensor&> guide;
///     guide.append(AutoNormal(block(model, BlockOptions().hide({"z"}))));
///     guide.append([](const torch::Tensor& x) { /* samples "z" */ });
///
/// `Args` are the model's argument types. `median()` / `quantiles()` merge those of the parts
/// that have them (hand-written parts contribute nothing). Copies share their parts.
template <class... Args>
class AutoGuideList {
 public:
  AutoGuideList() : parts_(std::make_shared<std::vector<Part>>()) {}

  /// Adds a guide (an autoguide or any callable taking the model's arguments).
  template <class G>
  AutoGuideList& append(G guide) {
    auto g = std::make_shared<G>(std::move(guide));
    Part part;
    part.run = [g](Args... args) { (*g)(args...); };
    if constexpr (detail::has_median<G>::value) part.median = [g] { return g->median(); };
    if constexpr (detail::has_quantiles<G>::value)
      part.quantiles = [g](const std::vector<double>& qs) { return g->quantiles(qs); };
    parts_->push_back(std::move(part));
    return *this;
  }
  /// Runs every part in order.
  void operator()(Args... args) const {
    for (const Part& p : *parts_) p.run(args...);
  }
  /// Medians of the parts that have them; a site covered twice is an error naming it.
  ValueMap median() const {
    ValueMap out;
    for (const Part& p : *parts_)
      if (p.median) detail::merge_sites(out, p.median(), "median");
    return out;
  }
  /// Quantiles of the parts that have them.
  ValueMap quantiles(const std::vector<double>& qs) const {
    ValueMap out;
    for (const Part& p : *parts_)
      if (p.quantiles) detail::merge_sites(out, p.quantiles(qs), "quantiles");
    return out;
  }
  /// Number of parts.
  size_t size() const { return parts_->size(); }

 private:
  struct Part {
    std::function<void(Args...)> run;
    std::function<ValueMap()> median;
    std::function<ValueMap(const std::vector<double>&)> quantiles;
  };
  std::shared_ptr<std::vector<Part>> parts_;
};

}  // namespace ember::infer
