#pragma once
/// \file `block`: hide sites from the handlers outside it.

#include <torch/arg.h>

#include <functional>
#include <string>
#include <vector>

#include "ppl/messenger.h"

namespace ember {

/// Which sites `block` hides. Defaults hide everything (Pyro's hide_all=True).
/// Naming sites to `expose` (or types to `expose_types`) hides all others; naming sites to
/// `hide` (or `hide_types`) hides only those. Types: "sample", "param", "observe".
struct BlockOptions {
  /// Hide only these sites.
  TORCH_ARG(std::optional<std::vector<std::string>>, hide) = std::nullopt;
  /// Hide every site but these.
  TORCH_ARG(std::optional<std::vector<std::string>>, expose) = std::nullopt;
  /// Hide only these site types.
  TORCH_ARG(std::optional<std::vector<std::string>>, hide_types) = std::nullopt;
  /// Hide every site type but these.
  TORCH_ARG(std::optional<std::vector<std::string>>, expose_types) = std::nullopt;
  /// Hide every site (the default).
  TORCH_ARG(bool, hide_all) = true;
  /// Hide no site.
  TORCH_ARG(bool, expose_all) = false;
  /// A custom predicate: hide the message when it returns true (overrides the lists).
  TORCH_ARG(std::function<bool(const Message&)>, hide_fn);

 public:
  /// The lists from braces: `BlockOptions().hide({"a", "b"})`.
  BlockOptions& hide(std::vector<std::string> names) { return hide(std::optional<std::vector<std::string>>(std::move(names))); }
  BlockOptions& expose(std::vector<std::string> names) {
    return expose(std::optional<std::vector<std::string>>(std::move(names)));
  }
  BlockOptions& hide_types(std::vector<std::string> types) {
    return hide_types(std::optional<std::vector<std::string>>(std::move(types)));
  }
  BlockOptions& expose_types(std::vector<std::string> types) {
    return expose_types(std::optional<std::vector<std::string>>(std::move(types)));
  }
};

/// Stops hidden messages from reaching handlers outside this one.
class [[nodiscard]] BlockMessenger : public Messenger {
 public:
  explicit BlockMessenger(BlockOptions options = {});
  void process(Message& msg) override;

 private:
  std::function<bool(const Message&)> hide_;
};

inline BlockMessenger block(BlockOptions options = {}) { return BlockMessenger(std::move(options)); }
template <class Fn, class = std::enable_if_t<!std::is_same_v<std::decay_t<Fn>, BlockOptions>>>
auto block(Fn fn, BlockOptions options = {}) {
  return wrap_with<BlockMessenger>(std::move(fn), std::move(options));
}

}  // namespace ember
