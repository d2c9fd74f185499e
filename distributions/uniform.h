#pragma once
/// \file Uniform(low, high): the continuous uniform distribution, reparameterisable.

#include <limits>

#include "distributions/mixin.h"

namespace ember::dist {

/// Uniform on [low, high) (batch of univariates); requires low < high.
class Uniform : public DistributionMixin<Uniform> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Uniform, (torch::Tensor, low), (torch::Tensor, high));

  /// `low` and `high` broadcast together; validation checks low < high.
  Uniform(TensorArg low, TensorArg high, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::real(); }
  std::string name() const override { return "Uniform"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return (low + high) / 2; }
  torch::Tensor variance() const override { return (high - low).pow(2) / 12; }
  torch::Tensor entropy() const override { return (high - low).log(); }
  torch::Tensor mode() const override { return torch::full_like(high, std::numeric_limits<double>::quiet_NaN()); }
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override { return low + prob * (high - low); }
  /// The interval [low, high] (elementwise tensor bounds).
  ConstraintPtr support() const override { return constraints::interval(low, high); }
};

}  // namespace ember::dist
