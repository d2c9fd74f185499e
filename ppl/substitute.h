#pragma once
/// \file `substitute`: replace param values by name (Pyro's poutine.substitute).

#include "ppl/messenger.h"
#include "ppl/value_map.h"

namespace ember {

/// Param sites named in `data` return the given value instead of the param store's.
class [[nodiscard]] SubstituteMessenger : public Messenger {
 public:
  explicit SubstituteMessenger(ValueMap data);
  void process(Message& msg) override;

 private:
  ValueMap data_;
};

inline SubstituteMessenger substitute(ValueMap data) { return SubstituteMessenger(std::move(data)); }
template <class Fn>
auto substitute(Fn fn, ValueMap data) {
  return wrap_with<SubstituteMessenger>(std::move(fn), std::move(data));
}

}  // namespace ember
