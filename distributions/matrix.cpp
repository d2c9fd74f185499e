// Matrix-valued and heavy-tailed multivariate families added with issue #15:
// MultivariateStudentT, LKJCholesky and Wishart.
#include <cmath>
#include <limits>

#include "distributions/beta.h"
#include "distributions/lkj_cholesky.h"
#include "distributions/multivariate_student_t.h"
#include "distributions/wishart.h"

namespace ember::dist {

namespace {
constexpr double kPi = 3.14159265358979323846;
constexpr double kLog2 = 0.69314718055994530942;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

torch::Tensor as_float(torch::Tensor t, const torch::TensorOptions& like) {
  return t.is_floating_point() ? t : t.to(like.dtype());
}
Shape batch_of(const torch::Tensor& t, int64_t event_dims) {
  return Shape(t.sizes().begin(), t.sizes().end() - event_dims);
}
void check_square(const std::string& who, const char* arg, const torch::Tensor& m) {
  if (m.dim() < 2 || m.size(-1) != m.size(-2))
    throw ShapeError(cat(who, ": parameter '", arg, "' of shape ", shape_str(m.sizes()),
                         " must be a (batch of) square matrices"));
}
// Multivariate digamma: sum_i digamma(x - i / 2), i = 0..p-1.
torch::Tensor mvdigamma(const torch::Tensor& x, int64_t p) {
  auto offsets = torch::arange(p, x.options()) / 2;
  return torch::digamma(x.unsqueeze(-1) - offsets).sum(-1);
}
}  // namespace

// ---------------------------------------------------------------- MultivariateStudentT

MultivariateStudentT::MultivariateStudentT(TensorArg df_, torch::Tensor loc_, torch::Tensor tril_,
                                           std::optional<bool> validate) {
  const std::string who = "MultivariateStudentT";
  if (loc_.dim() < 1) throw ShapeError(cat(who, ": parameter 'loc' must have at least 1 dim, got shape ", shape_str(loc_.sizes())));
  check_square(who, "scale_tril", tril_);
  const auto n = loc_.size(-1);
  if (tril_.size(-1) != n)
    throw ShapeError(cat(who, ": parameter 'scale_tril' of shape ", shape_str(tril_.sizes()), " must be ", n, " x ", n,
                         " to match loc of shape ", shape_str(loc_.sizes())));
  auto options = common_options({df_, loc_, tril_});
  auto d = df_.as_tensor(options);
  d = as_float(d, options);
  loc_ = as_float(loc_, options);
  tril_ = as_float(tril_, options);
  Shape batch = broadcast_shapes(to_shape(d.sizes()), batch_of(loc_, 1), who.c_str());
  batch = broadcast_shapes(batch, batch_of(tril_, 2), who.c_str());
  df = d.expand(batch);
  loc = loc_.expand(concat(batch, {n}));
  scale_tril = tril_.expand(concat(batch, {n, n}));
  init(batch, {n}, validate);
}

torch::Tensor MultivariateStudentT::rsample(const Shape& sample_shape) const {
  const auto shape = extended_shape(sample_shape);
  auto x = torch::randn(shape, loc.options());
  const Shape batch_shape = concat(sample_shape, batch_shape_);
  auto z = torch::_standard_gamma(0.5 * df.expand(batch_shape)) * 2;  // Chi2(df), implicit reparameterisation
  z = z.clamp_min(finfo_tiny(z.scalar_type()));
  auto y = x * torch::rsqrt(z / df).unsqueeze(-1);
  return loc + scale_tril.matmul(y.unsqueeze(-1)).squeeze(-1);
}

torch::Tensor MultivariateStudentT::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  const double n = static_cast<double>(event_shape_[0]);
  auto diff = value - loc;
  Shape shape = broadcast_shapes(to_shape(diff.sizes()), to_shape(loc.sizes()), "MultivariateStudentT.log_prob");
  Shape mat = shape;
  mat.push_back(shape.back());
  auto y = torch::linalg_solve_triangular(scale_tril.expand(mat), diff.expand(shape).unsqueeze(-1), /*upper=*/false)
               .squeeze(-1);
  auto z = scale_tril.diagonal(0, -2, -1).log().sum(-1) + 0.5 * n * df.log() + 0.5 * n * std::log(kPi) +
           torch::lgamma(0.5 * df) - torch::lgamma(0.5 * (df + n));
  return -0.5 * (df + n) * torch::log1p(y.pow(2).sum(-1) / df) - z;
}

torch::Tensor MultivariateStudentT::mean() const {
  return torch::where((df <= 1).unsqueeze(-1), torch::full({}, kNaN, loc.options()), loc);
}

