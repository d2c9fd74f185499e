#pragma once
/// \file MCMC on Ember models: the potential energy of a conditioned model in unconstrained
/// space, the HMC and NUTS kernels with Stan's warmup adaptation, the multi-chain `MCMC` runner
/// and its diagnostics (split R-hat, rank-normalised bulk ESS). Semantics follow Pyro 1.8.4's
/// `pyro.infer.mcmc` (potential energy, `initialize_model`) and Stan (dual averaging, windowed
/// metric adaptation, multinomial NUTS with the generalised U-turn criterion).

#include <ATen/core/Generator.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "distributions/transforms.h"
#include "ppl/tensor_archive.h"
#include "ppl/value_map.h"

namespace ember::infer::mcmc {

/// A model with its data bound: `[&] { my_model(x, y); }`.
using Model = std::function<void()>;

/// One continuous latent sample site as the sampler sees it.
struct LatentSite {
  std::string name;
  /// Shape of the site's (constrained) value.
  std::vector<int64_t> shape;
  /// Shape of its unconstrained value (differs for e.g. the simplex).
  std::vector<int64_t> unconstrained_shape;
  /// `biject_to(support)`: unconstrained -> constrained.
  transforms::TransformPtr transform;
  /// Where its unconstrained values live in the flat vector.
  int64_t offset = 0;
  int64_t numel = 0;
  /// Number of event dims of its distribution (the rightmost dims of `shape`).
  int64_t event_dim = 0;
};

/// Options of `Potential`.
struct PotentialOptions {
  /// Seed of the prototype run that finds the latent sites.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Number of nested plates (dims -1 .. -max_plate_nesting); enumerated discrete latents get
  /// the dims left of them. -1: guessed from the prototype run (Pyro's
  /// `_guess_max_plate_nesting`).
  TORCH_ARG(int64_t, max_plate_nesting) = -1;
};

/// The potential energy U(z) = -log p(data, T(z)) - log|det dT/dz| of a model as a function of
/// the flat vector z of all its continuous latents in unconstrained space (Pyro's
/// `initialize_model(...).potential_fn`). Latent values are supplied to the model by
/// conditioning, so each evaluation runs the model once under `trace`.
///
/// Discrete latents are summed out exactly, as in Pyro: the model runs under
/// `config_enumerate` (every unobserved discrete site with finite support is enumerated
/// "parallel" unless it chose a strategy) and `enum`, and the log joint is contracted along the
/// plate tree by TraceEnum_ELBO's variable elimination (with an empty guide its ELBO is
/// log p(data, T(z)) with the discrete latents marginalised). A discrete latent that cannot be
/// enumerated (no finite support, or marked "sequential") is a ValueError naming the site.
class Potential {
 public:
  /// Runs `model` once (seeded with `seed`) to find its latent sites, their supports and
  /// shapes (twice when it has discrete latents: the second run enumerates them).
  explicit Potential(Model model, uint64_t seed = 0);
  /// As above, with options (seed, max_plate_nesting).
  Potential(Model model, const PotentialOptions& options);

  /// The latent sites, in execution order.
  const std::vector<LatentSite>& sites() const { return sites_; }
  /// Length of the flat unconstrained vector.
  int64_t dim() const { return dim_; }
  /// Options (dtype, device) of the latent values.
  const torch::TensorOptions& options() const { return options_; }
  /// The discrete latent sites summed out by enumeration, in execution order.
  const std::vector<std::string>& enumerated_sites() const { return enumerated_; }
  /// The plate nesting used to place enumeration dims.
  int64_t max_plate_nesting() const { return max_plate_nesting_; }

  /// U(z) as a 0-dim tensor (differentiable if z requires grad).
  torch::Tensor energy(const torch::Tensor& z) const;
  /// U(z) and dU/dz (autograd); a non-finite U returns (inf, zeros).
  std::pair<double, torch::Tensor> energy_and_grad(const torch::Tensor& z) const;
  /// As above on plain arrays of `dim()` doubles: returns U(z) and writes dU/dz to `grad`.
  double energy_and_grad(const double* z, double* grad) const;
  /// U and dU/dz at B points at once, `z` of shape [B, dim()]: the model runs once inside a
  /// plate of size B left of its own plates (dim -max_plate_nesting-1), so it must broadcast
  /// over that batch dim, as for Pyro's vectorised particles (e.g. `mu + tau * theta`, not
  /// `torch::mv(x, beta)`). Returns the B energies (inf, with a zero gradient, where not
  /// finite) and sets `grad` to the [B, dim()] gradients.
  std::vector<double> energy_and_grad_batch(const torch::Tensor& z, torch::Tensor& grad) const;

