// Continuous univariate families added with issue #15: Gumbel, Weibull, Chi2, Pareto,
// Logistic, Kumaraswamy and the circular VonMises.
#include <torch/nn/functional/activation.h>

#include <cmath>
#include <limits>

#include "distributions/chi2.h"
#include "distributions/gumbel.h"
#include "distributions/kumaraswamy.h"
#include "distributions/logistic.h"
#include "distributions/pareto.h"
#include "distributions/von_mises.h"
#include "distributions/weibull.h"

namespace ember::dist {

namespace {
constexpr double kEuler = 0.57721566490153286061;
constexpr double kPi = 3.14159265358979323846;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Shape shape_of(const torch::Tensor& t) { return to_shape(t.sizes()); }
// Uniform draws in [tiny, 1 - eps] of the dtype: their logs and log1p(-u) stay finite.
torch::Tensor open_uniform(const Shape& shape, const torch::TensorOptions& options) {
  const auto dtype = options.dtype().toScalarType();
  return torch::empty(shape, options).uniform_(finfo_tiny(dtype), 1 - finfo_eps(dtype));
}
}  // namespace

// ---------------------------------------------------------------- Gumbel

Gumbel::Gumbel(TensorArg loc_, TensorArg scale_, std::optional<bool> validate) {
  auto ts = broadcast_all({loc_, scale_});
  loc = ts[0];
  scale = ts[1];
  init(shape_of(loc), {}, validate);
}

torch::Tensor Gumbel::rsample(const Shape& sample_shape) const {
  auto u = open_uniform(extended_shape(sample_shape), loc.options());
  return loc - scale * (-u.log()).log();
}

torch::Tensor Gumbel::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto y = (loc - value) / scale;
  return (y - y.exp()) - scale.log();
}

torch::Tensor Gumbel::mean() const { return loc + scale * kEuler; }
torch::Tensor Gumbel::variance() const { return (scale * (kPi / std::sqrt(6.0))).pow(2); }
torch::Tensor Gumbel::entropy() const { return scale.log() + (1 + kEuler); }
torch::Tensor Gumbel::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return torch::exp(-torch::exp(-(value - loc) / scale));
}
torch::Tensor Gumbel::icdf(const torch::Tensor& prob) const { return loc - scale * (-prob.log()).log(); }

// ---------------------------------------------------------------- Weibull

Weibull::Weibull(TensorArg scale_, TensorArg concentration_, std::optional<bool> validate) {
  auto ts = broadcast_all({scale_, concentration_});
  scale = ts[0];
  concentration = ts[1];
  init(shape_of(scale), {}, validate);
}

torch::Tensor Weibull::rsample(const Shape& sample_shape) const {
  // scale * E^(1 / k) with E ~ Exponential(1), as torch's transformed Exponential.
  auto e = torch::empty(extended_shape(sample_shape), scale.options()).exponential_();
  return scale * e.pow(concentration.reciprocal());
}

torch::Tensor Weibull::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto z = value / scale;
  return concentration.log() - scale.log() + (concentration - 1) * z.log() - z.pow(concentration);
}

torch::Tensor Weibull::mean() const { return scale * torch::exp(torch::lgamma(1 + concentration.reciprocal())); }
torch::Tensor Weibull::variance() const {
  auto r = concentration.reciprocal();
  return scale.pow(2) * (torch::exp(torch::lgamma(1 + 2 * r)) - torch::exp(2 * torch::lgamma(1 + r)));
}
torch::Tensor Weibull::mode() const { return scale * ((concentration - 1) / concentration).pow(concentration.reciprocal()); }
torch::Tensor Weibull::entropy() const {
  auto r = concentration.reciprocal();
  return kEuler * (1 - r) + (scale * r).log() + 1;
}
torch::Tensor Weibull::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return -torch::expm1(-(value / scale).pow(concentration));
}
torch::Tensor Weibull::icdf(const torch::Tensor& prob) const {
  return scale * (-torch::log1p(-prob)).pow(concentration.reciprocal());
}

// ---------------------------------------------------------------- Chi2

namespace {
torch::Tensor as_df(const TensorArg& df) { return broadcast_all({df})[0]; }
}  // namespace

