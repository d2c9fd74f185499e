#pragma once
/// \file FoldedDistribution(base): |X| for a univariate X (Pyro's), and LogisticNormal(loc, scale).

#include "distributions/transformed_distribution.h"
#include "distributions/util.h"

namespace ember::dist {

/// The law of |X| for X ~ `base` (univariate), as Pyro's `FoldedDistribution`: density
/// p(y) + p(-y) on y >= 0. A TransformedDistribution through `transforms::abs()` whose
/// log_prob folds the base density (abs has no Jacobian). Reparameterised when the base is.
class FoldedDistribution : public TransformedDistribution {
 public:
  /// `base` must have an empty event shape.
  explicit FoldedDistribution(DistPtr base, std::optional<bool> validate_args = std::nullopt);

  std::string name() const override { return "FoldedDistribution"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<FoldedDistribution>(*this); }
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  ConstraintPtr support() const override { return constraints::positive(); }
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  std::string to_string() const override;
};

/// torch's LogisticNormal: a Normal(loc, scale) over K - 1 coordinates mapped onto the
/// K-simplex by stick-breaking (event shape [K]); reparameterisable.
class LogisticNormal : public TransformedDistribution {
 public:
  /// `loc` and `scale` broadcast; their last dim (K - 1) is the event (a scalar becomes [1]).
  LogisticNormal(TensorArg loc, TensorArg scale, std::optional<bool> validate_args = std::nullopt);

  /// The underlying Normal's parameters, shape batch + [K - 1].
  const torch::Tensor& loc() const { return loc_; }
  const torch::Tensor& scale() const { return scale_; }

  std::string name() const override { return "LogisticNormal"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<LogisticNormal>(*this); }
  ConstraintPtr support() const override { return constraints::simplex(); }
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  std::string to_string() const override;

 private:
  LogisticNormal(torch::Tensor loc, torch::Tensor scale, DistPtr base, std::optional<bool> validate_args);
  torch::Tensor loc_, scale_;
};

}  // namespace ember::dist
