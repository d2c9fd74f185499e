#pragma once
/// \file Small causal models whose observational, interventional and counterfactual answers
/// are known exactly, and the query functions that ask Ember for them.
///
/// Every discrete model here is a structural causal model (SCM) of one unit: root causes are
/// plain Bernoulli/Categorical sites, and every variable with parents is a *mechanism* of its
/// parents and its own exogenous noise (`binary_mechanism`), so that twin-world counterfactuals
/// are determined (counterfactual.h: discrete sites need explicit noise). The noise is finite,
/// so TraceEnum_ELBO sums it exactly and `probability` is exact up to float64 rounding.
///
///     auto p_do = causal_basics::probability(model, causal_basics::Query()
///                    .intervention({{"C", one}})
///                    .event([](const ValueMap& v) { return v.at("O") == 1; }));

#include <torch/arg.h>
#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

#include "ppl/value_map.h"

namespace ember::causal_basics {

/// A model of one unit: samples its sites and returns the values the program continued with,
/// by name (inside a twin world, values that depend on an intervention carry the world dim).
using Model = std::function<ValueMap()>;

/// An event of a model's values: a 0/1 or boolean tensor (inside a twin world, pick worlds with
/// `ember::gather`; the world dim must be of size 1 after that).
using Event = std::function<torch::Tensor(const ValueMap&)>;

/// Which world handler a query runs in.
enum class Worlds {
  /// No world handler: `do_` replaces the intervened value (interventional queries).
  none,
  /// TwinWorldCounterfactual: evidence constrains the factual world, the event may look at both.
  twin
};

/// A causal query of a model: `P(event | evidence)` in the model modified by `intervention`.
struct Query {
  /// Observed sites (`condition`): in a twin world, the factual world only.
  TORCH_ARG(ValueMap, evidence) = {};
  /// Intervened sites (`do_`).
  TORCH_ARG(ValueMap, intervention) = {};
  /// The event whose probability is asked; unset: the probability of the evidence itself.
  TORCH_ARG(Event, event) = nullptr;
  /// The world handler the query runs in.
  TORCH_ARG(Worlds, worlds) = Worlds::none;
};

/// `log P(evidence, event)` of a model whose unobserved sites are all discrete, every one of
/// them summed exactly (TraceEnum_ELBO with an empty guide: its loss is `-log p(observations)`).
double log_joint(const Model& model, const Query& query);
/// `P(event | evidence)` exactly: `exp(log_joint(with event) - log_joint(without))`.
double probability(const Model& model, const Query& query);

/// How `binary_mechanism` samples its exogenous noise.
enum class Noise {
  /// A Categorical over the cells between consecutive distinct values of {0, p, 1}: finite, so
  /// enumeration sums it exactly.
  cells,
  /// The Uniform(0, 1) itself (for sampling-based inference).
  uniform
};

/// A binary endogenous variable `V := 1[U_V < p[parent_config]]`, `U_V ~ Uniform(0, 1)`: the
/// monotone (comonotone threshold) SCM that reproduces the CPT `p` (`P(V = 1 | config k) =
/// p[k]`). The noise is site "U_<name>"; with `Noise::cells` it is the cell U_V falls in, which
/// is all V depends on. V is site `name`: a Delta observed at its own value, which `condition`
/// replaces (then it scores 0 or -inf). `parent_config` indexes `p` (long, any batch shape);
/// returns V (float64 0/1).
torch::Tensor binary_mechanism(const std::string& name, const torch::Tensor& p, const torch::Tensor& parent_config,
                               Noise noise = Noise::cells);

/// A float64 scalar.
torch::Tensor scalar(double v);

// ------------------------------------------------------------------ sunscreen -> sunburn

/// The book's C -> O (sunscreen -> sunburn); the confounded variant adds a sunny day U ->
/// {C, O}. C = 1: wears sunscreen; O = 1: gets sunburnt; U = 1: strong sun.
struct Sunscreen {
  /// With the confounder U.
  bool confounded = false;
  /// P(U = 1).
  double p_sun = 0.4;
  /// P(C = 1) without U; P(C = 1 | U = u) with it.
  double p_c = 0.5;
  std::vector<double> p_c_given_u = {0.2, 0.8};
  /// P(O = 1 | C = c) without U (index c); P(O = 1 | C = c, U = u) with it (index 2 u + c).
  std::vector<double> p_o_given_c = {0.6, 0.2};
  std::vector<double> p_o_given_cu = {0.1, 0.05, 0.8, 0.3};

  /// The SCM; returns {"C", "O"} (and "U").
  ValueMap operator()() const;
};

// ------------------------------------------------------------------ confounder and mediator

/// Z -> X -> M -> Y and Z -> Y, all binary: Z confounds X and Y, M mediates X's effect. The
/// CPTs increase in X and M, so Y is monotone in X (Y_1 >= Y_0 for every unit).
struct Mediator {
  double p_z = 0.3;
  /// P(X = 1 | Z = z).
  std::vector<double> p_x = {0.2, 0.7};
  /// P(M = 1 | X = x).
  std::vector<double> p_m = {0.1, 0.8};
  /// P(Y = 1 | M = m, Z = z), index 2 m + z.
  std::vector<double> p_y = {0.1, 0.5, 0.6, 0.9};
  /// How the mechanisms' noise is sampled.
  Noise noise = Noise::cells;

