#pragma once
/// \file InverseGamma(concentration, rate): 1/X for X ~ Gamma(concentration, rate), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Inverse-gamma distribution (as Pyro's): density proportional to x^(-concentration - 1) exp(-rate / x).
/// The mean is inf for concentration <= 1, the variance inf for concentration <= 2.
class InverseGamma : public DistributionMixin<InverseGamma> {
 public:
  BOOST_HANA_DEFINE_STRUCT(InverseGamma, (torch::Tensor, concentration), (torch::Tensor, rate));

  /// Both parameters must be positive; they broadcast together.
  InverseGamma(TensorArg concentration, TensorArg rate, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  std::string name() const override { return "InverseGamma"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  /// The regularised upper incomplete gamma function Q(concentration, rate / x).
  torch::Tensor cdf(const torch::Tensor& value) const override;
  ConstraintPtr support() const override { return constraints::positive(); }
};

}  // namespace ember::dist
