#pragma once
/// \file Empirical(samples, log_weights): a weighted set of stored samples (Pyro's).

#include "distributions/distribution.h"

namespace ember::dist {

/// The weighted empirical distribution of `samples` (shape batch + [N] + event) with
/// unnormalised `log_weights` (batch + [N]), as Pyro's `Empirical`: draws pick a stored
/// sample with probability softmax(log_weights); log_prob(x) is the log of the total weight of
/// the stored samples equal to x (-inf if none).
class Empirical : public Distribution {
 public:
  Empirical(torch::Tensor samples, torch::Tensor log_weights, std::optional<bool> validate_args = std::nullopt);

  const torch::Tensor& samples() const { return samples_; }
  const torch::Tensor& log_weights() const { return log_weights_; }
  /// Number of stored samples (per batch element).
  int64_t sample_size() const { return log_weights_.size(-1); }

  std::string name() const override { return "Empirical"; }
  std::shared_ptr<Distribution> clone() const override { return std::make_shared<Empirical>(*this); }
  torch::Tensor sample(const Shape& sample_shape = {}) const override;
  /// `value` must have shape batch_shape + event_shape exactly (as Pyro).
  torch::Tensor log_prob(const torch::Tensor& value) const override;
  /// Weighted mean; ValueError for integer samples (as Pyro).
  torch::Tensor mean() const override;
  torch::Tensor variance() const override;
  ConstraintPtr support() const override { return constraints::independent(constraints::real(), event_dim()); }
  bool has_enumerate_support() const override { return batch_shape_.empty(); }
  /// The stored samples, [N] + event (batch-free Empirical only).
  torch::Tensor enumerate_support(bool expand = true) const override;
  DistPtr expand(const Shape& batch_shape) const override;
  DistPtr to(const torch::TensorOptions& options) const override;
  torch::TensorOptions options() const override { return log_weights_.options(); }

 private:
  torch::Tensor weighted_mean(const torch::Tensor& values) const;
  torch::Tensor samples_, log_weights_;
};

}  // namespace ember::dist
