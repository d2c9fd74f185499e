// Continuous univariate distributions.
#include <torch/autograd.h>

#include <cmath>
#include <limits>
#include <optional>

#include "distributions/beta.h"
#include "distributions/cauchy.h"
#include "distributions/continuous_bernoulli.h"
#include "distributions/dirichlet.h"
#include "distributions/exponential.h"
#include "distributions/gamma.h"
#include "distributions/half_cauchy.h"
#include "distributions/half_normal.h"
#include "distributions/inverse_gamma.h"
#include "distributions/laplace.h"
#include "distributions/log_normal.h"
#include "distributions/normal.h"
#include "distributions/student_t.h"
#include "distributions/uniform.h"

namespace ember::dist {

namespace {
constexpr double kLogSqrt2Pi = 0.91893853320467274178;  // log(sqrt(2 pi))
constexpr double kSqrt2 = 1.41421356237309504880;
constexpr double kPi = 3.14159265358979323846;
constexpr double kLog2 = 0.69314718055994530942;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Shape shape_of(const torch::Tensor& t) { return to_shape(t.sizes()); }

// Standard-normal helpers shared by Normal, LogNormal and HalfNormal.
torch::Tensor std_normal_cdf(const torch::Tensor& z) { return 0.5 * (1 + torch::erf(z / kSqrt2)); }
torch::Tensor std_normal_icdf(const torch::Tensor& p) { return torch::erfinv(2 * p - 1) * kSqrt2; }

// ---- Fused Normal kernels. Written op by op, Normal's log_prob costs seven LibTorch ops
// and six autograd nodes, and rsample three ops and two nodes; at the scalar sites of small
// models that per-op cost is the whole cost. Here each is one autograd node whose forward
// and backward run in plain C++ when every operand is one CPU element of the same dtype
// (and as a few tensor ops otherwise). The arithmetic follows the unfused formulas op for op
// in the tensors' dtype, so values round as before; gradients are the closed forms.

// The dtype when every tensor holds one element of the same float/double dtype on the CPU.
std::optional<torch::ScalarType> scalar_cpu(std::initializer_list<const torch::Tensor*> ts) {
  std::optional<torch::ScalarType> dtype;
  for (const auto* t : ts) {
    if (!t->device().is_cpu() || t->numel() != 1) return std::nullopt;
    const auto d = t->scalar_type();
    if ((d != torch::kFloat && d != torch::kDouble) || (dtype && *dtype != d)) return std::nullopt;
    dtype = d;
  }
  return dtype;
}

// A one-element tensor of `shape` holding x.
torch::Tensor scalar_like(double x, at::IntArrayRef shape, const torch::Tensor& like) {
  auto t = at::empty(shape, like.options().requires_grad(false));
  if (like.scalar_type() == torch::kFloat) *t.data_ptr<float>() = static_cast<float>(x);
  else *t.data_ptr<double>() = x;
  return t;
}

template <class T>
T item_of(const torch::Tensor& t) {
  return *t.data_ptr<T>();
}

// log N(value | loc, scale) in one element's dtype, op for op as normal_log_prob_ops.
template <class T>
T normal_log_prob_scalar(T v, T loc, T scale) {
  const T z = (v - loc) / scale;
  T r = static_cast<T>(-0.5) * z;
  r = r * z;
  r = r - std::log(scale);
  return r - static_cast<T>(kLogSqrt2Pi);
}

torch::Tensor normal_log_prob_ops(const torch::Tensor& v, const torch::Tensor& loc, const torch::Tensor& scale) {
  auto z = (v - loc) / scale;
  return -0.5 * z * z - scale.log() - kLogSqrt2Pi;
}

torch::Tensor normal_log_prob_plain(const torch::Tensor& v, const torch::Tensor& loc, const torch::Tensor& scale) {
  if (auto dtype = scalar_cpu({&v, &loc, &scale})) {
    const auto shape = at::infer_size(at::infer_size(v.sizes(), loc.sizes()), scale.sizes());
    if (*dtype == torch::kFloat)
      return scalar_like(normal_log_prob_scalar(item_of<float>(v), item_of<float>(loc), item_of<float>(scale)), shape, v);
    return scalar_like(normal_log_prob_scalar(item_of<double>(v), item_of<double>(loc), item_of<double>(scale)), shape, v);
  }
  return normal_log_prob_ops(v, loc, scale);
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A gradient summed down to the shape of the input it belongs to (inputs broadcast).
torch::Tensor reduce_to(const torch::Tensor& g, const torch::Tensor& input) {
  return g.sizes() == input.sizes() ? g : g.sum_to_size(input.sizes());
}

struct NormalLogProbFn : torch::autograd::Function<NormalLogProbFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& v, const torch::Tensor& loc,
                               const torch::Tensor& scale) {
    ctx->save_for_backward({v, loc, scale});
    return normal_log_prob_plain(v, loc, scale);
  }
  // d/dv = -(v - loc) / scale^2, d/dloc = (v - loc) / scale^2, d/dscale = ((v - loc)^2 / scale^2 - 1) / scale.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &v = saved[0], &loc = saved[1], &scale = saved[2], &g = grads[0];
    const bool need_v = ctx->needs_input_grad(0), need_loc = ctx->needs_input_grad(1), need_scale = ctx->needs_input_grad(2);
    // Plain C++ unless a graph of the gradient is wanted (create_graph: Hessians).
    if (!at::GradMode::is_enabled()) {
      if (auto dtype = scalar_cpu({&v, &loc, &scale, &g})) {
        const double gv = *dtype == torch::kFloat ? item_of<float>(g) : item_of<double>(g);
        const double x = *dtype == torch::kFloat ? item_of<float>(v) : item_of<double>(v);
        const double m = *dtype == torch::kFloat ? item_of<float>(loc) : item_of<double>(loc);
        const double s = *dtype == torch::kFloat ? item_of<float>(scale) : item_of<double>(scale);
        const double z = (x - m) / s, gz = gv * z / s;
        return {need_v ? scalar_like(-gz, v.sizes(), v) : torch::Tensor(),
                need_loc ? scalar_like(gz, loc.sizes(), loc) : torch::Tensor(),
                need_scale ? scalar_like(gv * (z * z - 1) / s, scale.sizes(), scale) : torch::Tensor()};
      }
    }
    auto z = (v - loc) / scale;
    auto gz = g * z / scale;
    return {need_v ? reduce_to(-gz, v) : torch::Tensor(), need_loc ? reduce_to(gz, loc) : torch::Tensor(),
            need_scale ? reduce_to(g * (z * z - 1) / scale, scale) : torch::Tensor()};
  }
};

