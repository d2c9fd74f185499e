#pragma once
/// \file StudentT(df, loc, scale), reparameterisable.

#include "distributions/mixin.h"

namespace ember::dist {

/// Student's t distribution with `df` degrees of freedom, location `loc` and scale `scale`.
/// The mean is NaN for df <= 1; the variance is inf for 1 < df <= 2 and NaN for df <= 1.
class StudentT : public DistributionMixin<StudentT> {
 public:
  BOOST_HANA_DEFINE_STRUCT(StudentT, (torch::Tensor, df), (torch::Tensor, loc), (torch::Tensor, scale));

  /// Parameters broadcast together; df and scale must be positive.
  StudentT(TensorArg df, TensorArg loc = 0.0, TensorArg scale = 1.0, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "loc" ? constraints::real() : constraints::positive();
  }
  std::string name() const override { return "StudentT"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return loc; }
  ConstraintPtr support() const override { return constraints::real(); }
};

}  // namespace ember::dist
