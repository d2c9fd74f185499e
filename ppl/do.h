#pragma once
/// \file `do_`: interventions (Pyro 1.8's poutine.do).
///
/// For each sample site named in `data`, the site is split in two: the original site is still
/// sampled (and recorded under its own name), while the program continues with the
/// intervened value, recorded as an observed site named `<name>__CF` that handlers outside
/// the `do_` do not see. Downstream sites therefore depend on the intervention, and the
/// intervened site no longer depends on its parents.

#include "ppl/messenger.h"
#include "ppl/value_map.h"

namespace ember {

/// Intervenes on sample sites by name.
class [[nodiscard]] DoMessenger : public Messenger {
 public:
  explicit DoMessenger(ValueMap data);
  void process(Message& msg) override;

 private:
  ValueMap data_;
};

/// Scope form (`do` is a C++ keyword, hence `do_`).
inline DoMessenger do_(ValueMap data) { return DoMessenger(std::move(data)); }
/// Wrapping form: `do_(model, {{"digit", d}})`.
template <class Fn>
auto do_(Fn fn, ValueMap data) {
  return wrap_with<DoMessenger>(std::move(fn), std::move(data));
}

}  // namespace ember
