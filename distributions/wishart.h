#pragma once
/// \file Wishart(df, covariance_matrix | precision_matrix | scale_tril), reparameterisable.

#include "distributions/mixin.h"
#include "distributions/multivariate_normal.h"

namespace ember::dist {

/// Wishart distribution over p x p positive-definite matrices with `df` > p - 1 degrees of
/// freedom and scale matrix S = L L^T (torch's parameterisation). `rsample` uses the Bartlett
/// decomposition (Chi2 and Normal draws); draws that are numerically singular are redrawn (up
/// to 10 times, as torch).
class Wishart : public DistributionMixin<Wishart> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Wishart, (torch::Tensor, df), (torch::Tensor, scale_tril));

  /// From the scale (covariance) matrix S.
  Wishart(TensorArg df, CovarianceMatrix cov, std::optional<bool> validate_args = std::nullopt);
  /// From the lower Cholesky factor of S.
  Wishart(TensorArg df, ScaleTril scale_tril, std::optional<bool> validate_args = std::nullopt);
  /// From S^{-1}.
  Wishart(TensorArg df, PrecisionMatrix precision, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "df" ? constraints::positive() : constraints::lower_cholesky();
  }
  std::string name() const override { return "Wishart"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  /// df S.
  torch::Tensor mean() const override;
  /// Elementwise variances df (S_ij^2 + S_ii S_jj).
  torch::Tensor variance() const override;
  /// (df - p - 1) S; NaN where df <= p + 1 (as torch).
  torch::Tensor mode() const override;
  torch::Tensor entropy() const override;
  ConstraintPtr support() const override { return constraints::positive_definite(); }
  /// S = L L^T.
  torch::Tensor covariance_matrix() const { return scale_tril.matmul(scale_tril.transpose(-1, -2)); }
  /// S^{-1}.
  torch::Tensor precision_matrix() const;

 private:
  void setup(const TensorArg& df, torch::Tensor tril, std::optional<bool> validate);
  torch::Tensor bartlett(const Shape& sample_shape) const;
};

}  // namespace ember::dist
