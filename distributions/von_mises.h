#pragma once
/// \file VonMises(loc, concentration): the circular normal distribution.

#include "distributions/mixin.h"

namespace ember::dist {

/// Von Mises distribution of an angle: density exp(k cos(x - loc)) / (2 pi I0(k)), k =
/// `concentration`. Draws lie in [-pi, pi) (Best and Fisher's rejection sampler, as torch); no
/// rsample. log I0 is computed exactly (`special_i0e`) where torch uses a polynomial
/// approximation (relative error below 2e-7).
class VonMises : public DistributionMixin<VonMises> {
 public:
  BOOST_HANA_DEFINE_STRUCT(VonMises, (torch::Tensor, loc), (torch::Tensor, concentration));

  /// `loc` and `concentration` broadcast together; concentration must be positive.
  VonMises(TensorArg loc, TensorArg concentration, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "concentration" ? constraints::positive() : constraints::real();
  }
  std::string name() const override { return "VonMises"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return loc; }
  /// The circular variance 1 - I1(k) / I0(k).
  torch::Tensor variance() const override;
  torch::Tensor mode() const override { return loc; }
  ConstraintPtr support() const override { return constraints::real(); }
};

}  // namespace ember::dist
