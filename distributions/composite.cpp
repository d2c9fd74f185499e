// Distributions built from other distributions or transforms: TransformedDistribution,
// MixtureSameFamily, RelaxedBernoulli, RelaxedOneHotCategorical.
#include <torch/nn/functional/activation.h>

#include "distributions/independent.h"
#include "distributions/mixture_same_family.h"
#include "distributions/relaxed_bernoulli.h"
#include "distributions/relaxed_categorical.h"
#include "distributions/transformed_distribution.h"

namespace ember::dist {

// ---------------------------------------------------------------- TransformedDistribution

TransformedDistribution::TransformedDistribution(DistPtr base, std::vector<transforms::TransformPtr> ts,
                                                 std::optional<bool> validate)
    : base_(std::move(base)), transforms_(std::move(ts)) {
  if (!base_) throw ValueError("TransformedDistribution: parameter 'base' is null");
  for (const auto& t : transforms_)
    if (!t) throw ValueError("TransformedDistribution: parameter 'transforms' contains a null transform");
  chain_ = transforms_.size() == 1 ? transforms_[0] : transforms::compose(transforms_);
  validate_args_ = validate;
  const int64_t domain_dim = chain_->domain_event_dim();
  const int64_t base_dim = base_->event_dim();
  {
    // As torch: a transform with tensor coefficients (an affine map with a [3] loc) may
    // enlarge the shape; the base is expanded so that T^{-1}(y) has the base's shape.
    const Shape base_shape = base_->extended_shape();
    const Shape expanded = chain_->inverse_shape(chain_->forward_shape(base_shape));
    if (expanded != base_shape) base_ = base_->expand(Shape(expanded.begin(), expanded.end() - base_dim));
  }
  if (domain_dim > base_dim) {
    const auto need = domain_dim - base_dim;
    if (static_cast<int64_t>(base_->batch_shape().size()) < need)
      throw ShapeError(cat("TransformedDistribution: transform ", chain_->name(), " needs ", domain_dim,
                           " event dims but base ", base_->to_string(), " has batch_shape ",
                           shape_str(base_->batch_shape()), " and event_shape ", shape_str(base_->event_shape())));
    base_ = base_->to_event(need);
  }
  const int64_t event_dim = base_->event_dim() + chain_->codomain_event_dim() - domain_dim;
  Shape shape = chain_->forward_shape(base_->extended_shape());
  if (event_dim > static_cast<int64_t>(shape.size()))
    throw ShapeError(cat("TransformedDistribution: transform ", chain_->name(), " yields event dim ", event_dim,
                         " for a value of shape ", shape_str(shape)));
  set_shapes(Shape(shape.begin(), shape.end() - event_dim), Shape(shape.end() - event_dim, shape.end()));
}

torch::Tensor TransformedDistribution::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  return chain_->forward(base_->sample(sample_shape));
}

torch::Tensor TransformedDistribution::rsample(const Shape& sample_shape) const {
  if (!base_->has_rsample())
    throw NotImplementedError(cat("TransformedDistribution: base ", base_->name(), " has no rsample"));
  return chain_->forward(base_->rsample(sample_shape));
}

torch::Tensor TransformedDistribution::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto x = chain_->inverse(value);
  auto ladj = chain_->log_abs_det_jacobian(x, value);
  return base_->log_prob(x) - sum_rightmost(ladj, base_->event_dim() - chain_->domain_event_dim());
}

int TransformedDistribution::monotone_sign() const {
  int s = event_dim() == 0 ? chain_->sign() : 0;
  if (s == 0)
    throw NotImplementedError(cat("TransformedDistribution: cdf/icdf need a monotone scalar transform, got ",
                                  chain_->name()));
  return s;
}

torch::Tensor TransformedDistribution::cdf(const torch::Tensor& value) const {
  const int s = monotone_sign();
  validate_sample(value);
  auto c = base_->cdf(chain_->inverse(value));
  return s > 0 ? c : 1 - c;
}

torch::Tensor TransformedDistribution::icdf(const torch::Tensor& prob) const {
  const int s = monotone_sign();
  return chain_->forward(base_->icdf(s > 0 ? prob : 1 - prob));
}

ConstraintPtr TransformedDistribution::support() const {
  auto c = chain_->codomain();
  return constraints::independent(c, std::max<int64_t>(0, event_dim() - c->event_dim()));
}

DistPtr TransformedDistribution::expand(const Shape& batch_shape) const {
  const auto& bb = base_->batch_shape();
  const auto own = static_cast<int64_t>(batch_shape_.size());
  Shape base_batch = batch_shape;
  for (int64_t i = own; i < static_cast<int64_t>(bb.size()); ++i) base_batch.push_back(bb[i]);
  return std::make_shared<TransformedDistribution>(base_->expand(base_batch), transforms_, validate_args_);
}

