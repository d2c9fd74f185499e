#pragma once
/// \file Kumaraswamy(concentration1, concentration0): a Beta-like law on [0, 1] with a closed-form cdf.

#include "distributions/mixin.h"

namespace ember::dist {

/// Kumaraswamy distribution with density a b x^(a - 1) (1 - x^a)^(b - 1) on [0, 1],
/// a = `concentration1`, b = `concentration0`; `rsample` inverts the cdf 1 - (1 - x^a)^b.
class Kumaraswamy : public DistributionMixin<Kumaraswamy> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Kumaraswamy, (torch::Tensor, concentration1), (torch::Tensor, concentration0));

  /// Both concentrations positive; they broadcast together.
  Kumaraswamy(TensorArg concentration1, TensorArg concentration0, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  std::string name() const override { return "Kumaraswamy"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  /// ((a - 1) / (a b - 1))^(1 / a) for a, b >= 1 (not both 1); NaN otherwise. torch 1.13's
  /// formula is wrong (NaN for every b > 1); see docs/distributions.md.
  torch::Tensor mode() const override;
  torch::Tensor entropy() const override;
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::unit_interval(); }
};

}  // namespace ember::dist
