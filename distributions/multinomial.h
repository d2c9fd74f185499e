#pragma once
/// \file Multinomial(total_count, probs | logits): category counts.

#include "distributions/mixin.h"

namespace ember::dist {

/// Counts of each of K categories in `total_count` independent categorical draws
/// (event_shape [K]). log_prob accepts any count vector (the total is read from the value).
class Multinomial : public DistributionMixin<Multinomial> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Multinomial, (torch::Tensor, probs), (torch::Tensor, logits));

  /// From (unnormalised, nonnegative) probabilities; last dim = categories.
  Multinomial(int64_t total_count, torch::Tensor probs, std::optional<bool> validate_args = std::nullopt);
  /// From unnormalised log-probabilities.
  Multinomial(int64_t total_count, Logits logits, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    return p == "probs" ? constraints::simplex() : constraints::real_vector();
  }
  std::string name() const override { return "Multinomial"; }
  /// Number of draws.
  int64_t total_count() const { return total_count_; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return probs * static_cast<double>(total_count_); }
  torch::Tensor variance() const override { return static_cast<double>(total_count_) * probs * (1 - probs); }
  /// Exact entropy (sums over the binomial marginals, as torch).
  torch::Tensor entropy() const override;
  ConstraintPtr support() const override { return constraints::multinomial(total_count_); }

 private:
  int64_t total_count_;
};

}  // namespace ember::dist
