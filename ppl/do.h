#pragma once
/// \file `do_`: interventions (Pyro 1.8's poutine.do).
///
/// For each sample site named in `data`, the site is split in two: the original site is still
/// sampled (and recorded under its own name), while the program continues with the
/// intervened value, recorded as an observed site named `<name>__CF` that handlers outside
/// the `do_` do not see. Downstream sites therefore depend on the intervention, and the
/// intervened site no longer depends on its parents.

#include <string>
#include <vector>

#include "ppl/messenger.h"
#include "ppl/value_map.h"

namespace ember {

/// Intervenes on sample sites by name. Inside a counterfactual world handler
/// (counterfactual.h) the intervened value is kept beside the factual one along a world dim.
/// An intervention may carry extra batch dims (several interventions at once).
class [[nodiscard]] DoMessenger : public Messenger {
 public:
  explicit DoMessenger(ValueMap data);
  /// Throws ValueError (see `check_all_used`) when a run went through this scope and the
  /// program never sampled an intervened site.
  ~DoMessenger() noexcept(false) override;
  void process(Message& msg) override;
  /// Throws ValueError naming each intervened site the program has not sampled so far and
  /// listing the sample sites it has.
  void check_all_used() const;

 private:
  ValueMap data_;
  SiteUsage usage_;
};

/// Scope form (`do` is a C++ keyword, hence `do_`).
inline DoMessenger do_(ValueMap data) { return DoMessenger(std::move(data)); }
/// Wrapping form: `do_(model, {{"digit", d}})`; each call checks that every intervened site
/// was sampled.
template <class Fn>
auto do_(Fn fn, ValueMap data) {
  return [fn = std::move(fn), data = std::move(data)](auto&&... args) -> decltype(auto) {
    DoMessenger handler(data);
    return fn(std::forward<decltype(args)>(args)...);
  };
}

}  // namespace ember
