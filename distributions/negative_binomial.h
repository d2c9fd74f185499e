#pragma once
/// \file NegativeBinomial(total_count, probs | logits): overdispersed counts.

#include "distributions/mixin.h"

namespace ember::dist {

/// Number of successes before `total_count` failures in Bernoulli(probs) trials, over
/// {0, 1, ...} (torch's parameterisation: mean = total_count * probs / (1 - probs)).
/// `total_count` may be any nonnegative real. A Gamma-Poisson mixture, and drawn as one.
class NegativeBinomial : public DistributionMixin<NegativeBinomial> {
 public:
  BOOST_HANA_DEFINE_STRUCT(NegativeBinomial, (torch::Tensor, total_count), (torch::Tensor, probs),
                           (torch::Tensor, logits));

  /// From success probabilities in [0, 1).
  NegativeBinomial(TensorArg total_count, TensorArg probs, std::optional<bool> validate_args = std::nullopt);
  /// From log-odds of success.
  NegativeBinomial(TensorArg total_count, Logits logits, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    if (p == "total_count") return constraints::nonnegative();
    return p == "probs" ? constraints::unit_interval() : constraints::real();
  }
  std::string name() const override { return "NegativeBinomial"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return total_count * logits.exp(); }
  torch::Tensor variance() const override { return mean() / torch::sigmoid(-logits); }
  torch::Tensor mode() const override { return ((total_count - 1) * logits.exp()).floor().clamp_min(0); }
  ConstraintPtr support() const override { return constraints::nonnegative_integer(); }
};

}  // namespace ember::dist
