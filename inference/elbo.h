#pragma once
/// \file Evidence lower bounds: Trace_ELBO, TraceMeanField_ELBO, RenyiELBO (IWAE).
///
/// An ELBO estimates `log p(x) >= E_q[log p(x, z) - log q(z)]` from traces of a model and a
/// guide that take the same arguments, exactly as Pyro 1.8 does: the guide is traced, the
/// model is replayed against the guide's values and traced, and the sites' scaled, masked
/// log-probs are summed. The *loss* is the negative ELBO; the *surrogate* loss is a
/// differentiable function whose gradient is an unbiased estimate of the loss's gradient
/// (pathwise for reparameterised guide sites, score-function for the others).
///
///     ember::infer::Trace_ELBO elbo(ember::infer::ELBOOptions().num_particles(10));
///     double loss = elbo.loss(model, guide, data);          // no gradients
///     double loss2 = elbo.loss_and_grads(model, guide, data); // accumulates .grad of params
///
/// Model-guide checks (on by default): a latent site of the model that the guide lacks, or
/// a guide site that the model lacks (not marked `is_auxiliary`), is an error naming the
/// site (set `ELBOOptions().mismatch(Mismatch::warn)` to get Pyro's warnings instead); so
/// are disagreeing event dims and batch shapes, and a batch dim not declared by a plate.
/// A non-finite loss is an error that names the first site whose value or log-prob is not
/// finite.

#include <torch/arg.h>
#include <torch/types.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "ppl/trace.h"

namespace ember::infer {

/// A model or guide with its arguments bound: what the type-erased core runs.
using Program = std::function<void()>;

/// Binds `args` (by reference) to `fn`; the result must not outlive them.
template <class Fn, class... Args>
Program bind_program(Fn& fn, Args&... args) {
  return [&fn, &args...] { fn(args...); };
}

/// What to do when model and guide sites do not match.
enum class Mismatch { error, warn };

/// Options shared by every ELBO.
struct ELBOOptions {
  /// Number of samples (particles) averaged per estimate.
  TORCH_ARG(int64_t, num_particles) = 1;
  /// Number of nested plates in model and guide; -1 = unknown (guessed by one dry run when
  /// vectorising particles or enumerating, otherwise unbounded).
  TORCH_ARG(int64_t, max_plate_nesting) = -1;
  /// Draw all particles at once in a plate `num_particles_vectorized` left of the model's plates.
  TORCH_ARG(bool, vectorize_particles) = false;
  /// Model-guide mismatches: error (default) or warn on stderr as Pyro does.
  TORCH_ARG(Mismatch, mismatch) = Mismatch::error;
  /// Check site shapes against plates (Pyro's check_site_shape) and model-guide agreement.
  TORCH_ARG(bool, validate) = true;
  /// Throw, naming the site, when the loss is not finite.
  TORCH_ARG(bool, check_finite) = true;
};

/// Base class of the ELBOs; the type-erased core runs `Program`s, the templates bind args.
class ELBO {
 public:
  explicit ELBO(ELBOOptions options = {}) : o_(options) {}
  virtual ~ELBO() = default;

  const ELBOOptions& options() const { return o_; }
  virtual std::string name() const = 0;

  /// Estimate of the loss (-ELBO), averaged over particles, computed without gradients.
  virtual double compute_loss(const Program& model, const Program& guide);
  /// As `compute_loss`, and runs backward on the surrogate loss (gradients accumulate in
  /// the params' `.grad`).
  virtual double compute_loss_and_grads(const Program& model, const Program& guide);
  /// The loss averaged over particles as a tensor whose value is the loss and whose gradient
  /// is the surrogate loss's (Pyro's `differentiable_loss`).
  virtual torch::Tensor compute_differentiable_loss(const Program& model, const Program& guide);

  template <class M, class G, class... A>
  double loss(M& model, G& guide, A&&... args) {
    return compute_loss(bind_program(model, args...), bind_program(guide, args...));
  }
  template <class M, class G, class... A>
  double loss_and_grads(M& model, G& guide, A&&... args) {
    return compute_loss_and_grads(bind_program(model, args...), bind_program(guide, args...));
  }
  template <class M, class G, class... A>
  torch::Tensor differentiable_loss(M& model, G& guide, A&&... args) {
    return compute_differentiable_loss(bind_program(model, args...), bind_program(guide, args...));
  }

  /// The guide trace and the model trace replayed against it, log-probs computed and
  /// checked: one particle (all of them when vectorised). Public for tests and tools.
  virtual std::pair<Trace, Trace> get_traces(const Program& model, const Program& guide);

 protected:
  /// One particle's loss (a number) and surrogate loss (differentiable).
  struct Particle {
    double loss = 0;
    torch::Tensor surrogate;
  };
  virtual Particle particle(Trace& model_trace, Trace& guide_trace) = 0;
  /// Runs `fn` for every particle (once when vectorised) and returns the summed particle
  /// losses divided by num_particles; `on_surrogate` gets each surrogate / num_particles.
  virtual double run_particles(const Program& model, const Program& guide,
                               const std::function<void(torch::Tensor)>& on_surrogate);
  /// max_plate_nesting, guessed from one run of guide and model when unknown.
  int64_t plate_nesting(const Program& model, const Program& guide);
  /// Model and guide wrapped in the vectorised particle plate when that option is on.
  std::pair<Program, Program> vectorized(const Program& model, const Program& guide);

