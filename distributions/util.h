#pragma once
/// \file Helpers for writing distributions: numbers-or-tensors arguments and broadcasting.

#include <torch/types.h>

#include <array>
#include <vector>

#include "distributions/shape.h"

namespace ember::dist {

/// A distribution argument given as a tensor or as a plain number (`Normal(0., 1.)`).
/// Numbers become tensors with the dtype and device of the tensor arguments beside them.
class TensorArg {
 public:
  TensorArg(torch::Tensor t) : tensor_(std::move(t)) {}  // NOLINT: implicit by design
  TensorArg(double x) : number_(x) {}                     // NOLINT
  TensorArg(float x) : number_(x) {}                      // NOLINT
  TensorArg(int x) : number_(x) {}                        // NOLINT
  TensorArg(int64_t x) : number_(static_cast<double>(x)) {}  // NOLINT
  bool is_tensor() const { return tensor_.defined(); }
  const torch::Tensor& tensor() const { return tensor_; }
  double number() const { return number_; }
  /// The tensor, or the number as a 0-dim tensor with `options`.
  torch::Tensor as_tensor(const torch::TensorOptions& options) const {
    return is_tensor() ? tensor_ : torch::scalar_tensor(number_, options);
  }

 private:
  torch::Tensor tensor_;
  double number_ = 0;
};

/// Converts arguments to tensors of a common floating dtype and device (that of the first
/// floating tensor argument, else the default dtype on CPU) and broadcasts them together.
std::vector<torch::Tensor> broadcast_all(const std::vector<TensorArg>& args);

/// Options of the first floating tensor argument, or the default dtype on CPU.
torch::TensorOptions common_options(const std::vector<TensorArg>& args);

/// " at index [i, j] (value x)" for the first false entry of `ok` (values optional), or "".
std::string first_false_index(const torch::Tensor& ok, const torch::Tensor& values = {});

/// Clamps probabilities into [eps, 1 - eps] for the tensor's dtype (torch's clamp_probs).
torch::Tensor clamp_probs(const torch::Tensor& probs);
/// Binary logits from probabilities: log p - log(1 - p), with probs clamped.
torch::Tensor probs_to_logits_binary(const torch::Tensor& probs);
/// Normalised log-probabilities from unnormalised logits (last dim): logits - logsumexp.
torch::Tensor normalize_logits(const torch::Tensor& logits);
/// Log-probabilities from categorical probabilities (last dim), with probs clamped.
torch::Tensor probs_to_logits(const torch::Tensor& probs);
/// Machine epsilon of a floating dtype (torch.finfo(dtype).eps).
double finfo_eps(torch::ScalarType dtype);
/// Smallest positive normal number of a floating dtype (torch.finfo(dtype).tiny).
double finfo_tiny(torch::ScalarType dtype);
/// log B(a, b) = lgamma(a) + lgamma(b) - lgamma(a + b).
torch::Tensor lbeta(const torch::Tensor& a, const torch::Tensor& b);

/// Tag selecting the logits parameterisation: `Bernoulli(Logits{l})`, `Categorical(Logits{l})`.
struct Logits {
  TensorArg value;
};

}  // namespace ember::dist
