#pragma once
/// \file Study 2 of section 5.3: independence of mechanism as adaptation speed (Bengio et al.
/// 2019, "A meta-transfer objective for learning to disentangle causal mechanisms").
///
/// A causal pair A -> B, both categorical with N values, P(A) and each row of P(B | A) drawn
/// from a flat Dirichlet. Two Ember models of the same joint, each a program of `param` and
/// observed `sample` sites inside plate "data":
///   causal      P(A) P(B | A):  params "A.logits" [N], "B|A.logits" [N, N]
///   anti-causal P(B) P(A | B):  params "B.logits" [N], "A|B.logits" [N, N]
/// Both are fitted by maximum likelihood (SVI with an empty guide: the loss is -log p(data)).
/// After an intervention (a new P(A), or a new P(B | A) for the control), each model adapts by
/// online SGD, one step per new sample; after n samples its expected log-likelihood under the
/// new joint is computed exactly (an infinite held-out set).

#include <torch/arg.h>
#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ppl/ppl.h"

namespace ember::mechanisms {

/// Which way a model factorises the joint of (A, B).
enum class Factorisation {
  /// P(A) P(B | A): the causal direction.
  causal,
  /// P(B) P(A | B): the anti-causal direction.
  anti_causal
};
std::string to_string(Factorisation f);

/// A joint distribution of (A, B) as P(A) [N] and P(B | A) [N, N] (rows sum to 1), float64.
struct CausalPair {
  torch::Tensor p_a, p_b_given_a;
  int64_t size() const { return p_a.size(0); }
  /// The joint P(a, b) [N, N].
  torch::Tensor joint() const { return p_a.unsqueeze(1) * p_b_given_a; }
  /// `n` draws (a [n], b [n], int64) from `rng`.
  std::pair<torch::Tensor, torch::Tensor> sample(int64_t n, std::mt19937_64& rng) const;
};

/// A draw from the flat Dirichlet over N values (portable: gamma(1) = -log U).
torch::Tensor flat_dirichlet(int64_t n, std::mt19937_64& rng);
/// P(A) and every row of P(B | A) from flat Dirichlets.
CausalPair random_pair(int64_t n, std::mt19937_64& rng);

/// Observed pairs, optionally weighted (weights [n], applied with `scale` inside the plate;
/// undefined: every pair counts once).
struct Observations {
  torch::Tensor a, b, weights;
};

/// The distinct observed cells (a, b) of `a`, `b` [n] with their counts as weights: the same
/// likelihood as the rows themselves, with at most N^2 terms.
Observations count_cells(const torch::Tensor& a, const torch::Tensor& b, int64_t n_values);

/// The model program of `f` over N values: params created at zero logits (uniform) if absent.
void pair_model(Factorisation f, int64_t n_values, const Observations& data);

/// The log-joint log q(a, b) [N, N] that the current param store's params of `f` define.
torch::Tensor model_log_joint(Factorisation f, int64_t n_values);

/// Sets the params of `f` in the current param store to represent `joint` [N, N] exactly
/// (log-probabilities as logits; zero-probability cells become -30).
void set_from_joint(Factorisation f, const torch::Tensor& joint);

/// Expected log-likelihood sum_{a,b} p(a, b) log q(a, b) of the current params under `truth`.
double expected_log_likelihood(Factorisation f, const CausalPair& truth);

/// Settings of a maximum-likelihood fit.
struct FitOptions {
  TORCH_ARG(int64_t, steps) = 1000;
  TORCH_ARG(double, lr) = 0.05;
};

/// Fits the params of `f` (in the current param store) to `data` by full-batch Adam on the
/// negative log-likelihood per observation; returns the final loss per observation.
double fit(Factorisation f, int64_t n_values, const Observations& data, const FitOptions& options);

/// The intervention of a shift.
enum class Shift {
  /// A new P(A): an intervention on the cause (P(B | A) unchanged).
  cause,
  /// A new P(B | A): an intervention on the effect's mechanism (P(A) unchanged), the control.
  mechanism
};
std::string to_string(Shift s);

/// Settings of the study.
struct StudyOptions {
  TORCH_ARG(int64_t, values) = 10;
  /// Random shifts (each with its own ground truth) per kind of shift.
  TORCH_ARG(int64_t, shifts) = 50;
  /// Samples from the original joint the models are fitted to before the shift (as counts of
  /// the observed cells); 0: the exact joint (infinite data, every cell weighted by its probability).
  TORCH_ARG(int64_t, pretrain_samples) = 10000;
  TORCH_ARG(int64_t, pretrain_steps) = 1000;
  /// Adaptation samples (online SGD, one step each).
  TORCH_ARG(int64_t, max_samples) = 1000;
  /// Learning rate of the adaptation's SGD.
  TORCH_ARG(double, lr) = 0.1;
  TORCH_ARG(uint64_t, seed) = 0;
};

/// One shift's curves: expected log-likelihood after each n in `checkpoints` (n = 0 first),
/// for both factorisations, and the new joint's best value (minus its entropy).
struct ShiftResult {
  std::vector<double> causal, anti_causal;
  double optimum = 0;
};

/// The n at which curves are recorded: 0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, ... up to max.
std::vector<int64_t> checkpoints(int64_t max_samples);

/// Runs one shift: draws a ground truth, fits both models to `pretrain_samples` draws, applies
/// the shift, and adapts both on the same stream of new samples.
ShiftResult run_shift(Shift shift, const StudyOptions& options, uint64_t shift_seed);

}  // namespace ember::mechanisms