  ELBOOptions o_;
  std::optional<int64_t> guessed_nesting_;
};

/// Pyro's Trace_ELBO: Monte-Carlo ELBO; the surrogate adds, for each non-reparameterised
/// guide site z, `log q(z) * stop_grad(log r)` where log r = log p - log q summed over the
/// plates z is in (the REINFORCE term).
class Trace_ELBO : public ELBO {
 public:
  using ELBO::ELBO;
  std::string name() const override { return "Trace_ELBO"; }

 protected:
  Particle particle(Trace& model_trace, Trace& guide_trace) override;
};

/// Pyro's TraceGraph_ELBO: as Trace_ELBO, but the score-function term of each
/// non-reparameterised guide site z multiplies log q(z) by z's *downstream* cost only (the
/// log p - log q terms that can depend on z), summed to z's plates, minus an optional baseline
/// (`InferConfig::baseline`). Lower-variance gradients than Trace_ELBO, same expectation.
///
/// Dependency structure: from the traces' order and plates, as Pyro's dense trace graph. The
/// downstream cost of z is log p(s) - log q(s) of z and of every guide site after it, and
/// log p(m) of every model site after the first of those in the model (observations
/// included); terms in plates z is not in are summed, terms in z's plates stay per element.
/// Pyro 1.8.4 finds the dependencies by provenance tracking of values instead, which also
/// leaves out later sites that never read z; both estimators are unbiased (docs/inference.md).
class TraceGraph_ELBO : public ELBO {
 public:
  using ELBO::ELBO;
  std::string name() const override { return "TraceGraph_ELBO"; }

  /// One particle's loss (-ELBO) and surrogate loss (whose gradient the estimator uses,
  /// baseline losses included); for tests and tools (Pyro's `_loss_and_surrogate_loss`).
  std::pair<double, torch::Tensor> compute_loss_and_surrogate(const Program& model, const Program& guide);

 protected:
  Particle particle(Trace& model_trace, Trace& guide_trace) override;
};

/// Pyro's TraceMeanField_ELBO: for a guide that is a product of independent factors, each
/// latent site contributes -KL(q || p) analytically when the KL of its (guide, model)
/// distributions is known, and the Monte-Carlo `log p - log q` otherwise. Guide sites must
/// be reparameterisable.
class TraceMeanField_ELBO : public ELBO {
 public:
  using ELBO::ELBO;
  std::string name() const override { return "TraceMeanField_ELBO"; }

 protected:
  Particle particle(Trace& model_trace, Trace& guide_trace) override;
};

/// Pyro's RenyiELBO: the Renyi alpha-divergence bound
/// `1/(1-alpha) log (1/K) sum_k w_k^(1-alpha)`, w_k = p(x, z_k)/q(z_k); alpha = 0 is the
/// importance-weighted (IWAE) bound, tighter than the ELBO as K grows. As in Pyro, plates
/// shared by every model sample site are kept apart and the bound is summed over their
/// elements (a per-datapoint bound for an amortised model).
class RenyiELBO : public ELBO {
 public:
  explicit RenyiELBO(double alpha = 0.0, ELBOOptions options = ELBOOptions().num_particles(2));
  std::string name() const override { return "RenyiELBO"; }
  double alpha() const { return alpha_; }

  double compute_loss(const Program& model, const Program& guide) override;
  double compute_loss_and_grads(const Program& model, const Program& guide) override;
  torch::Tensor compute_differentiable_loss(const Program& model, const Program& guide) override;

 protected:
  Particle particle(Trace& model_trace, Trace& guide_trace) override;

 private:
  // Per-particle elbo values (detached) and surrogates, shape [K].
  std::pair<torch::Tensor, torch::Tensor> particles(const Program& model, const Program& guide, bool with_grad);
  double alpha_;
};

/// The importance-weighted bound (RenyiELBO with alpha = 0) with K particles.
inline RenyiELBO IWAE_ELBO(int64_t num_particles) { return RenyiELBO(0.0, ELBOOptions().num_particles(num_particles)); }

// ---------------------------------------------------------------- helpers (shared with TraceEnum_ELBO)

/// Pyro's check_model_guide_match: missing sites, event-dim and shape disagreements.
void check_model_guide_match(const Trace& model_trace, const Trace& guide_trace, int64_t max_plate_nesting,
                             Mismatch mismatch, const std::string& elbo_name);
/// Pyro's check_site_shape: every batch dim of a site's log-prob right of max_plate_nesting
/// must be declared by an enclosing plate (or be 1); dims left of it must be enumeration dims.
void check_site_shape(const Site& site, int64_t max_plate_nesting);
/// Throws ValueError naming the first site with a non-finite value or log-prob.
[[noreturn]] void throw_non_finite(double loss, const Trace& model_trace, const Trace& guide_trace,
                                   const std::string& elbo_name);
/// KL(q || p) when it is known in closed form (registry of the distributions library, or
/// the built-in Normal/Normal, through Independent); nullopt otherwise.
std::optional<torch::Tensor> analytic_kl(const dist::Distribution& q, const dist::Distribution& p);

}  // namespace ember::infer
