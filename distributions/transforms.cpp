#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/padding.h>

#include "distributions/transforms.h"

#include <cmath>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "distributions/shape.h"
#include "distributions/util.h"

namespace ember::transforms {
namespace {

// Clamps to [tiny, 1 - eps] of the dtype, as torch's sigmoid-based transforms do
// (_clipped_sigmoid): values near 0 keep their log-density and their gradients.
torch::Tensor clip_unit(const torch::Tensor& p) {
  return p.clamp(dist::finfo_tiny(p.scalar_type()), 1 - dist::finfo_eps(p.scalar_type()));
}

struct Identity : Transform {
  torch::Tensor forward(const torch::Tensor& x) const override { return x; }
  torch::Tensor inverse(const torch::Tensor& y) const override { return y; }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor&) const override {
    return torch::zeros_like(x);
  }
  int sign() const override { return 1; }
  std::string name() const override { return "identity"; }
};

struct Exp : Transform {
  torch::Tensor forward(const torch::Tensor& x) const override { return x.exp(); }
  torch::Tensor inverse(const torch::Tensor& y) const override { return y.log(); }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor&) const override { return x; }
  constraints::ConstraintPtr codomain() const override { return constraints::positive(); }
  int sign() const override { return 1; }
  std::string name() const override { return "exp"; }
};

struct Sigmoid : Transform {
  torch::Tensor forward(const torch::Tensor& x) const override { return clip_unit(torch::sigmoid(x)); }
  torch::Tensor inverse(const torch::Tensor& y) const override {
    auto p = clip_unit(y);
    return p.log() - (-p).log1p();
  }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor&) const override {
    return -torch::nn::functional::softplus(-x) - torch::nn::functional::softplus(x);
  }
  constraints::ConstraintPtr codomain() const override { return constraints::unit_interval(); }
  int sign() const override { return 1; }
  std::string name() const override { return "sigmoid"; }
};

struct Affine : Transform {
  torch::Tensor loc, scale;
  int64_t event_dim;
  Affine(torch::Tensor l, torch::Tensor s, int64_t e) : loc(std::move(l)), scale(std::move(s)), event_dim(e) {}
  torch::Tensor forward(const torch::Tensor& x) const override { return loc + scale * x; }
  torch::Tensor inverse(const torch::Tensor& y) const override { return (y - loc) / scale; }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor&) const override {
    auto r = scale.abs().log().to(x.dtype());
    r = r.expand(broadcast_shapes(to_shape(x.sizes()), to_shape(r.sizes()), "affine.log_abs_det_jacobian"));
    return sum_rightmost(r, event_dim);
  }
  int64_t domain_event_dim() const override { return event_dim; }
  // Tensor coefficients broadcast with the value, as torch's AffineTransform.forward_shape.
  std::vector<int64_t> forward_shape(std::vector<int64_t> shape) const override {
    shape = broadcast_shapes(shape, to_shape(loc.sizes()), "affine.forward_shape");
    return broadcast_shapes(shape, to_shape(scale.sizes()), "affine.forward_shape");
  }
  std::vector<int64_t> inverse_shape(std::vector<int64_t> shape) const override { return forward_shape(std::move(shape)); }
  int sign() const override {
    if (event_dim != 0) return 0;
    if ((scale > 0).all().item<bool>()) return 1;
    if ((scale < 0).all().item<bool>()) return -1;
    return 0;
  }
  TransformPtr to(const torch::TensorOptions& options) const override {
    return std::make_shared<Affine>(loc.to(options), scale.to(options), event_dim);
  }
  std::string name() const override { return "affine"; }
};

struct AffineScalar : Transform {
  double loc, scale;
  int64_t event_dim;
  AffineScalar(double l, double s, int64_t e) : loc(l), scale(s), event_dim(e) {}
  torch::Tensor forward(const torch::Tensor& x) const override { return x * scale + loc; }
  torch::Tensor inverse(const torch::Tensor& y) const override { return (y - loc) / scale; }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor&) const override {
    return sum_rightmost(torch::full_like(x, std::log(std::abs(scale))), event_dim);
  }
  int64_t domain_event_dim() const override { return event_dim; }
  int sign() const override { return event_dim == 0 ? (scale > 0 ? 1 : -1) : 0; }
  std::string name() const override { return cat("affine(", loc, ", ", scale, ")"); }
};