DistPtr TransformedDistribution::to(const torch::TensorOptions& options) const {
  std::vector<transforms::TransformPtr> moved;
  for (const auto& t : transforms_) moved.push_back(t->to(options));
  return std::make_shared<TransformedDistribution>(base_->to(options), std::move(moved), validate_args_);
}

std::string TransformedDistribution::to_string() const {
  return cat("TransformedDistribution(", base_->to_string(), ", ", chain_->name(), ")");
}

// ---------------------------------------------------------------- MixtureSameFamily

MixtureSameFamily::MixtureSameFamily(DistPtr mixture, DistPtr component, std::optional<bool> validate)
    : component_(std::move(component)) {
  if (!mixture || !component_) throw ValueError("MixtureSameFamily: parameters 'mixture' and 'component' must be non-null");
  mixture_ = std::dynamic_pointer_cast<const Categorical>(mixture);
  if (!mixture_)
    throw ValueError(cat("MixtureSameFamily: parameter 'mixture' must be a Categorical, got ", mixture->to_string()));
  const auto& cb = component_->batch_shape();
  if (cb.empty())
    throw ShapeError(cat("MixtureSameFamily: parameter 'component' must have at least one batch dim (the components), got ",
                         component_->to_string(), " with batch_shape []"));
  const auto k = mixture_->num_categories();
  if (cb.back() != k)
    throw ShapeError(cat("MixtureSameFamily: the mixture has ", k, " categories but the rightmost batch dim of component ",
                         component_->name(), " (batch_shape ", shape_str(cb), ") is ", cb.back()));
  Shape batch(cb.begin(), cb.end() - 1);
  const auto& mb = mixture_->batch_shape();
  if (mb.size() > batch.size() || !shapes_broadcast(mb, batch))
    throw ShapeError(cat("MixtureSameFamily: mixture batch_shape ", shape_str(mb),
                         " is not compatible with component batch_shape ", shape_str(cb)));
  batch = broadcast_shapes(mb, batch, "MixtureSameFamily");
  if (Shape(cb.begin(), cb.end() - 1) != batch) component_ = component_->expand(concat(batch, {k}));
  if (mb != batch) mixture_ = std::static_pointer_cast<const Categorical>(mixture_->expand(batch));
  validate_args_ = validate;
  set_shapes(batch, component_->event_shape());
}

torch::Tensor MixtureSameFamily::pad_mixture(const torch::Tensor& x) const {
  auto r = x;
  for (int64_t i = 0; i < event_dim(); ++i) r = r.unsqueeze(-1);
  return r;
}

torch::Tensor MixtureSameFamily::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  auto idx = mixture_->sample(sample_shape);             // S + B
  auto comps = component_->sample(sample_shape);         // S + B + [K] + E
  Shape index_shape = to_shape(idx.sizes());
  index_shape.push_back(1);
  for (int64_t i = 0; i < event_dim(); ++i) index_shape.push_back(1);
  Shape expanded = to_shape(idx.sizes());
  expanded.push_back(1);
  for (auto e : event_shape_) expanded.push_back(e);
  auto index = idx.reshape(index_shape).expand(expanded);
  return comps.gather(idx.dim(), index).squeeze(idx.dim());
}

torch::Tensor MixtureSameFamily::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto x = value.unsqueeze(-1 - event_dim());
  auto lp = component_->log_prob(x);  // ... + [K]
  auto mix = torch::log_softmax(mixture_->logits, -1);
  return torch::logsumexp(lp + mix, -1);
}

torch::Tensor MixtureSameFamily::mean() const {
  auto probs = pad_mixture(mixture_->probs);
  return (probs * component_->mean()).sum(-1 - event_dim());
}

torch::Tensor MixtureSameFamily::variance() const {
  auto probs = pad_mixture(mixture_->probs);
  auto mean_cond_var = (probs * component_->variance()).sum(-1 - event_dim());
  auto var_cond_mean = (probs * (component_->mean() - mean().unsqueeze(-1 - event_dim())).pow(2)).sum(-1 - event_dim());
  return mean_cond_var + var_cond_mean;
}

torch::Tensor MixtureSameFamily::cdf(const torch::Tensor& value) const {
  if (event_dim() != 0) throw NotImplementedError("MixtureSameFamily.cdf: components must be univariate");
  validate_sample(value);
  auto c = component_->cdf(value.unsqueeze(-1));
  return (c * mixture_->probs).sum(-1);
}

DistPtr MixtureSameFamily::expand(const Shape& batch_shape) const {
  auto k = mixture_->num_categories();
  return std::make_shared<MixtureSameFamily>(mixture_->expand(batch_shape), component_->expand(concat(batch_shape, {k})),
                                             validate_args_);
}

DistPtr MixtureSameFamily::to(const torch::TensorOptions& options) const {
  return std::make_shared<MixtureSameFamily>(mixture_->to(options), component_->to(options), validate_args_);
}

