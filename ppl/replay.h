#pragma once
/// \file `replay`: reuse the values of another execution's trace.

#include <memory>

#include "ppl/messenger.h"
#include "ppl/trace.h"
#include "ppl/value_map.h"

namespace ember {

/// Gives each unobserved sample site the value recorded at the same name in `trace`
/// (and, optionally, param sites the values in `params`). A site observed in the replayed
/// trace, or recorded there as a param, cannot be replayed: RuntimeError names it.
class [[nodiscard]] ReplayMessenger : public Messenger {
 public:
  /// Replays a copy of `trace` (safe with temporaries).
  explicit ReplayMessenger(Trace trace, ValueMap params = {});
  /// Replays a shared trace without copying it (see `borrow` in trace.h for a trace the
  /// caller keeps alive).
  explicit ReplayMessenger(std::shared_ptr<const Trace> trace, ValueMap params = {});
  void process(Message& msg) override;

 private:
  std::shared_ptr<const Trace> trace_;
  ValueMap params_;
};

inline ReplayMessenger replay(Trace trace, ValueMap params = {}) { return ReplayMessenger(std::move(trace), std::move(params)); }
/// Wrapping form: `replay(model, guide_trace)`. The trace is shared by every call, not copied.
template <class Fn>
auto replay(Fn fn, Trace trace, ValueMap params = {}) {
  return wrap_with<ReplayMessenger>(std::move(fn), std::shared_ptr<const Trace>(std::make_shared<Trace>(std::move(trace))),
                                    std::move(params));
}

}  // namespace ember