struct Compose : Transform {
  std::vector<TransformPtr> parts;
  explicit Compose(std::vector<TransformPtr> p) : parts(std::move(p)) {}
  torch::Tensor forward(const torch::Tensor& x) const override {
    auto y = x;
    for (const auto& t : parts) y = t->forward(y);
    return y;
  }
  torch::Tensor inverse(const torch::Tensor& y) const override {
    auto x = y;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) x = (*it)->inverse(x);
    return x;
  }
  // Each part's Jacobian term is summed down to the composite's event dims, tracking how
  // event dims change along the chain (as torch's ComposeTransform).
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor& y) const override {
    if (parts.empty()) return torch::zeros_like(x);
    torch::Tensor total;
    auto xi = x;
    int64_t event_dim = domain_event_dim();
    for (const auto& t : parts) {
      auto yi = t->forward(xi);
      auto term = sum_rightmost(t->log_abs_det_jacobian(xi, yi), event_dim - t->domain_event_dim());
      total = total.defined() ? total + term : term;
      event_dim += t->codomain_event_dim() - t->domain_event_dim();
      xi = yi;
    }
    return total;
  }
  int64_t domain_event_dim() const override {
    // The largest event dim any part needs, measured in the domain.
    int64_t need = 0, shift = 0;
    for (const auto& t : parts) {
      need = std::max(need, t->domain_event_dim() - shift);
      shift += t->codomain_event_dim() - t->domain_event_dim();
    }
    return need;
  }
  int64_t codomain_event_dim() const override {
    int64_t d = domain_event_dim();
    for (const auto& t : parts) d += t->codomain_event_dim() - t->domain_event_dim();
    return d;
  }
  std::vector<int64_t> forward_shape(std::vector<int64_t> s) const override {
    for (const auto& t : parts) s = t->forward_shape(std::move(s));
    return s;
  }
  std::vector<int64_t> inverse_shape(std::vector<int64_t> s) const override {
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) s = (*it)->inverse_shape(std::move(s));
    return s;
  }
  constraints::ConstraintPtr codomain() const override {
    if (parts.empty()) return constraints::real();
    auto c = parts.back()->codomain();
    return constraints::independent(c, codomain_event_dim() - c->event_dim());
  }
  int sign() const override {
    int s = 1;
    for (const auto& t : parts) s *= t->sign();
    return s;
  }
  TransformPtr to(const torch::TensorOptions& options) const override {
    std::vector<TransformPtr> moved;
    for (const auto& t : parts) moved.push_back(t->to(options));
    return std::make_shared<Compose>(std::move(moved));
  }
  std::string name() const override {
    std::string s = "compose(";
    for (size_t i = 0; i < parts.size(); ++i) s += (i ? ", " : "") + parts[i]->name();
    return s + ")";
  }
};

struct StickBreaking : Transform {
  static torch::Tensor offset(int64_t k, const torch::Tensor& like) {
    // [k, k-1, ..., 1]
    return torch::arange(k, 0, -1, like.options());
  }
  torch::Tensor forward(const torch::Tensor& x) const override {
    auto k = x.size(-1);
    auto z = clip_unit(torch::sigmoid(x - offset(k, x).log()));
    auto z_cumprod = (1 - z).cumprod(-1);
    namespace F = torch::nn::functional;
    return F::pad(z, F::PadFuncOptions({0, 1}).value(1.0)) * F::pad(z_cumprod, F::PadFuncOptions({1, 0}).value(1.0));
  }
  torch::Tensor inverse(const torch::Tensor& y) const override {
    auto k = y.size(-1) - 1;
    auto y_crop = y.narrow(-1, 0, k);
    auto sf = (1 - y_crop.cumsum(-1)).clamp_min(dist::finfo_tiny(y.scalar_type()));
    return y_crop.log() - sf.log() + offset(k, y).log();
  }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor& y) const override {
    auto k = x.size(-1);
    auto xs = x - offset(k, x).log();
    return (-xs + torch::log_sigmoid(xs) + y.narrow(-1, 0, k).log()).sum(-1);
  }
  int64_t domain_event_dim() const override { return 1; }
  std::vector<int64_t> forward_shape(std::vector<int64_t> s) const override {
    s.back() += 1;
    return s;
  }
  std::vector<int64_t> inverse_shape(std::vector<int64_t> s) const override {
    s.back() -= 1;
    return s;
  }
  constraints::ConstraintPtr codomain() const override { return constraints::simplex(); }
  std::string name() const override { return "stick_breaking"; }
};

