#pragma once
/// \file ContinuousBernoulli(probs | logits): the principled likelihood for values in [0, 1].

#include "distributions/mixin.h"

namespace ember::dist {

/// Continuous Bernoulli distribution (Loaiza-Ganem & Cunningham, NeurIPS 2019) on [0, 1]:
/// density `C(p) p^x (1 - p)^(1 - x)`, the correctly normalised likelihood for grey-valued
/// pixels. Near p = 0.5 (inside `lims`) the normaliser and moments use Taylor expansions, as
/// torch does. Reparameterisable through its inverse CDF.
class ContinuousBernoulli : public DistributionMixin<ContinuousBernoulli> {
 public:
  BOOST_HANA_DEFINE_STRUCT(ContinuousBernoulli, (torch::Tensor, probs), (torch::Tensor, logits));

  /// Parameterised by probabilities in [0, 1] (clamped away from 0 and 1 after validation).
  explicit ContinuousBernoulli(TensorArg probs, std::optional<bool> validate_args = std::nullopt,
                               std::pair<double, double> lims = {0.499, 0.501});
  /// Parameterised by logits.
  explicit ContinuousBernoulli(Logits logits, std::optional<bool> validate_args = std::nullopt,
                               std::pair<double, double> lims = {0.499, 0.501});

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "probs" ? constraints::unit_interval() : constraints::real();
  }
  std::string name() const override { return "ContinuousBernoulli"; }
  bool has_rsample() const override { return true; }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override { return constraints::unit_interval(); }

 private:
  torch::Tensor outside_unstable_region() const;
  torch::Tensor cut_probs() const;
  torch::Tensor log_normalizer() const;
  std::pair<double, double> lims_;
};

}  // namespace ember::dist
