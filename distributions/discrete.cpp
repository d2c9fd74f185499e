// Discrete distributions.
#include <torch/autograd.h>

#include <cmath>
#include <limits>

#include "distributions/bernoulli.h"
#include "distributions/binomial.h"
#include "distributions/categorical.h"
#include "distributions/geometric.h"
#include "distributions/multinomial.h"
#include "distributions/one_hot_categorical.h"
#include "distributions/poisson.h"

namespace ember::dist {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Shape shape_of(const torch::Tensor& t) { return to_shape(t.sizes()); }
Shape all_but_last(const torch::Tensor& t) { return Shape(t.sizes().begin(), t.sizes().end() - 1); }

void check_vector_param(const char* who, const char* arg, const torch::Tensor& t) {
  if (t.dim() < 1)
    throw ShapeError(cat(who, ": parameter '", arg, "' must have at least 1 dim (the categories), got shape ",
                         shape_str(t.sizes())));
}
torch::Tensor as_float(const torch::Tensor& t) {
  return t.is_floating_point() ? t : t.to(torch::get_default_dtype());
}

// Draws category indices of shape sample_shape + batch from probs of shape batch + [K].
torch::Tensor draw_categories(const torch::Tensor& probs, const Shape& sample_shape, const Shape& batch) {
  torch::NoGradGuard no_grad;
  auto k = probs.size(-1);
  auto probs_2d = probs.reshape({-1, k});
  auto n = numel(sample_shape);
  auto samples = torch::multinomial(probs_2d, n, /*replacement=*/true).t();  // [n, prod(batch)]
  return samples.reshape(concat(sample_shape, batch));
}

// log_prob of integer categories `value` (batch dims) under normalised logits (batch + [K]).
torch::Tensor categorical_log_prob(const torch::Tensor& logits, const torch::Tensor& value) {
  auto v = value.to(torch::kLong).unsqueeze(-1);
  auto ts = torch::broadcast_tensors({v, logits});
  return ts[1].gather(-1, ts[0].narrow(-1, 0, 1)).squeeze(-1);
}

torch::Tensor categorical_entropy(const torch::Tensor& logits, const torch::Tensor& probs) {
  auto min_real = logits.scalar_type() == torch::kDouble ? std::numeric_limits<double>::lowest()
                                                          : static_cast<double>(std::numeric_limits<float>::lowest());
  return -(logits.clamp_min(min_real) * probs).sum(-1);
}

torch::Tensor enumerate_values(torch::Tensor values, const Shape& batch, const Shape& event, bool expand) {
  // values: [n] + event; view as [n] + ones(batch) + event, then expand.
  Shape view = {values.size(0)};
  for (size_t i = 0; i < batch.size(); ++i) view.push_back(1);
  for (auto e : event) view.push_back(e);
  values = values.reshape(view);
  if (expand) values = values.expand(concat({view[0]}, batch, event));
  return values;
}
// log Bernoulli(value | logits) = value * x - softplus(x), as x * value - max(x, 0) -
// log1p(exp(-|x|)): one exp and one log1p per element, where LibTorch's
// binary_cross_entropy_with_logits takes two exps, a log and about ten passes over the
// tensor (the image likelihood of a VAE is the largest elementwise work of its step).
torch::Tensor bernoulli_logits_log_prob_plain(const torch::Tensor& x, const torch::Tensor& value) {
  auto lp = x * value;
  lp.sub_(x.clamp_min(0));
  return lp.sub_(x.abs().neg_().exp_().log1p_());
}

// The same as one autograd node: d/dx = value - sigmoid(x), d/dvalue = x (grey values).
struct BernoulliLogitsLogProbFn : torch::autograd::Function<BernoulliLogitsLogProbFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& value) {
    ctx->save_for_backward({x, value});
    return bernoulli_logits_log_prob_plain(x, value);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &value = saved[1], &g = grads[0];
    torch::Tensor gx, gv;
    if (ctx->needs_input_grad(0)) gx = torch::sub(value, torch::sigmoid(x)).mul_(g);
    if (ctx->needs_input_grad(1)) gv = g * x;
    return {gx, gv};
  }
};
}  // namespace

