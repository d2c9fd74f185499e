#pragma once
/// \file Parallel enumeration of discrete latent sites, and TraceEnum_ELBO.
///
/// Mark sites with `config_enumerate` (or `InferConfig{.enumerate = "parallel"}`):
///
///     auto guide = ember::config_enumerate(my_guide);   // enumerate the guide's discrete sites
///     ember::infer::TraceEnum_ELBO elbo(ember::infer::ELBOOptions().max_plate_nesting(1));
///
/// Each enumerated site gets, instead of a draw, the whole support of its distribution laid
/// along a fresh batch dim to the left of every plate (dims -1 .. -max_plate_nesting belong
/// to plates; the first enumerated site gets -max_plate_nesting-1, the next one further
/// left, guide sites first, then model sites). Downstream sites broadcast over those dims.
///
/// Model sites enumerated in the model (and absent from the guide) are summed out exactly
/// by variable elimination along the plate tree; guide sites enumerated in the guide are
/// averaged exactly under the guide's probabilities. Restrictions (each one an error that
/// names the site or plate): a variable enumerated inside a plate may only be used inside
/// that plate; a site may not depend jointly on model-enumerated variables of independent
/// (crossed) plates (independent components in crossed plates are contracted separately);
/// model enumeration may not be more global than guide enumeration; enumerated sites
/// must share one subsampling scale; batch dims left of max_plate_nesting are reserved for
/// enumeration; enumeration by sampling (`num_samples`) is not implemented. Guide sites may
/// also be enumerated "sequential"ly (one run of guide and model per value).

#include <map>
#include <memory>

#include "inference/elbo.h"
#include "ppl/messenger.h"

namespace ember::infer {

/// Enumeration dims and variable ids handed out to one (guide, model) pair (Pyro's
/// _EnumAllocator): a site outside every `markov` context gets a global dim that is never
/// reused; a site inside one gets the rightmost dim (left of the global ones) that no site
/// it can depend on holds. Every enumerated variable gets a unique id, so a recycled dim is
/// told apart by id.
struct EnumAllocator {
  explicit EnumAllocator(int64_t first_available_dim);
  /// The next global dim.
  int64_t next_dim;
  /// The next variable id.
  int64_t next_id = 0;
  /// Global dims and the ids of the variables holding them.
  std::map<int64_t, int64_t> global_dims;
};

/// Replaces the value of each unobserved sample site marked `enumerate = "parallel"` by its
/// enumerated support, on a dim left of `first_available_dim` (< 0) given by the allocator
/// (see EnumAllocator and markov.h). Every sample site records in `InferConfig::enum_ids` which
/// enumerated variable each enumeration dim of its log-prob stands for.
class [[nodiscard]] EnumMessenger : public Messenger {
 public:
  explicit EnumMessenger(int64_t first_available_dim);
  /// Continues an allocator (the model's messenger continues the guide's).
  explicit EnumMessenger(std::shared_ptr<EnumAllocator> allocator);
  void process(Message& msg) override;
  void postprocess(Message& msg) override;
  /// The next global dim this messenger would allocate.
  int64_t next_available_dim() const { return alloc_->next_dim; }
  /// The allocator (shared with a messenger that continues it).
  const std::shared_ptr<EnumAllocator>& allocator() const { return alloc_; }

 private:
  std::shared_ptr<EnumAllocator> alloc_;
  std::map<std::string, int64_t> markov_depths_;
  std::map<std::string, std::map<int64_t, int64_t>> value_dims_;
};

/// One value chosen for a guide site enumerated sequentially: its index in the site's
/// support and the support's size.
struct SequentialChoice {
  std::string site;
  int64_t index = 0;
  int64_t total = 0;
};

/// Gives each unobserved sample site marked `enumerate = "sequential"` the value of its
/// support that `assignment` chooses, or (a site not in it) its first value, recording the
/// site in `discovered`. The site's infer config gets `extra["_enum_total"]` (the support's
/// size), which TraceEnum_ELBO uses as Pyro's Dice does.
class [[nodiscard]] SequentialEnumMessenger : public Messenger {
 public:
  SequentialEnumMessenger(const std::vector<SequentialChoice>& assignment, std::vector<SequentialChoice>& discovered);
  void process(Message& msg) override;

 private:
  const std::vector<SequentialChoice>& assignment_;
  std::vector<SequentialChoice>& discovered_;
};

/// Pyro's TraceEnum_ELBO (see the file comment). Guide sites marked "sequential" are
/// enumerated by running guide and model once per combination of their values (Pyro's
/// `iter_discrete_traces`): each run's ELBO counts with weight q(values), and the runs are
/// summed.
class TraceEnum_ELBO : public ELBO {
 public:
  using ELBO::ELBO;
  std::string name() const override { return "TraceEnum_ELBO"; }
  std::pair<Trace, Trace> get_traces(const Program& model, const Program& guide) override;

 protected:
  Particle particle(Trace& model_trace, Trace& guide_trace) override;
  double run_particles(const Program& model, const Program& guide,
                       const std::function<void(torch::Tensor)>& on_surrogate) override;

 private:
  // The sequential choices of the run in progress (empty: first value of every site).
  std::vector<SequentialChoice> assignment_;
  std::vector<SequentialChoice> discovered_;
  // Plate dims (max_plate_nesting, plus the particle dim when vectorised) of the traces.
  int64_t plates_ = 0;
};

}  // namespace ember::infer
