#pragma once
/// \file MultivariateNormal(loc, covariance_matrix | scale_tril | precision_matrix), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Tag: a covariance-matrix parameter, `MultivariateNormal(loc, CovarianceMatrix{S})`.
struct CovarianceMatrix {
  torch::Tensor value;
};
/// Tag: a lower-Cholesky factor of the covariance, `MultivariateNormal(loc, ScaleTril{L})`.
struct ScaleTril {
  torch::Tensor value;
};
/// Tag: a precision (inverse covariance) matrix, `MultivariateNormal(loc, PrecisionMatrix{P})`.
struct PrecisionMatrix {
  torch::Tensor value;
};

/// Multivariate normal with mean `loc` (shape `batch + [n]`), parameterised by exactly one of
/// a covariance matrix, its lower Cholesky factor, or a precision matrix (`batch + [n, n]`),
/// the batch dims of `loc` and the matrix broadcasting. Internally holds `scale_tril`.
class MultivariateNormal : public DistributionMixin<MultivariateNormal> {
 public:
  BOOST_HANA_DEFINE_STRUCT(MultivariateNormal, (torch::Tensor, loc), (torch::Tensor, scale_tril));

  /// From a symmetric positive-definite covariance matrix.
  MultivariateNormal(torch::Tensor loc, CovarianceMatrix cov, std::optional<bool> validate_args = std::nullopt);
  /// From a lower-triangular factor with positive diagonal.
  MultivariateNormal(torch::Tensor loc, ScaleTril scale_tril, std::optional<bool> validate_args = std::nullopt);
  /// From a symmetric positive-definite precision matrix.
  MultivariateNormal(torch::Tensor loc, PrecisionMatrix precision, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "loc" ? constraints::real_vector() : constraints::lower_cholesky();
  }
  std::string name() const override { return "MultivariateNormal"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return loc; }
  /// Marginal variances (the covariance diagonal).
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return loc; }
  ConstraintPtr support() const override { return constraints::real_vector(); }
  /// L L^T.
  torch::Tensor covariance_matrix() const;
  /// (L L^T)^{-1}.
  torch::Tensor precision_matrix() const;

 private:
  void setup(torch::Tensor loc, torch::Tensor tril, std::optional<bool> validate);
};

/// Squared Mahalanobis distance |L^{-1} x|^2, broadcasting the batch dims of L and x.
torch::Tensor batch_mahalanobis(const torch::Tensor& scale_tril, const torch::Tensor& x);

}  // namespace ember::dist
