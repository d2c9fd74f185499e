// NUTS on eight schools (non-centred), one chain, one thread: wall time per draw and bulk ESS
// per second of the slowest parameter, after warmup. bench/bench_mcmc_pyro.py runs the same
// model and settings in Pyro 1.8.4 for the ratio (see docs/inference.md, "MCMC").
//
//     build/bin/bench_mcmc [warmup] [samples] [seed] [novalidate]
#include <torch/torch.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "inference/mcmc/mcmc.h"
#include "ppl/ppl.h"

using namespace ember;
using namespace ember::infer::mcmc;

int main(int argc, char** argv) {
  const int64_t warmup = argc > 1 ? std::atoll(argv[1]) : 500;
  const int64_t samples = argc > 2 ? std::atoll(argv[2]) : 500;
  const uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 0;
  const bool validate = !(argc > 4 && std::string(argv[4]) == "novalidate");
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
  MCMC mcmc(NUTS(), MCMCOptions().num_samples(samples).warmup_steps(warmup).num_chains(1).seed(seed));
  // CPU time of the process (one thread), so that other processes on a shared machine matter little.
  const std::clock_t cpu_start = std::clock();
  const auto start = std::chrono::steady_clock::now();
  mcmc.run(model);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double secs = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  int64_t leapfrogs = 0;
  for (const auto& s : mcmc.stats()[0]) leapfrogs += s.num_leapfrog;
  double min_ess = 1e300;
  for (const auto& [name, v] : mcmc.get_samples(true)) {
    torch::Tensor d = v.reshape({v.size(0), v.size(1), -1});
    for (int64_t e = 0; e < d.size(2); ++e) min_ess = std::min(min_ess, ess_bulk(d.select(2, e)));
  }
  std::printf("ember NUTS eight schools (non-centred, validation %s): %lld warmup + %lld samples in %.2f s CPU (%.2f s wall, %.2f ms CPU per iteration), "
              "%lld leapfrog steps while sampling, min bulk ESS %.0f, %.1f ESS per CPU second (whole run)\n",
              validate ? "on" : "off", (long long)warmup, (long long)samples, secs, wall, 1000 * secs / (warmup + samples), (long long)leapfrogs, min_ess,
              min_ess / secs);
  std::printf("%s", mcmc.summary_table().c_str());
}
