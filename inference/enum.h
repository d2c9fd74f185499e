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
/// that plate; the plates that model-enumerated variables are shared across must form a
/// tree; model enumeration may not be more global than guide enumeration; enumerated sites
/// must share one subsampling scale; batch dims left of max_plate_nesting are reserved for
/// enumeration; only "parallel" enumeration of sites with finite support is implemented.

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

/// Pyro's TraceEnum_ELBO (parallel enumeration; see the file comment).
class TraceEnum_ELBO : public ELBO {
 public:
  using ELBO::ELBO;
  std::string name() const override { return "TraceEnum_ELBO"; }
  std::pair<Trace, Trace> get_traces(const Program& model, const Program& guide) override;

 protected:
  Particle particle(Trace& model_trace, Trace& guide_trace) override;
};

}  // namespace ember::infer
