// Multivariate continuous distributions: Dirichlet, MultivariateNormal, LowRankMultivariateNormal.
#include <torch/autograd.h>

#include <cmath>

#include "distributions/dirichlet.h"
#include "distributions/lowrank_multivariate_normal.h"
#include "distributions/multivariate_normal.h"

namespace ember::dist {

namespace {
constexpr double kLog2Pi = 1.83787706640934548356;  // log(2 pi)

// Autograd function: forward draws with _sample_dirichlet, backward uses _dirichlet_grad.
struct DirichletFn : public torch::autograd::Function<DirichletFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& concentration) {
    auto x = at::_sample_dirichlet(concentration);
    ctx->save_for_backward({x, concentration});
    return x;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& concentration = saved[1];
    const auto& g = grad_outputs[0];
    auto total = concentration.sum(-1, true).expand_as(concentration);
    auto grad = at::_dirichlet_grad(x, concentration, total);
    return {grad * (g - (x * g).sum(-1, true))};
  }
};

void check_event_dims(const std::string& who, const char* arg, const torch::Tensor& t, int64_t need) {
  if (t.dim() < need)
    throw ShapeError(cat(who, ": parameter '", arg, "' must have at least ", need, " dims, got shape ",
                         shape_str(t.sizes())));
}
}  // namespace

torch::Tensor detail::dirichlet_rsample(const torch::Tensor& concentration) {
  return DirichletFn::apply(concentration);
}

// ---------------------------------------------------------------- Dirichlet

Dirichlet::Dirichlet(torch::Tensor c, std::optional<bool> validate) : concentration(std::move(c)) {
  check_event_dims("Dirichlet", "concentration", concentration, 1);
  if (!concentration.is_floating_point()) concentration = concentration.to(torch::get_default_dtype());
  Shape s = to_shape(concentration.sizes());
  init(Shape(s.begin(), s.end() - 1), {s.back()}, validate);
}

torch::Tensor Dirichlet::rsample(const Shape& sample_shape) const {
  auto shape = extended_shape(sample_shape);
  return detail::dirichlet_rsample(concentration.expand(shape));
}

torch::Tensor Dirichlet::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return torch::xlogy(concentration - 1, value).sum(-1) + torch::lgamma(concentration.sum(-1)) -
         torch::lgamma(concentration).sum(-1);
}

torch::Tensor Dirichlet::variance() const {
  auto c0 = concentration.sum(-1, true);
  return concentration * (c0 - concentration) / (c0.pow(2) * (c0 + 1));
}

torch::Tensor Dirichlet::entropy() const {
  auto k = static_cast<double>(concentration.size(-1));
  auto a0 = concentration.sum(-1);
  return torch::lgamma(concentration).sum(-1) - torch::lgamma(a0) - (k - a0) * torch::digamma(a0) -
         ((concentration - 1) * torch::digamma(concentration)).sum(-1);
}

// ---------------------------------------------------------------- MultivariateNormal

torch::Tensor batch_mahalanobis(const torch::Tensor& L, const torch::Tensor& x) {
  Shape batch = broadcast_shapes(Shape(L.sizes().begin(), L.sizes().end() - 2), Shape(x.sizes().begin(), x.sizes().end() - 1),
                                 "batch_mahalanobis");
  auto n = L.size(-1);
  auto Lb = L.expand(concat(batch, {n, n}));
  auto xb = x.expand(concat(batch, {n})).unsqueeze(-1);
  auto sol = torch::linalg_solve_triangular(Lb, xb, /*upper=*/false);
  return sol.squeeze(-1).pow(2).sum(-1);
}

void MultivariateNormal::setup(torch::Tensor loc_, torch::Tensor tril, std::optional<bool> validate) {
  Shape batch = broadcast_shapes(Shape(loc_.sizes().begin(), loc_.sizes().end() - 1),
                                 Shape(tril.sizes().begin(), tril.sizes().end() - 2), "MultivariateNormal");
  auto n = tril.size(-1);
  loc = loc_.expand(concat(batch, {n}));
  scale_tril = tril.expand(concat(batch, {n, n}));
  init(batch, {n}, validate);
}

