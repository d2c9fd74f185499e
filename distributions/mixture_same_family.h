#pragma once
/// \file MixtureSameFamily(mixture, components): a finite mixture of one family.

#include "distributions/categorical.h"

namespace ember::dist {

/// Mixture whose component index is drawn from `mixture` (a Categorical over K) and whose
/// components are the rightmost batch dim (of size K) of `component`.
/// Batch shape: `component.batch_shape[:-1]`; event shape: `component.event_shape`.
/// log_prob is the log-sum-exp over components; there is no rsample (as in torch).
class MixtureSameFamily : public Distribution {
 public:
  /// `mixture` must be a Categorical whose batch shape broadcasts with the component batch
  /// shape less its last dim, and whose K equals that last dim.
  MixtureSameFamily(DistPtr mixture, DistPtr component, std::optional<bool> validate_args = std::nullopt);

  /// The Categorical over components.
  const std::shared_ptr<const Categorical>& mixture_distribution() const { return mixture_; }
  /// The batched component distribution.
  const DistPtr& component_distribution() const { return component_; }

  std::string name() const override { return "MixtureSameFamily"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<MixtureSameFamily>(*this); }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override;
  /// Law of total variance.
  torch::Tensor variance() const override;
  /// Mixture of the component cdfs (univariate components).
  torch::Tensor cdf(const torch::Tensor& value) const override;
  ConstraintPtr support() const override { return component_->support(); }
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  torch::TensorOptions options() const override { return component_->options(); }
  std::string to_string() const override;

 private:
  torch::Tensor pad_mixture(const torch::Tensor& x) const;
  std::shared_ptr<const Categorical> mixture_;
  DistPtr component_;
};

}  // namespace ember::dist