// ---------------------------------------------------------------- Bernoulli

Bernoulli::Bernoulli(TensorArg probs_, std::optional<bool> validate) {
  probs = broadcast_all({probs_})[0];
  logits = probs_to_logits_binary(probs);
  init(shape_of(probs), {}, validate, {"logits"});
}

Bernoulli::Bernoulli(Logits logits_, std::optional<bool> validate) {
  logits = broadcast_all({logits_.value})[0];
  probs = torch::sigmoid(logits);
  init(shape_of(logits), {}, validate, {"probs"});
}

ConstraintPtr Bernoulli::arg_constraint(std::string_view p) {
  return p == "probs" ? constraints::unit_interval() : constraints::real();
}

torch::Tensor Bernoulli::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  return torch::bernoulli(probs.expand(extended_shape(sample_shape)));
}

torch::Tensor Bernoulli::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto x = logits, v = value.to(logits.dtype());
  if (x.sizes() != v.sizes()) {
    auto shapes = torch::broadcast_tensors({x, v});
    x = shapes[0];
    v = shapes[1];
  }
  if (at::GradMode::is_enabled() && (x.requires_grad() || v.requires_grad())) return BernoulliLogitsLogProbFn::apply(x, v);
  return bernoulli_logits_log_prob_plain(x, v);
}

torch::Tensor Bernoulli::entropy() const {
  return torch::binary_cross_entropy_with_logits(logits, probs, {}, {}, at::Reduction::None);
}

torch::Tensor Bernoulli::enumerate_support(bool expand) const {
  return enumerate_values(torch::arange(2, probs.options()), batch_shape_, {}, expand);
}

// ---------------------------------------------------------------- Categorical

Categorical::Categorical(torch::Tensor probs_, std::optional<bool> validate) {
  check_vector_param("Categorical", "probs", probs_);
  probs = as_float(probs_);
  probs = probs / probs.sum(-1, true);
  logits = probs_to_logits(probs);
  init(all_but_last(probs), {}, validate, {"logits"});
}

Categorical::Categorical(Logits logits_, std::optional<bool> validate) {
  if (!logits_.value.is_tensor())
    throw ShapeError("Categorical: parameter 'logits' must be a tensor with the categories in its last dim");
  check_vector_param("Categorical", "logits", logits_.value.tensor());
  logits = normalize_logits(as_float(logits_.value.tensor()));
  probs = logits.exp();
  init(all_but_last(logits), {}, validate, {"probs"});
}

torch::Tensor Categorical::sample(const Shape& sample_shape) const {
  return draw_categories(probs, sample_shape, batch_shape_);
}

torch::Tensor Categorical::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return categorical_log_prob(logits, value);
}

torch::Tensor Categorical::mean() const { return torch::full(batch_shape_, kNaN, probs.options()); }
torch::Tensor Categorical::variance() const { return torch::full(batch_shape_, kNaN, probs.options()); }
torch::Tensor Categorical::entropy() const { return categorical_entropy(logits, probs); }

torch::Tensor Categorical::enumerate_support(bool expand) const {
  return enumerate_values(torch::arange(num_categories(), probs.options().dtype(torch::kLong)), batch_shape_, {},
                          expand);
}

// ---------------------------------------------------------------- OneHotCategorical

OneHotCategorical::OneHotCategorical(torch::Tensor probs_, std::optional<bool> validate) {
  check_vector_param("OneHotCategorical", "probs", probs_);
  probs = as_float(probs_);
  probs = probs / probs.sum(-1, true);
  logits = probs_to_logits(probs);
  init(all_but_last(probs), {probs.size(-1)}, validate, {"logits"});
}

OneHotCategorical::OneHotCategorical(Logits logits_, std::optional<bool> validate) {
  if (!logits_.value.is_tensor())
    throw ShapeError("OneHotCategorical: parameter 'logits' must be a tensor with the categories in its last dim");
  check_vector_param("OneHotCategorical", "logits", logits_.value.tensor());
  logits = normalize_logits(as_float(logits_.value.tensor()));
  probs = logits.exp();
  init(all_but_last(logits), {logits.size(-1)}, validate, {"probs"});
}

