// Count families beyond Poisson and Binomial: NegativeBinomial, GammaPoisson, BetaBinomial,
// and the zero-inflated distributions.
#include <torch/nn/functional/activation.h>

#include "distributions/beta.h"
#include "distributions/beta_binomial.h"
#include "distributions/gamma_poisson.h"
#include "distributions/negative_binomial.h"
#include "distributions/poisson.h"
#include "distributions/zero_inflated.h"

namespace ember::dist {

namespace {
Shape shape_of(const torch::Tensor& t) { return to_shape(t.sizes()); }
bool should_validate(std::optional<bool> v) { return v ? *v : is_validation_enabled(); }
}  // namespace

// ---------------------------------------------------------------- NegativeBinomial

NegativeBinomial::NegativeBinomial(TensorArg n, TensorArg probs_, std::optional<bool> validate) {
  auto ts = broadcast_all({probs_, n});
  probs = ts[0];
  total_count = ts[1];
  logits = probs_to_logits_binary(probs);
  init(shape_of(probs), {}, validate, {"logits"});
  check_arg("probs", probs < 1, probs, "less than 1 (torch's half-open interval [0, 1))");
}

NegativeBinomial::NegativeBinomial(TensorArg n, Logits logits_, std::optional<bool> validate) {
  auto ts = broadcast_all({logits_.value, n});
  logits = ts[0];
  total_count = ts[1];
  probs = torch::sigmoid(logits);
  init(shape_of(logits), {}, validate, {"probs"});
}

torch::Tensor NegativeBinomial::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  auto shape = extended_shape(sample_shape);
  // Poisson(lambda) with lambda ~ Gamma(total_count, rate = exp(-logits)).
  auto lambda = torch::_standard_gamma(total_count.expand(shape).contiguous()) * logits.exp();
  return torch::poisson(lambda);
}

torch::Tensor NegativeBinomial::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  namespace F = torch::nn::functional;
  auto v = value.to(logits.dtype());
  auto unnormalized = total_count * F::logsigmoid(-logits) + v * F::logsigmoid(logits);
  auto normalization = -torch::lgamma(total_count + v) + torch::lgamma(1 + v) + torch::lgamma(total_count);
  // total_count = 0 is the point mass at 0: its normaliser is 0, not lgamma(0) - lgamma(0).
  normalization = torch::where(total_count + v == 0, torch::zeros({}, normalization.options()), normalization);
  return unnormalized - normalization;
}

// ---------------------------------------------------------------- GammaPoisson

GammaPoisson::GammaPoisson(TensorArg c, TensorArg r, std::optional<bool> validate) {
  auto ts = broadcast_all({c, r});
  concentration = ts[0];
  rate = ts[1];
  init(shape_of(concentration), {}, validate);
}

torch::Tensor GammaPoisson::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  auto shape = extended_shape(sample_shape);
  auto lambda = torch::_standard_gamma(concentration.expand(shape).contiguous()) / rate;
  return torch::poisson(lambda);
}

torch::Tensor GammaPoisson::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto v = value.to(rate.dtype());
  auto post = concentration + v;
  return -lbeta(concentration, v + 1) - post.log() + concentration * rate.log() - post * rate.log1p();
}

// ---------------------------------------------------------------- BetaBinomial

BetaBinomial::BetaBinomial(TensorArg c1, TensorArg c0, TensorArg n, std::optional<bool> validate) {
  auto ts = broadcast_all({c1, c0, n});
  concentration1 = ts[0];
  concentration0 = ts[1];
  total_count = ts[2];
  init(shape_of(concentration1), {}, validate);
}

torch::Tensor BetaBinomial::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  auto shape = extended_shape(sample_shape);
  auto p = Beta(concentration1, concentration0, false).sample(sample_shape);
  return torch::binomial(total_count.expand(shape).contiguous(), p.contiguous());
}

torch::Tensor BetaBinomial::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  auto k = value.to(total_count.dtype());
  const auto& n = total_count;
  auto log_binomial = torch::lgamma(n + 1) - torch::lgamma(k + 1) - torch::lgamma(n - k + 1);
  return log_binomial + lbeta(k + concentration1, n - k + concentration0) - lbeta(concentration1, concentration0);
}

torch::Tensor BetaBinomial::mean() const { return total_count * concentration1 / (concentration1 + concentration0); }

