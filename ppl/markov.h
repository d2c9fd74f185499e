#pragma once
/// \file `markov`: Markov dependency declaration, so enumeration can recycle batch dims (Pyro's
/// `pyro.markov`).
///
///     for (int64_t t : ember::markov_range(T)) {         // each step sees the previous one
///       x = ember::sample("x_" + std::to_string(t), Categorical(trans.index({x})), enumerated);
///       ember::sample("y_" + std::to_string(t), Normal(locs.index({x}), 1.), data[t]);
///     }
///
/// Each iteration (each `markov` context) is a *level*; a site may depend on the sites of its
/// own level and of the `history` levels before it, and on sites outside every markov context,
/// but not on older levels. TraceEnum_ELBO and infer_discrete use this to give an enumerated
/// site a dim that no site it can depend on holds, so an enumerated chain of any length needs
/// history + 1 enumeration dims instead of one per step. Levels nest like Pyro's: iterating
/// `markov_range` enters one more level per step and leaves them all when the loop ends; a
/// `Markov` guard enters one level for its scope (`keep` keeps a level's sites visible to the
/// next level entered at the same depth, for branching programs).
///
/// The messenger only annotates sample sites (`InferConfig::markov_scope`, `markov_depth`); it
/// changes no value. Declaring a dependency that the program does not respect (a site reading
/// a value older than `history`) gives wrong enumeration results, as in Pyro.

#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "ppl/messenger.h"

namespace ember {

/// Options of `markov`.
struct MarkovOptions {
  /// Number of previous levels a site may depend on (0: levels are independent, like a plate).
  TORCH_ARG(int64_t, history) = 1;
  /// Keep a level's sites after it exits, so a sibling level can see them (Pyro's `keep`).
  TORCH_ARG(bool, keep) = false;
};

/// The markov handler (reentrant: entering it again nests one more level).
class MarkovMessenger : public Messenger {
 public:
  explicit MarkovMessenger(MarkovOptions options = {});
  ~MarkovMessenger() override;
  /// Enters one more level (installs the messenger on the stack at the first level).
  void enter_level();
  /// Leaves the innermost level (removes the messenger at the last).
  void exit_level();
  void process(Message& msg) override;

 private:
  MarkovOptions o_;
  int64_t pos_ = -1;
  int64_t entered_ = 0;
  std::vector<std::set<std::string>> levels_;
};

/// One markov level for the guard's scope: `{ auto m = ember::markov(); ... }`.
class [[nodiscard]] Markov {
 public:
  explicit Markov(MarkovOptions options = {});
  /// Enters one level of an existing messenger (for recursive programs sharing one messenger).
  explicit Markov(std::shared_ptr<MarkovMessenger> messenger);
  ~Markov() noexcept(false);
  Markov(const Markov&) = delete;
  Markov& operator=(const Markov&) = delete;

 private:
  std::shared_ptr<MarkovMessenger> messenger_;
};

/// Creates a one-level markov scope.
inline Markov markov(MarkovOptions options = {}) { return Markov(options); }

/// `for (int64_t t : markov_range(T))`: iteration t runs in level t of one markov messenger;
/// all levels are left when the range is destroyed (at the end of the loop), as Pyro's
/// `for t in pyro.markov(range(T))`.
class [[nodiscard]] MarkovRange {
 public:
  MarkovRange(int64_t size, MarkovOptions options = {});
  ~MarkovRange() noexcept(false);
  MarkovRange(const MarkovRange&) = delete;
  MarkovRange& operator=(const MarkovRange&) = delete;
  class iterator {
   public:
    iterator(MarkovRange* range, int64_t position) : range_(range), position_(position) {}
    /// Enters the next level and returns the step's index.
    int64_t operator*();
    iterator& operator++() {
      ++position_;
      return *this;
    }
    bool operator!=(const iterator& other) const { return position_ != other.position_; }

   private:
    MarkovRange* range_;
    int64_t position_;
  };
  iterator begin() { return {this, 0}; }
  iterator end() { return {this, size_}; }

 private:
  int64_t size_;
  int64_t levels_entered_ = 0;
  MarkovMessenger messenger_;
};

/// Creates a markov range over 0 .. size-1.
inline MarkovRange markov_range(int64_t size, MarkovOptions options = {}) { return MarkovRange(size, options); }

}  // namespace ember
