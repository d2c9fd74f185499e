#pragma once
/// \file Traces: the ordered record of a program's sites, and the `trace` handler that makes them.

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ppl/messenger.h"

namespace ember {

class Trace;
namespace detail {
/// Inside a catch block: rethrows the current ember::Error as the same type with
/// `t.format_shapes()` appended to its message.
[[noreturn]] void rethrow_with_shapes(const Trace& t);
}  // namespace detail

/// One recorded primitive call (a snapshot of its message).
using Site = Message;

/// Selects sites, e.g. for `log_prob_sum`.
using SiteFilter = std::function<bool(const Site&)>;

/// The ordered record of one execution: every sample and param site by name.
class Trace {
 public:
  /// Adds a site; throws RuntimeError on a second sample site of the same name, and on a
  /// plate re-declared with a different size.
  void add(const Message& msg);
  /// Removes a site (no-op if absent).
  void remove(const std::string& name);

  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  /// The site named `name`; throws RuntimeError listing the trace's sites if absent.
  const Site& at(const std::string& name) const;
  Site& at(const std::string& name);
  /// Pointer to the site, or nullptr.
  const Site* find(const std::string& name) const;

  /// Sites in execution order.
  const std::vector<Site>& sites() const { return sites_; }
  std::vector<Site>& sites() { return sites_; }
  auto begin() const { return sites_.begin(); }
  auto end() const { return sites_.end(); }
  size_t size() const { return sites_.size(); }

  /// Computes `log_prob` (scaled and masked), `unscaled_log_prob` and `log_prob_sum` of every
  /// sample site passing `filter` (cached: sites already computed are skipped). Errors name
  /// the site and show `format_shapes()`.
  void compute_log_prob(const SiteFilter& filter = {});
  /// Sum over sample sites passing `filter` of their scaled, masked log-probs.
  torch::Tensor log_prob_sum(const SiteFilter& filter = {});

  /// Names of sample sites that are not observed (plates' subsample sites excluded).
  std::vector<std::string> stochastic_nodes() const;
  /// Names of observed sample sites.
  std::vector<std::string> observation_nodes() const;
  /// Names of param sites.
  std::vector<std::string> param_nodes() const;
  /// Stochastic sites whose distribution has rsample.
  std::vector<std::string> reparameterized_nodes() const;
  /// Stochastic sites without rsample (score-function gradients).
  std::vector<std::string> nonreparam_stochastic_nodes() const;

  /// A table of each site's distribution batch | event shapes and value shape (and log-prob
  /// shape once computed), as Pyro's `format_shapes`, for debugging shape errors.
  std::string format_shapes(const std::string& title = "Trace Shapes:") const;

  /// Detaches every value (and log-prob) from the autograd graph.
  void detach();

  /// The program's return value, when traced through `trace(fn).get_trace(...)` (if a tensor).
  torch::Tensor return_value;

 private:
  std::vector<Site> sites_;
  std::unordered_map<std::string, size_t> index_;
  std::unordered_map<std::string, PlateFrame> plates_;
};

/// A non-owning shared handle to `t`, for APIs taking shared traces (e.g. ReplayMessenger);
/// the caller keeps `t` alive for as long as the handle is used.
inline std::shared_ptr<const Trace> borrow(const Trace& t) { return std::shared_ptr<const Trace>(&t, [](const Trace*) {}); }

/// True for sample sites that plates create to draw subsample indices.
inline bool is_subsample_site(const Site& s) { return s.infer.is_subsample; }

/// Records every sample (and param) site that reaches it into a Trace.
class [[nodiscard]] TraceMessenger : public Messenger {
 public:
  /// `param_only`: record param sites only (as SVI does to collect parameters).
  explicit TraceMessenger(bool param_only = false);
  void postprocess(Message& msg) override;
  /// The trace recorded so far.
  const Trace& trace() const { return trace_; }
  Trace& trace() { return trace_; }
  /// A copy of the trace.
  Trace get_trace() const { return trace_; }

 private:
  Trace trace_;
  bool param_only_;
};

/// Scope form: `auto tr = ember::trace(); model(); tr.get_trace();`.
inline TraceMessenger trace(bool param_only = false) { return TraceMessenger(param_only); }

/// A callable whose calls are traced: `ember::trace(model).get_trace(args...)`.
template <class Fn>
class TracedFn {
 public:
  explicit TracedFn(Fn fn, bool param_only = false) : fn_(std::move(fn)), param_only_(param_only) {}
  /// Runs the function, recording its trace (kept in `last_trace()`), and returns its result.
  template <class... Args>
  decltype(auto) operator()(Args&&... args) {
    TraceMessenger tm(param_only_);
    if constexpr (std::is_void_v<decltype(fn_(std::forward<Args>(args)...))>) {
      run_annotated(tm, [&] { fn_(std::forward<Args>(args)...); });
      last_ = std::move(tm.trace());  // the run is over: no copy
    } else {
      decltype(auto) result = run_annotated(tm, [&] { return fn_(std::forward<Args>(args)...); });
      last_ = std::move(tm.trace());  // the run is over: no copy
      if constexpr (std::is_convertible_v<decltype(result), torch::Tensor>) last_.return_value = result;
      return result;
    }
  }
  /// Runs the function and returns its trace.
  template <class... Args>
  Trace get_trace(Args&&... args) {
    (*this)(std::forward<Args>(args)...);
    return last_;
  }
  const Trace& last_trace() const { return last_; }

 private:
  // Re-raises Ember errors with the partial trace's shapes appended (as Pyro does).
  template <class Body>
  static decltype(auto) run_annotated(TraceMessenger& tm, Body&& body) {
    try {
      return body();
    } catch (const Error&) {
      detail::rethrow_with_shapes(tm.trace());
    }
  }

  Fn fn_;
  bool param_only_;
  Trace last_;
};

/// Wrapping form of `trace`.
template <class Fn, class = std::enable_if_t<!std::is_same_v<std::decay_t<Fn>, bool>>>
TracedFn<Fn> trace(Fn fn, bool param_only = false) {
  return TracedFn<Fn>(std::move(fn), param_only);
}

}  // namespace ember