torch::Tensor OneHotCategorical::sample(const Shape& sample_shape) const {
  auto idx = draw_categories(probs, sample_shape, batch_shape_);
  return torch::one_hot(idx, probs.size(-1)).to(probs.dtype());
}

torch::Tensor OneHotCategorical::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  return categorical_log_prob(logits, std::get<1>(value.max(-1)));
}

torch::Tensor OneHotCategorical::entropy() const { return categorical_entropy(logits, probs); }

torch::Tensor OneHotCategorical::enumerate_support(bool expand) const {
  auto k = probs.size(-1);
  return enumerate_values(torch::eye(k, probs.options()), batch_shape_, {k}, expand);
}

// ---------------------------------------------------------------- Poisson

Poisson::Poisson(TensorArg rate_, std::optional<bool> validate) {
  rate = broadcast_all({rate_})[0];
  init(shape_of(rate), {}, validate);
}

torch::Tensor Poisson::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  return torch::poisson(rate.expand(extended_shape(sample_shape)));
}

torch::Tensor Poisson::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto v = value.to(rate.dtype());
  return torch::xlogy(v, rate) - rate - torch::lgamma(v + 1);
}

// ---------------------------------------------------------------- Binomial

Binomial::Binomial(TensorArg n, TensorArg probs_, std::optional<bool> validate) {
  auto ts = broadcast_all({probs_, n});
  probs = ts[0];
  total_count = ts[1];
  logits = probs_to_logits_binary(probs);
  init(shape_of(probs), {}, validate, {"logits"});
}

Binomial::Binomial(TensorArg n, Logits logits_, std::optional<bool> validate) {
  auto ts = broadcast_all({logits_.value, n});
  logits = ts[0];
  total_count = ts[1];
  probs = torch::sigmoid(logits);
  init(shape_of(logits), {}, validate, {"probs"});
}

torch::Tensor Binomial::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  auto shape = extended_shape(sample_shape);
  return torch::binomial(total_count.expand(shape).contiguous(), probs.expand(shape).contiguous());
}

torch::Tensor Binomial::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto v = value.to(logits.dtype());
  auto n = total_count;
  // k logit - n max(logit, 0) - n log1p(exp(-|logit|)) + log C(n, k), stable for all logits.
  auto clamp_by_zero = (logits.clamp_min(0) + logits - logits.clamp_max(0)) / 2;
  auto normalize = n * clamp_by_zero + n * torch::log1p(torch::exp(-logits.abs())) - torch::lgamma(n + 1);
  return v * logits - torch::lgamma(v + 1) - torch::lgamma(n - v + 1) - normalize;
}

torch::Tensor Binomial::entropy() const {
  auto n_max = total_count.max().item<double>();
  auto values = torch::arange(n_max + 1, probs.options());
  Shape view = {values.size(0)};
  for (size_t i = 0; i < batch_shape_.size(); ++i) view.push_back(1);
  values = values.reshape(view);
  auto lp = Binomial(total_count, Logits{logits}, false).log_prob(values);
  auto inside = values <= total_count;
  auto terms = torch::where(inside, torch::exp(lp) * lp, torch::zeros({}, lp.options()));
  return -terms.sum(0);
}

torch::Tensor Binomial::enumerate_support(bool expand) const {
  auto n = total_count.max().item<double>();
  if (total_count.min().item<double>() != n)
    throw NotImplementedError(cat("Binomial.enumerate_support: total_count must be the same in every batch element ",
                                  "(found values from ", total_count.min().item<double>(), " to ", n, ")"));
  return enumerate_values(torch::arange(n + 1, probs.options()), batch_shape_, {}, expand);
}

// ---------------------------------------------------------------- Geometric

Geometric::Geometric(TensorArg probs_, std::optional<bool> validate) {
  probs = broadcast_all({probs_})[0];
  logits = probs_to_logits_binary(probs);
  init(shape_of(probs), {}, validate, {"logits"});
  check_arg("probs", probs > 0, probs, "positive");
}

