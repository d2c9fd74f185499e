#pragma once
/// \file Cauchy(loc, scale), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Cauchy (Lorentz) distribution; its mean is undefined (NaN) and its variance infinite.
class Cauchy : public DistributionMixin<Cauchy> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Cauchy, (torch::Tensor, loc), (torch::Tensor, scale));

  /// `loc` and `scale` broadcast together; scale must be positive.
  Cauchy(TensorArg loc, TensorArg scale, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "scale" ? constraints::positive() : constraints::real();
  }
  std::string name() const override { return "Cauchy"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return loc; }
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::real(); }
};

}  // namespace ember::dist
