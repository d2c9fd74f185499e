#pragma once
/// \file The distribution interface every Ember distribution implements.
///
/// Semantics follow torch.distributions: a sample has shape
/// `sample_shape + batch_shape + event_shape`; `log_prob(value)` broadcasts `value`
/// against `batch_shape + event_shape` and returns one number per batch element.
/// Distributions are immutable values; the runtime shares them as `DistPtr`.
///
/// New distributions derive from `ember::dist::DistributionMixin<Derived>` (mixin.h),
/// which reflects their tensor parameters once (Boost.Hana) for cloning, `expand`,
/// device/dtype moves, parameter validation and printing.

#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>

#include "core/error.h"
#include "distributions/constraints.h"
#include "distributions/shape.h"

namespace ember::dist {

using constraints::ConstraintPtr;

class Distribution;
/// Shared, immutable handle to a distribution: what `sample` sites carry.
using DistPtr = std::shared_ptr<const Distribution>;

/// Turns argument and support validation on or off for every distribution whose own
/// flag is unset (on by default, as in Pyro). Thread-safe.
void enable_validation(bool on = true);
/// Whether validation is on globally.
bool is_validation_enabled();

/// Base class of all distributions.
class Distribution {
 public:
  virtual ~Distribution() = default;

  /// Shape of independent (not identically distributed) parameter batches.
  const Shape& batch_shape() const { return batch_shape_; }
  /// Shape of one draw.
  const Shape& event_shape() const { return event_shape_; }
  /// Number of event dims.
  int64_t event_dim() const { return static_cast<int64_t>(event_shape_.size()); }
  /// `sample_shape + batch_shape + event_shape`.
  Shape extended_shape(const Shape& sample_shape = {}) const;

  /// The distribution's name, e.g. "Normal".
  virtual std::string name() const = 0;
  /// A copy of this distribution (mutable so that wrappers can adjust flags).
  virtual std::shared_ptr<Distribution> clone() const = 0;

  /// Draws without gradient (pathwise gradients use rsample).
  virtual torch::Tensor sample(const Shape& sample_shape = {}) const;
  /// Draws with a reparameterised (pathwise) gradient; throws NotImplementedError if
  /// `has_rsample()` is false.
  virtual torch::Tensor rsample(const Shape& sample_shape = {}) const;
  /// Whether rsample is available.
  virtual bool has_rsample() const { return false; }
  /// rsample when available, else sample: what an unobserved `sample` site draws.
  torch::Tensor draw(const Shape& sample_shape = {}) const {
    return has_rsample() ? rsample(sample_shape) : sample(sample_shape);
  }

  /// Log density (or mass) of `value`, of shape broadcast(value batch dims, batch_shape).
  virtual torch::Tensor log_prob(const torch::Tensor& value) const = 0;

  /// Mean, where defined in closed form.
  virtual torch::Tensor mean() const;
  /// Variance, where defined in closed form.
  virtual torch::Tensor variance() const;
  /// Standard deviation: sqrt(variance()).
  virtual torch::Tensor stddev() const { return variance().sqrt(); }
  /// Entropy, where defined in closed form.
  virtual torch::Tensor entropy() const;
  /// The most probable value (torch's `mode`), where torch defines it; NaN where the mode is
  /// not unique or does not exist (Uniform, Bernoulli(0.5)).
  virtual torch::Tensor mode() const;
  /// Cumulative distribution function (univariate distributions).
  virtual torch::Tensor cdf(const torch::Tensor& value) const;
  /// Inverse CDF (univariate distributions).
  virtual torch::Tensor icdf(const torch::Tensor& prob) const;

  /// The set samples lie in.
  virtual ConstraintPtr support() const = 0;
  /// Whether the support is finite and enumerable (Bernoulli, Categorical, ...).
  virtual bool has_enumerate_support() const { return false; }
  /// All values of the support, shape `[n] + (expand ? batch_shape : ones) + event_shape`.
  virtual torch::Tensor enumerate_support(bool expand = true) const;
  /// Whether samples are discrete.
  bool is_discrete() const { return support()->is_discrete(); }

  /// The same distribution with its batch shape broadcast to `batch_shape`.
  virtual DistPtr expand(const Shape& batch_shape) const = 0;
  /// Moves parameters to another device/dtype.
  virtual DistPtr to(const torch::TensorOptions& options) const = 0;
  /// dtype and device of the parameters.
  virtual torch::TensorOptions options() const = 0;
  /// Human-readable description with parameter shapes.
  virtual std::string to_string() const;

  /// Reinterprets the rightmost `n` batch dims as event dims (Pyro's `.to_event(n)`); no `n`
  /// reinterprets every batch dim. As in Pyro, nested Independents merge into one, and a
  /// negative `n` turns that many event dims of an Independent back into batch dims
  /// (ValueError if there are not that many reinterpreted dims).
  DistPtr to_event(std::optional<int64_t> n = std::nullopt) const;
  /// Prepends `sample_shape` to the batch shape.
  DistPtr expand_by(const Shape& sample_shape) const;
  /// Masks log_prob elementwise: false entries contribute 0 (Pyro's `.mask(m)`).
  DistPtr mask(const torch::Tensor& mask) const;
  /// Masks everything (false) or nothing (true).
  DistPtr mask(bool mask) const;
  /// A copy with argument/support validation forced on or off.
  DistPtr with_validation(bool on) const;

  /// Whether this distribution validates (its own flag, else the global switch).
  bool validate_args() const { return validate_args_ ? *validate_args_ : is_validation_enabled(); }

 protected:
  Distribution() = default;
  /// Sets shapes; derived constructors call this once their parameters are broadcast.
  void set_shapes(Shape batch, Shape event) {
    batch_shape_ = std::move(batch);
    event_shape_ = std::move(event);
  }
  /// Checks `value` against the event shape and the support when validation is on;
  /// throws ShapeError / ValueError naming this distribution.
  void validate_sample(const torch::Tensor& value) const;

  std::optional<bool> validate_args_;
  Shape batch_shape_;
  Shape event_shape_;

  friend class Independent;
  template <class> friend class DistributionMixin;
};

/// Prints `dist.to_string()`.
std::ostream& operator<<(std::ostream& os, const Distribution& d);

}  // namespace ember::dist
