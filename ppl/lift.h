#pragma once
/// \file `lift`: turn params into random variables with priors (Pyro's poutine.lift).

#include <string>
#include <unordered_map>

#include "distributions/distribution.h"
#include "ppl/messenger.h"

namespace ember {

/// Priors by param name; `lift` samples these params instead of reading the param store.
using PriorMap = std::unordered_map<std::string, dist::DistPtr>;

/// Each param site named in `priors` (or, with a single prior, every param site) becomes a
/// sample site drawn from its prior: a Bayesian version of a model with point parameters
/// (e.g. a Bayesian neural network from `module`). Other param sites are left alone.
class [[nodiscard]] LiftMessenger : public Messenger {
 public:
  explicit LiftMessenger(PriorMap priors);
  /// One prior for every param site.
  explicit LiftMessenger(dist::DistPtr prior_for_all);
  void process(Message& msg) override;

 private:
  PriorMap priors_;
  dist::DistPtr all_;
};

inline LiftMessenger lift(PriorMap priors) { return LiftMessenger(std::move(priors)); }
inline LiftMessenger lift(dist::DistPtr prior) { return LiftMessenger(std::move(prior)); }
/// Wrapping forms.
template <class Fn>
auto lift(Fn fn, PriorMap priors) {
  return wrap_with<LiftMessenger>(std::move(fn), std::move(priors));
}
template <class Fn>
auto lift(Fn fn, dist::DistPtr prior) {
  return wrap_with<LiftMessenger>(std::move(fn), std::move(prior));
}

}  // namespace ember