  /// Constrained values of each site from a flat unconstrained vector.
  ValueMap constrain(const torch::Tensor& z) const;
  /// The flat unconstrained vector of constrained values (every latent site must be given).
  torch::Tensor unconstrain(const ValueMap& values) const;
  /// Unconstrained values per site from a flat vector.
  ValueMap unflatten(const torch::Tensor& z) const;

 private:
  Model model_;
  std::vector<LatentSite> sites_;
  std::vector<std::string> enumerated_;
  int64_t max_plate_nesting_ = 0;
  int64_t dim_ = 0;
  torch::TensorOptions options_;
};

/// Stan's step-size adaptation by dual averaging (Hoffman & Gelman 2014, with Stan's constants).
struct DualAveragingOptions {
  TORCH_ARG(double, gamma) = 0.05;
  TORCH_ARG(double, t0) = 10.0;
  TORCH_ARG(double, kappa) = 0.75;
};

/// Options shared by HMC and NUTS.
struct HMCOptions {
  /// Initial step size (tuned during warmup when `adapt_step_size`).
  TORCH_ARG(double, step_size) = 1.0;
  /// Integration time of one HMC trajectory (HMC only; Pyro's default 2*pi).
  TORCH_ARG(double, trajectory_length) = 6.283185307179586;
  /// Leapfrog steps per HMC trajectory; 0 = trajectory_length / step_size (HMC only).
  TORCH_ARG(int64_t, num_steps) = 0;
  TORCH_ARG(bool, adapt_step_size) = true;
  /// Learn the inverse mass matrix during warmup in Stan's windows.
  TORCH_ARG(bool, adapt_mass_matrix) = true;
  /// Dense (full) instead of diagonal mass matrix.
  TORCH_ARG(bool, dense_mass) = false;
  /// Mean acceptance statistic that dual averaging aims at.
  TORCH_ARG(double, target_accept) = 0.8;
  TORCH_ARG(DualAveragingOptions, dual_averaging) = DualAveragingOptions();
  /// Energy error above which a trajectory counts as divergent (Stan's 1000).
  TORCH_ARG(double, max_delta_energy) = 1000.0;
};

/// NUTS options: HMC's plus the maximum tree depth.
struct NUTSOptions : HMCOptions {
  NUTSOptions() { this->trajectory_length(0.0); }
  TORCH_ARG(int64_t, max_tree_depth) = 10;

 public:
  // Setters returning NUTSOptions& for the inherited options, so chains keep their type.
  NUTSOptions& step_size(double v) { HMCOptions::step_size(v); return *this; }
  double step_size() const { return HMCOptions::step_size(); }
  NUTSOptions& adapt_step_size(bool v) { HMCOptions::adapt_step_size(v); return *this; }
  bool adapt_step_size() const { return HMCOptions::adapt_step_size(); }
  NUTSOptions& adapt_mass_matrix(bool v) { HMCOptions::adapt_mass_matrix(v); return *this; }
  bool adapt_mass_matrix() const { return HMCOptions::adapt_mass_matrix(); }
  NUTSOptions& dense_mass(bool v) { HMCOptions::dense_mass(v); return *this; }
  bool dense_mass() const { return HMCOptions::dense_mass(); }
  NUTSOptions& target_accept(double v) { HMCOptions::target_accept(v); return *this; }
  double target_accept() const { return HMCOptions::target_accept(); }
  NUTSOptions& max_delta_energy(double v) { HMCOptions::max_delta_energy(v); return *this; }
  double max_delta_energy() const { return HMCOptions::max_delta_energy(); }
};

/// Statistics of one transition.
struct TransitionStats {
  double accept_prob = 0.0;
  double step_size = 0.0;
  int64_t num_leapfrog = 0;
  int64_t tree_depth = 0;
  bool divergent = false;
  double potential_energy = 0.0;
};

/// One point of phase space: position, its potential energy and gradient. The kernels keep
/// their vectors as plain doubles: a LibTorch op on a vector of a few dozen entries costs
/// microseconds of dispatch, more than the arithmetic itself.
struct PhasePoint {
  std::vector<double> z, grad;
  double potential = 0.0;
};

/// HMC with a fixed trajectory length (or number of steps), leapfrog integration, Metropolis
/// correction, and Stan's warmup: dual averaging of the step size and windowed estimation of
/// the (diagonal or dense) inverse mass matrix.
class HMC {
 public:
  explicit HMC(HMCOptions options = {});
  virtual ~HMC() = default;
  /// A fresh copy of this kernel (with its options, not its state), for another chain.
  virtual std::unique_ptr<HMC> clone() const { return std::make_unique<HMC>(options_); }

