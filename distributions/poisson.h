#pragma once
/// \file Poisson(rate): counts.

#include "distributions/mixin.h"

namespace ember::dist {

/// Poisson distribution over {0, 1, 2, ...} with mean `rate` (nonnegative).
class Poisson : public DistributionMixin<Poisson> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Poisson, (torch::Tensor, rate));

  /// `rate` must be nonnegative.
  explicit Poisson(TensorArg rate, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::nonnegative(); }
  std::string name() const override { return "Poisson"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return rate; }
  torch::Tensor variance() const override { return rate; }
  torch::Tensor mode() const override { return rate.floor(); }
  ConstraintPtr support() const override { return constraints::nonnegative_integer(); }
};

}  // namespace ember::dist
