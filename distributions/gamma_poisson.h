#pragma once
/// \file GammaPoisson(concentration, rate): Poisson counts with a Gamma-distributed rate (Pyro's).

#include "distributions/mixin.h"

namespace ember::dist {

/// The Poisson(lambda) marginal with lambda ~ Gamma(concentration, rate), as Pyro's
/// `GammaPoisson`; the NegativeBinomial(total_count = concentration, probs = 1 / (1 + rate)).
class GammaPoisson : public DistributionMixin<GammaPoisson> {
 public:
  BOOST_HANA_DEFINE_STRUCT(GammaPoisson, (torch::Tensor, concentration), (torch::Tensor, rate));

  /// Both parameters must be positive; they broadcast together.
  GammaPoisson(TensorArg concentration, TensorArg rate, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  std::string name() const override { return "GammaPoisson"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return concentration / rate; }
  torch::Tensor variance() const override { return concentration / rate.pow(2) * (1 + rate); }
  ConstraintPtr support() const override { return constraints::nonnegative_integer(); }
};

}  // namespace ember::dist