  /// The SCM; returns {"Z", "X", "M", "Y"}.
  ValueMap operator()() const;
};

/// P(Y = 1 | do(X = x)) asked of Ember (do_, enumeration).
double p_y_do_x(const Mediator& m, double x);
/// P(Y_{x_cf} = 1 | X = x, Y = y): twin world, do_(X = x_cf), evidence on the factual world.
double p_counterfactual_y(const Mediator& m, double x, double y, double x_cf);

/// Probabilities of causation of X = 1 on Y = 1 (Pearl, Causality, ch. 9).
struct Causation {
  /// Necessity: P(Y_0 = 0 | X = 1, Y = 1).
  double pn = 0;
  /// Sufficiency: P(Y_1 = 1 | X = 0, Y = 0).
  double ps = 0;
  /// Necessity and sufficiency: P(Y_1 = 1, Y_0 = 0).
  double pns = 0;
};
/// PN, PS, PNS of a binary model with sites "X" and "Y", as twin-world counterfactuals:
/// PNS = P(X=1, Y=1, Y_0=0) + P(X=0, Y=0, Y_1=1).
Causation probabilities_of_causation(const Model& model);

// ------------------------------------------------------------------ linear-Gaussian SCM

/// Z -> X -> M -> Y and Z -> Y, linear-Gaussian; Z and M are latent:
///   Z ~ N(0, s_z), X ~ N(a Z, s_x), M ~ N(b X, s_m), Y ~ N(c M + d Z, s_y).
struct LinearGaussian {
  double a = 1.0, b = 0.8, c = 1.5, d = -0.7;
  double s_z = 1.0, s_x = 0.6, s_m = 0.5, s_y = 0.4;

  /// The SCM; returns {"Z", "X", "M", "Y"}.
  ValueMap operator()() const;
};

/// A Gaussian: mean vector and covariance matrix.
struct Gaussian {
  torch::Tensor mean;
  torch::Tensor cov;
};

/// The posterior of `latents` given the model's observations, for a model whose log joint is
/// quadratic in them (linear-Gaussian): one Newton step from 0 on Ember's log density (its
/// gradient and Hessian by autograd) lands on the mode, and -Hessian^-1 is the covariance.
/// Exact, no sampling.
Gaussian gaussian_posterior(const Model& model, const ValueMap& evidence, const std::vector<std::string>& latents);

/// The law of the counterfactual values `outputs` (in the twin world's world 1) given
/// `evidence`, under `intervention`, for a linear-Gaussian model: abduction by
/// `gaussian_posterior`, then the twin world maps the factual latents to the counterfactual
/// values (an affine map: its mean at the posterior mean, its Jacobian by autograd). Exact.
Gaussian gaussian_counterfactual(const Model& model, const ValueMap& evidence, const ValueMap& intervention,
                                 const std::vector<std::string>& latents, const std::vector<std::string>& outputs);

// ------------------------------------------------------------------ smoking, tar and cancer (real data)

/// The book's `datasets/cigs_and_cancer.csv` (altdeep/causalML, MIT licence): one row per
/// person; smoking S (Low/Med/High -> 0/1/2), tar T (Low/High -> 0/1), lung cancer L
/// (FALSE/TRUE -> 0/1). Its cost column C is not used.
struct SmokingData {
  torch::Tensor S;  ///< long [N]
  torch::Tensor T;  ///< float64 [N]
  torch::Tensor L;  ///< float64 [N]
  int64_t size() const { return S.size(0); }
};
/// Reads the CSV (header `C,S,T,L`); errors name the file, line and value.
SmokingData load_smoking_data(const std::string& path);

/// The conditional probability tables of the front-door model.
struct SmokingCPTs {
  torch::Tensor p_s;  ///< P(S = s), [3]
  torch::Tensor p_t;  ///< P(T = High | S = s), [3]
  torch::Tensor p_l;  ///< P(L = 1 | T = t, D = d), [2, 3] (D = S observationally)
};

/// The observational model fitted to the data: S ~ Categorical(theta_S), T ~ Bernoulli(theta_T[S]),
/// L ~ Bernoulli(theta_L[T, S]) for every row (plate "smokers"), with Dirichlet(2, 2, 2) and
/// Beta(2, 2) priors (they keep the one cell with a single, positive, row off the boundary).
void smoking_model(const SmokingData& data);
/// MAP guide: a Delta at a param for each table ("theta_S_map", "theta_T_map", "theta_L_map").
void smoking_guide(const SmokingData& data);

/// Options of `fit_smoking`.
struct FitOptions {
  TORCH_ARG(int64_t, steps) = 2000;
  /// ClippedAdam's learning rate, multiplied by `lrd` after each step.
  TORCH_ARG(double, lr) = 0.05;
  TORCH_ARG(double, lrd) = 0.996;
};
/// Fits the tables by SVI (Trace_ELBO on `smoking_model` / `smoking_guide`, in the current param
/// store): MAP estimates. The model has no latent site and the guide is a Delta, so the loss is
/// `-log p(data, theta)` exactly and the fit is deterministic. `losses` gets each step's loss.
SmokingCPTs fit_smoking(const SmokingData& data, const FitOptions& options = {}, std::vector<double>* losses = nullptr);

/// The front-door SCM of the book's DAG (C -> S <- D -> L, S -> T -> L; genotype D latent) with
/// the fitted tables: D ~ Categorical(p_s), S := D, T and L threshold mechanisms (`binary_mechanism`)
/// of S and of (T, D). It reproduces the data's P(S, T, L) exactly, and its P(L | do(S)) is the
/// front-door formula, which any SCM of this DAG with the same observational law shares. Its
/// counterfactuals are those of the monotone (threshold) noise: an assumption, not data.
struct Smoking {
  SmokingCPTs cpt;
  /// Returns {"D", "S", "T", "L"}.
  ValueMap operator()() const;
};

}  // namespace ember::causal_basics
