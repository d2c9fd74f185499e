#pragma once
/// \file Geometric(probs | logits): failures before the first success.

#include "distributions/mixin.h"

namespace ember::dist {

/// Number of failures before the first success in Bernoulli(probs) trials, over {0, 1, ...}.
class Geometric : public DistributionMixin<Geometric> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Geometric, (torch::Tensor, probs), (torch::Tensor, logits));

  /// From success probabilities in (0, 1].
  explicit Geometric(TensorArg probs, std::optional<bool> validate_args = std::nullopt);
  /// From log-odds of success.
  explicit Geometric(Logits logits, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "probs" ? constraints::unit_interval() : constraints::real();
  }
  std::string name() const override { return "Geometric"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return 1 / probs - 1; }
  torch::Tensor variance() const override { return (1 / probs - 1) / probs; }
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return torch::zeros_like(probs); }
  ConstraintPtr support() const override { return constraints::nonnegative_integer(); }
};

}  // namespace ember::dist
