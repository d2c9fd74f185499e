#pragma once
/// \file Zero-inflated counts: ZeroInflatedDistribution(base, gate | GateLogits), ZeroInflatedPoisson,
/// ZeroInflatedNegativeBinomial (Pyro's).

#include "distributions/distribution.h"
#include "distributions/util.h"

namespace ember::dist {

/// Tag selecting the log-odds parameterisation of the extra-zero gate: `ZeroInflatedPoisson(rate, GateLogits{l})`.
struct GateLogits {
  TensorArg value;
};

/// With probability `gate` the value is 0, otherwise a draw from `base` (a univariate
/// distribution); as Pyro's `ZeroInflatedDistribution`. The gate broadcasts with the base's
/// batch shape. log_prob is computed as Pyro computes it from whichever of `gate` /
/// `GateLogits` was given (the logits form is stable for gates near 0 or 1).
class ZeroInflatedDistribution : public Distribution {
 public:
  /// Extra zeros with probability `gate` in [0, 1].
  ZeroInflatedDistribution(DistPtr base, TensorArg gate, std::optional<bool> validate_args = std::nullopt);
  /// Extra zeros with log-odds `gate_logits`.
  ZeroInflatedDistribution(DistPtr base, GateLogits gate_logits, std::optional<bool> validate_args = std::nullopt);

  /// The distribution of the non-inflated draws (expanded to this batch shape).
  const DistPtr& base() const { return base_; }
  /// Probability of an extra zero.
  const torch::Tensor& gate() const { return gate_; }
  /// Log-odds of an extra zero.
  const torch::Tensor& gate_logits() const { return gate_logits_; }

  std::string name() const override { return "ZeroInflatedDistribution"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<ZeroInflatedDistribution>(*this); }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  ConstraintPtr support() const override { return base_->support(); }
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  torch::TensorOptions options() const override { return gate_.options(); }
  std::string to_string() const override;

 protected:
  /// Subclasses build their base first and then call `setup`.
  ZeroInflatedDistribution() = default;
  void setup(DistPtr base, const TensorArg& gate, bool from_logits, std::optional<bool> validate_args);

 private:
  DistPtr base_;
  torch::Tensor gate_, gate_logits_;
  bool from_logits_ = false;
};

/// Zero-inflated Poisson(rate), as Pyro's `ZeroInflatedPoisson(rate, gate=... | gate_logits=...)`.
class ZeroInflatedPoisson : public ZeroInflatedDistribution {
 public:
  /// Positive `rate`; extra zeros with probability `gate`.
  ZeroInflatedPoisson(TensorArg rate, TensorArg gate, std::optional<bool> validate_args = std::nullopt);
  /// Positive `rate`; extra zeros with log-odds `gate_logits`.
  ZeroInflatedPoisson(TensorArg rate, GateLogits gate_logits, std::optional<bool> validate_args = std::nullopt);
  /// The Poisson rate.
  torch::Tensor rate() const;
  std::string name() const override { return "ZeroInflatedPoisson"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<ZeroInflatedPoisson>(*this); }
};

/// Zero-inflated NegativeBinomial(total_count, probs | logits), as Pyro's
/// `ZeroInflatedNegativeBinomial`.
class ZeroInflatedNegativeBinomial : public ZeroInflatedDistribution {
 public:
  /// From success probabilities and the probability of an extra zero.
  ZeroInflatedNegativeBinomial(TensorArg total_count, TensorArg probs, TensorArg gate,
                               std::optional<bool> validate_args = std::nullopt);
  /// From success probabilities and the log-odds of an extra zero.
  ZeroInflatedNegativeBinomial(TensorArg total_count, TensorArg probs, GateLogits gate_logits,
                               std::optional<bool> validate_args = std::nullopt);
  /// From success log-odds and the probability of an extra zero.
  ZeroInflatedNegativeBinomial(TensorArg total_count, Logits logits, TensorArg gate,
                               std::optional<bool> validate_args = std::nullopt);
  /// From success log-odds and the log-odds of an extra zero.
  ZeroInflatedNegativeBinomial(TensorArg total_count, Logits logits, GateLogits gate_logits,
                               std::optional<bool> validate_args = std::nullopt);
  /// The NegativeBinomial's total_count, probs and logits.
  torch::Tensor total_count() const;
  torch::Tensor probs() const;
  torch::Tensor logits() const;
  std::string name() const override { return "ZeroInflatedNegativeBinomial"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<ZeroInflatedNegativeBinomial>(*this); }
};

}  // namespace ember::dist
