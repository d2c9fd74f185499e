#pragma once
/// \file `block`: hide sites from the handlers outside it.

#include <functional>
#include <string>
#include <vector>

#include "ppl/messenger.h"

namespace ember {

/// Which sites `block` hides. Defaults hide everything (Pyro's hide_all=True).
/// Naming sites to `expose` (or types to `expose_types`) hides all others; naming sites to
/// `hide` (or `hide_types`) hides only those. Types: "sample", "param", "observe".
struct BlockOptions {
  BlockOptions& hide(std::vector<std::string> names) {
    hide_ = std::move(names);
    return *this;
  }
  BlockOptions& expose(std::vector<std::string> names) {
    expose_ = std::move(names);
    return *this;
  }
  BlockOptions& hide_types(std::vector<std::string> types) {
    hide_types_ = std::move(types);
    return *this;
  }
  BlockOptions& expose_types(std::vector<std::string> types) {
    expose_types_ = std::move(types);
    return *this;
  }
  BlockOptions& hide_all(bool b) {
    hide_all_ = b;
    return *this;
  }
  BlockOptions& expose_all(bool b) {
    expose_all_ = b;
    return *this;
  }
  /// A custom predicate: hide the message when it returns true (overrides the lists).
  BlockOptions& hide_fn(std::function<bool(const Message&)> f) {
    hide_fn_ = std::move(f);
    return *this;
  }
  std::optional<std::vector<std::string>> hide_, expose_, hide_types_, expose_types_;
  bool hide_all_ = true, expose_all_ = false;
  std::function<bool(const Message&)> hide_fn_;
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
