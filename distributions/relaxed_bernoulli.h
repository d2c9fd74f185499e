#pragma once
/// \file RelaxedBernoulli(temperature, probs | logits): the binary Concrete distribution.

#include "distributions/mixin.h"

namespace ember::dist {

/// A reparameterisable relaxation of Bernoulli on (0, 1) (Maddison et al. 2017; Jang et al.
/// 2017): sigmoid((logit(u) + logits) / temperature) for u ~ Uniform(0, 1). As temperature -> 0
/// samples approach {0, 1}. Same density as torch's RelaxedBernoulli.
class RelaxedBernoulli : public DistributionMixin<RelaxedBernoulli> {
 public:
  BOOST_HANA_DEFINE_STRUCT(RelaxedBernoulli, (torch::Tensor, temperature), (torch::Tensor, probs),
                           (torch::Tensor, logits));

  /// From probabilities in [0, 1]; temperature must be positive. All broadcast together.
  RelaxedBernoulli(TensorArg temperature, TensorArg probs, std::optional<bool> validate_args = std::nullopt);
  /// From logits.
  RelaxedBernoulli(TensorArg temperature, Logits logits, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    if (p == "temperature") return constraints::positive();
    return p == "probs" ? constraints::unit_interval() : constraints::real();
  }
  std::string name() const override { return "RelaxedBernoulli"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  ConstraintPtr support() const override { return constraints::unit_interval(); }
};

}  // namespace ember::dist
