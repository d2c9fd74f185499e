#pragma once
/// \file Unit(log_factor): the empty-valued distribution behind `factor`.

#include "distributions/mixin.h"
#include "distributions/util.h"

namespace ember::dist {

/// Unit(log_factor): an empty-valued distribution whose log_prob is `log_factor`;
/// backs `factor(name, log_weight)`.
class Unit : public DistributionMixin<Unit> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Unit, (torch::Tensor, log_factor));

  explicit Unit(torch::Tensor log_factor);

  static ConstraintPtr arg_constraint(std::string_view) { return nullptr; }
  std::string name() const override { return "Unit"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  ConstraintPtr support() const override { return constraints::real(); }
};

}  // namespace ember::dist