// loc + eps * scale with eps given (drawn by the caller).
struct NormalRsampleFn : torch::autograd::Function<NormalRsampleFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& loc, const torch::Tensor& scale,
                               const torch::Tensor& eps) {
    ctx->save_for_backward({loc, scale, eps});
    if (auto dtype = scalar_cpu({&loc, &scale, &eps})) {
      const auto shape = at::infer_size(at::infer_size(loc.sizes(), eps.sizes()), scale.sizes());
      if (*dtype == torch::kFloat)
        return scalar_like(item_of<float>(loc) + item_of<float>(eps) * item_of<float>(scale), shape, loc);
      return scalar_like(item_of<double>(loc) + item_of<double>(eps) * item_of<double>(scale), shape, loc);
    }
    return loc + eps * scale;
  }
  // d/dloc = 1, d/dscale = eps.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &loc = saved[0], &scale = saved[1], &eps = saved[2], &g = grads[0];
    const bool need_loc = ctx->needs_input_grad(0), need_scale = ctx->needs_input_grad(1);
    if (!at::GradMode::is_enabled()) {
      if (auto dtype = scalar_cpu({&scale, &eps, &g})) {
        const double gv = *dtype == torch::kFloat ? item_of<float>(g) : item_of<double>(g);
        const double e = *dtype == torch::kFloat ? item_of<float>(eps) : item_of<double>(eps);
        return {need_loc ? reduce_to(g, loc) : torch::Tensor(),
                need_scale ? scalar_like(gv * e, scale.sizes(), scale) : torch::Tensor(), torch::Tensor()};
      }
    }
    return {need_loc ? reduce_to(g, loc) : torch::Tensor(), need_scale ? reduce_to(g * eps, scale) : torch::Tensor(),
            torch::Tensor()};
  }
};

