#pragma once
/// \file LKJCholesky(dim, concentration): Cholesky factors of random correlation matrices.

#include "distributions/mixin.h"

namespace ember::dist {

/// The LKJ distribution over the lower Cholesky factor L of a dim x dim correlation matrix
/// (density proportional to det(L L^T)^(concentration - 1) times the Jacobian), as torch:
/// drawn by the onion method; no rsample.
class LKJCholesky : public DistributionMixin<LKJCholesky> {
 public:
  BOOST_HANA_DEFINE_STRUCT(LKJCholesky, (torch::Tensor, concentration));

  /// `dim` >= 2; `concentration` positive (its shape is the batch shape).
  LKJCholesky(int64_t dim, TensorArg concentration = 1.0, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return constraints::positive(); }
  /// Matrix side.
  int64_t dim() const { return dim_; }
  std::string name() const override { return "LKJCholesky"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  ConstraintPtr support() const override { return constraints::corr_cholesky(); }

 private:
  int64_t dim_;
};

}  // namespace ember::dist
