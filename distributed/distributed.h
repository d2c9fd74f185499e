#pragma once
/// \file Data-parallel SVI across processes and machines on LibTorch's own distributed engine:
/// c10d `ProcessGroupGloo`, with rendezvous through c10d `TCPStore`, configured as `torchrun`
/// configures PyTorch (`MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE`).
///
///     namespace edist = ember::distributed;
///     edist::ProcessGroup group(edist::group_options_from_env());
///     infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(1e-3)), infer::Trace_ELBO());
///     edist::DataParallel parallel(group);
///     parallel.attach(svi);                  // gradients averaged across ranks before each update
///     for (const auto& global_rows : batches) {
///       auto rows = edist::shard_rows(global_rows, group.rank(), group.world_size());
///       auto shard = parallel.shard_plate("data", rows.size(0), global_rows.size(0));
///       double loss = svi.step(batch_of(rows));  // the global batch's loss, on every rank
///     }
///
/// What is averaged and when: after backward, the gradients of every param the step touched
/// (module params included) are flattened into buckets and summed across ranks with one
/// all-reduce per bucket, then divided by the world size, before the optimiser steps; the
/// loss is averaged with them. A param seen for the first time is first set to rank 0's value
/// on every rank (and the step recomputed if any rank's value differed), so every rank holds
/// the same params after every step. See docs/distributed.md.
///
/// This header does not include c10d or Gloo: their headers stay inside distributed.cpp.

#include <torch/arg.h>
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "inference/svi.h"
#include "ppl/messenger.h"