torch::Tensor BetaBinomial::variance() const {
  auto s = concentration1 + concentration0;
  return total_count * concentration1 * concentration0 * (s + total_count) / (s.pow(2) * (s + 1));
}

torch::Tensor BetaBinomial::enumerate_support(bool expand) const {
  auto n = total_count.max().item<double>();
  if (total_count.min().item<double>() != n)
    throw NotImplementedError(cat("BetaBinomial.enumerate_support: total_count must be the same in every batch element ",
                                  "(found values from ", total_count.min().item<double>(), " to ", n, ")"));
  auto values = torch::arange(n + 1, concentration1.options());
  Shape view = {values.size(0)};
  for (size_t i = 0; i < batch_shape_.size(); ++i) view.push_back(1);
  values = values.reshape(view);
  if (expand) values = values.expand(concat({view[0]}, batch_shape_));
  return values;
}

// ---------------------------------------------------------------- ZeroInflatedDistribution

ZeroInflatedDistribution::ZeroInflatedDistribution(DistPtr base, TensorArg gate, std::optional<bool> validate) {
  setup(std::move(base), gate, false, validate);
}

ZeroInflatedDistribution::ZeroInflatedDistribution(DistPtr base, GateLogits gate_logits, std::optional<bool> validate) {
  setup(std::move(base), gate_logits.value, true, validate);
}

void ZeroInflatedDistribution::setup(DistPtr base, const TensorArg& gate, bool from_logits,
                                     std::optional<bool> validate) {
  if (!base) throw ValueError(cat(name(), ": parameter 'base' is null"));
  if (base->event_dim() != 0)
    throw ShapeError(cat(name(), ": the base must be univariate (empty event_shape), got ", base->to_string(),
                         " with event_shape ", shape_str(base->event_shape())));
  const char* key = from_logits ? "gate_logits" : "gate";
  auto g = gate.as_tensor(base->options());
  if (!g.is_floating_point()) g = g.to(base->options().dtype());
  const Shape batch = broadcast_shapes(shape_of(g), base->batch_shape(), name().c_str());
  g = g.expand(batch);
  validate_args_ = validate;
  from_logits_ = from_logits;
  if (from_logits) {
    gate_logits_ = g;
    gate_ = torch::sigmoid(g);
  } else {
    gate_ = g;
    gate_logits_ = probs_to_logits_binary(g);
    if (should_validate(validate)) {
      auto ok = constraints::unit_interval()->check(g.detach());
      if (!ok.all().item<bool>())
        throw ValueError(cat(name(), ": parameter '", key, "' of shape ", shape_str(g.sizes()), " must satisfy ",
                             constraints::unit_interval()->name(), first_false_index(ok, g),
                             ". Pass validate_args=false or call ember::dist::enable_validation(false) to skip this check."));
    }
  }
  base_ = base->batch_shape() == batch ? std::move(base) : base->expand(batch);
  set_shapes(batch, {});
}

torch::Tensor ZeroInflatedDistribution::sample(const Shape& sample_shape) const {
  torch::NoGradGuard no_grad;
  auto shape = extended_shape(sample_shape);
  auto zero = torch::bernoulli(gate_.expand(shape)).to(torch::kBool);
  auto draws = base_->sample(sample_shape);
  return torch::where(zero, torch::zeros({}, draws.options()), draws);
}

torch::Tensor ZeroInflatedDistribution::log_prob(const torch::Tensor& value) const {
  validate_sample(value);
  namespace F = torch::nn::functional;
  if (!from_logits_) {
    auto lp = (-gate_).log1p() + base_->log_prob(value);
    return torch::where(value == 0, (gate_ + lp.exp()).log(), lp);
  }
  // log(gate + (1 - gate) p(0)) = log_gate + softplus(log p(0) - gate_logits), stable in the logits.
  auto lp_minus_log_gate = -gate_logits_ + base_->log_prob(value);
  auto log_gate = -F::softplus(-gate_logits_);
  return torch::where(value == 0, F::softplus(lp_minus_log_gate) + log_gate, lp_minus_log_gate + log_gate);
}

torch::Tensor ZeroInflatedDistribution::mean() const { return (1 - gate_) * base_->mean(); }

