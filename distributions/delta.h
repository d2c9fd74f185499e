#pragma once
/// \file Delta(v): a point mass, used for deterministic sites and MAP guides.

#include "distributions/mixin.h"
#include "distributions/util.h"

namespace ember::dist {

/// Point mass at `v`. The rightmost `event_dim` dims of `v` form the event;
/// `log_prob(x) = log(x == v) + log_density` (0 or -inf, plus an optional density term).
class Delta : public DistributionMixin<Delta> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Delta, (torch::Tensor, v), (torch::Tensor, log_density));

  Delta(torch::Tensor v, int64_t event_dim = 0, std::optional<bool> validate_args = std::nullopt);
  Delta(torch::Tensor v, torch::Tensor log_density, int64_t event_dim = 0,
        std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view) { return nullptr; }
  std::string name() const override { return "Delta"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return v; }
  torch::Tensor variance() const override { return torch::zeros_like(v); }
  ConstraintPtr support() const override { return constraints::independent(constraints::real(), event_dim()); }
};

}  // namespace ember::dist