bool wants_grad(std::initializer_list<const torch::Tensor*> ts) {
  if (!at::GradMode::is_enabled()) return false;
  for (const auto* t : ts)
    if (t->requires_grad()) return true;
  return false;
}

}  // namespace

torch::Tensor normal_log_prob(const torch::Tensor& value, const torch::Tensor& loc, const torch::Tensor& scale) {
  if (wants_grad({&value, &loc, &scale})) return NormalLogProbFn::apply(value, loc, scale);
  return normal_log_prob_plain(value, loc, scale);
}

// ---------------------------------------------------------------- Normal

Normal::Normal(TensorArg loc_, TensorArg scale_, std::optional<bool> validate) {
  auto ts = broadcast_all({loc_, scale_});
  loc = ts[0];
  scale = ts[1];
  init(shape_of(loc), {}, validate);
}

ConstraintPtr Normal::arg_constraint(std::string_view p) {
  return p == "scale" ? constraints::positive() : constraints::real();
}

torch::Tensor Normal::rsample(const Shape& sample_shape) const {
  auto eps = torch::randn(extended_shape(sample_shape), loc.options());
  if (wants_grad({&loc, &scale})) return NormalRsampleFn::apply(loc, scale, eps);
  return loc + eps * scale;
}

torch::Tensor Normal::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  return at::normal(loc.expand(extended_shape(sample_shape)), scale.expand(extended_shape(sample_shape)));
}

torch::Tensor Normal::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return normal_log_prob(value, loc, scale);
}

torch::Tensor Normal::entropy() const { return 0.5 + kLogSqrt2Pi + scale.log(); }

torch::Tensor Normal::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return std_normal_cdf((value - loc) / scale);
}

torch::Tensor Normal::icdf(const torch::Tensor& prob) const { return loc + scale * std_normal_icdf(prob); }

// ---------------------------------------------------------------- Uniform

Uniform::Uniform(TensorArg low_, TensorArg high_, std::optional<bool> validate) {
  auto ts = broadcast_all({low_, high_});
  low = ts[0];
  high = ts[1];
  init(shape_of(low), {}, validate);
  check_arg("low", low < high, low, "less than 'high'");
}

torch::Tensor Uniform::rsample(const Shape& sample_shape) const {
  auto u = torch::rand(extended_shape(sample_shape), low.options());
  return low + u * (high - low);
}

torch::Tensor Uniform::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto inside = (low <= value).to(low.dtype()) * (high > value).to(low.dtype());
  return inside.log() - (high - low).log();
}

torch::Tensor Uniform::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return ((value - low) / (high - low)).clamp(0, 1);
}

// ---------------------------------------------------------------- Exponential

Exponential::Exponential(TensorArg rate_, std::optional<bool> validate) {
  rate = broadcast_all({rate_})[0];
  init(shape_of(rate), {}, validate);
}

torch::Tensor Exponential::rsample(const Shape& sample_shape) const {
  auto e = torch::empty(extended_shape(sample_shape), rate.options()).exponential_();
  return e / rate;
}

torch::Tensor Exponential::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return rate.log() - rate * value;
}

torch::Tensor Exponential::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return 1 - torch::exp(-rate * value);
}

// ---------------------------------------------------------------- LogNormal

LogNormal::LogNormal(TensorArg loc_, TensorArg scale_, std::optional<bool> validate) {
  auto ts = broadcast_all({loc_, scale_});
  loc = ts[0];
  scale = ts[1];
  init(shape_of(loc), {}, validate);
}

torch::Tensor LogNormal::rsample(const Shape& sample_shape) const {
  auto eps = torch::randn(extended_shape(sample_shape), loc.options());
  return (loc + eps * scale).exp();
}

torch::Tensor LogNormal::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto y = value.log();
  auto z = (y - loc) / scale;
  return -0.5 * z * z - scale.log() - kLogSqrt2Pi - y;
}