torch::Tensor ZeroInflatedDistribution::variance() const {
  auto m = base_->mean();
  return (1 - gate_) * (m.pow(2) + base_->variance()) - mean().pow(2);
}

DistPtr ZeroInflatedDistribution::expand(const Shape& batch_shape) const {
  if (!shapes_broadcast(batch_shape, batch_shape_) || broadcast_shapes(batch_shape, batch_shape_) != batch_shape)
    throw ShapeError(cat(name(), ".expand: batch shape ", shape_str(batch_shape_), " cannot be expanded to ",
                         shape_str(batch_shape)));
  auto copy = std::static_pointer_cast<ZeroInflatedDistribution>(clone());
  copy->base_ = base_->expand(batch_shape);
  copy->gate_ = gate_.expand(batch_shape);
  copy->gate_logits_ = gate_logits_.expand(batch_shape);
  copy->batch_shape_ = batch_shape;
  return copy;
}

DistPtr ZeroInflatedDistribution::to(const torch::TensorOptions& options) const {
  auto copy = std::static_pointer_cast<ZeroInflatedDistribution>(clone());
  copy->base_ = base_->to(options);
  copy->gate_ = gate_.to(options);
  copy->gate_logits_ = gate_logits_.to(options);
  return copy;
}

std::string ZeroInflatedDistribution::to_string() const {
  return cat(name(), "(", base_->to_string(), ", ", from_logits_ ? "gate_logits: " : "gate: ",
             gate_.numel() == 1 ? cat((from_logits_ ? gate_logits_ : gate_).item<double>()) : shape_str(gate_.sizes()), ")");
}

// ---------------------------------------------------------------- ZeroInflatedPoisson, ZeroInflatedNegativeBinomial

namespace {
// Pyro broadcasts the base's parameters alone; the gate joins in setup.
DistPtr poisson_base(const TensorArg& rate, const TensorArg& gate, std::optional<bool> validate) {
  auto options = common_options({rate, gate});
  auto r = rate.as_tensor(options);
  if (!r.is_floating_point()) r = r.to(options.dtype());
  return std::make_shared<Poisson>(r, validate);
}
}  // namespace

ZeroInflatedPoisson::ZeroInflatedPoisson(TensorArg rate, TensorArg gate, std::optional<bool> validate) {
  setup(poisson_base(rate, gate, validate), gate, false, validate);
}

ZeroInflatedPoisson::ZeroInflatedPoisson(TensorArg rate, GateLogits gate_logits, std::optional<bool> validate) {
  setup(poisson_base(rate, gate_logits.value, validate), gate_logits.value, true, validate);
}

torch::Tensor ZeroInflatedPoisson::rate() const { return static_cast<const Poisson&>(*base()).rate; }

ZeroInflatedNegativeBinomial::ZeroInflatedNegativeBinomial(TensorArg n, TensorArg probs, TensorArg gate,
                                                           std::optional<bool> validate) {
  setup(std::make_shared<NegativeBinomial>(n, probs, validate), gate, false, validate);
}
ZeroInflatedNegativeBinomial::ZeroInflatedNegativeBinomial(TensorArg n, TensorArg probs, GateLogits gate_logits,
                                                           std::optional<bool> validate) {
  setup(std::make_shared<NegativeBinomial>(n, probs, validate), gate_logits.value, true, validate);
}
ZeroInflatedNegativeBinomial::ZeroInflatedNegativeBinomial(TensorArg n, Logits logits, TensorArg gate,
                                                           std::optional<bool> validate) {
  setup(std::make_shared<NegativeBinomial>(n, logits, validate), gate, false, validate);
}
ZeroInflatedNegativeBinomial::ZeroInflatedNegativeBinomial(TensorArg n, Logits logits, GateLogits gate_logits,
                                                           std::optional<bool> validate) {
  setup(std::make_shared<NegativeBinomial>(n, logits, validate), gate_logits.value, true, validate);
}

torch::Tensor ZeroInflatedNegativeBinomial::total_count() const {
  return static_cast<const NegativeBinomial&>(*base()).total_count;
}
torch::Tensor ZeroInflatedNegativeBinomial::probs() const { return static_cast<const NegativeBinomial&>(*base()).probs; }
torch::Tensor ZeroInflatedNegativeBinomial::logits() const {
  return static_cast<const NegativeBinomial&>(*base()).logits;
}

}  // namespace ember::dist
