#pragma once
/// \file LogNormal(loc, scale): exp of a Normal, reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// The distribution of exp(X) for X ~ Normal(loc, scale).
class LogNormal : public DistributionMixin<LogNormal> {
 public:
  BOOST_HANA_DEFINE_STRUCT(LogNormal, (torch::Tensor, loc), (torch::Tensor, scale));

  /// `loc` and `scale` (the Normal's parameters) broadcast together; scale must be positive.
  LogNormal(TensorArg loc, TensorArg scale, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "scale" ? constraints::positive() : constraints::real();
  }
  std::string name() const override { return "LogNormal"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return (loc - scale.pow(2)).exp(); }
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::positive(); }
};

}  // namespace ember::dist
