#pragma once
/// \file `condition` and `uncondition`: observe sites by name, or turn observations back into draws.

#include <string>
#include <vector>

#include "ppl/messenger.h"
#include "ppl/trace.h"
#include "ppl/value_map.h"

namespace ember {

/// Observes each sample site named in `data` at the given value (Pyro's poutine.condition).
class [[nodiscard]] ConditionMessenger : public Messenger {
 public:
  /// `check_sites`: at the end of the scope (after a run went through it), a name in `data`
  /// that the program never sampled is a ValueError naming it and listing the sample sites
  /// (the `condition` functions below check; algorithms that condition on a guide's trace,
  /// whose auxiliary sites the model lacks, do not).
  explicit ConditionMessenger(ValueMap data, bool check_sites = false);
  /// Conditions on the values of a trace's sample sites.
  explicit ConditionMessenger(const Trace& trace);
  ~ConditionMessenger() noexcept(false) override;
  void process(Message& msg) override;
  /// Throws ValueError naming each conditioned site not sampled so far (with check_sites).
  void check_all_used() const;

 private:
  ValueMap data_;
  bool check_sites_ = false;
  SiteUsage usage_;
};

/// Scope form; observing a site the program never samples is an error at the end of the scope.
inline ConditionMessenger condition(ValueMap data) { return ConditionMessenger(std::move(data), /*check_sites=*/true); }
/// Wrapping form: `condition(model, {{"x", x}})`; each call checks that every observed name
/// was sampled.
template <class Fn>
auto condition(Fn fn, ValueMap data) {
  return [fn = std::move(fn), data = std::move(data)](auto&&... args) -> decltype(auto) {
    ConditionMessenger handler(data, /*check_sites=*/true);
    return fn(std::forward<decltype(args)>(args)...);
  };
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