  /// Prepares a chain at unconstrained `z0` for `num_warmup` adaptation steps.
  void setup(const Potential& potential, const torch::Tensor& z0, int64_t num_warmup, at::Generator gen);
  /// One transition; adapts while in warmup.
  TransitionStats step();
  /// Current position (unconstrained), a new tensor with the potential's options.
  torch::Tensor position() const;
  double step_size() const { return step_size_; }
  /// Inverse mass matrix (vector when diagonal).
  const torch::Tensor& inverse_mass_matrix() const { return inv_metric_; }
  const HMCOptions& hmc_options() const { return options_; }
  /// The kernel's name and options, as a checkpoint records them.
  virtual nlohmann::json config() const;
  /// Evaluates U and dU/dz for this chain: `(z, grad) -> U`, writing `dim()` gradient entries.
  using Evaluator = std::function<double(const double* z, double* grad)>;
  /// Replaces the potential's own evaluation (empty: the potential's); the runner's
  /// vectorised chains use it to batch the evaluations of all chains into one model run.
  void set_evaluator(Evaluator evaluator) { evaluator_ = std::move(evaluator); }

  /// Appends the chain's whole state to `out`, as entries named `prefix` + field: position,
  /// its energy and gradient, step size, dual-averaging and window-adaptation counters and
  /// accumulators, inverse mass matrix, iteration, and the generator's state.
  void save_state(std::vector<ArchiveEntry>& out, const std::string& prefix) const;
  /// Restores a state written by `save_state` (instead of `setup`): the chain goes on
  /// exactly, bit for bit, as it would have. Throws ValueError naming the missing or
  /// mis-shaped entry.
  void load_state(const Potential& potential, const TensorArchive& archive, const std::string& prefix);

 protected:
  using Vec = std::vector<double>;
  /// Moves (point, p) by one leapfrog step of size eps.
  void leapfrog(PhasePoint& point, Vec& p, double eps) const;
  double kinetic(const Vec& p) const;
  /// M^{-1} p.
  Vec velocity(const Vec& p) const;
  Vec sample_momentum();
  double uniform();
  /// Sets point.potential and point.grad at point.z (through the evaluator when one is set).
  void evaluate(PhasePoint& point) const;
  /// One transition at the current step size (no adaptation).
  virtual TransitionStats transition();

  HMCOptions options_;
  const Potential* potential_ = nullptr;
  at::Generator gen_;
  PhasePoint point_;
  double step_size_ = 1.0;
  torch::Tensor inv_metric_;
  torch::Tensor metric_chol_;  // Cholesky factor of the dense inverse metric
  Vec inv_metric_values_;      // inv_metric_'s entries (row-major when dense)
  Evaluator evaluator_;

 private:
  void find_reasonable_step_size();
  void restart_dual_averaging();
  void adapt(const TransitionStats& s);
  void set_inverse_metric(torch::Tensor m);

  int64_t num_warmup_ = 0, iteration_ = 0;
  // dual averaging
  double mu_ = 0, s_bar_ = 0, x_bar_ = 0;
  int64_t da_count_ = 0;
  // windowed metric adaptation (Stan's)
  int64_t init_buffer_ = 75, term_buffer_ = 50, base_window_ = 25;
  int64_t window_counter_ = 0, window_size_ = 0, next_window_ = 0;
  int64_t welford_n_ = 0;
  torch::Tensor welford_mean_, welford_m2_;
};

/// The No-U-Turn sampler: multinomial sampling over the trajectory, the generalised U-turn
/// criterion with Stan's extra checks across subtrees, a maximum tree depth, and divergence
/// detection (energy error above `max_delta_energy`).
class NUTS : public HMC {
 public:
  explicit NUTS(NUTSOptions options = {});
  std::unique_ptr<HMC> clone() const override { return std::make_unique<NUTS>(nuts_options_); }
  nlohmann::json config() const override;

 protected:
  TransitionStats transition() override;

 private:
  struct Tree;
  bool build_tree(int64_t depth, PhasePoint& state, Vec& p, int direction, double h0, Tree& tree);
  static bool criterion(const Vec& p_sharp_minus, const Vec& p_sharp_plus, const Vec& rho);

