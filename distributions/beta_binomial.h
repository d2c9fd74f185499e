#pragma once
/// \file BetaBinomial(concentration1, concentration0, total_count): Binomial counts with a Beta-distributed probability.

#include "distributions/mixin.h"

namespace ember::dist {

/// The Binomial(total_count, p) marginal with p ~ Beta(concentration1, concentration0), as
/// Pyro's `BetaBinomial` (exact log-density, Pyro's `approx_log_prob_tol = 0`).
class BetaBinomial : public DistributionMixin<BetaBinomial> {
 public:
  BOOST_HANA_DEFINE_STRUCT(BetaBinomial, (torch::Tensor, concentration1), (torch::Tensor, concentration0),
                           (torch::Tensor, total_count));

  /// Positive concentrations and a nonnegative integer `total_count`, broadcast together.
  BetaBinomial(TensorArg concentration1, TensorArg concentration0, TensorArg total_count = 1,
               std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "total_count" ? constraints::nonnegative_integer() : constraints::positive();
  }
  std::string name() const override { return "BetaBinomial"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  ConstraintPtr support() const override {
    return constraints::integer_interval(torch::zeros({}, total_count.options()), total_count);
  }
  bool has_enumerate_support() const override { return true; }
  /// Values {0, ..., n}; requires every total_count to equal n (as Pyro).
  torch::Tensor enumerate_support(bool expand = true) const override;
};

}  // namespace ember::dist
