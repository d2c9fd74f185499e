#pragma once
/// \file RelaxedOneHotCategorical(temperature, probs | logits): the Concrete / Gumbel-softmax distribution.

#include "distributions/mixin.h"

namespace ember::dist {

/// A reparameterisable relaxation of OneHotCategorical on the simplex (event_shape [K]):
/// softmax((logits + Gumbel noise) / temperature). Same density as torch's
/// RelaxedOneHotCategorical. `temperature` broadcasts against the batch shape.
class RelaxedOneHotCategorical : public DistributionMixin<RelaxedOneHotCategorical> {
 public:
  BOOST_HANA_DEFINE_STRUCT(RelaxedOneHotCategorical, (torch::Tensor, temperature), (torch::Tensor, probs),
                           (torch::Tensor, logits));

  /// From (unnormalised) probabilities, last dim = categories; temperature positive.
  RelaxedOneHotCategorical(TensorArg temperature, torch::Tensor probs, std::optional<bool> validate_args = std::nullopt);
  /// From unnormalised logits.
  RelaxedOneHotCategorical(TensorArg temperature, Logits logits, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    if (p == "temperature") return constraints::positive();
    return p == "probs" ? constraints::simplex() : constraints::real_vector();
  }
  std::string name() const override { return "RelaxedOneHotCategorical"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  ConstraintPtr support() const override { return constraints::simplex(); }

 private:
  void setup(TensorArg temperature, std::optional<bool> validate, std::string_view derived);
};

}  // namespace ember::dist
