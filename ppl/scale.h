#pragma once
/// \file `scale` and `mask`: reweight or mask the log-probs of the sites inside.

#include "ppl/messenger.h"

namespace ember {

/// Multiplies every site's log-prob by `factor` (> 0), e.g. for KL annealing; or, given a
/// tensor of positive weights, elementwise (it must broadcast against each site's batch shape
/// without enlarging it), e.g. per-datapoint weights inside a plate.
class [[nodiscard]] ScaleMessenger : public Messenger {
 public:
  explicit ScaleMessenger(double factor);
  explicit ScaleMessenger(torch::Tensor factor);
  void process(Message& msg) override;

 private:
  double factor_ = 1.0;
  torch::Tensor tensor_;
};

inline ScaleMessenger scale(double factor) { return ScaleMessenger(factor); }
inline ScaleMessenger scale(torch::Tensor factor) { return ScaleMessenger(std::move(factor)); }
template <class Fn>
auto scale(Fn fn, double factor) {
  return wrap_with<ScaleMessenger>(std::move(fn), factor);
}
template <class Fn>
auto scale(Fn fn, torch::Tensor factor) {
  return wrap_with<ScaleMessenger>(std::move(fn), std::move(factor));
}

/// Masks the log-prob of every sample site inside: entries where `mask` is false count 0.
/// Nested masks combine by logical and.
class [[nodiscard]] MaskMessenger : public Messenger {
 public:
  explicit MaskMessenger(torch::Tensor mask);
  explicit MaskMessenger(bool mask);
  void process(Message& msg) override;

 private:
  torch::Tensor mask_;
};

inline MaskMessenger mask(torch::Tensor m) { return MaskMessenger(std::move(m)); }
inline MaskMessenger mask(bool m) { return MaskMessenger(m); }
template <class Fn>
auto mask(Fn fn, torch::Tensor m) {
  return wrap_with<MaskMessenger>(std::move(fn), std::move(m));
}

}  // namespace ember
