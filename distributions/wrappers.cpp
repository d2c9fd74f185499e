// Distributions built around other distributions or stored values, added with issue #15:
// FoldedDistribution, LogisticNormal, ImproperUniform and Empirical.
#include "distributions/categorical.h"
#include "distributions/empirical.h"
#include "distributions/folded.h"
#include "distributions/improper_uniform.h"
#include "distributions/independent.h"
#include "distributions/normal.h"

namespace ember::dist {

// ---------------------------------------------------------------- FoldedDistribution

namespace {
DistPtr univariate(DistPtr base) {
  if (!base) throw ValueError("FoldedDistribution: parameter 'base' is null");
  if (base->event_dim() != 0)
    throw ShapeError(cat("FoldedDistribution: only univariate distributions can be folded, got ", base->to_string(),
                         " with event_shape ", shape_str(base->event_shape())));
  return base;
}
}  // namespace

FoldedDistribution::FoldedDistribution(DistPtr base, std::optional<bool> validate)
    : TransformedDistribution(univariate(std::move(base)), {transforms::abs()}, validate) {}

torch::Tensor FoldedDistribution::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  // log(p(y) + p(-y)): both signs stacked in a new leading dim and log-sum-exp'd.
  const auto dim = std::max<int64_t>(static_cast<int64_t>(batch_shape_.size()), value.dim());
  Shape view(static_cast<size_t>(dim) + 1, 1);
  view[0] = 2;
  auto plus_minus = torch::tensor({1.0, -1.0}, value.options().dtype(options().dtype())).reshape(view);
  return base_dist()->log_prob(plus_minus * value).logsumexp(0);
}

DistPtr FoldedDistribution::expand(const Shape& batch_shape) const {
  return std::make_shared<FoldedDistribution>(base_dist()->expand(batch_shape), validate_args_);
}

DistPtr FoldedDistribution::to(const torch::TensorOptions& options) const {
  return std::make_shared<FoldedDistribution>(base_dist()->to(options), validate_args_);
}

std::string FoldedDistribution::to_string() const { return cat("FoldedDistribution(", base_dist()->to_string(), ")"); }

// ---------------------------------------------------------------- LogisticNormal

namespace {
std::pair<torch::Tensor, torch::Tensor> logistic_normal_params(const TensorArg& loc, const TensorArg& scale) {
  auto ts = broadcast_all({loc, scale});
  if (ts[0].dim() == 0) return {ts[0].reshape({1}), ts[1].reshape({1})};  // as torch: a scalar is one coordinate
  return {ts[0], ts[1]};
}
}  // namespace

LogisticNormal::LogisticNormal(TensorArg loc, TensorArg scale, std::optional<bool> validate)
    : LogisticNormal(logistic_normal_params(loc, scale).first, logistic_normal_params(loc, scale).second, nullptr,
                     validate) {}

LogisticNormal::LogisticNormal(torch::Tensor loc, torch::Tensor scale, DistPtr, std::optional<bool> validate)
    : TransformedDistribution(std::make_shared<Normal>(loc, scale, validate), {transforms::stick_breaking()}, validate),
      loc_(std::move(loc)),
      scale_(std::move(scale)) {}

DistPtr LogisticNormal::expand(const Shape& batch_shape) const {
  const Shape shape = concat(batch_shape, {loc_.size(-1)});
  return std::make_shared<LogisticNormal>(loc_.expand(shape), scale_.expand(shape), validate_args_);
}

DistPtr LogisticNormal::to(const torch::TensorOptions& options) const {
  return std::make_shared<LogisticNormal>(loc_.to(options), scale_.to(options), validate_args_);
}

std::string LogisticNormal::to_string() const {
  return cat("LogisticNormal(loc: ", shape_str(loc_.sizes()), ", scale: ", shape_str(scale_.sizes()), ")");
}

// ---------------------------------------------------------------- ImproperUniform

ImproperUniform::ImproperUniform(ConstraintPtr support, Shape batch_shape, Shape event_shape)
    : support_(std::move(support)) {
  if (!support_) throw ValueError("ImproperUniform: parameter 'support' is null");
  set_shapes(std::move(batch_shape), std::move(event_shape));
}

torch::Tensor ImproperUniform::sample(const Shape&) const {
  throw NotImplementedError(cat("ImproperUniform does not support sampling (support ", support_->name(),
                                "): condition the site on data or initialise it with an init strategy"));
}

torch::Tensor ImproperUniform::log_prob(const torch::Tensor& value) const {
  const int64_t value_batch_dims = std::max<int64_t>(0, value.dim() - event_dim());
  const Shape value_batch(value.sizes().begin(), value.sizes().begin() + value_batch_dims);
  const auto shape = broadcast_shapes(value_batch, batch_shape_, "ImproperUniform.log_prob");
  auto opts = value.is_floating_point() ? value.options() : options_.device(value.device());
  return torch::zeros(shape, opts);
}