Chi2::Chi2(TensorArg df_, std::optional<bool> validate) : Gamma(0.5 * as_df(df_), 0.5, false), df(as_df(df_)) {
  validate_args_ = validate;
  check_arg("df", df > 0, df, "positive");
}

DistPtr Chi2::expand(const Shape& batch_shape) const {
  if (!shapes_broadcast(batch_shape, batch_shape_) || broadcast_shapes(batch_shape, batch_shape_) != batch_shape)
    throw ShapeError(cat("Chi2.expand: batch shape ", shape_str(batch_shape_), " cannot be expanded to ",
                         shape_str(batch_shape)));
  auto copy = std::make_shared<Chi2>(*this);
  copy->df = df.expand(batch_shape);
  copy->concentration = concentration.expand(batch_shape);
  copy->rate = rate.expand(batch_shape);
  copy->batch_shape_ = batch_shape;
  return copy;
}

DistPtr Chi2::to(const torch::TensorOptions& options) const {
  auto copy = std::make_shared<Chi2>(*this);
  copy->df = df.to(options);
  copy->concentration = concentration.to(options);
  copy->rate = rate.to(options);
  return copy;
}

std::string Chi2::to_string() const {
  return cat("Chi2(df: ", df.numel() == 1 ? cat(df.item<double>()) : shape_str(df.sizes()), ")");
}

// ---------------------------------------------------------------- Pareto

Pareto::Pareto(TensorArg scale_, TensorArg alpha_, std::optional<bool> validate) {
  auto ts = broadcast_all({scale_, alpha_});
  scale = ts[0];
  alpha = ts[1];
  init(shape_of(scale), {}, validate);
}

torch::Tensor Pareto::rsample(const Shape& sample_shape) const {
  // scale * exp(E / alpha), E ~ Exponential(1): torch's Exponential(alpha) through exp and a scaling.
  auto e = torch::empty(extended_shape(sample_shape), scale.options()).exponential_();
  return scale * (e / alpha).exp();
}

torch::Tensor Pareto::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return alpha.log() + alpha * scale.log() - (alpha + 1) * value.log();
}

torch::Tensor Pareto::mean() const {
  auto a = alpha.clamp_min(1);
  return a * scale / (a - 1);
}
torch::Tensor Pareto::variance() const {
  auto a = alpha.clamp_min(2);
  return scale.pow(2) * a / ((a - 1).pow(2) * (a - 2));
}
torch::Tensor Pareto::entropy() const { return (scale / alpha).log() + (1 + alpha.reciprocal()); }
torch::Tensor Pareto::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return -torch::expm1(-alpha * (value / scale).log());
}
torch::Tensor Pareto::icdf(const torch::Tensor& prob) const { return scale * (-torch::log1p(-prob) / alpha).exp(); }

// ---------------------------------------------------------------- Logistic

Logistic::Logistic(TensorArg loc_, TensorArg scale_, std::optional<bool> validate) {
  auto ts = broadcast_all({loc_, scale_});
  loc = ts[0];
  scale = ts[1];
  init(shape_of(loc), {}, validate);
}

torch::Tensor Logistic::rsample(const Shape& sample_shape) const {
  return icdf(open_uniform(extended_shape(sample_shape), loc.options()));
}

torch::Tensor Logistic::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto z = (value - loc) / scale;
  return torch::log_sigmoid(z) * 2 - z - scale.log();
}

torch::Tensor Logistic::variance() const { return scale.pow(2) * (kPi * kPi / 3); }
torch::Tensor Logistic::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return torch::sigmoid((value - loc) / scale);
}
torch::Tensor Logistic::icdf(const torch::Tensor& prob) const { return loc + scale * torch::logit(prob); }

// ---------------------------------------------------------------- Kumaraswamy

namespace {
// E[X^n] = b B(1 + n / a, b).
torch::Tensor kumaraswamy_moment(const torch::Tensor& a, const torch::Tensor& b, double n) {
  auto arg = 1 + n / a;
  return b * torch::exp(torch::lgamma(arg) + torch::lgamma(b) - torch::lgamma(arg + b));
}
}  // namespace