  NUTSOptions nuts_options_;
  bool divergent_ = false;
  int64_t num_leapfrog_ = 0;
  double sum_metropolis_ = 0.0;
};

/// Options of the MCMC runner.
struct MCMCOptions {
  TORCH_ARG(int64_t, num_samples) = 1000;
  TORCH_ARG(int64_t, warmup_steps) = 1000;
  TORCH_ARG(int64_t, num_chains) = 1;
  /// Threads running chains at once (each chain on one thread; the draws do not depend on it).
  TORCH_ARG(int64_t, num_threads) = 1;
  /// Vectorised chains: every chain's potential evaluations are batched into one model run
  /// (Potential::energy_and_grad_batch), which costs little more than one chain's when
  /// LibTorch's per-op overhead dominates (small models). Each chain still runs its own
  /// NUTS/HMC trajectory and adaptation; the batch holds every chain not yet finished, so
  /// draws are reproducible, but not bit-identical to unvectorised chains (batched
  /// arithmetic may round differently). The model must broadcast over a batch dim left of
  /// its plates. Not with enumerated discrete latents; `num_threads` is then ignored.
  TORCH_ARG(bool, vectorize_chains) = false;
  /// Seeds chain c with (seed, c): the same seed gives bit-identical samples.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Report progress on stderr (a line per chain when stderr is not a terminal).
  TORCH_ARG(bool, progress) = true;
  /// Plates nested in the model; -1 = guessed (see PotentialOptions).
  TORCH_ARG(int64_t, max_plate_nesting) = -1;
  /// Initial constrained values of some latents; the others start uniformly in (-2, 2) in
  /// unconstrained space (Pyro's init_to_uniform).
  TORCH_ARG(ValueMap, initial_values) = {};
  /// Checkpoint file ("" = none): every chain's state and draws so far, written atomically
  /// every `checkpoint_every` iterations of a chain and when it ends; `MCMC::resume` goes on
  /// from it. A failed write is an IOError that stops the run (the previous file survives).
  TORCH_ARG(std::string, checkpoint_path) = "";
  TORCH_ARG(int64_t, checkpoint_every) = 100;
  /// Called after every iteration of every chain (warmup included) with the chain, the
  /// iteration (0-based) and its statistics; on several threads, concurrently. An exception
  /// it throws stops the run and reaches the caller of `run` / `resume`.
  TORCH_ARG(std::function<void(int64_t chain, int64_t iteration, const TransitionStats&)>, hook) = nullptr;
};

/// Per-site posterior summary.
struct SiteSummary {
  std::string name;
  std::vector<int64_t> shape;
  /// Elementwise over the site's value (shape = `shape`).
  torch::Tensor mean, sd, q5, median, q95, r_hat, ess_bulk, ess_tail;
};

/// Runs a kernel on a model for several chains (one after another, or on `num_threads` threads)
/// and collects the draws.
class MCMC {
 public:
  MCMC(const HMC& kernel, MCMCOptions options);
  /// Warmup then sampling, for each chain. Throws ValueError on zero samples or chains.
  void run(const Model& model);
  /// Goes on with a run from its checkpoint `path` (written with `checkpoint_path`): chains
  /// it records as finished keep their draws, chains in progress continue from their saved
  /// state, chains not started start; the draws equal those of an uninterrupted run, bit for
  /// bit. This MCMC's kernel, options (num_chains, num_samples, warmup_steps, seed) and the
  /// model's latent sites must be the checkpoint's: a mismatch is a ValueError naming the
  /// file. Writes further checkpoints to `checkpoint_path` when set.
  void resume(const Model& model, const std::string& path);
  /// Constrained draws per site: `[num_chains * num_samples, ...]`, or
  /// `[num_chains, num_samples, ...]` when `group_by_chain`.
  ValueMap get_samples(bool group_by_chain = false) const;
  /// Per-chain statistics of the sampling phase (accept prob, step size, tree depth, ...).
  const std::vector<std::vector<TransitionStats>>& stats() const { return stats_; }
  /// Divergent transitions in the sampling phase, per chain.
  std::vector<int64_t> divergences() const;
  /// Mean, sd, 5%/50%/95% quantiles, split R-hat, bulk and tail ESS per site.
  std::vector<SiteSummary> summary_sites() const;
  /// The summary as JSON: {"sites": {name: {"mean": [...], ...}}, "divergences": [...]}.
  nlohmann::json summary() const;
  /// The summary as a printable table (one row per scalar element).
  std::string summary_table() const;

 private:
  void run_chains(const Model& model, const TensorArchive* checkpoint, const std::string& checkpoint_source);

  std::unique_ptr<HMC> prototype_;
  MCMCOptions options_;
  std::vector<std::string> names_;
  ValueMap samples_;  // [chains, samples, ...]
  std::vector<std::vector<TransitionStats>> stats_;
  bool complete_ = false;
};

/// Split R-hat (Gelman et al. 2013; Stan's split-chain potential scale reduction, not rank
/// normalised) of draws `[chains, samples]`.
double split_rhat(const torch::Tensor& draws);
/// Effective sample size of `[chains, samples]` draws as Stan defines it: multi-chain
/// autocorrelations, Geyer's initial positive and monotone sequences (no splitting).
double ess(const torch::Tensor& draws);
/// Bulk ESS (Vehtari et al. 2021): `ess` of the split, rank-normalised draws.
double ess_bulk(const torch::Tensor& draws);
/// Tail ESS (Vehtari et al. 2021): the smaller `ess` of the indicators of the split draws being
/// below their 5% and 95% quantiles (linearly interpolated, as numpy/ArviZ).
double ess_tail(const torch::Tensor& draws);

}  // namespace ember::infer::mcmc
