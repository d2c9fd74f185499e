// NUTS on eight schools (non-centred) or a logistic regression (100 features, 1,000 rows; the
// data of bench/logistic_data.py), one chain, one thread: wall time per draw and bulk ESS per
// second of the slowest parameter, after warmup. bench/bench_mcmc_pyro.py and
// bench/bench_mcmc_numpyro.py run the same models and settings in Pyro 1.8.4 and NumPyro for
// the ratio (see docs/inference.md, "MCMC", and docs/benchmarks.md).
//
//     build/bin/bench_mcmc [warmup] [samples] [seed] [validate|novalidate] [schools|logistic]
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "inference/mcmc/mcmc.h"
#include "ppl/ppl.h"

using namespace ember;
using namespace ember::infer::mcmc;

namespace {

// bench/logistic_data.py's data: SplitMix64 uniforms (integer arithmetic, so Python makes the
// same numbers), X = sqrt(3) (2u - 1) row-major, beta = 0.6 (u - 1/2), y = [u < sigmoid(X beta)].
std::pair<torch::Tensor, torch::Tensor> logistic_data(int64_t rows = 1000, int64_t features = 100) {
  uint64_t state = 20261127;
  auto uniform = [&state] {
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-53;
  };
  std::vector<double> x(static_cast<size_t>(rows * features)), beta(static_cast<size_t>(features)), y(static_cast<size_t>(rows));
  for (auto& v : x) v = std::sqrt(3.0) * (2.0 * uniform() - 1.0);
  for (auto& b : beta) b = 0.6 * (uniform() - 0.5);
  for (int64_t n = 0; n < rows; ++n) {
    double eta = 0;  // summed in index order, as logistic_data.py does
    for (int64_t d = 0; d < features; ++d) eta += x[static_cast<size_t>(n * features + d)] * beta[static_cast<size_t>(d)];
    y[static_cast<size_t>(n)] = uniform() < 1.0 / (1.0 + std::exp(-eta)) ? 1.0 : 0.0;
  }
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  return {torch::tensor(x, f64).reshape({rows, features}), torch::tensor(y, f64)};
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t warmup = argc > 1 ? std::atoll(argv[1]) : 500;
  const int64_t samples = argc > 2 ? std::atoll(argv[2]) : 500;
  const uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 0;
  const bool validate = !(argc > 4 && std::string(argv[4]) == "novalidate");
  const std::string which = argc > 5 ? argv[5] : "schools";
  if (which != "schools" && which != "logistic") {
    std::fprintf(stderr, "bench_mcmc: unknown model '%s' (schools or logistic)\n", which.c_str());
    return 2;
  }
  dist::enable_validation(validate);
  torch::set_num_threads(1);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  const torch::Tensor y = torch::tensor({28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0}, opts);
  const torch::Tensor sigma = torch::tensor({15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0}, opts);
  auto model = [&] {
    auto mu = sample("mu", dist::Normal(torch::tensor(0.0, opts), torch::tensor(5.0, opts)));
    auto tau = sample("tau", dist::HalfCauchy(torch::tensor(5.0, opts)));
    auto schools = plate("schools", 8);
    auto theta_tilde = sample("theta_tilde", dist::Normal(torch::tensor(0.0, opts), torch::tensor(1.0, opts)));
    sample("y", dist::Normal(mu + tau * theta_tilde, sigma), y);
  };
  const auto [x, y_logistic] = logistic_data();
  auto logistic = [&] {
    torch::Tensor beta;
    {
      auto features = plate("features", x.size(1));
      beta = sample("beta", dist::Normal(torch::tensor(0.0, opts), torch::tensor(1.0, opts)));
    }
    auto data = plate("data", x.size(0));
    sample("y", dist::Bernoulli(dist::Logits{torch::matmul(x, beta)}), y_logistic);
  };
  if (which == "logistic")  // bench/logistic_data.py's check values: -0.14882607 1.54162344 -1.58150352, 524
    std::printf("data: X[0, :3] = %.8f %.8f %.8f, sum(y) = %.0f\n", x[0][0].item<double>(), x[0][1].item<double>(),
                x[0][2].item<double>(), y_logistic.sum().item<double>());
  MCMC mcmc(NUTS(), MCMCOptions().num_samples(samples).warmup_steps(warmup).num_chains(1).seed(seed));
  // CPU time of the process (one thread), so that other processes on a shared machine matter little.
  const std::clock_t cpu_start = std::clock();
  const auto start = std::chrono::steady_clock::now();
  if (which == "schools") mcmc.run(model);
  else mcmc.run(logistic);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double secs = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  int64_t leapfrogs = 0;
  for (const auto& s : mcmc.stats()[0]) leapfrogs += s.num_leapfrog;
  double min_ess = 1e300;
  for (const auto& [name, v] : mcmc.get_samples(true)) {
    torch::Tensor d = v.reshape({v.size(0), v.size(1), -1});
    for (int64_t e = 0; e < d.size(2); ++e) min_ess = std::min(min_ess, ess_bulk(d.select(2, e)));
  }
  std::printf("ember NUTS %s (validation %s): %lld warmup + %lld samples in %.2f s CPU (%.2f s wall, %.2f ms CPU per iteration), "
              "%lld leapfrog steps while sampling, min bulk ESS %.0f, %.1f ESS per CPU second (whole run)\n",
              which.c_str(), validate ? "on" : "off", (long long)warmup, (long long)samples, secs, wall, 1000 * secs / (warmup + samples), (long long)leapfrogs, min_ess,
              min_ess / secs);
  if (which == "schools") std::printf("%s", mcmc.summary_table().c_str());
}