torch::Tensor LogNormal::mean() const { return (loc + scale.pow(2) / 2).exp(); }
torch::Tensor LogNormal::variance() const {
  auto s2 = scale.pow(2);
  return s2.expm1() * (2 * loc + s2).exp();
}
torch::Tensor LogNormal::entropy() const { return 0.5 + kLogSqrt2Pi + scale.log() + loc; }
torch::Tensor LogNormal::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return std_normal_cdf((value.log() - loc) / scale);
}
torch::Tensor LogNormal::icdf(const torch::Tensor& prob) const { return (loc + scale * std_normal_icdf(prob)).exp(); }

// ---------------------------------------------------------------- Laplace

Laplace::Laplace(TensorArg loc_, TensorArg scale_, std::optional<bool> validate) {
  auto ts = broadcast_all({loc_, scale_});
  loc = ts[0];
  scale = ts[1];
  init(shape_of(loc), {}, validate);
}

torch::Tensor Laplace::rsample(const Shape& sample_shape) const {
  double eps = finfo_eps(loc.scalar_type());
  auto u = torch::empty(extended_shape(sample_shape), loc.options()).uniform_(eps - 1, 1);
  return loc - scale * u.sign() * torch::log1p(-u.abs().clamp_min(finfo_tiny(loc.scalar_type())));
}

torch::Tensor Laplace::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return -(2 * scale).log() - (value - loc).abs() / scale;
}

torch::Tensor Laplace::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  auto d = value - loc;
  return 0.5 - 0.5 * d.sign() * torch::expm1(-d.abs() / scale);
}

torch::Tensor Laplace::icdf(const torch::Tensor& prob) const {
  auto t = prob - 0.5;
  return loc - scale * t.sign() * torch::log1p(-2 * t.abs());
}

// ---------------------------------------------------------------- Cauchy

Cauchy::Cauchy(TensorArg loc_, TensorArg scale_, std::optional<bool> validate) {
  auto ts = broadcast_all({loc_, scale_});
  loc = ts[0];
  scale = ts[1];
  init(shape_of(loc), {}, validate);
}

torch::Tensor Cauchy::rsample(const Shape& sample_shape) const {
  auto eps = torch::empty(extended_shape(sample_shape), loc.options()).cauchy_();
  return loc + eps * scale;
}

torch::Tensor Cauchy::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto z = (value - loc) / scale;
  return -std::log(kPi) - scale.log() - z.pow(2).log1p();
}

torch::Tensor Cauchy::mean() const { return torch::full_like(loc, kNaN); }
torch::Tensor Cauchy::variance() const { return torch::full_like(loc, kInf); }
torch::Tensor Cauchy::entropy() const { return std::log(4 * kPi) + scale.log(); }
torch::Tensor Cauchy::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return torch::atan((value - loc) / scale) / kPi + 0.5;
}
torch::Tensor Cauchy::icdf(const torch::Tensor& prob) const { return torch::tan(kPi * (prob - 0.5)) * scale + loc; }

// ---------------------------------------------------------------- HalfCauchy

HalfCauchy::HalfCauchy(TensorArg scale_, std::optional<bool> validate) {
  scale = broadcast_all({scale_})[0];
  init(shape_of(scale), {}, validate);
}

torch::Tensor HalfCauchy::rsample(const Shape& sample_shape) const {
  auto eps = torch::empty(extended_shape(sample_shape), scale.options()).cauchy_();
  return (eps * scale).abs();
}

torch::Tensor HalfCauchy::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto z = value / scale;
  auto lp = kLog2 - std::log(kPi) - scale.log() - z.pow(2).log1p();
  return torch::where(value >= 0, lp, torch::full({}, -kInf, lp.options()));
}

torch::Tensor HalfCauchy::mean() const { return torch::full_like(scale, kInf); }
torch::Tensor HalfCauchy::variance() const { return torch::full_like(scale, kInf); }
torch::Tensor HalfCauchy::entropy() const { return std::log(2 * kPi) + scale.log(); }
torch::Tensor HalfCauchy::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return 2 * torch::atan(value / scale) / kPi;
}
torch::Tensor HalfCauchy::icdf(const torch::Tensor& prob) const { return torch::tan(kPi * prob / 2) * scale; }

