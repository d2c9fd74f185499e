#pragma once
/// \file Messengers (effect handlers) and the thread-local stack they live on.
///
/// A messenger is installed on this thread's handler stack by constructing it, and removed
/// when it is destroyed (RAII scope):
///
///     {
///       auto tr = ember::trace();                 // installed
///       model();
///       ember::Trace t = tr.get_trace();
///     }                                           // removed
///
/// Every handler also has a wrapping form that turns a callable into a handled callable:
/// `ember::condition(model, data)` returns a function that installs a condition messenger
/// around each call of `model`.
///
/// `apply_stack(msg)` runs `process` from the innermost messenger outwards, stopping early
/// if one sets `msg.stop`, computes the default value if nobody set one, then runs
/// `postprocess` on the visited messengers from the outermost inwards.

#include <utility>
#include <vector>

#include "ppl/message.h"

namespace ember {

/// Base class of all handlers.
class Messenger {
 public:
  Messenger() = default;
  Messenger(const Messenger&) = delete;
  Messenger& operator=(const Messenger&) = delete;
  /// Removes this messenger from the stack if it is installed. Not noexcept: a handler may
  /// report misuse found at the end of its scope (see DoMessenger), never while unwinding.
  virtual ~Messenger() noexcept(false);

  /// Called on the way in, innermost handler first.
  virtual void process(Message& msg) {}
  /// Called on the way out, outermost visited handler first.
  virtual void postprocess(Message& msg) {}

  /// Whether this messenger is on the current thread's stack.
  bool active() const { return active_; }

 protected:
  /// Pushes this messenger on the current thread's stack (called by derived constructors).
  void enter();
  /// Pops it; it must be the innermost messenger.
  void exit();

 private:
  bool active_ = false;
};

/// Sends `msg` through the current thread's handler stack (see file comment).
void apply_stack(Message& msg);

/// The current thread's handler stack, outermost first (read-only view, for inspection).
const std::vector<Messenger*>& handler_stack();

/// True when at least one handler is installed on this thread.
bool am_i_wrapped();

/// Wraps `fn` so that each call runs inside a freshly constructed `Handler(handler_args...)`.
template <class Handler, class Fn, class... HandlerArgs>
auto wrap_with(Fn fn, HandlerArgs... handler_args) {
  return [fn = std::move(fn), handler_args...](auto&&... args) -> decltype(auto) {
    Handler handler(handler_args...);
    return fn(std::forward<decltype(args)>(args)...);
  };
}

}  // namespace ember