torch::Tensor MultivariateStudentT::variance() const {
  auto v = scale_tril.pow(2).sum(-1) * (df / (df - 2)).unsqueeze(-1);
  v = torch::where(((df <= 2) & (df > 1)).unsqueeze(-1), torch::full({}, kInf, v.options()), v);
  return torch::where((df <= 1).unsqueeze(-1), torch::full({}, kNaN, v.options()), v);
}

// ---------------------------------------------------------------- LKJCholesky

LKJCholesky::LKJCholesky(int64_t dim, TensorArg concentration_, std::optional<bool> validate) : dim_(dim) {
  if (dim < 2) throw ValueError(cat("LKJCholesky: dim must be an integer >= 2, got ", dim));
  concentration = broadcast_all({concentration_})[0];
  init(to_shape(concentration.sizes()), {dim, dim}, validate);
}

torch::Tensor LKJCholesky::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  // The onion method (Lewandowski, Kurowicka and Joe 2009): row i >= 1 has squared
  // off-diagonal length y_i ~ Beta(i / 2, eta + (d - 2) / 2 - (i - 1) / 2) and a uniform
  // direction; under the density (a power of L_ii) the volume element y^(i/2 - 1) gives the
  // first shape i / 2. torch 1.13 uses i - 1/2 there, wrong for i >= 2 (docs/distributions.md).
  auto marginal = concentration + 0.5 * static_cast<double>(dim_ - 2);
  auto row = torch::arange(dim_, concentration.options());
  auto conc1 = row.clamp_min(1) / 2;                         // row 0 has no off-diagonal entries
  auto conc0 = marginal.unsqueeze(-1) - (row - 1).clamp_min(0) / 2;
  auto y = Beta(conc1, conc0, false).sample(sample_shape).unsqueeze(-1);
  auto u = torch::randn(extended_shape(sample_shape), concentration.options()).tril(-1);
  auto norm = u.norm(2, {-1}, true);
  // Row 0 has no off-diagonal entries: 0 / 0 there becomes 0.
  auto direction = torch::where(norm > 0, u / norm, torch::zeros({}, u.options()));
  auto w = torch::sqrt(y) * direction;
  auto diag = (1 - w.pow(2).sum(-1)).clamp_min(finfo_tiny(w.scalar_type())).sqrt();
  return w + torch::diag_embed(diag);
}

torch::Tensor LKJCholesky::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto diag = value.diagonal(0, -2, -1).narrow(-1, 1, dim_ - 1);
  auto order = torch::arange(2, dim_ + 1, concentration.options());
  order = 2 * (concentration - 1).unsqueeze(-1) + static_cast<double>(dim_) - order;
  auto unnormalized = (order * diag.log()).sum(-1);
  const auto dm1 = dim_ - 1;
  auto alpha = concentration + 0.5 * static_cast<double>(dm1);
  auto denominator = torch::lgamma(alpha) * static_cast<double>(dm1);
  auto numerator = torch::mvlgamma(alpha - 0.5, dm1);
  const double pi_constant = 0.5 * static_cast<double>(dm1) * std::log(kPi);
  return unnormalized - (pi_constant + numerator - denominator);
}

// ---------------------------------------------------------------- Wishart

Wishart::Wishart(TensorArg df_, CovarianceMatrix cov, std::optional<bool> validate) {
  check_square("Wishart", "covariance_matrix", cov.value);
  auto m = as_float(cov.value, common_options({df_, cov.value}));
  const bool check = validate ? *validate : is_validation_enabled();
  if (check) {
    auto ok = constraints::positive_definite()->check(m.detach());
    if (!ok.all().item<bool>())
      throw ValueError(cat("Wishart: parameter 'covariance_matrix' of shape ", shape_str(m.sizes()),
                           " must satisfy positive_definite", first_false_index(ok),
                           ". Pass validate_args=false or call ember::dist::enable_validation(false) to skip this check."));
  }
  setup(df_, torch::linalg_cholesky(m), validate);
}

Wishart::Wishart(TensorArg df_, ScaleTril tril, std::optional<bool> validate) {
  check_square("Wishart", "scale_tril", tril.value);
  setup(df_, as_float(tril.value, common_options({df_, tril.value})), validate);
}