namespace ember::distributed {

/// An error of data-parallel training itself (not of the model): the ranks disagree (settings,
/// params) or cannot work together.
class DataParallelError : public Error {
 public:
  using Error::Error;
};

/// Another rank stopped, could not be reached, or did not answer within the timeout. The
/// message names this rank, what it was doing, and which ranks did not report.
class CommunicationError : public DataParallelError {
 public:
  using DataParallelError::DataParallelError;
};

/// How a process joins its group (torchrun's variables).
struct GroupOptions {
  /// Address of rank 0, which keeps the rendezvous store.
  TORCH_ARG(std::string, master_addr) = "127.0.0.1";
  /// Port of the rendezvous store on the master.
  TORCH_ARG(int64_t, master_port) = 29500;
  /// This process's rank, 0 .. world_size - 1.
  TORCH_ARG(int64_t, rank) = 0;
  /// Number of processes.
  TORCH_ARG(int64_t, world_size) = 1;
  /// Seconds a rendezvous or a collective may wait for another rank before this rank stops.
  TORCH_ARG(double, timeout) = 60.0;
};

/// `base` with the torchrun variables that are set in the environment (MASTER_ADDR,
/// MASTER_PORT, RANK, WORLD_SIZE); ValueError naming a malformed one.
GroupOptions group_options_from_env(GroupOptions base = {});

/// Parses "ADDR:PORT" into `options`; ValueError naming `flag` when malformed.
void parse_master(const std::string& spec, GroupOptions& options, const std::string& flag = "--master");

/// Whether the environment names a distributed run (WORLD_SIZE is set).
bool launched_by_env();

/// One process's membership in a group of `world_size` processes: the rendezvous store
/// (served by rank 0) and a Gloo process group over TCP. Construction checks that every rank
/// was started with the same world size and that no rank is taken twice, and fails within
/// the timeout (CommunicationError naming the master and rank) if the master cannot be
/// reached or a rank does not join. Ignores SIGPIPE in this process (a peer that died must
/// give an error, not kill the process).
class ProcessGroup {
 public:
  explicit ProcessGroup(GroupOptions options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const;
  int64_t world_size() const;
  const GroupOptions& options() const;

  /// Sums each tensor (contiguous, CPU) across ranks in place: one all-reduce per tensor,
  /// all in flight together. `what` says in errors what this rank was doing.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors, const std::string& what);
  /// Copies rank 0's tensors (contiguous, CPU) into every rank's in place.
  void broadcast(std::vector<torch::Tensor>& tensors, const std::string& what);
  /// Rank 0's bytes, on every rank.
  void broadcast_bytes(std::string& bytes, const std::string& what);
  /// Waits until every rank has reached it.
  void barrier(const std::string& what);
  /// Every rank's `mine` (indexed by rank), exchanged through the store under `key` (which
  /// must be new for each exchange). For small data: checks and error reports.
  std::vector<std::string> exchange(const std::string& key, const std::string& mine, const std::string& what);

  /// Tells the other ranks, through the store, that this rank stops and why, so that their
  /// errors can say so. Never throws (the store may be gone already).
  void report_failure(const std::string& reason) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The contiguous part [begin, end) of `n` items that `rank` of `world_size` takes: sizes
/// differ by at most one (the first n % world_size ranks take one more).
std::pair<int64_t, int64_t> shard_range(int64_t n, int64_t rank, int64_t world_size);
/// This rank's part of `global_rows` (a 1-D tensor), as shard_range cuts it.
torch::Tensor shard_rows(const torch::Tensor& global_rows, int64_t rank, int64_t world_size);

/// Marks a plate as holding this rank's shard of a global minibatch, so that plate scaling and
/// the loss are those of the global batch once the ranks' losses and gradients are averaged.
/// Every sample site inside plate `plate` gets its log-prob multiplied by
///   - `world_size`, when the plate is not subsampled (it spans the rank's rows, as
///     `plate("data", batch.size(0))`: it stands for a plate over the global batch);
///   - `world_size * local_size / global_size`, when it is subsampled (its `size` is the data
///     set's and its subsample this rank's rows: size / local_size becomes size / global_size).
/// Enter it around `svi.step` (outside the model's plates). ShapeError when the plate's
/// (sub)sample size is not `local_size`.
class [[nodiscard]] ShardMessenger : public Messenger {
 public:
  ShardMessenger(std::string plate, int64_t local_size, int64_t global_size, int64_t world_size);
  ~ShardMessenger() override;
  void process(Message& msg) override;

 private:
  std::string plate_;
  int64_t local_size_, global_size_, world_size_;
};

/// Options of DataParallel.
struct DataParallelOptions {
  /// Gradients are flattened into buckets of at most this many bytes (a param larger than that
  /// gets a bucket of its own), one all-reduce per bucket; PyTorch DDP's default is 25 MiB.
  TORCH_ARG(int64_t, bucket_bytes) = 25 * 1024 * 1024;
};

/// What DataParallel has done so far (for benchmarks and logs).
struct DataParallelStats {
  /// Steps whose gradients were averaged.
  int64_t steps = 0;
  /// Steps recomputed because a new param's value differed from rank 0's.
  int64_t recomputed_steps = 0;
  /// Seconds spent in collectives (including waiting for slower ranks).
  double communication_seconds = 0;
  /// Bytes all-reduced by this rank (gradient buckets and the per-step check).
  int64_t bytes_all_reduced = 0;
  /// All-reduce calls.
  int64_t all_reduce_calls = 0;
  /// Buckets and bytes of the last step.
  int64_t last_step_buckets = 0;
  int64_t last_step_bytes = 0;
};

/// Data-parallel SVI: install with `attach(svi)`; see the file comment.
class DataParallel {
 public:
  explicit DataParallel(ProcessGroup& group, DataParallelOptions options = {});

  /// Installs the gradient hook on `svi` (any infer::SVI).
  template <class SVI>
  void attach(SVI& svi) {
    svi.set_gradient_hook(hook());
  }
  /// The hook that `attach` installs (runs `after_backward`).
  infer::GradientHook hook();

  /// Between backward and the optimiser step: checks that every rank touched the same params
  /// (DataParallelError naming a param that exists on some ranks only, or whose shape differs), sets
  /// params seen for the first time to rank 0's values (nullopt: the step must be recomputed),
  /// then averages gradients and the loss across ranks; returns the average loss.
  std::optional<double> after_backward(const std::vector<std::string>& params, double loss);

  /// Resume: rank 0 sends the checkpoint `path` (written by `svi.save`) to every rank, and
  /// each loads it with `svi.load`: rank 0 from `path`, restoring its RNG state; the others
  /// from a temporary copy, keeping their own RNG state. Only rank 0 needs the file.
  template <class SVI>
  void load(SVI& svi, const std::string& path) {
    ReceivedCheckpoint local = receive_checkpoint(path);
    svi.load(local.path, infer::CheckpointOptions().rng(group_.rank() == 0));
    mark_store_synced();
  }

  /// Enters a ShardMessenger for this group's world size (see ShardMessenger).
  ShardMessenger shard_plate(const std::string& plate, int64_t local_size, int64_t global_size) const;

  const DataParallelStats& stats() const { return stats_; }
  ProcessGroup& group() { return group_; }

 private:
  /// A checkpoint's local path: rank 0's own file, or a temporary copy removed on destruction.
  struct ReceivedCheckpoint {
    std::string path;
    bool temporary = false;
    ReceivedCheckpoint() = default;
    ReceivedCheckpoint(const ReceivedCheckpoint&) = delete;
    ReceivedCheckpoint(ReceivedCheckpoint&& other) noexcept : path(std::move(other.path)), temporary(other.temporary) {
      other.temporary = false;
    }
    ~ReceivedCheckpoint();
  };
  ReceivedCheckpoint receive_checkpoint(const std::string& path);
  /// Records that every param in the current store holds rank 0's value.
  void mark_store_synced();

  ProcessGroup& group_;
  DataParallelOptions options_;
  /// Params whose values are known to agree on every rank.
  std::set<std::string> synced_;
  DataParallelStats stats_;
};

}  // namespace ember::distributed
