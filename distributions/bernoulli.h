#pragma once
/// \file Bernoulli(probs | logits).

#include <limits>

#include "distributions/mixin.h"
#include "distributions/util.h"

namespace ember::dist {

/// Bernoulli distribution over {0, 1}.
///
/// `log_prob(x) = x log p + (1 - x) log(1 - p)`, computed from logits so that it is finite
/// for p in {0, 1} and also defined for x in [0, 1] (grey pixels) when validation is off.
class Bernoulli : public DistributionMixin<Bernoulli> {
 public:
  BOOST_HANA_DEFINE_STRUCT(Bernoulli, (torch::Tensor, probs), (torch::Tensor, logits));

  /// Parameterised by probabilities in [0, 1].
  explicit Bernoulli(TensorArg probs, std::optional<bool> validate_args = std::nullopt);
  /// Parameterised by log-odds.
  explicit Bernoulli(Logits logits, std::optional<bool> validate_args = std::nullopt);

  static ConstraintPtr arg_constraint(std::string_view p);
  std::string name() const override { return "Bernoulli"; }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return probs; }
  torch::Tensor variance() const override { return probs * (1 - probs); }
  torch::Tensor entropy() const override;
  /// 1 where probs > 0.5, 0 where below, NaN at exactly 0.5 (as torch).
  torch::Tensor mode() const override {
    auto nan = torch::full({}, std::numeric_limits<double>::quiet_NaN(), probs.options());
    return torch::where(probs == 0.5, nan, (probs >= 0.5).to(probs.dtype()));
  }
  ConstraintPtr support() const override { return constraints::boolean(); }
  bool has_enumerate_support() const override { return true; }
  torch::Tensor enumerate_support(bool expand = true) const override;
};

}  // namespace ember::dist