namespace {
void check_mvn_shapes(const torch::Tensor& loc, const torch::Tensor& m, const char* arg) {
  check_event_dims("MultivariateNormal", "loc", loc, 1);
  check_event_dims("MultivariateNormal", arg, m, 2);
  if (m.size(-1) != m.size(-2) || m.size(-1) != loc.size(-1))
    throw ShapeError(cat("MultivariateNormal: parameter '", arg, "' of shape ", shape_str(m.sizes()),
                         " must be square with the size of loc's last dim (loc shape ", shape_str(loc.sizes()), ")"));
}
torch::Tensor as_float(torch::Tensor t, const torch::Tensor& like) {
  if (!t.is_floating_point()) t = t.to(like.is_floating_point() ? like.scalar_type() : c10::typeMetaToScalarType(torch::get_default_dtype()));
  return t;
}
bool should_validate(std::optional<bool> v) { return v ? *v : is_validation_enabled(); }
void check_pd(const torch::Tensor& m, const char* arg) {
  auto ok = constraints::positive_definite()->check(m.detach());
  if (!ok.all().item<bool>())
    throw ValueError(cat("MultivariateNormal: parameter '", arg, "' of shape ", shape_str(m.sizes()),
                         " must satisfy positive_definite", first_false_index(ok),
                         ". Pass validate_args=false or call ember::dist::enable_validation(false) to skip this check."));
}
}  // namespace

MultivariateNormal::MultivariateNormal(torch::Tensor loc_, CovarianceMatrix cov, std::optional<bool> validate) {
  auto m = as_float(cov.value, loc_);
  loc_ = as_float(loc_, m);
  check_mvn_shapes(loc_, m, "covariance_matrix");
  if (should_validate(validate)) check_pd(m, "covariance_matrix");
  setup(loc_, torch::linalg_cholesky(m), validate);
}

MultivariateNormal::MultivariateNormal(torch::Tensor loc_, ScaleTril tril, std::optional<bool> validate) {
  auto m = as_float(tril.value, loc_);
  loc_ = as_float(loc_, m);
  check_mvn_shapes(loc_, m, "scale_tril");
  setup(loc_, m, validate);
}

MultivariateNormal::MultivariateNormal(torch::Tensor loc_, PrecisionMatrix prec, std::optional<bool> validate) {
  auto p = as_float(prec.value, loc_);
  loc_ = as_float(loc_, p);
  check_mvn_shapes(loc_, p, "precision_matrix");
  if (should_validate(validate)) check_pd(p, "precision_matrix");
  // L with L L^T = P^{-1}: flip P, take its Cholesky factor, flip back, and invert the triangle.
  auto lf = torch::linalg_cholesky(torch::flip(p, {-2, -1}));
  auto l_inv = torch::transpose(torch::flip(lf, {-2, -1}), -2, -1);
  auto eye = torch::eye(p.size(-1), p.options());
  setup(loc_, torch::linalg_solve_triangular(l_inv, eye, /*upper=*/false), validate);
}

torch::Tensor MultivariateNormal::rsample(const Shape& sample_shape) const {
  auto eps = torch::randn(extended_shape(sample_shape), loc.options());
  return loc + torch::matmul(scale_tril, eps.unsqueeze(-1)).squeeze(-1);
}

torch::Tensor MultivariateNormal::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto m = batch_mahalanobis(scale_tril, value - loc);
  auto half_log_det = scale_tril.diagonal(0, -2, -1).log().sum(-1);
  return -0.5 * (event_shape_[0] * kLog2Pi + m) - half_log_det;
}

torch::Tensor MultivariateNormal::variance() const { return scale_tril.pow(2).sum(-1); }

torch::Tensor MultivariateNormal::entropy() const {
  auto half_log_det = scale_tril.diagonal(0, -2, -1).log().sum(-1);
  return 0.5 * event_shape_[0] * (1.0 + kLog2Pi) + half_log_det;
}

torch::Tensor MultivariateNormal::covariance_matrix() const { return scale_tril.matmul(scale_tril.transpose(-1, -2)); }

