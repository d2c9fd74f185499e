#pragma once
/// \file OneHotCategorical(probs | logits): categories as one-hot vectors.

#include "distributions/mixin.h"

namespace ember::dist {

/// Categorical distribution whose samples are one-hot vectors of length K (event_shape [K]).
class OneHotCategorical : public DistributionMixin<OneHotCategorical> {
 public:
  BOOST_HANA_DEFINE_STRUCT(OneHotCategorical, (torch::Tensor, probs), (torch::Tensor, logits));

  /// From (unnormalised, nonnegative) probabilities; last dim = categories.
  explicit OneHotCategorical(torch::Tensor probs, std::optional<bool> validate_args = std::nullopt);
  /// From unnormalised log-probabilities.
  explicit OneHotCategorical(Logits logits, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "probs" ? constraints::simplex() : constraints::real_vector();
  }
  std::string name() const override { return "OneHotCategorical"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return probs; }
  torch::Tensor variance() const override { return probs * (1 - probs); }
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override {
    return torch::one_hot(probs.argmax(-1), probs.size(-1)).to(probs.dtype());
  }
  ConstraintPtr support() const override { return constraints::one_hot(); }
  bool has_enumerate_support() const override { return true; }
  torch::Tensor enumerate_support(bool expand = true) const override;
};

}  // namespace ember::dist