// torch's SoftmaxTransform: exp then normalise over the last dim. Not bijective (adding a
// constant to x leaves y unchanged), so it has no Jacobian; it is what transform_to(simplex)
// gives, because it acts nearly coordinate-wise and so suits optimisers.
struct Softmax : Transform {
  torch::Tensor forward(const torch::Tensor& x) const override {
    auto probs = (x - std::get<0>(x.max(-1, true))).exp();
    return probs / probs.sum(-1, true);
  }
  torch::Tensor inverse(const torch::Tensor& y) const override { return y.log(); }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor&, const torch::Tensor&) const override {
    throw NotImplementedError("softmax transform is not bijective and has no log|det J|; use biject_to(simplex) "
                              "(stick-breaking) for densities");
  }
  int64_t domain_event_dim() const override { return 1; }
  constraints::ConstraintPtr codomain() const override { return constraints::simplex(); }
  std::string name() const override { return "softmax"; }
};

struct LowerCholeskyT : Transform {
  torch::Tensor forward(const torch::Tensor& x) const override {
    return x.tril(-1) + torch::diag_embed(x.diagonal(0, -2, -1).exp());
  }
  torch::Tensor inverse(const torch::Tensor& y) const override {
    return y.tril(-1) + torch::diag_embed(y.diagonal(0, -2, -1).log());
  }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor&) const override {
    return x.diagonal(0, -2, -1).sum(-1);
  }
  int64_t domain_event_dim() const override { return 2; }
  constraints::ConstraintPtr codomain() const override { return constraints::lower_cholesky(); }
  std::string name() const override { return "lower_cholesky"; }
};

struct CholeskyToPD : Transform {
  torch::Tensor forward(const torch::Tensor& x) const override { return x.matmul(x.transpose(-1, -2)); }
  torch::Tensor inverse(const torch::Tensor& y) const override { return torch::linalg_cholesky(y); }
  // d(LL^T)/dL restricted to lower-triangular L: log det = n log 2 + sum_i (n - i + 1) log L_ii.
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor&) const override {
    auto n = x.size(-1);
    auto order = torch::arange(n, 0, -1, x.options());
    return n * std::log(2.0) + (order * x.diagonal(0, -2, -1).log()).sum(-1);
  }
  int64_t domain_event_dim() const override { return 2; }
  constraints::ConstraintPtr codomain() const override { return constraints::positive_definite(); }
  std::string name() const override { return "cholesky_to_positive_definite"; }
};

struct IndependentT : Transform {
  TransformPtr base;
  int64_t n;
  IndependentT(TransformPtr b, int64_t k) : base(std::move(b)), n(k) {}
  torch::Tensor forward(const torch::Tensor& x) const override { return base->forward(x); }
  torch::Tensor inverse(const torch::Tensor& y) const override { return base->inverse(y); }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor& y) const override {
    return sum_rightmost(base->log_abs_det_jacobian(x, y), n);
  }
  int64_t domain_event_dim() const override { return base->domain_event_dim() + n; }
  int64_t codomain_event_dim() const override { return base->codomain_event_dim() + n; }
  std::vector<int64_t> forward_shape(std::vector<int64_t> s) const override { return base->forward_shape(std::move(s)); }
  std::vector<int64_t> inverse_shape(std::vector<int64_t> s) const override { return base->inverse_shape(std::move(s)); }
  constraints::ConstraintPtr codomain() const override { return constraints::independent(base->codomain(), n); }
  TransformPtr to(const torch::TensorOptions& options) const override {
    return std::make_shared<IndependentT>(base->to(options), n);
  }
  std::string name() const override { return cat("independent(", base->name(), ", ", n, ")"); }
};

struct Registry {
  std::mutex mutex;
  std::unordered_map<std::type_index, TransformFactory> transform_to, biject_to;
  Registry();
};