// ---------------------------------------------------------------- HalfNormal

HalfNormal::HalfNormal(TensorArg scale_, std::optional<bool> validate) {
  scale = broadcast_all({scale_})[0];
  init(shape_of(scale), {}, validate);
}

torch::Tensor HalfNormal::rsample(const Shape& sample_shape) const {
  return (torch::randn(extended_shape(sample_shape), scale.options()) * scale).abs();
}

torch::Tensor HalfNormal::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto z = value / scale;
  auto lp = kLog2 - 0.5 * z * z - scale.log() - kLogSqrt2Pi;
  return torch::where(value >= 0, lp, torch::full({}, -kInf, lp.options()));
}

torch::Tensor HalfNormal::mean() const { return scale * std::sqrt(2 / kPi); }
torch::Tensor HalfNormal::variance() const { return scale.pow(2) * (1 - 2 / kPi); }
torch::Tensor HalfNormal::entropy() const { return 0.5 + kLogSqrt2Pi + scale.log() - kLog2; }
torch::Tensor HalfNormal::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  return 2 * std_normal_cdf(value / scale) - 1;
}
torch::Tensor HalfNormal::icdf(const torch::Tensor& prob) const { return scale * std_normal_icdf((prob + 1) / 2); }

// ---------------------------------------------------------------- StudentT

StudentT::StudentT(TensorArg df_, TensorArg loc_, TensorArg scale_, std::optional<bool> validate) {
  auto ts = broadcast_all({df_, loc_, scale_});
  df = ts[0];
  loc = ts[1];
  scale = ts[2];
  init(shape_of(df), {}, validate);
}

torch::Tensor StudentT::rsample(const Shape& sample_shape) const {
  // X / sqrt(Z / df) with X ~ Normal(0, 1), Z ~ Chi2(df) = Gamma(df / 2, 1 / 2).
  auto shape = extended_shape(sample_shape);
  auto x = torch::randn(shape, df.options());
  auto z = torch::_standard_gamma(0.5 * df.expand(shape)) * 2;
  z = z.clamp_min(finfo_tiny(df.scalar_type()));
  return loc + scale * x * torch::rsqrt(z / df);
}

torch::Tensor StudentT::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto y = (value - loc) / scale;
  auto z = scale.log() + 0.5 * df.log() + 0.5 * std::log(kPi) + torch::lgamma(0.5 * df) - torch::lgamma(0.5 * (df + 1));
  return -0.5 * (df + 1) * torch::log1p(y.pow(2) / df) - z;
}

torch::Tensor StudentT::mean() const { return torch::where(df > 1, loc, torch::full({}, kNaN, loc.options())); }

torch::Tensor StudentT::variance() const {
  auto v = scale.pow(2) * df / (df - 2);
  v = torch::where(df > 2, v, torch::full({}, kInf, v.options()));
  return torch::where(df > 1, v, torch::full({}, kNaN, v.options()));
}

torch::Tensor StudentT::entropy() const {
  auto lb = torch::lgamma(0.5 * df) + std::lgamma(0.5) - torch::lgamma(0.5 * (df + 1));
  return scale.log() + 0.5 * (df + 1) * (torch::digamma(0.5 * (df + 1)) - torch::digamma(0.5 * df)) +
         0.5 * df.log() + lb;
}

// ---------------------------------------------------------------- Gamma

Gamma::Gamma(TensorArg c, TensorArg r, std::optional<bool> validate) {
  auto ts = broadcast_all({c, r});
  concentration = ts[0];
  rate = ts[1];
  init(shape_of(concentration), {}, validate);
}

torch::Tensor Gamma::rsample(const Shape& sample_shape) const {
  auto shape = extended_shape(sample_shape);
  // _standard_gamma carries the implicit-reparameterisation gradient (_standard_gamma_grad).
  auto value = torch::_standard_gamma(concentration.expand(shape)) / rate.expand(shape);
  value.detach().clamp_(finfo_tiny(value.scalar_type()));  // keep log_prob finite; not recorded by autograd
  return value;
}

