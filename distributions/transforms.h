#pragma once
/// \file Bijective transforms and the maps from unconstrained space onto constraints.
///
/// `transform_to(c)` returns a transform from the reals onto constraint `c`; the param
/// store keeps an unconstrained tensor and returns `transform_to(c)->forward(u)`.
/// `biject_to(c)` is a bijection onto `c` (used for densities); the two differ for the
/// simplex, as in torch. User code registers transforms for its own constraint types with
/// `register_transform_to<MyConstraint>(factory)` and `register_biject_to<MyConstraint>(factory)`.

#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <typeindex>
#include <vector>

#include "distributions/constraints.h"

namespace ember::transforms {

/// An invertible map y = f(x) with the log absolute determinant of its Jacobian.
class Transform : public std::enable_shared_from_this<Transform> {
 public:
  virtual ~Transform() = default;
  /// y = f(x).
  virtual torch::Tensor forward(const torch::Tensor& x) const = 0;
  /// x = f^{-1}(y).
  virtual torch::Tensor inverse(const torch::Tensor& y) const = 0;
  /// log |det df/dx|, summed over the transform's domain event dims.
  virtual torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor& y) const = 0;
  /// Event dims of the domain (StickBreaking: 1).
  virtual int64_t domain_event_dim() const { return 0; }
  /// Event dims of the codomain.
  virtual int64_t codomain_event_dim() const { return domain_event_dim(); }
  /// Shape of f(x) given the shape of x (StickBreaking adds one element).
  virtual std::vector<int64_t> forward_shape(std::vector<int64_t> shape) const { return shape; }
  /// Shape of f^{-1}(y) given the shape of y.
  virtual std::vector<int64_t> inverse_shape(std::vector<int64_t> shape) const { return shape; }
  /// The set f maps onto (used as TransformedDistribution's support); reals by default.
  virtual constraints::ConstraintPtr codomain() const {
    return constraints::independent(constraints::real(), codomain_event_dim());
  }
  /// +1 for increasing, -1 for decreasing scalar bijections, 0 if not monotone or not
  /// scalar (TransformedDistribution's cdf/icdf need a monotone scalar map).
  virtual int sign() const { return 0; }
  /// The same transform with its tensor coefficients (if any) moved to `options`' device
  /// and floating dtype; transforms without tensors return themselves. Transforms must be
  /// owned by a shared_ptr (TransformPtr), as every factory here makes them.
  virtual std::shared_ptr<const Transform> to(const torch::TensorOptions& options) const { return shared_from_this(); }
  /// Readable name for messages.
  virtual std::string name() const = 0;
  /// Applies the transform: `(*t)(x)`.
  torch::Tensor operator()(const torch::Tensor& x) const { return forward(x); }
};

/// Shared handle to an immutable transform.
using TransformPtr = std::shared_ptr<const Transform>;

/// y = x.
TransformPtr identity();
/// y = exp(x).
TransformPtr exp();
/// y = sigmoid(x), clamped to [tiny, 1 - eps] of the dtype as torch does.
TransformPtr sigmoid();
/// y = loc + scale * x, with `event_dim` dims summed in the Jacobian.
TransformPtr affine(torch::Tensor loc, torch::Tensor scale, int64_t event_dim = 0);
/// y = loc + scale * x with scalar coefficients.
TransformPtr affine(double loc, double scale, int64_t event_dim = 0);
/// Applies `parts` in order: parts[0] first.
TransformPtr compose(std::vector<TransformPtr> parts);
/// R^K -> K-simplex by exp and normalisation (torch's SoftmaxTransform); not bijective, so
/// log_abs_det_jacobian throws.
TransformPtr softmax();
/// R^{K-1} -> K-simplex (torch's StickBreakingTransform).
TransformPtr stick_breaking();
/// Unconstrained matrix -> lower-triangular with positive diagonal (exp of the diagonal).
TransformPtr lower_cholesky();
/// Lower Cholesky factor L -> positive-definite L L^T.
TransformPtr cholesky_to_positive_definite();
/// `base` with `n` extra rightmost dims treated as one event.
TransformPtr independent(TransformPtr base, int64_t n);
/// y = tanh(x), onto (-1, 1) (torch's TanhTransform; the Jacobian is computed stably from x).
TransformPtr tanh();
/// y = x^exponent on the positive reals (torch's PowerTransform); `exponent` broadcasts with x.
TransformPtr power(torch::Tensor exponent);
/// y = x^exponent with a scalar exponent.
TransformPtr power(double exponent);
/// y = |x| (torch's AbsTransform): not injective, so its inverse is the identity on y >= 0 and
/// log_abs_det_jacobian throws; FoldedDistribution uses it.
TransformPtr abs();
/// R^{n(n-1)/2} -> Cholesky factors of n x n correlation matrices (torch's CorrCholeskyTransform):
/// row-major below-diagonal entries through tanh and a signed stick-breaking per row.
TransformPtr corr_cholesky();

/// A transform from the reals onto constraint `c` (torch's `transform_to`): what the param
/// store uses. Not necessarily bijective: for the simplex it is softmax over K values.
/// Throws NotImplementedError naming `c` if no transform is registered for its type.
TransformPtr transform_to(const constraints::ConstraintPtr& c);
/// A bijection from the reals onto `c` (torch's `biject_to`), for densities: for the simplex
/// it is stick-breaking over K - 1 values. A separate registry from `transform_to`'s.
TransformPtr biject_to(const constraints::ConstraintPtr& c);

/// Factory building a transform for one constraint instance.
using TransformFactory = std::function<TransformPtr(const constraints::Constraint&)>;

/// Registers (or replaces) the transform `transform_to` uses for constraints of dynamic type `type`.
void register_transform_to(std::type_index type, TransformFactory factory);
/// Registers (or replaces) the bijection `biject_to` uses for constraints of dynamic type `type`.
void register_biject_to(std::type_index type, TransformFactory factory);

/// Registers the transform for constraint type `C`: `register_transform_to<MyC>([](const MyC& c){...})`.
template <class C, class F>
void register_transform_to(F factory) {
  register_transform_to(std::type_index(typeid(C)), [factory](const constraints::Constraint& c) {
    return factory(static_cast<const C&>(c));
  });
}
/// Registers the bijection for constraint type `C` (as `register_transform_to<C>`).
template <class C, class F>
void register_biject_to(F factory) {
  register_biject_to(std::type_index(typeid(C)), [factory](const constraints::Constraint& c) {
    return factory(static_cast<const C&>(c));
  });
}

}  // namespace ember::transforms
