#include "distributions/constraints.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <typeinfo>

#include "distributions/shape.h"

namespace ember::constraints {
namespace {
// The shortest decimal that parses back to exactly `x`, so that a constraint's name
// (which checkpoints store) restores the same bounds.
std::string num(double x) {
  for (int precision = 6; precision <= 17; ++precision) {
    std::ostringstream os;
    os.precision(precision);
    os << x;
    if (precision == 17 || std::stod(os.str()) == x) return os.str();
  }
  return {};
}
// Integer-valued entries, as torch (`value % 1 == 0`): false for NaN and for +-inf.
torch::Tensor is_integral(const torch::Tensor& v) {
  return v.is_floating_point() ? v.remainder(1) == 0 : torch::ones_like(v, v.options().dtype(torch::kBool));
}
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

torch::Tensor Real::check(const torch::Tensor& v) const { return v == v; }  // false only for NaN

namespace {
// A bound as `check` compares it with a tensor of `dtype`: the scalar is cast to that dtype.
double bound(double b, torch::ScalarType dtype) { return dtype == torch::kFloat ? static_cast<double>(static_cast<float>(b)) : b; }
constexpr int64_t kSmall = 64;  // larger tensors are faster through the vectorised kernels
}  // namespace

namespace {
// Every element satisfies `pred`: no early exit, so the compiler can vectorise the loop.
template <class T, class Pred>
bool all_of(const T* x, int64_t n, Pred pred) {
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= pred(x[i]);
  return ok;
}

// The built-in elementwise constraints over a whole contiguous array, with the bounds cast to
// the array's dtype once (as `check` compares); nullopt for other constraint types (matched
// exactly: a user type deriving from these may redefine `check`).
template <class T>
std::optional<bool> all_in(const Constraint& c, const T* x, int64_t n) {
  const auto& type = typeid(c);
  if (type == typeid(Real)) return all_of(x, n, [](T v) { return v == v; });
  if (type == typeid(GreaterThan)) {
    const auto& g = static_cast<const GreaterThan&>(c);
    const T lo = static_cast<T>(g.lower);
    if (g.strict) return all_of(x, n, [lo](T v) { return v > lo; });
    return all_of(x, n, [lo](T v) { return v >= lo; });
  }
  if (type == typeid(LessThan)) {
    const T hi = static_cast<T>(static_cast<const LessThan&>(c).upper);
    return all_of(x, n, [hi](T v) { return v < hi; });
  }
  if (type == typeid(Interval)) {
    const auto& iv = static_cast<const Interval&>(c);
    const T lo = static_cast<T>(iv.lower), hi = static_cast<T>(iv.upper);
    if (!iv.lower_open && !iv.upper_open) return all_of(x, n, [lo, hi](T v) { return (v >= lo) & (v <= hi); });
    return all_of(x, n, [lo, hi, lo_open = iv.lower_open, hi_open = iv.upper_open](T v) {
      return (lo_open ? v > lo : v >= lo) & (hi_open ? v < hi : v <= hi);
    });
  }
  if (type == typeid(IntegerInterval)) {
    const auto& ii = static_cast<const IntegerInterval&>(c);
    const T lo = static_cast<T>(ii.lower), hi = static_cast<T>(ii.upper);
    // As is_integral: finite and whole; then the bounds (+-inf when unbounded).
    return all_of(x, n, [lo, hi](T v) { return std::isfinite(v) & (v == std::floor(v)) & (v >= lo) & (v <= hi); });
  }
  return std::nullopt;
}
}  // namespace

bool all_satisfied(const Constraint& c, const torch::Tensor& v) {
  const auto dtype = v.scalar_type();
  if (v.device().is_cpu() && (dtype == torch::kFloat || dtype == torch::kDouble) && c.event_dim() == 0 &&
      v.is_contiguous() && !v.is_conj()) {
    const int64_t n = v.numel();
    const auto bulk = dtype == torch::kFloat ? all_in(c, v.data_ptr<float>(), n) : all_in(c, v.data_ptr<double>(), n);
    if (bulk) return *bulk;
    if (n <= kSmall && c.contains(0.0, dtype).has_value()) {
      bool ok = true;
      if (dtype == torch::kFloat) {
        const float* x = v.data_ptr<float>();
        for (int64_t i = 0; ok && i < n; ++i) ok = *c.contains(x[i], dtype);
      } else {
        const double* x = v.data_ptr<double>();
        for (int64_t i = 0; ok && i < n; ++i) ok = *c.contains(x[i], dtype);
      }
      return ok;
    }
  }
  return c.check(v.detach()).all().item<bool>();
}

std::string Interval::name() const {
  return cat(lower_open ? "(" : "[", num(lower), ", ", num(upper), upper_open ? ")" : "]");
}
std::optional<bool> Interval::contains(double x, torch::ScalarType dtype) const {
  const double lo = bound(lower, dtype), hi = bound(upper, dtype);
  return (lower_open ? x > lo : x >= lo) && (upper_open ? x < hi : x <= hi);
}
torch::Tensor Interval::check(const torch::Tensor& v) const {
  auto lo = lower_open ? v > lower : v >= lower;
  auto hi = upper_open ? v < upper : v <= upper;
  return lo & hi;
}

std::string GreaterThan::name() const { return cat(strict ? "greater_than(" : "greater_than_eq(", num(lower), ")"); }
torch::Tensor GreaterThan::check(const torch::Tensor& v) const { return strict ? v > lower : v >= lower; }
std::optional<bool> GreaterThan::contains(double x, torch::ScalarType dtype) const {
  const double lo = bound(lower, dtype);
  return strict ? x > lo : x >= lo;
}

std::string LessThan::name() const { return cat("less_than(", num(upper), ")"); }
torch::Tensor LessThan::check(const torch::Tensor& v) const { return v < upper; }
std::optional<bool> LessThan::contains(double x, torch::ScalarType dtype) const { return x < bound(upper, dtype); }

std::string IntegerInterval::name() const {
  if (lower == 0 && upper == 1) return "boolean";
  if (upper == kInf) return lower == -kInf ? "integer" : cat("integer_greater_than_eq(", num(lower), ")");
  return cat("integer_interval(", num(lower), ", ", num(upper), ")");
}
std::optional<bool> IntegerInterval::contains(double x, torch::ScalarType dtype) const {
  // As is_integral: x % 1 == 0, false for NaN and +-inf.
  if (!std::isfinite(x) || x != std::floor(x)) return false;
  return (lower == -kInf || x >= bound(lower, dtype)) && (upper == kInf || x <= bound(upper, dtype));
}
torch::Tensor IntegerInterval::check(const torch::Tensor& v) const {
  auto ok = is_integral(v);
  if (lower != -kInf) ok = ok & (v >= lower);
  if (upper != kInf) ok = ok & (v <= upper);
  return ok;
}

torch::Tensor Simplex::check(const torch::Tensor& v) const {
  // |sum - 1| < 1e-6 as torch, widened to K * eps for low-precision dtypes so that
  // normalised float32 vectors with many categories still pass.
  double tol = 1e-6;
  if (v.is_floating_point() && v.dim() > 0) {
    const double eps = v.scalar_type() == torch::kDouble ? 2.220446049250313e-16
                       : v.scalar_type() == torch::kFloat ? 1.1920928955078125e-07
                                                          : 0.0078125;
    tol = std::max(tol, static_cast<double>(v.size(-1)) * eps);
  }
  return (v >= 0).all(-1) & ((v.sum(-1) - 1).abs() < tol);
}

torch::Tensor IntegerVector::check(const torch::Tensor& v) const { return ((v >= 0) & is_integral(v)).all(-1); }

torch::Tensor OneHot::check(const torch::Tensor& v) const {
  return ((v == 0) | (v == 1)).all(-1) & (v.sum(-1) == 1);
}

torch::Tensor LowerCholesky::check(const torch::Tensor& v) const {
  auto lower_tri = (v.tril() == v).flatten(-2).all(-1);
  auto positive_diag = (v.diagonal(0, -2, -1) > 0).all(-1);
  return lower_tri & positive_diag;
}

torch::Tensor PositiveDefinite::check(const torch::Tensor& v) const {
  auto symmetric = torch::isclose(v, v.transpose(-1, -2), 1e-6, 1e-6).flatten(-2).all(-1);
  // Cholesky succeeds exactly for positive-definite matrices (info == 0).
  auto info = std::get<1>(torch::linalg_cholesky_ex(v));
  return symmetric & (info == 0);
}

std::string TensorInterval::name() const {
  if (lower.numel() == 1 && upper.numel() == 1)
    return cat("[", num(lower.item<double>()), ", ", num(upper.item<double>()), "]");
  return cat("interval(low of shape ", shape_str(lower.sizes()), ", high of shape ", shape_str(upper.sizes()), ")");
}
torch::Tensor TensorInterval::check(const torch::Tensor& v) const { return (v >= lower) & (v <= upper); }

std::string TensorIntegerInterval::name() const {
  if (lower.numel() == 1 && upper.numel() == 1)
    return cat("integer_interval(", num(lower.item<double>()), ", ", num(upper.item<double>()), ")");
  return cat("integer_interval(lower of shape ", shape_str(lower.sizes()), ", upper of shape ",
             shape_str(upper.sizes()), ")");
}
torch::Tensor TensorIntegerInterval::check(const torch::Tensor& v) const {
  return is_integral(v) & (v >= lower) & (v <= upper);
}

std::string MultinomialSupport::name() const { return cat("multinomial(", total_count, ")"); }
torch::Tensor MultinomialSupport::check(const torch::Tensor& v) const {
  return ((v >= 0) & is_integral(v)).all(-1) & (v.sum(-1) <= total_count);
}

std::string Independent::name() const { return cat("independent(", base->name(), ", ", reinterpreted, ")"); }
torch::Tensor Independent::check(const torch::Tensor& v) const {
  auto r = base->check(v);
  if (reinterpreted == 0) return r;
  if (r.dim() < reinterpreted)
    throw ShapeError(cat("constraint ", name(), ": value of shape ", shape_str(v.sizes()), " has too few dims"));
  return r.flatten(r.dim() - reinterpreted).all(-1);
}

ConstraintPtr real() { static const ConstraintPtr c = std::make_shared<Real>(); return c; }
ConstraintPtr real_vector() { static const ConstraintPtr c = independent(real(), 1); return c; }
ConstraintPtr positive() { static const ConstraintPtr c = std::make_shared<GreaterThan>(0.0, true); return c; }
ConstraintPtr nonnegative() { static const ConstraintPtr c = std::make_shared<GreaterThan>(0.0, false); return c; }
ConstraintPtr unit_interval() { static const ConstraintPtr c = std::make_shared<Interval>(0.0, 1.0); return c; }
ConstraintPtr interval(double lo, double hi) { return std::make_shared<Interval>(lo, hi); }
ConstraintPtr half_open_interval(double lo, double hi) { return std::make_shared<Interval>(lo, hi, false, true); }
ConstraintPtr greater_than(double lo) { return std::make_shared<GreaterThan>(lo, true); }
ConstraintPtr greater_than_eq(double lo) { return std::make_shared<GreaterThan>(lo, false); }
ConstraintPtr less_than(double hi) { return std::make_shared<LessThan>(hi); }
ConstraintPtr boolean() { static const ConstraintPtr c = std::make_shared<IntegerInterval>(0, 1); return c; }
ConstraintPtr integer() { static const ConstraintPtr c = std::make_shared<IntegerInterval>(-kInf, kInf); return c; }
ConstraintPtr nonnegative_integer() { static const ConstraintPtr c = std::make_shared<IntegerInterval>(0, kInf); return c; }
ConstraintPtr positive_integer() { static const ConstraintPtr c = std::make_shared<IntegerInterval>(1, kInf); return c; }
ConstraintPtr integer_interval(int64_t lo, int64_t hi) {
  return std::make_shared<IntegerInterval>(static_cast<double>(lo), static_cast<double>(hi));
}
ConstraintPtr simplex() { static const ConstraintPtr c = std::make_shared<Simplex>(); return c; }
ConstraintPtr nonnegative_integer_vector() { static const ConstraintPtr c = std::make_shared<IntegerVector>(); return c; }
ConstraintPtr one_hot() { static const ConstraintPtr c = std::make_shared<OneHot>(); return c; }
ConstraintPtr lower_cholesky() { static const ConstraintPtr c = std::make_shared<LowerCholesky>(); return c; }
ConstraintPtr positive_definite() { static const ConstraintPtr c = std::make_shared<PositiveDefinite>(); return c; }
ConstraintPtr interval(const torch::Tensor& lo, const torch::Tensor& hi) { return std::make_shared<TensorInterval>(lo, hi); }
ConstraintPtr integer_interval(const torch::Tensor& lo, const torch::Tensor& hi) {
  return std::make_shared<TensorIntegerInterval>(lo, hi);
}
ConstraintPtr multinomial(int64_t n) { return std::make_shared<MultinomialSupport>(n); }
ConstraintPtr independent(ConstraintPtr base, int64_t n) {
  if (n == 0) return base;
  return std::make_shared<Independent>(std::move(base), n);
}

// ---------------------------------------------------------------- added with issue #15

std::string TensorGreaterThanEq::name() const {
  if (lower.numel() == 1) return cat("greater_than_eq(", num(lower.item<double>()), ")");
  return cat("greater_than_eq(lower of shape ", shape_str(lower.sizes()), ")");
}
torch::Tensor TensorGreaterThanEq::check(const torch::Tensor& v) const { return v >= lower; }

torch::Tensor CorrCholesky::check(const torch::Tensor& v) const {
  const double eps = v.scalar_type() == torch::kDouble ? 2.220446049250313e-16 : 1.1920928955078125e-07;
  const double tol = eps * static_cast<double>(v.size(-1)) * 10;
  auto row_norm = torch::linalg_vector_norm(v.detach(), 2, {-1}, false, c10::nullopt);
  auto unit_rows = ((row_norm - 1).abs() <= tol).all(-1);
  return LowerCholesky().check(v) & unit_rows;
}

ConstraintPtr greater_than_eq(const torch::Tensor& lower) { return std::make_shared<TensorGreaterThanEq>(lower); }
ConstraintPtr corr_cholesky() { static const ConstraintPtr c = std::make_shared<CorrCholesky>(); return c; }

}  // namespace ember::constraints
