#pragma once
/// \file Beta(concentration1, concentration0), reparameterisable through the Dirichlet gradient.

#include "distributions/dirichlet.h"
#include "distributions/mixin.h"

namespace ember::dist {

/// Beta distribution on [0, 1] with density proportional to x^(c1 - 1) (1 - x)^(c0 - 1).
/// `rsample` is the first coordinate of a Dirichlet([c1, c0]) draw, as in torch.
class Beta : public DistributionMixin<Beta> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Beta, (torch::Tensor, concentration1), (torch::Tensor, concentration0));

  /// Both concentrations must be positive; they broadcast together.
  Beta(TensorArg concentration1, TensorArg concentration0, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  std::string name() const override { return "Beta"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return concentration1 / (concentration1 + concentration0); }
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override {
    return detail::dirichlet_mode(torch::stack({concentration1, concentration0}, -1)).select(-1, 0);
  }
  ConstraintPtr support() const override { return constraints::unit_interval(); }
};

}  // namespace ember::dist
