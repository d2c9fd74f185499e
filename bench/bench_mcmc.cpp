// NUTS on eight schools (non-centred) and on a logistic regression (100 features x 1000 rows),
// one LibTorch thread: CPU time, leapfrog steps, and bulk ESS per CPU second of the slowest
// parameter. bench/bench_mcmc_pyro.py runs the same models, data and settings in Pyro 1.8.4
// for the ratio (docs/benchmarks.md, "MCMC"; docs/mcmc.md).
//
//     build/bin/bench_mcmc [--model eight_schools|logistic] [--warmup N] [--samples N] [--seed S]
//                          [--chains C] [--vectorize] [--novalidate] [--profile N]
//
// --profile N: also time N evaluations of the potential and its gradient at the first draw
// (the per-leapfrog cost without the kernel's own work).
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "inference/mcmc/mcmc.h"
#include "ppl/ppl.h"

using namespace ember;
using namespace ember::infer::mcmc;

namespace {

// The logistic regression's data, reproducible bit for bit in Python (bench_mcmc_pyro.py):
// a 32-bit linear congruential generator gives uniforms; features are uniform with unit
// variance, labels Bernoulli(sigmoid(x . beta_true)) with beta_true_j = 0.25 (j mod 5 - 2).
struct LogisticData {
  torch::Tensor x, y;
};

LogisticData logistic_data(int64_t rows, int64_t features) {
  uint64_t state = 12345;
  auto uniform = [&] {
    state = (1664525ULL * state + 1013904223ULL) % 4294967296ULL;
    return (static_cast<double>(state) + 0.5) / 4294967296.0;
  };
  std::vector<double> x(rows * features), y(rows);
  for (auto& v : x) v = (uniform() - 0.5) * std::sqrt(12.0);
  for (int64_t i = 0; i < rows; ++i) {
    double logit = 0;
    for (int64_t j = 0; j < features; ++j) logit += x[i * features + j] * 0.25 * static_cast<double>(j % 5 - 2);
    y[i] = uniform() < 1.0 / (1.0 + std::exp(-logit)) ? 1.0 : 0.0;
  }
  return {torch::tensor(x, torch::kFloat64).reshape({rows, features}), torch::tensor(y, torch::kFloat64)};
}

}  // namespace

int main(int argc, char** argv) {
  std::string which = "eight_schools";
  int64_t warmup = 500, samples = 500, chains = 1, profile = 0;
  uint64_t seed = 0;
  bool validate = true, vectorize = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) throw std::runtime_error("bench_mcmc: " + a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--model") which = next();
    else if (a == "--warmup") warmup = std::stoll(next());
    else if (a == "--samples") samples = std::stoll(next());
    else if (a == "--seed") seed = std::stoull(next());
    else if (a == "--chains") chains = std::stoll(next());
    else if (a == "--profile") profile = std::stoll(next());
    else if (a == "--vectorize") vectorize = true;
    else if (a == "--novalidate") validate = false;
    else throw std::runtime_error("bench_mcmc: unknown argument " + a);
  }
  dist::enable_validation(validate);
  torch::set_num_threads(1);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  const torch::Tensor y8 = torch::tensor({28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0}, opts);
  const torch::Tensor sigma8 = torch::tensor({15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0}, opts);
  const LogisticData data = logistic_data(1000, 100);
  Model model;
  if (which == "eight_schools") {
    model = [&] {
      auto mu = sample("mu", dist::Normal(torch::tensor(0.0, opts), torch::tensor(5.0, opts)));
      auto tau = sample("tau", dist::HalfCauchy(torch::tensor(5.0, opts)));
      auto schools = plate("schools", 8);
      auto theta_tilde = sample("theta_tilde", dist::Normal(torch::tensor(0.0, opts), torch::tensor(1.0, opts)));
      sample("y", dist::Normal(mu + tau * theta_tilde, sigma8), y8);
    };
  } else if (which == "logistic") {
    model = [&] {
      auto beta = sample("beta", dist::Normal(torch::zeros({100}, opts), torch::tensor(1.0, opts)).to_event(1));
      auto rows = plate("data", 1000);
      // Vectorised chains give beta the shape [chains, 1, 100] (the batch dim left of the plate).
      const torch::Tensor logits = vectorize ? torch::matmul(beta.reshape({-1, 100}), data.x.t()) : torch::mv(data.x, beta);
      sample("y", dist::Bernoulli(dist::Logits{logits}), data.y);
    };
  } else {
    throw std::runtime_error("bench_mcmc: unknown model " + which);
  }
  MCMC mcmc(NUTS(), MCMCOptions().num_samples(samples).warmup_steps(warmup).num_chains(chains).vectorize_chains(vectorize).seed(seed));
  // CPU time of the process (one thread), so that other processes on a shared machine matter little.
  const std::clock_t cpu_start = std::clock();
  const auto start = std::chrono::steady_clock::now();
  mcmc.run(model);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double secs = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  int64_t leapfrogs = 0;
  for (const auto& chain : mcmc.stats())
    for (const auto& s : chain) leapfrogs += s.num_leapfrog;
  double min_ess = 1e300;
  std::string slowest;
  for (const auto& [name, v] : mcmc.get_samples(true)) {
    torch::Tensor d = v.reshape({v.size(0), v.size(1), -1});
    for (int64_t e = 0; e < d.size(2); ++e) {
      const double ess = ess_bulk(d.select(2, e));
      if (ess < min_ess) min_ess = ess, slowest = name + (d.size(2) > 1 ? "[" + std::to_string(e) + "]" : "");
    }
  }
  std::printf("ember NUTS %s (validation %s, %lld chain(s)%s): %lld warmup + %lld samples in %.2f s CPU (%.2f s wall, %.3f ms CPU per "
              "iteration), %lld leapfrog steps while sampling, min bulk ESS %.0f (%s), %.1f ESS per CPU second (whole run)\n",
              which.c_str(), validate ? "on" : "off", (long long)chains, vectorize ? ", vectorised" : "", (long long)warmup,
              (long long)samples, secs, wall, 1000 * secs / (chains * (warmup + samples)), (long long)leapfrogs, min_ess,
              slowest.c_str(), min_ess / secs);
  if (profile > 0) {
    const Potential potential(model);
    torch::Tensor z = torch::zeros({potential.dim()}, opts);
    const std::clock_t p0 = std::clock();
    double sink = 0;
    for (int64_t i = 0; i < profile; ++i) sink += potential.energy_and_grad(z).first;
    const double per = static_cast<double>(std::clock() - p0) / CLOCKS_PER_SEC / profile;
    std::printf("potential and gradient: %.1f us CPU per evaluation (%lld evaluations, checksum %.6g)\n", 1e6 * per,
                (long long)profile, sink / profile);
  }
  if (which == "eight_schools") std::printf("%s", mcmc.summary_table().c_str());
}
