#pragma once
/// \file Logistic(loc, scale): Pyro's logistic distribution, reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Logistic distribution: cdf sigmoid((x - loc) / scale); smooth, log-concave, with
/// exponential tails (Pyro's `Logistic`). `rsample` is the inverse cdf of a uniform draw.
class Logistic : public DistributionMixin<Logistic> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Logistic, (torch::Tensor, loc), (torch::Tensor, scale));

  /// `loc` and `scale` broadcast together; scale must be positive.
  Logistic(TensorArg loc, TensorArg scale, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "scale" ? constraints::positive() : constraints::real();
  }
  std::string name() const override { return "Logistic"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return loc; }
  torch::Tensor variance() const override;
  /// loc (Pyro defines no mode; the density peaks there).
  torch::Tensor mode() const override { return loc; }
  torch::Tensor entropy() const override { return scale.log() + 2; }
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::real(); }
};

}  // namespace ember::dist