Registry& registry() {
  static Registry r;
  return r;
}

Registry::Registry() {
  using namespace constraints;
  // The maps both registries share (they are bijections), as in torch.
  auto both = [this](std::type_index type, TransformFactory f) {
    transform_to[type] = f;
    biject_to[type] = std::move(f);
  };
  both(typeid(Real), [](const Constraint&) { return identity(); });
  both(typeid(GreaterThan), [](const Constraint& c) {
    double lo = static_cast<const GreaterThan&>(c).lower;
    return lo == 0 ? exp() : compose({exp(), affine(lo, 1.0)});
  });
  both(typeid(LessThan), [](const Constraint& c) {
    return compose({exp(), affine(static_cast<const LessThan&>(c).upper, -1.0)});
  });
  both(typeid(Interval), [](const Constraint& c) {
    const auto& i = static_cast<const Interval&>(c);
    if (i.lower == 0 && i.upper == 1) return sigmoid();
    return compose({sigmoid(), affine(i.lower, i.upper - i.lower)});
  });
  both(typeid(TensorInterval), [](const Constraint& c) {
    const auto& i = static_cast<const TensorInterval&>(c);
    return compose({sigmoid(), affine(i.lower, i.upper - i.lower)});
  });
  both(typeid(LowerCholesky), [](const Constraint&) { return lower_cholesky(); });
  both(typeid(PositiveDefinite), [](const Constraint&) { return compose({lower_cholesky(), cholesky_to_positive_definite()}); });
  // The simplex differs, as in torch: softmax over K values for optimisation, stick-breaking
  // over K - 1 values where a bijection is needed.
  both(typeid(CorrCholesky), [](const Constraint&) { return corr_cholesky(); });
  both(typeid(TensorGreaterThanEq), [](const Constraint& c) {
    const auto& g = static_cast<const TensorGreaterThanEq&>(c);
    return compose({exp(), affine(g.lower, torch::ones_like(g.lower))});
  });
  transform_to[typeid(Simplex)] = [](const Constraint&) { return softmax(); };
  biject_to[typeid(Simplex)] = [](const Constraint&) { return stick_breaking(); };
  transform_to[typeid(constraints::Independent)] = [](const Constraint& c) {
    const auto& i = static_cast<const constraints::Independent&>(c);
    return independent(transforms::transform_to(i.base), i.reinterpreted);
  };
  biject_to[typeid(constraints::Independent)] = [](const Constraint& c) {
    const auto& i = static_cast<const constraints::Independent&>(c);
    return independent(transforms::biject_to(i.base), i.reinterpreted);
  };
}

TransformPtr lookup(std::unordered_map<std::type_index, TransformFactory> Registry::*table, const char* what,
                    const char* register_fn, const constraints::ConstraintPtr& c) {
  if (!c) throw ValueError(cat(what, ": null constraint"));
  auto& r = registry();
  TransformFactory factory;
  {
    // Copied out so that factories may recurse (independent) without holding the lock.
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = (r.*table).find(std::type_index(typeid(*c)));
    if (it != (r.*table).end()) factory = it->second;
  }
  if (!factory)
    throw NotImplementedError(cat(what, ": no transform is registered for constraint ", c->name(),
                                  "; register one with ember::transforms::", register_fn));
  return factory(*c);
}

}  // namespace

TransformPtr identity() { static const TransformPtr t = std::make_shared<Identity>(); return t; }
TransformPtr exp() { static const TransformPtr t = std::make_shared<Exp>(); return t; }
TransformPtr sigmoid() { static const TransformPtr t = std::make_shared<Sigmoid>(); return t; }
TransformPtr affine(torch::Tensor loc, torch::Tensor scale, int64_t event_dim) {
  return std::make_shared<Affine>(std::move(loc), std::move(scale), event_dim);
}
TransformPtr affine(double loc, double scale, int64_t event_dim) {
  return std::make_shared<AffineScalar>(loc, scale, event_dim);
}
TransformPtr compose(std::vector<TransformPtr> parts) { return std::make_shared<Compose>(std::move(parts)); }
TransformPtr softmax() { static const TransformPtr t = std::make_shared<Softmax>(); return t; }
TransformPtr stick_breaking() { static const TransformPtr t = std::make_shared<StickBreaking>(); return t; }
TransformPtr lower_cholesky() { static const TransformPtr t = std::make_shared<LowerCholeskyT>(); return t; }
TransformPtr cholesky_to_positive_definite() { static const TransformPtr t = std::make_shared<CholeskyToPD>(); return t; }
TransformPtr independent(TransformPtr base, int64_t n) {
  if (n == 0) return base;
  return std::make_shared<IndependentT>(std::move(base), n);
}

