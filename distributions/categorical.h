#pragma once
/// \file Categorical(probs | logits): integer-valued categories {0, ..., K-1}.

#include "distributions/mixin.h"

namespace ember::dist {

/// Categorical distribution over {0, ..., K-1}; parameters have shape `batch_shape + [K]`.
/// `probs` need not be normalised (they are divided by their sum); logits are normalised.
class Categorical : public DistributionMixin<Categorical> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Categorical, (torch::Tensor, probs), (torch::Tensor, logits));

  /// From (unnormalised, nonnegative) probabilities; last dim = categories.
  explicit Categorical(torch::Tensor probs, std::optional<bool> validate_args = std::nullopt);
  /// From unnormalised log-probabilities.
  explicit Categorical(Logits logits, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "probs" ? constraints::simplex() : constraints::real_vector();
  }
  std::string name() const override { return "Categorical"; }
  /// Number of categories K.
  int64_t num_categories() const { return probs.size(-1); }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  /// NaN (categories are unordered labels), as torch.
  torch::Tensor mean() const override;
  /// NaN, as torch.
  torch::Tensor variance() const override;
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return probs.argmax(-1); }
  ConstraintPtr support() const override { return constraints::integer_interval(0, num_categories() - 1); }
  bool has_enumerate_support() const override { return true; }
  torch::Tensor enumerate_support(bool expand = true) const override;
};

}  // namespace ember::dist