Geometric::Geometric(Logits logits_, std::optional<bool> validate) {
  logits = broadcast_all({logits_.value})[0];
  probs = torch::sigmoid(logits);
  init(shape_of(logits), {}, validate, {"probs"});
}

torch::Tensor Geometric::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  auto u = torch::empty(extended_shape(sample_shape), probs.options()).uniform_(finfo_tiny(probs.scalar_type()), 1);
  return (u.log() / (-probs).log1p()).floor();
}

torch::Tensor Geometric::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto ts = torch::broadcast_tensors({value.to(probs.dtype()), probs});
  // p = 1 with x = 0 has probability 1: avoid 0 * log(0).
  auto p = torch::where((ts[1] == 1) & (ts[0] == 0), torch::zeros({}, probs.options()), ts[1]);
  return ts[0] * (-p).log1p() + probs.log();
}

torch::Tensor Geometric::entropy() const {
  return torch::binary_cross_entropy_with_logits(logits, probs, {}, {}, at::Reduction::None) / probs;
}

// ---------------------------------------------------------------- Multinomial

namespace {
void check_total_count(int64_t n) {
  if (n < 0) throw ValueError(cat("Multinomial: parameter 'total_count' must be nonnegative, got ", n));
}
}  // namespace

Multinomial::Multinomial(int64_t n, torch::Tensor probs_, std::optional<bool> validate) : total_count_(n) {
  check_total_count(n);
  check_vector_param("Multinomial", "probs", probs_);
  probs = as_float(probs_);
  probs = probs / probs.sum(-1, true);
  logits = probs_to_logits(probs);
  init(all_but_last(probs), {probs.size(-1)}, validate, {"logits"});
}

Multinomial::Multinomial(int64_t n, Logits logits_, std::optional<bool> validate) : total_count_(n) {
  check_total_count(n);
  if (!logits_.value.is_tensor())
    throw ShapeError("Multinomial: parameter 'logits' must be a tensor with the categories in its last dim");
  check_vector_param("Multinomial", "logits", logits_.value.tensor());
  logits = normalize_logits(as_float(logits_.value.tensor()));
  probs = logits.exp();
  init(all_but_last(logits), {logits.size(-1)}, validate, {"probs"});
}

torch::Tensor Multinomial::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  auto counts = torch::zeros(extended_shape(sample_shape), probs.options());
  if (total_count_ == 0) return counts;
  // [n] + sample_shape + batch category indices, moved last and counted per category.
  auto idx = draw_categories(probs, concat({total_count_}, sample_shape), batch_shape_).movedim(0, -1);
  return counts.scatter_add_(-1, idx, torch::ones_like(idx, probs.options()));
}

torch::Tensor Multinomial::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto v = value.to(logits.dtype());
  auto ts = torch::broadcast_tensors({logits, v});
  // 0 * (-inf) = 0 for categories with probability 0 and count 0.
  auto l = torch::where((ts[1] == 0) & torch::isinf(ts[0]), torch::zeros({}, logits.options()), ts[0]);
  auto log_factorial_n = torch::lgamma(v.sum(-1) + 1);
  auto log_factorial_xs = torch::lgamma(v + 1).sum(-1);
  return log_factorial_n - log_factorial_xs + (l * ts[1]).sum(-1);
}

torch::Tensor Multinomial::entropy() const {
  const auto n = static_cast<double>(total_count_);
  auto term1 = n * categorical_entropy(logits, probs) - std::lgamma(n + 1);
  if (total_count_ == 0) return term1;
  // E[sum_k log x_k!] from the Binomial(n, p_k) marginals, x_k in {1, ..., n}.
  auto support = torch::arange(1, total_count_ + 1, probs.options());
  Shape view = {total_count_};
  for (int64_t i = 0; i < probs.dim(); ++i) view.push_back(1);
  support = support.reshape(view);
  auto binomial_lp = Binomial(n, Logits{probs_to_logits_binary(probs)}, false).log_prob(support);
  auto term2 = (binomial_lp.exp() * torch::lgamma(support + 1)).sum(0).sum(-1);
  return term1 + term2;
}

}  // namespace ember::dist
