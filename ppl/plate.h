#pragma once
/// \file `plate`: conditional independence along one batch dim, with subsampling.
///
///     auto data = ember::plate("data", N);                 // vectorised plate, dim -1
///     ember::sample("x", Normal(0., 1.), obs);             // batch shape broadcast to [N]
///
///     auto mb = ember::plate("data", N, PlateOptions().subsample_size(64));
///     auto batch = mb.subsample(images);                   // the 64 rows drawn this step
///
/// Inside a plate every sample site's distribution is expanded to the plate's size at the
/// plate's dim (an error names the plate, site, dim and shapes if it does not broadcast), and
/// its log-prob is scaled by size / subsample_size. Nested plates get distinct dims,
/// allocated right to left. The subsample indices are drawn through a sample site named
/// after the plate, so `replay` gives the model the guide's subsample.

#include <torch/arg.h>

#include <torch/types.h>

#include <optional>
#include <string>

#include "ppl/messenger.h"

namespace ember {

/// Options of a plate (chainable setters).
struct PlateOptions {
  /// Draw a random subsample of this size each run (default: no subsampling).
  TORCH_ARG(std::optional<int64_t>, subsample_size) = std::nullopt;
  /// Use these indices as the subsample.
  TORCH_ARG(torch::Tensor, subsample);
  /// Batch dim to occupy (negative); default: the rightmost free dim.
  TORCH_ARG(std::optional<int64_t>, dim) = std::nullopt;
  /// Device of the subsample indices.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
};

/// A vectorised plate; active from construction to destruction.
class [[nodiscard]] Plate : public Messenger {
 public:
  Plate(std::string name, int64_t size, PlateOptions options = {});
  ~Plate() override;

  const std::string& name() const { return frame_.name; }
  /// Full size.
  int64_t size() const { return frame_.full_size; }
  /// Number of indices used this run.
  int64_t subsample_size() const { return frame_.size; }
  /// The batch dim this plate occupies.
  int64_t dim() const { return frame_.dim; }
  /// The subsample indices (arange(size) without subsampling).
  const torch::Tensor& indices() const { return indices_; }
  /// Selects this run's subsample of `data` along the plate's dim (`event_dim` rightmost
  /// dims of `data` are event dims and are skipped).
  torch::Tensor subsample(const torch::Tensor& data, int64_t event_dim = 0) const;

  void process(Message& msg) override;

 private:
  PlateFrame frame_;
  torch::Tensor indices_;
};

/// Creates and enters a plate: `auto p = ember::plate("data", N);`.
inline Plate plate(std::string name, int64_t size, PlateOptions options = {}) {
  return Plate(std::move(name), size, std::move(options));
}

/// Runs `body(plate)` inside a plate and returns its result.
template <class Body>
auto plate(std::string name, int64_t size, PlateOptions options, Body&& body) -> decltype(body(std::declval<Plate&>())) {
  Plate p(std::move(name), size, std::move(options));
  return body(p);
}

/// One iteration's scope of a sequential plate: adds the (dim-less) frame and the
/// subsampling scale to every site inside, without broadcasting.
class SequentialPlateMessenger : public Messenger {
 public:
  explicit SequentialPlateMessenger(const PlateFrame& frame);
  ~SequentialPlateMessenger() override;
  void process(Message& msg) override;

 private:
  PlateFrame frame_;
};

/// A sequential plate (Pyro's `for i in pyro.plate(...)`): iterations are conditionally
/// independent, each runs its own sites (whose names must differ per iteration). Iterating
/// yields the plate's (sub)sample indices; sites inside get the plate's frame and its
/// size / subsample_size scale, but no batch dim. Use it for loops whose iterations differ in
/// structure; prefer the vectorised `plate` otherwise.
///
///     for (int64_t i : ember::plate_range("data", n))
///       ember::sample("x_" + std::to_string(i), Normal(mu, 1.), data[i]);
class [[nodiscard]] PlateRange {
 public:
  PlateRange(std::string name, int64_t size, PlateOptions options = {});
  class iterator {
   public:
    iterator(PlateRange* range, int64_t position) : range_(range), position_(position) {}
    /// Enters this iteration's scope and returns its index.
    int64_t operator*();
    /// Leaves the iteration's scope.
    iterator& operator++();
    bool operator!=(const iterator& other) const { return position_ != other.position_; }

   private:
    PlateRange* range_;
    int64_t position_;
  };
  iterator begin() { return {this, 0}; }
  iterator end() { return {this, frame_.size}; }
  const torch::Tensor& indices() const { return indices_; }

 private:
  friend class iterator;
  PlateFrame frame_;
  torch::Tensor indices_;
  std::vector<int64_t> index_values_;
  std::optional<SequentialPlateMessenger> scope_;
};

/// Creates a sequential plate to iterate over.
inline PlateRange plate_range(std::string name, int64_t size, PlateOptions options = {}) {
  return PlateRange(std::move(name), size, std::move(options));
}

/// Expands `msg.fn`'s batch shape over the enclosing plates (Pyro's BroadcastMessenger);
/// throws ShapeError naming the plate, site, dim and shapes on a mismatch.
void broadcast_to_plates(Message& msg);

/// Allocates batch dims to plates (and, separately, to enumerated sites), thread-locally.
class DimAllocator {
 public:
  /// Allocates `dim` (or, if unset, the rightmost free dim) to `name`; errors on conflicts.
  int64_t allocate(const std::string& name, std::optional<int64_t> dim);
  /// Frees the dim held by `name`.
  void free(const std::string& name, int64_t dim);
  /// Number of dims currently spanned (the leftmost allocated dim's depth).
  int64_t depth() const { return static_cast<int64_t>(slots_.size()); }

 private:
  std::vector<std::string> slots_;  // slots_[i] owns dim -1 - i ("" = free)
};

/// The current thread's plate dim allocator.
DimAllocator& plate_dim_allocator();

}  // namespace ember
