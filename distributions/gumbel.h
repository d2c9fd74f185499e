#pragma once
/// \file Gumbel(loc, scale): the type-I extreme-value distribution, reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Gumbel distribution: density exp(-(z + exp(-z))) / scale with z = (x - loc) / scale.
/// `rsample` is the inverse cdf of a uniform draw in [tiny, 1 - eps] (as torch).
class Gumbel : public DistributionMixin<Gumbel> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Gumbel, (torch::Tensor, loc), (torch::Tensor, scale));

  /// `loc` and `scale` broadcast together; scale must be positive.
  Gumbel(TensorArg loc, TensorArg scale, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "scale" ? constraints::positive() : constraints::real();
  }
  std::string name() const override { return "Gumbel"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  torch::Tensor mode() const override { return loc; }
  torch::Tensor entropy() const override;
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::real(); }
};

}  // namespace ember::dist
