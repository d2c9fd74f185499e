#pragma once
/// \file Constraints: the sets a parameter or a sample lives in (as torch.distributions.constraints).
///
/// A constraint answers `check(value)` with a boolean tensor whose shape is the value's
/// shape less the constraint's `event_dim` rightmost dims. Constraints are immutable and
/// shared by pointer; `transform_to(constraint)` (transforms.h) maps reals onto them.

#include <torch/types.h>

#include "core/error.h"

#include <memory>
#include <optional>
#include <string>

namespace ember::constraints {

/// The set a value must belong to.
class Constraint {
 public:
  virtual ~Constraint() = default;
  /// A readable name such as `interval(0, 1)`, used in error messages.
  virtual std::string name() const = 0;
  /// Elementwise membership, reduced over the constraint's event dims.
  virtual torch::Tensor check(const torch::Tensor& value) const = 0;
  /// Number of rightmost dims that form one constrained event (simplex: 1).
  virtual int64_t event_dim() const { return 0; }
  /// True for sets of integers (supports of discrete distributions).
  virtual bool is_discrete() const { return false; }
  /// For constraints decided elementwise by comparisons (event_dim 0): whether the scalar
  /// `x`, an element of a tensor of floating `dtype`, is in the set, compared in that dtype
  /// as `check` compares; nullopt for the others. Lets `all_satisfied` decide small CPU
  /// tensors without tensor ops.
  virtual std::optional<bool> contains(double x, torch::ScalarType dtype) const { return std::nullopt; }
};

/// `c.check(v).all()`: whether every element of `v` satisfies `c`. Contiguous CPU
/// float/double tensors are decided in plain C++ when `c` allows (the built-in real, interval
/// and bound constraints at any size, other elementwise ones through `contains` when small),
/// with no tensor op and no allocation.
bool all_satisfied(const Constraint& c, const torch::Tensor& v);

/// Shared handle to an immutable constraint.
using ConstraintPtr = std::shared_ptr<const Constraint>;

/// Concrete constraint types: public so that `transform_to` can dispatch on them and so
/// that user code can register transforms for its own types (see transforms.h).
struct Real : Constraint {
  std::string name() const override { return "real"; }
  torch::Tensor check(const torch::Tensor& v) const override;
  std::optional<bool> contains(double x, torch::ScalarType) const override { return x == x; }
};
struct Interval : Constraint {
  double lower, upper;
  bool lower_open = false, upper_open = false;
  Interval(double lo, double hi, bool lo_open = false, bool hi_open = false)
      : lower(lo), upper(hi), lower_open(lo_open), upper_open(hi_open) {}
  std::string name() const override;
  torch::Tensor check(const torch::Tensor& v) const override;
  std::optional<bool> contains(double x, torch::ScalarType dtype) const override;
};
struct GreaterThan : Constraint {
  double lower;
  bool strict;
  GreaterThan(double lo, bool strict_) : lower(lo), strict(strict_) {}
  std::string name() const override;
  torch::Tensor check(const torch::Tensor& v) const override;
  std::optional<bool> contains(double x, torch::ScalarType dtype) const override;
};
struct LessThan : Constraint {
  double upper;
  explicit LessThan(double hi) : upper(hi) {}
  std::string name() const override;
  torch::Tensor check(const torch::Tensor& v) const override;
  std::optional<bool> contains(double x, torch::ScalarType dtype) const override;
};
struct IntegerInterval : Constraint {
  double lower, upper;  // +-inf for unbounded
  IntegerInterval(double lo, double hi) : lower(lo), upper(hi) {}
  std::string name() const override;
  torch::Tensor check(const torch::Tensor& v) const override;
  std::optional<bool> contains(double x, torch::ScalarType dtype) const override;
  bool is_discrete() const override { return true; }
};
/// Nonnegative vectors summing to one within max(1e-6, K * dtype epsilon).
struct Simplex : Constraint {
  std::string name() const override { return "simplex"; }
  torch::Tensor check(const torch::Tensor& v) const override;
  int64_t event_dim() const override { return 1; }
};
struct IntegerVector : Constraint {
  std::string name() const override { return "nonnegative_integer_vector"; }
  torch::Tensor check(const torch::Tensor& v) const override;
  int64_t event_dim() const override { return 1; }
  bool is_discrete() const override { return true; }
};
struct OneHot : Constraint {
  std::string name() const override { return "one_hot"; }
  torch::Tensor check(const torch::Tensor& v) const override;
  int64_t event_dim() const override { return 1; }
  bool is_discrete() const override { return true; }
};
struct LowerCholesky : Constraint {
  std::string name() const override { return "lower_cholesky"; }
  torch::Tensor check(const torch::Tensor& v) const override;
  int64_t event_dim() const override { return 2; }
};
struct PositiveDefinite : Constraint {
  std::string name() const override { return "positive_definite"; }
  torch::Tensor check(const torch::Tensor& v) const override;
  int64_t event_dim() const override { return 2; }
};
/// lower <= x <= upper with tensor bounds broadcast against the value (Uniform's support).
struct TensorInterval : Constraint {
  torch::Tensor lower, upper;
  TensorInterval(torch::Tensor lo, torch::Tensor hi) : lower(std::move(lo)), upper(std::move(hi)) {}
  std::string name() const override;
  torch::Tensor check(const torch::Tensor& v) const override;
};
/// Integers in {lower, ..., upper} with tensor bounds (Binomial's support).
struct TensorIntegerInterval : Constraint {
  torch::Tensor lower, upper;
  TensorIntegerInterval(torch::Tensor lo, torch::Tensor hi) : lower(std::move(lo)), upper(std::move(hi)) {}
  std::string name() const override;
  torch::Tensor check(const torch::Tensor& v) const override;
  bool is_discrete() const override { return true; }
};
/// Nonnegative integer vectors summing to at most `total_count` (Multinomial's support).
struct MultinomialSupport : Constraint {
  int64_t total_count;
  explicit MultinomialSupport(int64_t n) : total_count(n) {}
  std::string name() const override;
  torch::Tensor check(const torch::Tensor& v) const override;
  int64_t event_dim() const override { return 1; }
  bool is_discrete() const override { return true; }
};
struct Independent : Constraint {
  std::shared_ptr<const Constraint> base;
  int64_t reinterpreted;
  Independent(std::shared_ptr<const Constraint> b, int64_t n) : base(std::move(b)), reinterpreted(n) {}
  std::string name() const override;
  torch::Tensor check(const torch::Tensor& v) const override;
  int64_t event_dim() const override { return base->event_dim() + reinterpreted; }
  bool is_discrete() const override { return base->is_discrete(); }
};

/// All reals.
ConstraintPtr real();
/// Real vectors (event_dim 1).
ConstraintPtr real_vector();
/// x > 0.
ConstraintPtr positive();
/// x >= 0.
ConstraintPtr nonnegative();
/// 0 <= x <= 1.
ConstraintPtr unit_interval();
/// lower <= x <= upper.
ConstraintPtr interval(double lower, double upper);
/// lower <= x < upper (Uniform's support, as in torch).
ConstraintPtr half_open_interval(double lower, double upper);
/// x > lower.
ConstraintPtr greater_than(double lower);
/// x >= lower.
ConstraintPtr greater_than_eq(double lower);
/// x < upper.
ConstraintPtr less_than(double upper);
/// x in {0, 1}.
ConstraintPtr boolean();
/// Integer-valued x.
ConstraintPtr integer();
/// x in {0, 1, 2, ...}.
ConstraintPtr nonnegative_integer();
/// x in {1, 2, ...}.
ConstraintPtr positive_integer();
/// x in {lower, ..., upper}.
ConstraintPtr integer_interval(int64_t lower, int64_t upper);
/// Vectors with nonnegative entries summing to 1 (event_dim 1).
ConstraintPtr simplex();
/// Vectors of nonnegative integers (event_dim 1), e.g. Multinomial counts.
ConstraintPtr nonnegative_integer_vector();
/// One-hot vectors (event_dim 1).
ConstraintPtr one_hot();
/// Lower-triangular matrices with positive diagonal (event_dim 2).
ConstraintPtr lower_cholesky();
/// Symmetric positive-definite matrices (event_dim 2).
ConstraintPtr positive_definite();
/// lower <= x <= upper, elementwise with tensor bounds (broadcast against the value).
ConstraintPtr interval(const torch::Tensor& lower, const torch::Tensor& upper);
/// Integers in {lower, ..., upper}, elementwise with tensor bounds.
ConstraintPtr integer_interval(const torch::Tensor& lower, const torch::Tensor& upper);
/// Nonnegative integer vectors whose sum is at most `total_count` (event_dim 1).
ConstraintPtr multinomial(int64_t total_count);
/// `base` with `n` extra rightmost dims reinterpreted as event dims.
ConstraintPtr independent(ConstraintPtr base, int64_t n);

/// x >= lower with a tensor bound broadcast against the value (Pareto's support).
struct TensorGreaterThanEq : Constraint {
  torch::Tensor lower;
  explicit TensorGreaterThanEq(torch::Tensor lo) : lower(std::move(lo)) {}
  std::string name() const override;
  torch::Tensor check(const torch::Tensor& v) const override;
};
/// Lower Cholesky factors of correlation matrices: lower-triangular, positive diagonal, rows of
/// unit Euclidean norm within 10 * n * dtype epsilon (as torch).
struct CorrCholesky : Constraint {
  std::string name() const override { return "corr_cholesky"; }
  torch::Tensor check(const torch::Tensor& v) const override;
  int64_t event_dim() const override { return 2; }
};
/// x >= lower elementwise, with a tensor bound.
ConstraintPtr greater_than_eq(const torch::Tensor& lower);
/// Cholesky factors of correlation matrices (event_dim 2).
ConstraintPtr corr_cholesky();


}  // namespace ember::constraints
