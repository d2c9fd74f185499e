#pragma once
/// \file Chi2(df): the chi-square distribution, a Gamma(df / 2, 1 / 2).

#include "distributions/gamma.h"

namespace ember::dist {

/// Chi-square distribution with `df` degrees of freedom. As in torch it *is* a Gamma
/// (concentration df / 2, rate 1 / 2): it inherits Gamma's density, moments, cdf and rsample,
/// and KL lookup finds the (Gamma, Gamma) pair for it.
class Chi2 : public Gamma {
 public:
  /// Degrees of freedom, positive.
  explicit Chi2(TensorArg df, std::optional<bool> validate_args = std::nullopt);

  /// Degrees of freedom (batch_shape).
  torch::Tensor df;

  std::string name() const override { return "Chi2"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<Chi2>(*this); }
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  std::string to_string() const override;
};

}  // namespace ember::dist
