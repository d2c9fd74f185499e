// Discrete distributions.
#include "distributions/bernoulli.h"

namespace ember::dist {

// ---------------------------------------------------------------- Bernoulli

Bernoulli::Bernoulli(TensorArg probs_, std::optional<bool> validate) {
  probs = broadcast_all({probs_})[0];
  logits = probs_to_logits_binary(probs);
  init(to_shape(probs.sizes()), {}, validate);
}

Bernoulli::Bernoulli(Logits logits_, std::optional<bool> validate) {
  logits = broadcast_all({logits_.value})[0];
  probs = torch::sigmoid(logits);
  init(to_shape(logits.sizes()), {}, validate);
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
  // Broadcast first: binary_cross_entropy_with_logits requires equal shapes.
  auto shapes = torch::broadcast_tensors({logits, value});
  return -torch::binary_cross_entropy_with_logits(shapes[0], shapes[1].to(logits.dtype()), {}, {}, at::Reduction::None);
}

torch::Tensor Bernoulli::entropy() const {
  return torch::binary_cross_entropy_with_logits(logits, probs, {}, {}, at::Reduction::None);
}

torch::Tensor Bernoulli::enumerate_support(bool expand) const {
  Shape shape(1 + batch_shape_.size(), 1);
  shape[0] = 2;
  auto values = torch::arange(2, probs.options()).reshape(shape);
  if (expand) {
    shape = concat({2}, batch_shape_);
    values = values.expand(shape);
  }
  return values;
}

}  // namespace ember::dist