torch::Tensor MultivariateNormal::precision_matrix() const {
  auto eye = torch::eye(scale_tril.size(-1), scale_tril.options());
  auto l_inv = torch::linalg_solve_triangular(scale_tril, eye, /*upper=*/false);
  return l_inv.transpose(-1, -2).matmul(l_inv);
}

// ---------------------------------------------------------------- LowRankMultivariateNormal

LowRankMultivariateNormal::LowRankMultivariateNormal(torch::Tensor loc_, torch::Tensor W, torch::Tensor D,
                                                     std::optional<bool> validate) {
  const std::string who = "LowRankMultivariateNormal";
  check_event_dims(who, "loc", loc_, 1);
  check_event_dims(who, "cov_factor", W, 2);
  check_event_dims(who, "cov_diag", D, 1);
  auto n = loc_.size(-1);
  if (W.size(-2) != n || D.size(-1) != n)
    throw ShapeError(cat(who, ": parameters 'cov_factor' of shape ", shape_str(W.sizes()), " and 'cov_diag' of shape ",
                         shape_str(D.sizes()), " must match loc's event size ", n));
  auto options = common_options({loc_, W, D});
  loc_ = loc_.to(options.dtype());
  W = W.to(options.dtype());
  D = D.to(options.dtype());
  Shape batch = broadcast_shapes(Shape(loc_.sizes().begin(), loc_.sizes().end() - 1),
                                 Shape(W.sizes().begin(), W.sizes().end() - 2), who.c_str());
  batch = broadcast_shapes(batch, Shape(D.sizes().begin(), D.sizes().end() - 1), who.c_str());
  loc = loc_.expand(concat(batch, {n}));
  cov_factor = W.expand(concat(batch, {n, W.size(-1)}));
  cov_diag = D.expand(concat(batch, {n}));
  init(batch, {n}, validate);
}

torch::Tensor LowRankMultivariateNormal::capacitance_tril() const {
  auto Wt_Dinv = cov_factor.transpose(-1, -2) / cov_diag.unsqueeze(-2);
  auto K = Wt_Dinv.matmul(cov_factor);
  K = K + torch::eye(K.size(-1), K.options());
  return torch::linalg_cholesky(K);
}

torch::Tensor LowRankMultivariateNormal::log_det() const {
  return 2 * capacitance_tril().diagonal(0, -2, -1).log().sum(-1) + cov_diag.log().sum(-1);
}

torch::Tensor LowRankMultivariateNormal::rsample(const Shape& sample_shape) const {
  auto shape = extended_shape(sample_shape);
  Shape w_shape(shape.begin(), shape.end() - 1);
  w_shape.push_back(cov_factor.size(-1));
  auto eps_w = torch::randn(w_shape, loc.options());
  auto eps_d = torch::randn(shape, loc.options());
  return loc + torch::matmul(cov_factor, eps_w.unsqueeze(-1)).squeeze(-1) + cov_diag.sqrt() * eps_d;
}

torch::Tensor LowRankMultivariateNormal::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto diff = value - loc;
  // Woodbury: x^T (W W^T + D)^{-1} x = x^T D^{-1} x - |A^{-1} W^T D^{-1} x|^2, A A^T = capacitance.
  auto Wt_Dinv = cov_factor.transpose(-1, -2) / cov_diag.unsqueeze(-2);
  auto Wt_Dinv_x = torch::matmul(Wt_Dinv, diff.unsqueeze(-1)).squeeze(-1);
  auto m = (diff.pow(2) / cov_diag).sum(-1) - batch_mahalanobis(capacitance_tril(), Wt_Dinv_x);
  return -0.5 * (event_shape_[0] * kLog2Pi + log_det() + m);
}

torch::Tensor LowRankMultivariateNormal::entropy() const {
  return 0.5 * (event_shape_[0] * (1.0 + kLog2Pi) + log_det());
}

torch::Tensor LowRankMultivariateNormal::covariance_matrix() const {
  return cov_factor.matmul(cov_factor.transpose(-1, -2)) + torch::diag_embed(cov_diag);
}

}  // namespace ember::dist