TransformPtr transform_to(const constraints::ConstraintPtr& c) {
  return lookup(&Registry::transform_to, "transform_to", "register_transform_to", c);
}

TransformPtr biject_to(const constraints::ConstraintPtr& c) {
  return lookup(&Registry::biject_to, "biject_to", "register_biject_to", c);
}

void register_transform_to(std::type_index type, TransformFactory factory) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.transform_to[type] = std::move(factory);
}

void register_biject_to(std::type_index type, TransformFactory factory) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.biject_to[type] = std::move(factory);
}

// ---------------------------------------------------------------- added with issue #15

namespace {

struct Tanh : Transform {
  torch::Tensor forward(const torch::Tensor& x) const override { return torch::tanh(x); }
  torch::Tensor inverse(const torch::Tensor& y) const override { return 0.5 * (y.log1p() - (-y).log1p()); }
  // log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)): no cancellation for large |x|.
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor&) const override {
    return 2. * (std::log(2.0) - x - torch::nn::functional::softplus(-2. * x));
  }
  constraints::ConstraintPtr codomain() const override {
    static const auto c = std::make_shared<constraints::Interval>(-1.0, 1.0);
    return c;
  }
  int sign() const override { return 1; }
  std::string name() const override { return "tanh"; }
};

struct Power : Transform {
  torch::Tensor exponent;
  explicit Power(torch::Tensor e) : exponent(std::move(e)) {}
  torch::Tensor forward(const torch::Tensor& x) const override { return x.pow(exponent); }
  torch::Tensor inverse(const torch::Tensor& y) const override { return y.pow(exponent.reciprocal()); }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor& y) const override {
    return (exponent * y / x).abs().log();
  }
  std::vector<int64_t> forward_shape(std::vector<int64_t> shape) const override {
    return broadcast_shapes(shape, to_shape(exponent.sizes()), "power.forward_shape");
  }
  std::vector<int64_t> inverse_shape(std::vector<int64_t> shape) const override { return forward_shape(std::move(shape)); }
  constraints::ConstraintPtr codomain() const override { return constraints::positive(); }
  int sign() const override {
    if ((exponent > 0).all().item<bool>()) return 1;
    if ((exponent < 0).all().item<bool>()) return -1;
    return 0;
  }
  TransformPtr to(const torch::TensorOptions& options) const override { return std::make_shared<Power>(exponent.to(options)); }
  std::string name() const override {
    return exponent.numel() == 1 ? cat("power(", exponent.item<double>(), ")") : "power";
  }
};

struct Abs : Transform {
  torch::Tensor forward(const torch::Tensor& x) const override { return x.abs(); }
  torch::Tensor inverse(const torch::Tensor& y) const override { return y; }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor&, const torch::Tensor&) const override {
    throw NotImplementedError("abs: |x| is not injective, so it has no log_abs_det_jacobian (fold the density instead, "
                              "as FoldedDistribution does)");
  }
  constraints::ConstraintPtr codomain() const override { return constraints::positive(); }
  std::string name() const override { return "abs"; }
};

// Row-major (row, column) indices of the entries strictly below diagonal `diag` of an n x n matrix.
torch::Tensor tril_indices(int64_t n, int64_t diag, const torch::Tensor& like) {
  return torch::tril_indices(n, n, diag, like.options().dtype(torch::kLong));
}

