#pragma once
/// \file Binomial(total_count, probs | logits).

#include "distributions/mixin.h"

namespace ember::dist {

/// Number of successes in `total_count` Bernoulli trials; `total_count` (a nonnegative
/// integer, possibly a tensor) broadcasts with the probabilities.
class Binomial : public DistributionMixin<Binomial> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Binomial, (torch::Tensor, total_count), (torch::Tensor, probs), (torch::Tensor, logits));

  /// From success probabilities in [0, 1].
  Binomial(TensorArg total_count, TensorArg probs, std::optional<bool> validate_args = std::nullopt);
  /// From log-odds.
  Binomial(TensorArg total_count, Logits logits, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p) {
    if (p == "total_count") return constraints::nonnegative_integer();
    return p == "probs" ? constraints::unit_interval() : constraints::real();
  }
  std::string name() const override { return "Binomial"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return total_count * probs; }
  torch::Tensor variance() const override { return total_count * probs * (1 - probs); }
  /// Exact entropy by summing over {0, ..., max(total_count)}.
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return torch::minimum(((total_count + 1) * probs).floor(), total_count); }
  ConstraintPtr support() const override { return constraints::integer_interval(torch::zeros({}, total_count.options()), total_count); }
  bool has_enumerate_support() const override { return true; }
  /// Values {0, ..., n}; requires every total_count to equal n (as torch).
  torch::Tensor enumerate_support(bool expand = true) const override;
};

}  // namespace ember::dist