torch::Tensor Gamma::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return torch::xlogy(concentration, rate) + torch::xlogy(concentration - 1, value) - rate * value -
         torch::lgamma(concentration);
}

torch::Tensor Gamma::entropy() const {
  return concentration - rate.log() + torch::lgamma(concentration) + (1 - concentration) * torch::digamma(concentration);
}

torch::Tensor Gamma::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  auto x = rate * value;
  return torch::special_gammainc(concentration.expand_as(x), x);
}

// ---------------------------------------------------------------- InverseGamma

InverseGamma::InverseGamma(TensorArg c, TensorArg r, std::optional<bool> validate) {
  auto ts = broadcast_all({c, r});
  concentration = ts[0];
  rate = ts[1];
  init(shape_of(concentration), {}, validate);
}

torch::Tensor InverseGamma::rsample(const Shape& sample_shape) const {
  auto shape = extended_shape(sample_shape);
  // 1 / Gamma(concentration, rate) draw, clamped as Gamma.rsample does.
  auto g = torch::_standard_gamma(concentration.expand(shape)) / rate.expand(shape);
  g.detach().clamp_(finfo_tiny(g.scalar_type()));
  return g.reciprocal();
}

torch::Tensor InverseGamma::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return torch::xlogy(concentration, rate) - (concentration + 1) * value.log() - rate / value -
         torch::lgamma(concentration);
}

torch::Tensor InverseGamma::mean() const {
  auto m = rate / (concentration - 1);
  return torch::where(concentration > 1, m, torch::full({}, kInf, m.options()));
}

torch::Tensor InverseGamma::variance() const {
  auto v = rate.pow(2) / ((concentration - 1).pow(2) * (concentration - 2));
  return torch::where(concentration > 2, v, torch::full({}, kInf, v.options()));
}

torch::Tensor InverseGamma::entropy() const {
  return concentration + rate.log() + torch::lgamma(concentration) - (1 + concentration) * torch::digamma(concentration);
}

torch::Tensor InverseGamma::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  auto x = rate / value;
  return torch::special_gammaincc(concentration.expand_as(x), x);
}

// ---------------------------------------------------------------- Beta

Beta::Beta(TensorArg c1, TensorArg c0, std::optional<bool> validate) {
  auto ts = broadcast_all({c1, c0});
  concentration1 = ts[0];
  concentration0 = ts[1];
  init(shape_of(concentration1), {}, validate);
}

torch::Tensor Beta::rsample(const Shape& sample_shape) const {
  auto shape = extended_shape(sample_shape);
  auto conc = torch::stack({concentration1.expand(shape), concentration0.expand(shape)}, -1);
  return detail::dirichlet_rsample(conc).select(-1, 0);
}

torch::Tensor Beta::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return torch::xlogy(concentration1 - 1, value) + torch::xlogy(concentration0 - 1, 1 - value) -
         lbeta(concentration1, concentration0);
}

torch::Tensor Beta::variance() const {
  auto total = concentration1 + concentration0;
  return concentration1 * concentration0 / (total.pow(2) * (total + 1));
}

torch::Tensor Beta::entropy() const {
  auto total = concentration1 + concentration0;
  return lbeta(concentration1, concentration0) - (concentration1 - 1) * torch::digamma(concentration1) -
         (concentration0 - 1) * torch::digamma(concentration0) + (total - 2) * torch::digamma(total);
}

// ---------------------------------------------------------------- ContinuousBernoulli

ContinuousBernoulli::ContinuousBernoulli(TensorArg probs_, std::optional<bool> validate, std::pair<double, double> lims)
    : lims_(lims) {
  probs = broadcast_all({probs_})[0];
  // Validate before clamping: the clamped probs would always pass.
  init(shape_of(probs), {}, validate, {"logits"});
  probs = clamp_probs(probs);
  logits = probs.log() - (-probs).log1p();
}

ContinuousBernoulli::ContinuousBernoulli(Logits logits_, std::optional<bool> validate, std::pair<double, double> lims)
    : lims_(lims) {
  logits = broadcast_all({logits_.value})[0];
  probs = clamp_probs(torch::sigmoid(logits));
  init(shape_of(logits), {}, validate, {"probs"});
}