std::string MixtureSameFamily::to_string() const {
  return cat("MixtureSameFamily(", mixture_->to_string(), ", ", component_->to_string(), ")");
}

// ---------------------------------------------------------------- RelaxedBernoulli

namespace {
// torch's clipped sigmoid and its inverse: clamp into [tiny, 1 - eps].
torch::Tensor clip_unit(const torch::Tensor& y) {
  return y.clamp(finfo_tiny(y.scalar_type()), 1. - finfo_eps(y.scalar_type()));
}
}  // namespace

RelaxedBernoulli::RelaxedBernoulli(TensorArg t, TensorArg probs_, std::optional<bool> validate) {
  auto ts = broadcast_all({probs_, t});
  probs = ts[0];
  temperature = ts[1];
  logits = probs_to_logits_binary(probs);
  init(to_shape(probs.sizes()), {}, validate, {"logits"});
}

RelaxedBernoulli::RelaxedBernoulli(TensorArg t, Logits logits_, std::optional<bool> validate) {
  auto ts = broadcast_all({logits_.value, t});
  logits = ts[0];
  temperature = ts[1];
  probs = torch::sigmoid(logits);
  init(to_shape(logits.sizes()), {}, validate, {"probs"});
}

torch::Tensor RelaxedBernoulli::rsample(const Shape& sample_shape) const {
  auto shape = extended_shape(sample_shape);
  auto p = clamp_probs(probs.expand(shape));
  auto u = clamp_probs(torch::rand(shape, probs.options()));
  auto x = (u.log() - (-u).log1p() + p.log() - (-p).log1p()) / temperature;
  return clip_unit(torch::sigmoid(x));
}

torch::Tensor RelaxedBernoulli::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto y = clip_unit(value.to(logits.dtype()));
  auto x = y.log() - (-y).log1p();
  // Density of the logistic variable x, then the change of variables y = sigmoid(x).
  auto diff = logits - x * temperature;
  auto lp_x = temperature.log() + diff - 2 * diff.exp().log1p();
  namespace F = torch::nn::functional;
  auto ladj = -F::softplus(-x) - F::softplus(x);
  return lp_x - ladj;
}

// ---------------------------------------------------------------- RelaxedOneHotCategorical

RelaxedOneHotCategorical::RelaxedOneHotCategorical(TensorArg t, torch::Tensor probs_, std::optional<bool> validate) {
  if (probs_.dim() < 1)
    throw ShapeError(cat("RelaxedOneHotCategorical: parameter 'probs' must have at least 1 dim, got shape ",
                         shape_str(probs_.sizes())));
  probs = probs_.is_floating_point() ? probs_ : probs_.to(torch::get_default_dtype());
  probs = probs / probs.sum(-1, true);
  logits = probs_to_logits(probs);
  setup(t, validate, "logits");
}

RelaxedOneHotCategorical::RelaxedOneHotCategorical(TensorArg t, Logits logits_, std::optional<bool> validate) {
  if (!logits_.value.is_tensor() || logits_.value.tensor().dim() < 1)
    throw ShapeError("RelaxedOneHotCategorical: parameter 'logits' must be a tensor with the categories in its last dim");
  auto l = logits_.value.tensor();
  logits = normalize_logits(l.is_floating_point() ? l : l.to(torch::get_default_dtype()));
  probs = logits.exp();
  setup(t, validate, "probs");
}

void RelaxedOneHotCategorical::setup(TensorArg t, std::optional<bool> validate, std::string_view derived) {
  temperature = t.as_tensor(logits.options());
  if (!temperature.is_floating_point()) temperature = temperature.to(logits.dtype());
  Shape batch = broadcast_shapes(to_shape(temperature.sizes()), Shape(logits.sizes().begin(), logits.sizes().end() - 1),
                                 "RelaxedOneHotCategorical");
  auto k = logits.size(-1);
  temperature = temperature.expand(batch);
  logits = logits.expand(concat(batch, {k}));
  probs = probs.expand(concat(batch, {k}));
  init(batch, {k}, validate, {derived});
}

torch::Tensor RelaxedOneHotCategorical::rsample(const Shape& sample_shape) const {
  auto shape = extended_shape(sample_shape);
  auto u = clamp_probs(torch::rand(shape, logits.options()));
  auto gumbels = -((-(u.log())).log());
  auto scores = (logits + gumbels) / temperature.unsqueeze(-1);
  return (scores - scores.logsumexp(-1, true)).exp();
}

torch::Tensor RelaxedOneHotCategorical::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  const auto k = static_cast<double>(event_shape_[0]);
  auto x = value.to(logits.dtype()).log();
  auto log_scale = std::lgamma(k) + (k - 1) * temperature.log();
  auto score = logits - x * temperature.unsqueeze(-1);
  score = (score - score.logsumexp(-1, true)).sum(-1);
  return score + log_scale - x.sum(-1);
}

}  // namespace ember::dist
