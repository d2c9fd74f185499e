#pragma once
/// \file `infer_config` and `config_enumerate`: set per-site inference options.

#include <torch/arg.h>

#include <functional>
#include <string>

#include "ppl/messenger.h"

namespace ember {

/// Lets `config_fn(msg, infer)` edit the infer config of every sample site inside.
class [[nodiscard]] InferConfigMessenger : public Messenger {
 public:
  using ConfigFn = std::function<void(const Message&, InferConfig&)>;
  explicit InferConfigMessenger(ConfigFn config_fn);
  void process(Message& msg) override;

 private:
  ConfigFn config_fn_;
};

inline InferConfigMessenger infer_config(InferConfigMessenger::ConfigFn f) { return InferConfigMessenger(std::move(f)); }
template <class Fn>
auto infer_config(Fn fn, InferConfigMessenger::ConfigFn f) {
  return wrap_with<InferConfigMessenger>(std::move(fn), std::move(f));
}

/// Options of `config_enumerate`.
struct EnumerateOptions {
  /// "parallel" (default) or "sequential".
  TORCH_ARG(std::string, strategy) = "parallel";
  /// Expand enumerated values to the full batch shape.
  TORCH_ARG(bool, expand) = false;
  /// Draw this many samples instead of enumerating exactly (for sites without finite support).
  TORCH_ARG(int64_t, num_samples) = 0;
};

/// Marks every unobserved sample site with enumerable support (or, with num_samples, every
/// unobserved site) for enumeration, unless the site already chose a strategy.
InferConfigMessenger::ConfigFn enumerate_config(EnumerateOptions options = {});

/// Scope form.
inline InferConfigMessenger config_enumerate(EnumerateOptions options = {}) {
  return InferConfigMessenger(enumerate_config(std::move(options)));
}
/// Wrapping form: `config_enumerate(guide)`.
template <class Fn, class = std::enable_if_t<!std::is_same_v<std::decay_t<Fn>, EnumerateOptions>>>
auto config_enumerate(Fn fn, EnumerateOptions options = {}) {
  return wrap_with<InferConfigMessenger>(std::move(fn), enumerate_config(std::move(options)));
}

}  // namespace ember