torch::Tensor ContinuousBernoulli::outside_unstable_region() const {
  return (probs <= lims_.first) | (probs > lims_.second);
}

torch::Tensor ContinuousBernoulli::cut_probs() const {
  return torch::where(outside_unstable_region(), probs, torch::full({}, lims_.first, probs.options()));
}

torch::Tensor ContinuousBernoulli::log_normalizer() const {
  // log C = log|logit(p)| - log|2p - 1| = log|l| - log|tanh(l / 2)|, written in the logits:
  // torch writes it in the probs, which it clamps to 1 - eps, so for |l| > ~36 its normaliser
  // is log 36.04 whatever l is. This form is exact for any l (closed form; see
  // docs/distributions.md). Inside the unstable region the logits are cut like the probs.
  auto cut_logits = torch::where(outside_unstable_region(), logits,
                                 torch::full({}, std::log(lims_.first) - std::log1p(-lims_.first), logits.options()));
  auto log_norm = torch::log(torch::abs(cut_logits)) - torch::log(torch::abs(torch::tanh(0.5 * cut_logits)));
  auto x = (probs - 0.5).pow(2);
  auto taylor = kLog2 + (4.0 / 3.0 + 104.0 / 45.0 * x) * x;
  return torch::where(outside_unstable_region(), log_norm, taylor);
}

torch::Tensor ContinuousBernoulli::rsample(const Shape& sample_shape) const {
  return icdf(torch::rand(extended_shape(sample_shape), probs.options()));
}

torch::Tensor ContinuousBernoulli::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto ts = torch::broadcast_tensors({logits, value});
  return -torch::binary_cross_entropy_with_logits(ts[0], ts[1].to(logits.dtype()), {}, {}, at::Reduction::None) +
         log_normalizer();
}

torch::Tensor ContinuousBernoulli::mean() const {
  auto cp = cut_probs();
  auto mus = cp / (2.0 * cp - 1.0) + 1.0 / (torch::log1p(-cp) - torch::log(cp));
  auto x = probs - 0.5;
  auto taylor = 0.5 + (1.0 / 3.0 + 16.0 / 45.0 * x.pow(2)) * x;
  return torch::where(outside_unstable_region(), mus, taylor);
}

torch::Tensor ContinuousBernoulli::variance() const {
  auto cp = cut_probs();
  auto vars = cp * (cp - 1.0) / (1.0 - 2.0 * cp).pow(2) + 1.0 / (torch::log1p(-cp) - torch::log(cp)).pow(2);
  auto x = (probs - 0.5).pow(2);
  auto taylor = 1.0 / 12.0 - (1.0 / 15.0 - 128.0 / 945.0 * x) * x;
  return torch::where(outside_unstable_region(), vars, taylor);
}

torch::Tensor ContinuousBernoulli::entropy() const {
  auto log_p0 = torch::log1p(-probs);
  auto log_p1 = torch::log(probs);
  return mean() * (log_p0 - log_p1) - log_normalizer() - log_p0;
}

torch::Tensor ContinuousBernoulli::cdf(const torch::Tensor& value) const {
  validate_sample(value);
  auto cp = cut_probs();
  auto cdfs = (cp.pow(value) * (1.0 - cp).pow(1.0 - value) + cp - 1.0) / (2.0 * cp - 1.0);
  auto unbounded = torch::where(outside_unstable_region(), cdfs, value);
  return torch::where(value <= 0.0, torch::zeros_like(unbounded),
                      torch::where(value >= 1.0, torch::ones_like(unbounded), unbounded));
}

torch::Tensor ContinuousBernoulli::icdf(const torch::Tensor& prob) const {
  auto cp = cut_probs();
  auto inv = (torch::log1p(-cp + prob * (2.0 * cp - 1.0)) - torch::log1p(-cp)) / (torch::log(cp) - torch::log1p(-cp));
  return torch::where(outside_unstable_region(), inv, prob);
}

}  // namespace ember::dist
