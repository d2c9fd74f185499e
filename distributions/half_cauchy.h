#pragma once
/// \file HalfCauchy(scale): |X| for X ~ Cauchy(0, scale), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Half-Cauchy distribution on x >= 0 (a common prior for scales).
class HalfCauchy : public DistributionMixin<HalfCauchy> {
 public:
  BOOST_HANA_DEFINE_STRUCT(HalfCauchy, (torch::Tensor, scale));

  /// `scale` must be positive.
  explicit HalfCauchy(TensorArg scale, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  std::string name() const override { return "HalfCauchy"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  /// -inf for negative values (when validation is off).
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return torch::zeros_like(scale); }
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::nonnegative(); }
};

}  // namespace ember::dist
