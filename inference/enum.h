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

#include "inference/elbo.h"
#include "ppl/messenger.h"

namespace ember::infer {

/// Replaces the value of each unobserved sample site marked `enumerate = "parallel"` by its
/// enumerated support, on a fresh dim counting leftwards from `first_available_dim` (< 0).
class [[nodiscard]] EnumMessenger : public Messenger {
 public:
  explicit EnumMessenger(int64_t first_available_dim);
  void process(Message& msg) override;
  /// The next dim this messenger would allocate (one left of the last allocated).
  int64_t next_available_dim() const { return next_; }

 private:
  int64_t next_;
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
};

}  // namespace ember::infer
