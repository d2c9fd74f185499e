#pragma once
/// \file Pareto(scale, alpha): power-law tails, reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Pareto (type I) distribution on x >= scale: cdf 1 - (scale / x)^alpha. The mean is inf for
/// alpha <= 1 and the variance inf for alpha <= 2 (as torch).
class Pareto : public DistributionMixin<Pareto> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Pareto, (torch::Tensor, scale), (torch::Tensor, alpha));

  /// Both parameters positive; they broadcast together.
  Pareto(TensorArg scale, TensorArg alpha, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  std::string name() const override { return "Pareto"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  torch::Tensor mode() const override { return scale; }
  torch::Tensor entropy() const override;
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  /// x >= scale (elementwise).
  ConstraintPtr support() const override { return constraints::greater_than_eq(scale); }
};

}  // namespace ember::dist