Wishart::Wishart(TensorArg df_, PrecisionMatrix prec, std::optional<bool> validate) {
  check_square("Wishart", "precision_matrix", prec.value);
  auto p = as_float(prec.value, common_options({df_, prec.value}));
  // L with L L^T = P^{-1}, as MultivariateNormal does.
  auto lf = torch::linalg_cholesky(torch::flip(p, {-2, -1}));
  auto l_inv = torch::transpose(torch::flip(lf, {-2, -1}), -2, -1);
  auto eye = torch::eye(p.size(-1), p.options());
  setup(df_, torch::linalg_solve_triangular(l_inv, eye, /*upper=*/false), validate);
}

void Wishart::setup(const TensorArg& df_, torch::Tensor tril, std::optional<bool> validate) {
  const auto p = tril.size(-1);
  auto d = as_float(df_.as_tensor(tril.options()), tril.options());
  const Shape batch = broadcast_shapes(to_shape(d.sizes()), batch_of(tril, 2), "Wishart");
  df = d.expand(batch);
  scale_tril = tril.expand(concat(batch, {p, p}));
  init(batch, {p, p}, validate);
  check_arg("df", df > static_cast<double>(p - 1), df, cat("greater than p - 1 = ", p - 1));
}

torch::Tensor Wishart::precision_matrix() const {
  auto eye = torch::eye(event_shape_[0], scale_tril.options());
  return torch::cholesky_solve(eye.expand_as(scale_tril), scale_tril);
}

torch::Tensor Wishart::bartlett(const Shape& sample_shape) const {
  const auto p = event_shape_[0];
  const Shape batch = concat(sample_shape, batch_shape_);
  // A = lower-triangular with sqrt(Chi2(df - i)) on the diagonal and N(0, 1) below; X = L A A^T L^T.
  auto chi2_df = df.unsqueeze(-1) - torch::arange(p, df.options());
  auto chi2 = torch::_standard_gamma(0.5 * chi2_df.expand(concat(batch, {p}))) * 2;
  auto diag = chi2.sqrt().clamp_min(finfo_eps(chi2.scalar_type()));
  auto noise = torch::randn(concat(batch, {p, p}), df.options()).tril(-1) + torch::diag_embed(diag);
  auto chol = scale_tril.matmul(noise);
  return chol.matmul(chol.transpose(-1, -2));
}

torch::Tensor Wishart::rsample(const Shape& sample_shape) const {
  auto x = bartlett(sample_shape);
  // Redraw (whole) samples that are numerically singular, up to 10 times, as torch.
  for (int attempt = 0; attempt < 10; ++attempt) {
    auto singular = ~constraints::positive_definite()->check(x.detach());
    if (!singular.any().item<bool>()) break;
    x = torch::where(singular.unsqueeze(-1).unsqueeze(-1), bartlett(sample_shape), x);
  }
  return x;
}

torch::Tensor Wishart::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  const auto p = event_shape_[0];
  const double pd = static_cast<double>(p);
  auto log_det_l = scale_tril.diagonal(0, -2, -1).log().sum(-1);
  auto value_logdet = std::get<1>(torch::linalg_slogdet(value));
  Shape shape = broadcast_shapes(to_shape(value.sizes()), to_shape(scale_tril.sizes()), "Wishart.log_prob");
  auto trace_term = torch::cholesky_solve(value.expand(shape), scale_tril.expand(shape)).diagonal(0, -2, -1).sum(-1);
  return -df * (pd * kLog2 / 2 + log_det_l) - torch::mvlgamma(df / 2, p) + (df - pd - 1) / 2 * value_logdet -
         trace_term / 2;
}

torch::Tensor Wishart::mean() const { return df.unsqueeze(-1).unsqueeze(-1) * covariance_matrix(); }

torch::Tensor Wishart::variance() const {
  auto v = covariance_matrix();
  auto d = v.diagonal(0, -2, -1);
  return df.unsqueeze(-1).unsqueeze(-1) * (v.pow(2) + d.unsqueeze(-1) * d.unsqueeze(-2));
}

torch::Tensor Wishart::mode() const {
  auto factor = df - static_cast<double>(event_shape_[0]) - 1;
  factor = torch::where(factor <= 0, torch::full({}, kNaN, factor.options()), factor);
  return factor.unsqueeze(-1).unsqueeze(-1) * covariance_matrix();
}

torch::Tensor Wishart::entropy() const {
  const auto p = event_shape_[0];
  const double pd = static_cast<double>(p);
  auto log_det_l = scale_tril.diagonal(0, -2, -1).log().sum(-1);
  return (pd + 1) * (pd * kLog2 / 2 + log_det_l) + torch::mvlgamma(df / 2, p) - (df - pd - 1) / 2 * mvdigamma(df / 2, p) +
         df * pd / 2;
}

}  // namespace ember::dist
