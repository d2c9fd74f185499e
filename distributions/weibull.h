#pragma once
/// \file Weibull(scale, concentration), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Weibull distribution on x > 0: cdf 1 - exp(-(x / scale)^concentration) (torch's argument order).
class Weibull : public DistributionMixin<Weibull> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Weibull, (torch::Tensor, scale), (torch::Tensor, concentration));

  /// Both parameters positive; they broadcast together.
  Weibull(TensorArg scale, TensorArg concentration, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  std::string name() const override { return "Weibull"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  /// scale ((k - 1) / k)^(1 / k); NaN for concentration k < 1, as torch.
  torch::Tensor mode() const override;
  torch::Tensor entropy() const override;
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::positive(); }
};

}  // namespace ember::dist
