#pragma once
/// \file TransformedDistribution(base, transforms): the law of T(X) for X ~ base.

#include <vector>

#include "distributions/distribution.h"
#include "distributions/transforms.h"

namespace ember::dist {

/// The distribution of `T(x)`, x ~ `base`, for a chain of bijections T = t_n o ... o t_1
/// (`transforms[0]` applied first). `log_prob(y) = base.log_prob(T^{-1}(y)) - log|det J_T|`,
/// summed over the event dims. When a transform needs more event dims than `base` has
/// (e.g. stick-breaking over a batch of reals), base batch dims become event dims.
/// cdf/icdf are available when T is a monotone scalar map (`Transform::sign() != 0`).
class TransformedDistribution : public Distribution {
 public:
  TransformedDistribution(DistPtr base, std::vector<transforms::TransformPtr> transforms,
                          std::optional<bool> validate_args = std::nullopt);

  /// The base distribution (after any batch dims were reinterpreted as event dims).
  const DistPtr& base_dist() const { return base_; }
  /// The transforms, first applied first.
  const std::vector<transforms::TransformPtr>& transforms() const { return transforms_; }

  std::string name() const override { return "TransformedDistribution"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<TransformedDistribution>(*this); }
  bool has_rsample() const override { return base_->has_rsample(); }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor rsample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor cdf(const torch::Tensor& value) const override;
  torch::Tensor icdf(const torch::Tensor& prob) const override;
  ConstraintPtr support() const override;
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  torch::TensorOptions options() const override { return base_->options(); }
  std::string to_string() const override;

 private:
  int monotone_sign() const;
  DistPtr base_;
  std::vector<transforms::TransformPtr> transforms_;
  transforms::TransformPtr chain_;
};

}  // namespace ember::dist
