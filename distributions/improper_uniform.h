#pragma once
/// \file ImproperUniform(support, batch_shape, event_shape): a flat improper prior (Pyro's).

#include "distributions/distribution.h"

namespace ember::dist {

/// The improper "uniform" density 1 on `support` (log_prob 0 everywhere), as Pyro's
/// `ImproperUniform`: a prior to be conditioned away or a latent for an autoguide to
/// initialise. It cannot be sampled; `support()` is what `biject_to` uses.
class ImproperUniform : public Distribution {
 public:
  ImproperUniform(ConstraintPtr support, Shape batch_shape, Shape event_shape = {});

  std::string name() const override { return "ImproperUniform"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<ImproperUniform>(*this); }
  /// Throws NotImplementedError (as Pyro).
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  /// Zeros of shape broadcast(value batch dims, batch_shape), without checking the support (as Pyro).
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  ConstraintPtr support() const override { return support_; }
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  torch::TensorOptions options() const override { return options_; }

 private:
  ConstraintPtr support_;
  torch::TensorOptions options_ = torch::TensorOptions().dtype(torch::get_default_dtype());
};

}  // namespace ember::dist
