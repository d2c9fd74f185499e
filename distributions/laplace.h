#pragma once
/// \file Laplace(loc, scale), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Laplace (double exponential) distribution with density `exp(-|x - loc| / scale) / (2 scale)`.
class Laplace : public DistributionMixin<Laplace> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Laplace, (torch::Tensor, loc), (torch::Tensor, scale));

  /// `loc` and `scale` broadcast together; scale must be positive.
  Laplace(TensorArg loc, TensorArg scale, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "scale" ? constraints::positive() : constraints::real();
  }
  std::string name() const override { return "Laplace"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return loc; }
  torch::Tensor variance() const override { return 2 * scale.pow(2); }
  torch::Tensor entropy() const override { return 1 + (2 * scale).log(); }
  torch::Tensor mode() const override { return loc; }
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::real(); }
};

}  // namespace ember::dist
