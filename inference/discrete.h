#pragma once
/// \file `infer_discrete`: MAP or posterior samples of a model's enumerated discrete sites
/// (Pyro's `pyro.infer.infer_discrete`).
///
///     auto model = ember::config_enumerate(hmm);                  // mark the discrete sites
///     auto viterbi = ember::infer::infer_discrete(model, ember::infer::InferDiscreteOptions()
///                                                            .first_available_dim(-2).temperature(0));
///     ember::Trace tr = ember::trace(viterbi).get_trace(data);     // x_t: the jointly most likely path
///
/// The model runs once with every site marked `enumerate = "parallel"` enumerated (dims from
/// `first_available_dim` leftwards, recycled inside `markov` contexts), its log-densities are
/// contracted by variable elimination along the plate tree -- sum-product at temperature 1,
/// max-product at temperature 0 -- and the eliminated variables are then drawn backwards
/// (forward filtering, backward sampling): at temperature 1 a draw from the exact joint
/// posterior of all enumerated sites given the others, at temperature 0 the joint MAP (for an
/// HMM, the Viterbi path). The model then runs again with those values at the enumerated sites
/// and every other site as usual; that run's result is returned.
///
/// Restrictions as TraceEnum_ELBO's model enumeration: a variable enumerated inside a plate may
/// only be used inside it, and sites may not depend jointly on variables of crossed plates.

#include <torch/arg.h>

#include <map>
#include <optional>
#include <string>

#include "inference/elbo.h"
#include "ppl/messenger.h"

namespace ember::infer {

/// Options of `infer_discrete`.
struct InferDiscreteOptions {
  /// The first (rightmost) dim available for enumeration, left of every plate: -1 -
  /// max_plate_nesting. Unset: found from one run of the model (its deepest plate).
  TORCH_ARG(std::optional<int64_t>, first_available_dim) = std::nullopt;
  /// 1: a posterior sample; 0: the MAP (max-product).
  TORCH_ARG(int64_t, temperature) = 1;
};

/// The value `infer_discrete` gives each enumerated site of one run of `model`, by name.
std::map<std::string, torch::Tensor> infer_discrete_values(const Program& model, const InferDiscreteOptions& options = {});

/// Gives the named unobserved sample sites the given values (what infer_discrete replays).
class [[nodiscard]] SetValuesMessenger : public Messenger {
 public:
  explicit SetValuesMessenger(std::map<std::string, torch::Tensor> values);
  void process(Message& msg) override;

 private:
  std::map<std::string, torch::Tensor> values_;
};

/// Wraps `model`: each call runs it with its enumerated discrete sites set to a joint
/// posterior sample (temperature 1) or the joint MAP (temperature 0) and returns its result.
template <class Fn>
auto infer_discrete(Fn model, InferDiscreteOptions options = {}) {
  return [model = std::move(model), options](auto&&... args) -> decltype(auto) {
    auto values = infer_discrete_values([&] { model(args...); }, options);
    SetValuesMessenger set(std::move(values));
    return model(args...);
  };
}

}  // namespace ember::infer
