#pragma once
/// \file Gamma(concentration, rate), reparameterisable through ATen's standard-gamma gradient.

#include "distributions/mixin.h"

namespace ember::dist {

/// Gamma distribution with shape `concentration` and inverse scale `rate`
/// (density proportional to x^(concentration - 1) exp(-rate x)).
///
/// `rsample` differentiates through ATen's `_standard_gamma` (implicit reparameterisation,
/// `_standard_gamma_grad`), as torch does.
class Gamma : public DistributionMixin<Gamma> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Gamma, (torch::Tensor, concentration), (torch::Tensor, rate));

  /// Both parameters must be positive; they broadcast together.
  Gamma(TensorArg concentration, TensorArg rate, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  std::string name() const override { return "Gamma"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return concentration / rate; }
  torch::Tensor variance() const override { return concentration / rate.pow(2); }
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return ((concentration - 1) / rate).clamp_min(0); }
  /// The regularised lower incomplete gamma function P(concentration, rate * x).
  torch::Tensor cdf(const torch::Tensor& value) const override;
  ConstraintPtr support() const override { return constraints::nonnegative(); }
};

}  // namespace ember::dist
