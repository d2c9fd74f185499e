#pragma once
/// \file Exponential(rate), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Exponential distribution with density `rate * exp(-rate * x)` on x >= 0.
class Exponential : public DistributionMixin<Exponential> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Exponential, (torch::Tensor, rate));

  /// `rate` must be positive.
  explicit Exponential(TensorArg rate, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  std::string name() const override { return "Exponential"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return rate.reciprocal(); }
  torch::Tensor variance() const override { return rate.pow(-2); }
  torch::Tensor stddev() const override { return rate.reciprocal(); }
  torch::Tensor entropy() const override { return 1.0 - rate.log(); }
  torch::Tensor mode() const override { return torch::zeros_like(rate); }
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override { return -(-prob).log1p() / rate; }
  ConstraintPtr support() const override { return constraints::nonnegative(); }
};

}  // namespace ember::dist