DistPtr ImproperUniform::expand(const Shape& batch_shape) const {
  auto copy = std::make_shared<ImproperUniform>(*this);
  copy->batch_shape_ = broadcast_shapes(batch_shape, batch_shape_, "ImproperUniform.expand");
  return copy;
}

DistPtr ImproperUniform::to(const torch::TensorOptions& options) const {
  auto copy = std::make_shared<ImproperUniform>(*this);
  copy->options_ = copy->options_.device(options.device());
  if (options.has_dtype()) copy->options_ = copy->options_.dtype(options.dtype());
  return copy;
}

// ---------------------------------------------------------------- Empirical

Empirical::Empirical(torch::Tensor samples, torch::Tensor log_weights, std::optional<bool> validate)
    : samples_(std::move(samples)), log_weights_(std::move(log_weights)) {
  const Shape s = to_shape(samples_.sizes()), w = to_shape(log_weights_.sizes());
  if (w.empty() || w.size() > s.size() || !std::equal(w.begin(), w.end(), s.begin()))
    throw ShapeError(cat("Empirical: the shape of 'log_weights' ", shape_str(w), " must match the leftmost shape of 'samples' ",
                         shape_str(s), " (and have at least one dim)"));
  if (!log_weights_.is_floating_point()) log_weights_ = log_weights_.to(torch::get_default_dtype());
  validate_args_ = validate;
  set_shapes(Shape(w.begin(), w.end() - 1), Shape(s.begin() + static_cast<int64_t>(w.size()), s.end()));
}

torch::Tensor Empirical::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  auto idx = Categorical(Logits{log_weights_}, false).sample(sample_shape);  // sample_shape + batch
  // Gather along the sample dim: move it first, then index each batch element.
  const auto agg = static_cast<int64_t>(batch_shape_.size());
  auto stored = samples_.movedim(agg, 0);  // [N] + batch + event
  Shape index_view = concat({numel(sample_shape)}, batch_shape_);
  for (int64_t i = 0; i < event_dim(); ++i) index_view.push_back(1);
  auto index = idx.reshape(index_view).expand(concat({numel(sample_shape)}, batch_shape_, event_shape_));
  return stored.gather(0, index).reshape(extended_shape(sample_shape));
}

torch::Tensor Empirical::log_prob(const torch::Tensor& value) const {
  if (validate_args() && to_shape(value.sizes()) != extended_shape())
    throw ShapeError(cat("Empirical.log_prob: value of shape ", shape_str(value.sizes()), " must have shape ",
                         shape_str(extended_shape()), " (batch_shape + event_shape, as Pyro)"));
  auto v = batch_shape_.empty() ? value : value.unsqueeze(static_cast<int64_t>(batch_shape_.size()));
  auto selected = samples_.eq(v);
  for (int64_t i = 0; i < event_dim(); ++i) selected = std::get<0>(selected.min(-1));
  auto probs = torch::softmax(log_weights_, -1);
  return (probs * selected.to(probs.dtype())).sum(-1).log();
}

torch::Tensor Empirical::weighted_mean(const torch::Tensor& values) const {
  if (!samples_.is_floating_point())
    throw ValueError("Empirical: the mean and variance of integer samples are undefined; convert the samples to a "
                     "floating dtype (or use OneHotCategorical for categories)");
  const auto agg = static_cast<int64_t>(batch_shape_.size());
  auto w = log_weights_;
  for (int64_t i = 0; i < event_dim(); ++i) w = w.unsqueeze(-1);
  auto relative = (w - std::get<0>(w.max(agg, true))).exp();
  return (values * relative).sum(agg) / relative.sum(agg);
}

torch::Tensor Empirical::mean() const { return weighted_mean(samples_); }

torch::Tensor Empirical::variance() const {
  auto m = mean().unsqueeze(static_cast<int64_t>(batch_shape_.size()));
  return weighted_mean((samples_ - m).pow(2));
}

torch::Tensor Empirical::enumerate_support(bool) const {
  if (!batch_shape_.empty())
    throw NotImplementedError(cat("Empirical.enumerate_support: only for an Empirical without batch dims (batch_shape ",
                                  shape_str(batch_shape_), ")"));
  return samples_;
}

DistPtr Empirical::expand(const Shape& batch_shape) const {
  const Shape batch = broadcast_shapes(batch_shape, batch_shape_, "Empirical.expand");
  if (batch != batch_shape)
    throw ShapeError(cat("Empirical.expand: batch shape ", shape_str(batch_shape_), " cannot be expanded to ",
                         shape_str(batch_shape)));
  auto n = sample_size();
  return std::make_shared<Empirical>(samples_.expand(concat(batch, {n}, event_shape_)), log_weights_.expand(concat(batch, {n})),
                                     validate_args_);
}

DistPtr Empirical::to(const torch::TensorOptions& options) const {
  auto s = samples_.is_floating_point() ? samples_.to(options) : samples_.to(options.device());
  return std::make_shared<Empirical>(s, log_weights_.to(options), validate_args_);
}

}  // namespace ember::dist