struct CorrCholeskyT : Transform {
  static int64_t side(int64_t n_below, const char* what) {
    const auto d = static_cast<int64_t>(std::llround(std::sqrt(0.25 + 2.0 * static_cast<double>(n_below)) + 0.5));
    if (d * (d - 1) / 2 != n_below)
      throw ShapeError(cat("corr_cholesky.", what, ": the last dim (", n_below,
                           ") is not the number of below-diagonal entries n (n - 1) / 2 of a square matrix"));
    return d;
  }
  torch::Tensor forward(const torch::Tensor& x_) const override {
    const double eps = dist::finfo_eps(x_.scalar_type());
    auto x = torch::tanh(x_).clamp(-1 + eps, 1 - eps);
    const int64_t d = side(x.size(-1), "forward");
    auto idx = tril_indices(d, -1, x);
    Shape shape = to_shape(x.sizes());
    shape.back() = d;
    shape.push_back(d);
    auto r = torch::zeros(shape, x.options());
    using torch::indexing::Ellipsis;
    r.index_put_({Ellipsis, idx[0], idx[1]}, x);
    // Each row: a signed stick-breaking of the squared entries, the diagonal taking what is left.
    auto z1m_cumprod_sqrt = (1 - r.pow(2)).sqrt().cumprod(-1);
    namespace F = torch::nn::functional;
    auto shifted = F::pad(z1m_cumprod_sqrt.narrow(-1, 0, d - 1), F::PadFuncOptions({1, 0}).value(1.0));
    return (r + torch::eye(d, x.options())) * shifted;
  }
  torch::Tensor inverse(const torch::Tensor& y) const override {
    const int64_t d = y.size(-1);
    namespace F = torch::nn::functional;
    auto y_cumsum = 1 - (y * y).cumsum(-1);
    auto shifted = F::pad(y_cumsum.narrow(-1, 0, d - 1), F::PadFuncOptions({1, 0}).value(1.0));
    auto idx = tril_indices(d, -1, y);
    using torch::indexing::Ellipsis;
    auto t = y.index({Ellipsis, idx[0], idx[1]}) / shifted.index({Ellipsis, idx[0], idx[1]}).sqrt();
    return ((1 + t) / (1 - t)).log() / 2;
  }
  torch::Tensor log_abs_det_jacobian(const torch::Tensor& x, const torch::Tensor& y) const override {
    const int64_t d = y.size(-1);
    auto y1m_cumsum = 1 - (y * y).cumsum(-1);
    auto idx = tril_indices(d, -2, y);
    using torch::indexing::Ellipsis;
    auto stick_breaking = 0.5 * y1m_cumsum.index({Ellipsis, idx[0], idx[1]}).log().sum(-1);
    auto tanh_part = -2 * (x + torch::nn::functional::softplus(-2 * x) - std::log(2.0)).sum(-1);
    return stick_breaking + tanh_part;
  }
  int64_t domain_event_dim() const override { return 1; }
  int64_t codomain_event_dim() const override { return 2; }
  std::vector<int64_t> forward_shape(std::vector<int64_t> s) const override {
    if (s.empty()) throw ShapeError("corr_cholesky.forward_shape: the value needs at least one dim");
    const int64_t d = side(s.back(), "forward_shape");
    s.back() = d;
    s.push_back(d);
    return s;
  }
  std::vector<int64_t> inverse_shape(std::vector<int64_t> s) const override {
    if (s.size() < 2 || s[s.size() - 1] != s[s.size() - 2])
      throw ShapeError(cat("corr_cholesky.inverse_shape: expected square matrices, got shape ", shape_str(s)));
    const int64_t d = s.back();
    s.pop_back();
    s.back() = d * (d - 1) / 2;
    return s;
  }
  constraints::ConstraintPtr codomain() const override { return constraints::corr_cholesky(); }
  std::string name() const override { return "corr_cholesky"; }
};

}  // namespace

TransformPtr tanh() { static const TransformPtr t = std::make_shared<Tanh>(); return t; }
TransformPtr power(torch::Tensor exponent) { return std::make_shared<Power>(std::move(exponent)); }
TransformPtr power(double exponent) {
  return std::make_shared<Power>(torch::scalar_tensor(exponent, torch::TensorOptions().dtype(torch::kDouble)));
}
TransformPtr abs() { static const TransformPtr t = std::make_shared<Abs>(); return t; }
TransformPtr corr_cholesky() { static const TransformPtr t = std::make_shared<CorrCholeskyT>(); return t; }

}  // namespace ember::transforms
