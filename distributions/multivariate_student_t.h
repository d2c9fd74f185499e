#pragma once
/// \file MultivariateStudentT(df, loc, scale_tril) (Pyro's), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Multivariate Student's t: loc + L Y with Y = X / sqrt(Z / df), X ~ N(0, I), Z ~ Chi2(df),
/// L = `scale_tril`. The mean is NaN for df <= 1; the variance inf for 1 < df <= 2 and NaN for df <= 1.
class MultivariateStudentT : public DistributionMixin<MultivariateStudentT> {
 public:
  BOOST_HANA_DEFINE_STRUCT(MultivariateStudentT, (torch::Tensor, df), (torch::Tensor, loc), (torch::Tensor, scale_tril));

  /// `df` (batch), `loc` (batch + [n]) and `scale_tril` (batch + [n, n]) broadcast their batch dims.
  MultivariateStudentT(TensorArg df, torch::Tensor loc, torch::Tensor scale_tril,
                       std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    if (p == "df") return constraints::positive();
    return p == "loc" ? constraints::real_vector() : constraints::lower_cholesky();
  }
  std::string name() const override { return "MultivariateStudentT"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  ConstraintPtr support() const override { return constraints::real_vector(); }
  /// L L^T (the covariance is df / (df - 2) times this).
  torch::Tensor scale_matrix() const { return scale_tril.matmul(scale_tril.transpose(-1, -2)); }
};

}  // namespace ember::dist
