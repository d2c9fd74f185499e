#pragma once
/// \file `lift`: turn params into random variables with priors (Pyro's poutine.lift).

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "distributions/distribution.h"
#include "ppl/messenger.h"

namespace ember {

/// Priors by param name; `lift` samples these params instead of reading the param store.
using PriorMap = std::unordered_map<std::string, dist::DistPtr>;

/// Each param site named in `priors` (or, with a single prior, every param site) becomes a
/// sample site drawn from its prior, as Pyro's poutine.lift: a Bayesian version of a model
/// with point parameters. Other param sites are left alone.
///  - One draw per param per scope: reading the param again returns the same value (the
///    repeated read is hidden from outer handlers, so traces record the site once). The
///    wrapping form `lift(model, priors)` opens a new scope per call.
///  - The prior is used as given: its shape is the draw's shape (a scalar prior on a [3]
///    param draws one scalar, as in Pyro).
///  - Module parameters (from `module`) can be lifted, as Pyro's `random_module`: a prior is
///    found by the full name `net$$$fc.weight` or by the parameter path `fc.weight`; the
///    module computes with the draw until the scope ends, then gets its own values back.
///    The draw must have the parameter's shape and must not carry gradients (LibTorch modules
///    compute with their own leaf tensors, so a guide's gradients could not flow).
class [[nodiscard]] LiftMessenger : public Messenger {
 public:
  explicit LiftMessenger(PriorMap priors);
  /// One prior for every param site.
  explicit LiftMessenger(dist::DistPtr prior_for_all);
  ~LiftMessenger() override;
  void process(Message& msg) override;
  void postprocess(Message& msg) override;

 private:
  dist::DistPtr prior_of(const std::string& name) const;
  PriorMap priors_;
  dist::DistPtr all_;
  std::unordered_map<std::string, torch::Tensor> draws_;           // this scope's draws by name
  std::unordered_set<std::string> lifting_;                        // lifted, awaiting their value
  std::unordered_map<std::string, torch::Tensor> module_params_;   // module tensors by site name
  std::vector<std::pair<torch::Tensor, torch::Tensor>> module_originals_;
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
