#pragma once
/// \file MaskedDistribution: a base distribution whose log-density is masked elementwise (`mask`).

#include <optional>

#include "distributions/distribution.h"

namespace ember::dist {

/// `base` with log_prob set to 0 where a boolean mask is false (Pyro's MaskedDistribution).
/// Built by `d.mask(m)`. A tensor mask broadcasts with the base's batch shape: both are
/// expanded to the broadcast shape, so `Normal(0, 1).mask(tensor({true, false}))` has batch
/// shape [2]. A constant mask (`d.mask(false)`) keeps the base's shapes; `false` skips the
/// base's log_prob entirely and gives zeros.
class MaskedDistribution : public Distribution {
 public:
  /// Tensor mask (bool), broadcast against `base`'s batch shape.
  MaskedDistribution(DistPtr base, torch::Tensor mask);
  /// Constant mask.
  MaskedDistribution(DistPtr base, bool mask);

  const DistPtr& base() const { return base_; }
  /// The mask as a tensor (a 0-dim tensor for a constant mask).
  torch::Tensor mask_tensor() const;
  /// The constant mask, if the mask is a constant (Pyro's `mask is True` / `mask is False`).
  std::optional<bool> constant_mask() const { return constant_; }

  std::string name() const override { return "MaskedDistribution"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<MaskedDistribution>(*this); }
  torch::Tensor sample(const Shape& sample_shape = {}) const override { return base_->sample(sample_shape); }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override { return base_->rsample(sample_shape); }
  bool has_rsample() const override { return base_->has_rsample(); }
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return base_->mean(); }
  torch::Tensor variance() const override { return base_->variance(); }
  ConstraintPtr support() const override { return base_->support(); }
  bool has_enumerate_support() const override { return base_->has_enumerate_support(); }
  torch::Tensor enumerate_support(bool expand = true) const override { return base_->enumerate_support(expand); }
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  torch::TensorOptions options() const override { return base_->options(); }
  std::string to_string() const override;

 private:
  DistPtr base_;
  torch::Tensor mask_;              // undefined for a constant mask
  std::optional<bool> constant_;
};

}  // namespace ember::dist
