#pragma once
/// \file Normal(loc, scale): the univariate Gaussian, reparameterisable.

#include "distributions/mixin.h"
#include "distributions/util.h"

namespace ember::dist {

/// Normal distribution with mean `loc` and standard deviation `scale` (batch of univariates).
class Normal : public DistributionMixin<Normal> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Normal, (torch::Tensor, loc), (torch::Tensor, scale));

  /// `loc` and `scale` broadcast together; scale must be positive.
  Normal(TensorArg loc, TensorArg scale, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p);
  std::string name() const override { return "Normal"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return loc; }
  torch::Tensor variance() const override { return scale.pow(2); }
  torch::Tensor stddev() const override { return scale; }
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return loc; }
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::real(); }
};

/// log N(value | loc, scale) for broadcasting tensors, as one autograd node (Normal::log_prob).
/// Equal in value to `-0.5 ((value - loc) / scale)^2 - log(scale) - log(sqrt(2 pi))` written
/// op by op, with closed-form gradients (differentiable again when a graph of the gradient is
/// requested).
torch::Tensor normal_log_prob(const torch::Tensor& value, const torch::Tensor& loc, const torch::Tensor& scale);

}  // namespace ember::dist
