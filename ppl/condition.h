#pragma once
/// \file `condition` and `uncondition`: observe sites by name, or turn observations back into draws.

#include "ppl/messenger.h"
#include "ppl/trace.h"
#include "ppl/value_map.h"

namespace ember {

/// Observes each sample site named in `data` at the given value (Pyro's poutine.condition).
class [[nodiscard]] ConditionMessenger : public Messenger {
 public:
  explicit ConditionMessenger(ValueMap data);
  /// Conditions on the values of a trace's sample sites.
  explicit ConditionMessenger(const Trace& trace);
  void process(Message& msg) override;

 private:
  ValueMap data_;
};

/// Scope form.
inline ConditionMessenger condition(ValueMap data) { return ConditionMessenger(std::move(data)); }
/// Wrapping form: `condition(model, {{"x", x}})`.
template <class Fn>
auto condition(Fn fn, ValueMap data) {
  return wrap_with<ConditionMessenger>(std::move(fn), std::move(data));
}

/// Forces every observed site to be sampled instead; the observation is kept in
/// `infer.obs` with `infer.was_observed` set (Pyro's poutine.uncondition).
class [[nodiscard]] UnconditionMessenger : public Messenger {
 public:
  UnconditionMessenger();
  void process(Message& msg) override;
};

inline UnconditionMessenger uncondition() { return UnconditionMessenger(); }
template <class Fn>
auto uncondition(Fn fn) {
  return wrap_with<UnconditionMessenger>(std::move(fn));
}

}  // namespace ember