Kumaraswamy::Kumaraswamy(TensorArg c1, TensorArg c0, std::optional<bool> validate) {
  auto ts = broadcast_all({c1, c0});
  concentration1 = ts[0];
  concentration0 = ts[1];
  init(shape_of(concentration1), {}, validate);
}

torch::Tensor Kumaraswamy::rsample(const Shape& sample_shape) const {
  auto u = torch::rand(extended_shape(sample_shape), concentration1.options());
  return (1 - u.pow(concentration0.reciprocal())).pow(concentration1.reciprocal());
}

torch::Tensor Kumaraswamy::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  const auto& a = concentration1;
  const auto& b = concentration0;
  return a.log() + b.log() + (a - 1) * value.log() + (b - 1) * torch::log1p(-value.pow(a));
}

torch::Tensor Kumaraswamy::mean() const { return kumaraswamy_moment(concentration1, concentration0, 1); }
torch::Tensor Kumaraswamy::variance() const {
  return kumaraswamy_moment(concentration1, concentration0, 2) - mean().pow(2);
}
torch::Tensor Kumaraswamy::mode() const {
  const auto& a = concentration1;
  const auto& b = concentration0;
  auto m = ((a - 1) / (a * b - 1)).pow(a.reciprocal());
  auto undefined = (a < 1) | (b < 1) | ((a == 1) & (b == 1));
  return torch::where(undefined, torch::full({}, kNaN, m.options()), m);
}
torch::Tensor Kumaraswamy::entropy() const {
  const auto& a = concentration1;
  const auto& b = concentration0;
  auto harmonic_b = torch::digamma(b + 1) + kEuler;
  return (1 - b.reciprocal()) + (1 - a.reciprocal()) * harmonic_b - a.log() - b.log();
}
torch::Tensor Kumaraswamy::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return -torch::expm1(concentration0 * torch::log1p(-value.pow(concentration1)));
}
torch::Tensor Kumaraswamy::icdf(const torch::Tensor& prob) const {
  return (-torch::expm1(torch::log1p(-prob) / concentration0)).pow(concentration1.reciprocal());
}

// ---------------------------------------------------------------- VonMises

namespace {
torch::Tensor log_i0(const torch::Tensor& k) { return torch::special_i0e(k).log() + k; }
}  // namespace

VonMises::VonMises(TensorArg loc_, TensorArg concentration_, std::optional<bool> validate) {
  auto ts = broadcast_all({loc_, concentration_});
  loc = ts[0];
  concentration = ts[1];
  init(shape_of(loc), {}, validate);
}

torch::Tensor VonMises::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return concentration * torch::cos(value - loc) - std::log(2 * kPi) - log_i0(concentration);
}

torch::Tensor VonMises::variance() const {
  return 1 - torch::special_i1e(concentration) / torch::special_i0e(concentration);
}

torch::Tensor VonMises::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  // Best & Fisher (1979): a wrapped-Cauchy envelope, accepted elementwise until every entry has a draw.
  const auto shape = extended_shape(sample_shape);
  auto k = concentration.expand(shape);
  auto tau = 1 + (1 + 4 * k.pow(2)).sqrt();
  auto rho = (tau - (2 * tau).sqrt()) / (2 * k);
  auto proposal_r = (1 + rho.pow(2)) / (2 * rho);
  auto x = torch::zeros(shape, loc.options());
  auto done = torch::zeros(shape, loc.options().dtype(torch::kBool));
  while (!done.all().item<bool>()) {
    auto u = torch::rand(concat({3}, shape), loc.options());
    auto u1 = u[0], u2 = u[1], u3 = u[2];
    auto z = torch::cos(kPi * u1);
    auto f = (1 + proposal_r * z) / (proposal_r + z);
    auto c = k * (proposal_r - f);
    auto accept = ((c * (2 - c) - u2) > 0) | ((c / u2).log() + 1 - c >= 0);
    accept = accept & ~done;
    x = torch::where(accept, (u3 - 0.5).sign() * f.acos(), x);
    done = done | accept;
  }
  return torch::remainder(x + kPi + loc, 2 * kPi) - kPi;
}

}  // namespace ember::dist
