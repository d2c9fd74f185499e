#pragma once
/// \file Independent: reinterprets batch dims of a base distribution as event dims (`to_event`).

#include "distributions/distribution.h"

namespace ember::dist {

/// Reinterprets the rightmost `reinterpreted_batch_ndims` batch dims of `base` as event
/// dims; log_prob sums over them. Built by `d.to_event(n)`.
class Independent : public Distribution {
 public:
  Independent(DistPtr base, int64_t reinterpreted_batch_ndims, std::optional<bool> validate_args = std::nullopt);

  const DistPtr& base() const { return base_; }
  int64_t reinterpreted_batch_ndims() const { return n_; }

  std::string name() const override { return "Independent"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<Independent>(*this); }
  torch::Tensor sample(const Shape& sample_shape = {}) const override { return base_->sample(sample_shape); }
  torch::Tensor rsample(const Shape& sample_shape = {}) const override { return base_->rsample(sample_shape); }
  bool has_rsample() const override { return base_->has_rsample(); }
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  torch::Tensor mean() const override { return base_->mean(); }
  torch::Tensor variance() const override { return base_->variance(); }
  torch::Tensor entropy() const override;
  torch::Tensor mode() const override { return base_->mode(); }
  ConstraintPtr support() const override { return constraints::independent(base_->support(), n_); }
  bool has_enumerate_support() const override { return n_ == 0 && base_->has_enumerate_support(); }
  torch::Tensor enumerate_support(bool expand = true) const override;
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  torch::TensorOptions options() const override { return base_->options(); }
  std::string to_string() const override;

 private:
  DistPtr base_;
  int64_t n_;
};

}  // namespace ember::dist
