#pragma once
/// \file LowRankMultivariateNormal(loc, cov_factor, cov_diag), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Multivariate normal with covariance `W W^T + diag(D)`, W = `cov_factor` (`batch + [n, r]`),
/// D = `cov_diag` (`batch + [n]`, positive). Densities use the Woodbury identity and the
/// matrix determinant lemma (cost O(n r^2)).
class LowRankMultivariateNormal : public DistributionMixin<LowRankMultivariateNormal> {
 public:
  BOOST_HANA_DEFINE_STRUCT(LowRankMultivariateNormal, (torch::Tensor, loc), (torch::Tensor, cov_factor),
                           (torch::Tensor, cov_diag));

  /// Shapes: loc `[..., n]`, cov_factor `[..., n, r]`, cov_diag `[..., n]`; batch dims broadcast.
  LowRankMultivariateNormal(torch::Tensor loc, torch::Tensor cov_factor, torch::Tensor cov_diag,
                            std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    if (p == "cov_diag") return constraints::independent(constraints::positive(), 1);
    return constraints::independent(constraints::real(), p == "cov_factor" ? 2 : 1);
  }
  std::string name() const override { return "LowRankMultivariateNormal"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return loc; }
  torch::Tensor variance() const override { return cov_factor.pow(2).sum(-1) + cov_diag; }
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return loc; }
  ConstraintPtr support() const override { return constraints::real_vector(); }
  /// W W^T + diag(D).
  torch::Tensor covariance_matrix() const;

 private:
  /// Lower Cholesky factor of the capacitance matrix I + W^T D^{-1} W.
  torch::Tensor capacitance_tril() const;
  /// log det(W W^T + D).
  torch::Tensor log_det() const;
};

}  // namespace ember::dist
