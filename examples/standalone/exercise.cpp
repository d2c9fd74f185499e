// Does exercise lower blood pressure? A three-variable causal model trained by SVI, built
// against an installed Ember (see CMakeLists.txt beside this file).
//
// DAG: age -> exercise, age -> blood_pressure, exercise -> blood_pressure. Older people
// exercise less and have higher blood pressure, so regressing blood pressure on exercise
// overstates exercise's benefit. The model learns the three edge weights by SVI; the effect of
// do(exercise) then reads the causal weight alone.
#include <cmath>
#include <iostream>

#include "inference/svi.h"
#include "ppl/ppl.h"

using namespace ember;

namespace {

/// Observed people: standardised age, exercise and blood pressure, each [n].
struct People {
  torch::Tensor age, exercise, blood_pressure;
};

/// The structural causal model; observed values come in through `condition`.
void model(int64_t n) {
  auto w_age_exercise = sample("w_age_exercise", dist::Normal(0., 1.));
  auto w_age_bp = sample("w_age_bp", dist::Normal(0., 1.));
  auto w_exercise_bp = sample("w_exercise_bp", dist::Normal(0., 1.));
  auto people = plate("people", n);
  auto age = sample("age", dist::Normal(0., 1.));
  auto exercise = sample("exercise", dist::Normal(w_age_exercise * age, 1.));
  sample("blood_pressure", dist::Normal(w_age_bp * age + w_exercise_bp * exercise, 0.5));
}

/// Mean-field Normal posterior over the three weights.
void guide(int64_t) {
  for (const char* w : {"w_age_exercise", "w_age_bp", "w_exercise_bp"}) {
    auto loc = param(std::string(w) + "_loc", torch::tensor(0.));
    auto scale = param(std::string(w) + "_scale", torch::tensor(0.1), constraints::positive());
    sample(w, dist::Normal(loc, scale));
  }
}

/// Simulated data from the true mechanism: weights -0.8, 1.0 and -0.5.
People simulate(int64_t n) {
  auto age = torch::randn({n});
  auto exercise = -0.8 * age + torch::randn({n});
  auto bp = 1.0 * age - 0.5 * exercise + 0.5 * torch::randn({n});
  return {age, exercise, bp};
}

}  // namespace

int main() {
  torch::manual_seed(0);
  const int64_t n = 1000;
  const People data = simulate(n);

  auto observed = [&](int64_t n) {
    auto conditioned = condition({{"age", data.age}, {"exercise", data.exercise}, {"blood_pressure", data.blood_pressure}});
    model(n);
  };
  infer::SVI svi(observed, guide, infer::Adam(infer::AdamOptions().lr(0.05)), infer::Trace_ELBO());
  for (int step = 0; step < 400; ++step) svi.step(n);

  // Association: the least-squares slope of blood pressure on exercise (confounded by age).
  auto e = data.exercise - data.exercise.mean(), b = data.blood_pressure - data.blood_pressure.mean();
  const double slope = ((e * b).sum() / (e * e).sum()).item<double>();

  // Causation: E[bp | do(exercise = 1)] - E[bp | do(exercise = 0)], weights at their posterior means.
  torch::NoGradGuard no_grad;
  ValueMap weights;
  for (const char* w : {"w_age_exercise", "w_age_bp", "w_exercise_bp"}) weights[w] = param(std::string(w) + "_loc");
  auto mean_bp = [&](double exercise) {
    auto intervened = do_(condition(model, weights), {{"exercise", torch::full({n}, exercise)}});
    return trace(intervened).get_trace(n).at("blood_pressure").fn->mean().mean().item<double>();
  };
  const double effect = mean_bp(1.0) - mean_bp(0.0);

  std::cout << "slope of blood pressure on exercise (association): " << slope << "\n"
            << "effect of do(exercise + 1) on blood pressure:      " << effect << " (true: -0.5)\n";
  // The association is confounded (about -0.99 here); the causal effect must be near -0.5.
  return std::abs(effect + 0.5) < 0.1 && slope < -0.8 ? 0 : 1;
}
