// The MCMC runner (chains, warmup, draws) and its diagnostics (split R-hat, bulk ESS, summary).
#include "inference/mcmc/mcmc.h"

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <optional>
#include <exception>
#include <mutex>
#include <thread>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>

#include "core/error.h"

namespace ember::infer::mcmc {

// ----------------------------------------------------------------------------------------------
// Diagnostics (Stan's definitions; Vehtari, Gelman, Simpson, Carpenter, Bürkner 2021)

namespace {
std::vector<std::vector<double>> to_chains(const torch::Tensor& draws, const char* who) {
  if (draws.dim() != 2) throw ShapeError(cat(who, ": expected draws of shape [chains, samples], got ", draws.dim(), " dims"));
  torch::Tensor d = draws.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  std::vector<std::vector<double>> out(d.size(0), std::vector<double>(d.size(1)));
  const double* p = d.data_ptr<double>();
  for (int64_t c = 0; c < d.size(0); ++c)
    for (int64_t i = 0; i < d.size(1); ++i) out[c][i] = p[c * d.size(1) + i];
  return out;
}

// Each chain's first and last halves as two chains (the middle draw dropped when odd).
std::vector<std::vector<double>> split(const std::vector<std::vector<double>>& chains) {
  std::vector<std::vector<double>> out;
  for (const auto& c : chains) {
    const size_t half = c.size() / 2;
    out.emplace_back(c.begin(), c.begin() + half);
    out.emplace_back(c.end() - half, c.end());
  }
  return out;
}

double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); }
double var_of(const std::vector<double>& v) {  // ddof = 1
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / (v.size() - 1);
}

double rhat_of(const std::vector<std::vector<double>>& chains) {
  const double n = chains[0].size();
  std::vector<double> means, vars;
  for (const auto& c : chains) means.push_back(mean_of(c)), vars.push_back(var_of(c));
  const double between = n * var_of(means);
  const double within = mean_of(vars);
  return std::sqrt((between / within + n - 1) / n);
}

double ess_of(const std::vector<std::vector<double>>& chains) {
  const size_t m = chains.size(), n = chains[0].size();
  std::vector<double> chain_mean(m), chain_var(m);
  for (size_t c = 0; c < m; ++c) chain_mean[c] = mean_of(chains[c]);
  // Biased autocovariance (divided by n) of each chain at lag t, averaged over chains.
  auto mean_acov = [&](size_t t) {
    double s = 0;
    for (size_t c = 0; c < m; ++c) {
      double a = 0;
      for (size_t i = 0; i + t < n; ++i) a += (chains[c][i] - chain_mean[c]) * (chains[c][i + t] - chain_mean[c]);
      s += a / n;
    }
    return s / m;
  };
  const double mean_var = mean_acov(0) * n / (n - 1.0);
  double var_plus = mean_var * (n - 1.0) / n;
  if (m > 1) var_plus += var_of(chain_mean);
  if (!(var_plus > 0)) return NAN;
  std::vector<double> rho(n, 0.0);
  rho[0] = 1.0;
  double rho_even = 1.0, rho_odd = 1.0 - (mean_var - mean_acov(1)) / var_plus;
  rho[1] = rho_odd;
  // Geyer's initial positive sequence: sum pairs while their sum stays positive.
  size_t t = 1;
  while (t < n - 3 && rho_even + rho_odd > 0) {
    rho_even = 1.0 - (mean_var - mean_acov(t + 1)) / var_plus;
    rho_odd = 1.0 - (mean_var - mean_acov(t + 2)) / var_plus;
    if (rho_even + rho_odd >= 0) rho[t + 1] = rho_even, rho[t + 2] = rho_odd;
    t += 2;
  }
  const size_t max_t = t - 2;
  if (rho_even > 0) rho[max_t + 1] = rho_even;  // as Stan: keep a positive last even lag
  // Geyer's initial monotone sequence.
  for (t = 1; t + 2 <= max_t; t += 2) {
    if (rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]) {
      rho[t + 1] = (rho[t - 1] + rho[t]) / 2;
      rho[t + 2] = rho[t + 1];
    }
  }
  const double total = static_cast<double>(m * n);
  double tau = -1.0;
  for (size_t k = 0; k <= max_t; ++k) tau += 2 * rho[k];
  tau += rho[max_t + 1];
  tau = std::max(tau, 1.0 / std::log10(total));
  return total / tau;
}

// Ranks of all draws pooled (average ranks for ties), mapped to normal scores (Blom's offset).
std::vector<std::vector<double>> rank_normalize(const std::vector<std::vector<double>>& chains) {
  std::vector<std::pair<double, size_t>> all;
  for (const auto& c : chains)
    for (double x : c) all.emplace_back(x, all.size());
  const size_t s = all.size();
  std::sort(all.begin(), all.end());
  std::vector<double> rank(s);
  for (size_t i = 0; i < s;) {
    size_t j = i;
    while (j + 1 < s && all[j + 1].first == all[i].first) ++j;
    const double r = (i + j) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) rank[all[k].second] = r;
    i = j + 1;
  }
  std::vector<std::vector<double>> out = chains;
  size_t k = 0;
  for (auto& c : out)
    for (double& x : c) {
      const double prob = (rank[k++] - 3.0 / 8.0) / (s - 2 * 3.0 / 8.0 + 1);
      x = std::sqrt(2.0) * torch::erfinv(torch::tensor(2 * prob - 1, torch::kFloat64)).item<double>();
    }
  return out;
}

void check_draws(const std::vector<std::vector<double>>& chains, size_t min_draws, const char* who) {
  if (chains.empty() || chains[0].size() < min_draws)
    throw ValueError(cat(who, ": needs at least ", min_draws, " draws per chain"));
}
}  // namespace

double split_rhat(const torch::Tensor& draws) {
  auto chains = to_chains(draws, "split_rhat");
  check_draws(chains, 4, "split_rhat");
  return rhat_of(split(chains));
}

double ess(const torch::Tensor& draws) {
  auto chains = to_chains(draws, "ess");
  check_draws(chains, 4, "ess");
  return ess_of(chains);
}

double ess_bulk(const torch::Tensor& draws) {
  auto chains = to_chains(draws, "ess_bulk");
  check_draws(chains, 8, "ess_bulk");
  return ess_of(rank_normalize(split(chains)));
}

double ess_tail(const torch::Tensor& draws) {
  auto chains = split(to_chains(draws, "ess_tail"));
  check_draws(chains, 4, "ess_tail");
  std::vector<double> all;
  for (const auto& c : chains) all.insert(all.end(), c.begin(), c.end());
  const torch::Tensor q = torch::quantile(torch::tensor(all, torch::kFloat64), torch::tensor({0.05, 0.95}, torch::kFloat64));
  double result = INFINITY;
  for (int i = 0; i < 2; ++i) {
    const double threshold = q[i].item<double>();
    auto indicator = chains;
    for (auto& c : indicator)
      for (double& x : c) x = x <= threshold ? 1.0 : 0.0;
    result = std::min(result, ess_of(indicator));
  }
  return result;
}

// ----------------------------------------------------------------------------------------------
// The runner

MCMC::MCMC(const HMC& kernel, MCMCOptions options) : prototype_(kernel.clone()), options_(std::move(options)) {
  if (options_.num_samples() < 1) throw ValueError(cat("MCMC: num_samples must be at least 1, got ", options_.num_samples()));
  if (options_.num_chains() < 1) throw ValueError(cat("MCMC: num_chains must be at least 1, got ", options_.num_chains()));
  if (options_.num_threads() < 1) throw ValueError(cat("MCMC: num_threads must be at least 1, got ", options_.num_threads()));
  if (options_.warmup_steps() < 0) throw ValueError(cat("MCMC: warmup_steps must be >= 0, got ", options_.warmup_steps()));
  if (options_.checkpoint_every() < 1)
    throw ValueError(cat("MCMC: checkpoint_every must be at least 1, got ", options_.checkpoint_every()));
}

namespace {
// Per-draw statistics as rows of a float64 tensor (exact: the counts are small integers).
constexpr int64_t kNumStats = 6;

torch::Tensor stats_to_tensor(const std::vector<TransitionStats>& stats) {
  std::vector<double> v;
  v.reserve(stats.size() * kNumStats);
  for (const auto& s : stats)
    v.insert(v.end(), {s.accept_prob, s.step_size, static_cast<double>(s.num_leapfrog), static_cast<double>(s.tree_depth),
                       s.divergent ? 1.0 : 0.0, s.potential_energy});
  return torch::tensor(v, torch::kFloat64).reshape({static_cast<int64_t>(stats.size()), kNumStats});
}

std::vector<TransitionStats> stats_from_tensor(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat64).contiguous();
  const double* p = c.data_ptr<double>();
  std::vector<TransitionStats> out(c.size(0));
  for (int64_t i = 0; i < c.size(0); ++i, p += kNumStats) {
    out[i].accept_prob = p[0], out[i].step_size = p[1];
    out[i].num_leapfrog = static_cast<int64_t>(p[2]), out[i].tree_depth = static_cast<int64_t>(p[3]);
    out[i].divergent = p[4] != 0, out[i].potential_energy = p[5];
  }
  return out;
}
}  // namespace

namespace {
std::string divergence_advice(int64_t total) {
  return cat("Warning: ", total, " divergent transitions after warmup: the sampler could not follow the posterior's "
             "curvature there, so the draws may be biased. Raise target_accept (e.g. 0.95) or reparameterise the model "
             "(e.g. non-centred); see docs/mcmc.md.\n");
}
}  // namespace

// Vectorised chains: each chain (on its own thread, for control flow only) posts its point and
// waits; once every unfinished chain has posted, the last one to arrive evaluates them all in
// one batched model run. The batch is always "every unfinished chain", so the draws do not
// depend on thread timing.
class ChainBatcher {
 public:
  ChainBatcher(const Potential& potential, int64_t num_chains)
      : potential_(potential), z_(num_chains), grad_(num_chains), result_(num_chains), posted_(num_chains, 0),
        alive_(num_chains) {}

  double evaluate(int64_t chain, const double* z, double* grad) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    z_[chain] = z, grad_[chain] = grad, posted_[chain] = 1;
    ++waiting_;
    const uint64_t round = round_;
    if (waiting_ == alive_) run_batch();
    else done_.wait(lock, [&] { return round_ != round; });
    if (error_) std::rethrow_exception(error_);
    return result_[chain];
  }

  /// The chain will post no more (finished, or failed).
  void finish() {
    std::unique_lock<std::mutex> lock(mutex_);
    --alive_;
    if (waiting_ > 0 && waiting_ == alive_) run_batch();
  }

 private:
  void run_batch() {  // with mutex_ held
    std::vector<int64_t> chains;
    for (size_t c = 0; c < posted_.size(); ++c)
      if (posted_[c]) chains.push_back(static_cast<int64_t>(c));
    const int64_t d = potential_.dim(), b = static_cast<int64_t>(chains.size());
    try {
      torch::Tensor z = torch::empty({b, d}, torch::kFloat64);
      for (int64_t i = 0; i < b; ++i) std::copy(z_[chains[i]], z_[chains[i]] + d, z.data_ptr<double>() + i * d);
      torch::Tensor grad;
      const std::vector<double> energies = potential_.energy_and_grad_batch(z, grad);
      const torch::Tensor g = grad.to(torch::kCPU, torch::kFloat64).contiguous();
      for (int64_t i = 0; i < b; ++i) {
        result_[chains[i]] = energies[i];
        std::copy(g.data_ptr<double>() + i * d, g.data_ptr<double>() + (i + 1) * d, grad_[chains[i]]);
      }
    } catch (...) {
      error_ = std::current_exception();  // every waiting chain rethrows it
    }
    std::fill(posted_.begin(), posted_.end(), 0);
    waiting_ = 0;
    ++round_;
    done_.notify_all();
  }

  const Potential& potential_;
  std::mutex mutex_;
  std::condition_variable done_;
  std::vector<const double*> z_;
  std::vector<double*> grad_;
  std::vector<double> result_;
  std::vector<char> posted_;
  int64_t alive_, waiting_ = 0;
  uint64_t round_ = 0;
  std::exception_ptr error_;
};

void MCMC::run(const Model& model) { run_chains(model, nullptr, ""); }

void MCMC::resume(const Model& model, const std::string& path) {
  const TensorArchive archive = read_tensor_archive(path);
  run_chains(model, &archive, path);
}

void MCMC::run_chains(const Model& model, const TensorArchive* checkpoint, const std::string& checkpoint_source) {
  complete_ = false;
  samples_.clear();
  const Potential potential(model, PotentialOptions().seed(options_.seed()).max_plate_nesting(options_.max_plate_nesting()));
  names_.clear();
  for (const auto& s : potential.sites()) names_.push_back(s.name);
  const int64_t num_chains = options_.num_chains(), warmup = options_.warmup_steps();
  const int64_t total = warmup + options_.num_samples();
  // What a checkpoint must share with the run that resumes it.
  const nlohmann::json run_meta = {{"format", "ember-mcmc-checkpoint"},
                                   {"version", 1},
                                   {"kernel", prototype_->config()},
                                   {"num_chains", num_chains},
                                   {"num_samples", options_.num_samples()},
                                   {"warmup_steps", warmup},
                                   {"seed", options_.seed()},
                                   {"sites", names_},
                                   {"dim", potential.dim()}};
  // Checkpoint contents per chain (entries "chain<c>/..."), and the iteration each records
  // (-1: the chain has not started).
  std::vector<std::vector<ArchiveEntry>> slots(num_chains);
  std::vector<int64_t> slot_iteration(num_chains, -1);
  if (checkpoint) {
    const nlohmann::json& meta = checkpoint->meta;
    for (const auto& [key, value] : run_meta.items()) {
      if (!meta.contains(key) || meta.at(key) != value)
        throw ValueError(cat("MCMC::resume: checkpoint '", checkpoint_source, "' belongs to another run: its ", key, " is ",
                             meta.contains(key) ? meta.at(key).dump() : std::string("missing"), ", this run's is ",
                             value.dump()));
    }
    const auto iterations = meta.at("chains").get<std::vector<int64_t>>();
    if (static_cast<int64_t>(iterations.size()) != num_chains)
      throw ValueError(cat("MCMC::resume: checkpoint '", checkpoint_source, "' records ", iterations.size(), " chains, expected ",
                           num_chains));
    for (int64_t c = 0; c < num_chains; ++c) {
      slot_iteration[c] = iterations[c];
      const std::string prefix = cat("chain", c, "/");
      for (const auto& e : checkpoint->entries)
        if (e.name.compare(0, prefix.size(), prefix) == 0) slots[c].push_back(e);
    }
  }
  std::mutex checkpoint_mutex;
  auto write_checkpoint = [&](int64_t chain, std::vector<ArchiveEntry> entries, int64_t iteration) {
    std::lock_guard<std::mutex> lock(checkpoint_mutex);
    slots[chain] = std::move(entries);
    slot_iteration[chain] = iteration;
    TensorArchive archive;
    archive.meta = run_meta;
    archive.meta["chains"] = slot_iteration;
    for (const auto& slot : slots) archive.entries.insert(archive.entries.end(), slot.begin(), slot.end());
    write_tensor_archive(options_.checkpoint_path(), archive);
  };
  const bool checkpointing = !options_.checkpoint_path().empty();

  const bool vectorized = options_.vectorize_chains() && num_chains > 1;
  std::optional<ChainBatcher> batcher;
  if (vectorized) {
    if (!potential.enumerated_sites().empty())
      throw NotImplementedError(cat("MCMC: vectorize_chains with enumerated discrete latents ('",
                                    potential.enumerated_sites().front(), "') is not supported; run the chains unvectorised"));
    batcher.emplace(potential, num_chains);
  }
  const int64_t num_threads = vectorized ? num_chains : std::min(options_.num_threads(), num_chains);
  // The updating terminal line only makes sense for one chain at a time.
  const bool tty = isatty(fileno(stderr)) && num_threads == 1;
  std::mutex print_mutex;
  std::vector<torch::Tensor> draws(num_chains);  // per chain [num_samples, dim]
  stats_.assign(num_chains, {});
  auto run_chain = [&](int64_t chain) {
    const auto start = std::chrono::steady_clock::now();
    const std::string prefix = cat("chain", chain, "/");
    std::unique_ptr<HMC> kernel = prototype_->clone();
    if (batcher) kernel->set_evaluator([&, chain](const double* z, double* grad) { return batcher->evaluate(chain, z, grad); });
    std::vector<torch::Tensor> chain_draws;
    int64_t first_iteration = 0;
    if (checkpoint && slot_iteration[chain] >= 0) {
      // Resume: the kernel's state (generator included) and the draws and statistics so far.
      first_iteration = slot_iteration[chain];
      kernel->load_state(potential, *checkpoint, prefix);
      const ArchiveEntry* saved_draws = checkpoint->find(prefix + "draws");
      const ArchiveEntry* saved_stats = checkpoint->find(prefix + "stats");
      const int64_t expected = std::max<int64_t>(0, first_iteration - warmup);
      if (!saved_draws || !saved_stats || saved_draws->tensor.size(0) != expected || saved_stats->tensor.size(0) != expected)
        throw ValueError(cat("MCMC::resume: checkpoint '", checkpoint_source, "' chain ", chain, " at iteration ", first_iteration,
                             " should hold ", expected, " draws and their statistics"));
      for (int64_t i = 0; i < expected; ++i) chain_draws.push_back(saved_draws->tensor[i].to(potential.options()));
      stats_[chain] = stats_from_tensor(saved_stats->tensor);
    } else {
      // One generator per chain, seeded from (seed, chain): chains are independent and reproducible.
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed() * 1000003ULL + 7919ULL * (chain + 1));
      torch::Tensor z0;
      const auto& init = options_.initial_values();
      for (int attempt = 0; attempt < 100; ++attempt) {
        z0 = torch::rand({potential.dim()}, gen, torch::TensorOptions().dtype(torch::kFloat64)).to(potential.options()) * 4 - 2;
        if (!init.empty()) {
          ValueMap u = potential.unflatten(z0);
          for (const auto& s : potential.sites()) {
            auto it = init.find(s.name);
            if (it != init.end()) u[s.name] = s.transform->inverse(it->second.to(potential.options()));
          }
          std::vector<torch::Tensor> parts;
          for (const auto& s : potential.sites()) parts.push_back(u.at(s.name).reshape({-1}));
          z0 = torch::cat(parts);
        }
        if (std::isfinite(potential.energy_and_grad(z0).first)) break;
        if (attempt == 99) throw ValueError("MCMC: no initial point with a finite potential energy in 100 tries; pass initial_values");
      }
      kernel->setup(potential, z0, warmup, gen);
    }
    int64_t divergences = 0;
    double depth_sum = 0;
    for (const auto& s : stats_[chain]) divergences += s.divergent, depth_sum += s.tree_depth;
    for (int64_t i = first_iteration; i < total; ++i) {
      TransitionStats s = kernel->step();
      if (i >= warmup) {
        chain_draws.push_back(kernel->position());
        stats_[chain].push_back(s);
        divergences += s.divergent;
        depth_sum += s.tree_depth;
      }
      if (checkpointing && ((i + 1) % options_.checkpoint_every() == 0 || i + 1 == total)) {
        std::vector<ArchiveEntry> entries;
        kernel->save_state(entries, prefix);
        entries.push_back({prefix + "draws", chain_draws.empty() ? torch::zeros({0, potential.dim()}, potential.options())
                                                                 : torch::stack(chain_draws)});
        entries.push_back({prefix + "stats", stats_to_tensor(stats_[chain])});
        write_checkpoint(chain, std::move(entries), i + 1);
      }
      if (options_.hook()) options_.hook()(chain, i, s);
      if (options_.progress() && tty && (i % 50 == 0 || i + 1 == total))
        std::fprintf(stderr, "\rchain %lld/%lld %s %lld/%lld  step size %.3g  tree depth %lld  divergences %lld   ",
                     (long long)chain + 1, (long long)num_chains, i < warmup ? "warmup" : "sample", (long long)i + 1,
                     (long long)total, s.step_size, (long long)s.tree_depth, (long long)divergences);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (options_.progress()) {
      std::lock_guard<std::mutex> lock(print_mutex);
      std::fprintf(stderr, "%schain %lld/%lld: %lld warmup + %lld samples in %.2f s%s, step size %.3g, mean tree depth %.2f, %lld divergences\n",
                   tty ? "\r" : "", (long long)chain + 1, (long long)num_chains, (long long)warmup,
                   (long long)options_.num_samples(), secs, first_iteration > 0 ? cat(" (resumed at ", first_iteration, ")").c_str() : "",
                   kernel->step_size(), depth_sum / options_.num_samples(), (long long)divergences);
    }
    draws[chain] = torch::stack(chain_draws);
  };
  if (num_threads <= 1) {
    for (int64_t chain = 0; chain < num_chains; ++chain) run_chain(chain);
  } else {
    // Chains are independent (own generator, own kernel; the handler stack is thread-local), so
    // running them on threads gives the same draws as running them one after another.
    std::vector<std::exception_ptr> errors(options_.num_chains());
    std::atomic<int64_t> next{0};
    std::vector<std::thread> workers;
    for (int64_t t = 0; t < num_threads; ++t)
      workers.emplace_back([&] {
        for (int64_t chain = next++; chain < options_.num_chains(); chain = next++) {
          try {
            run_chain(chain);
          } catch (...) {
            errors[chain] = std::current_exception();  // rethrown below, in chain order
          }
          if (batcher) batcher->finish();
        }
      });
    for (auto& w : workers) w.join();
    for (const auto& e : errors)
      if (e) std::rethrow_exception(e);
  }
  // Constrained draws per site, [chains, samples, ...].
  samples_.clear();
  torch::Tensor all = torch::stack(draws);  // [chains, samples, dim]
  const int64_t c = all.size(0), n = all.size(1);
  for (const auto& s : potential.sites()) {
    torch::Tensor u = all.narrow(2, s.offset, s.numel);
    std::vector<int64_t> ushape = {c * n};
    ushape.insert(ushape.end(), s.unconstrained_shape.begin(), s.unconstrained_shape.end());
    torch::Tensor y = s.transform->forward(u.reshape(ushape));
    std::vector<int64_t> shape = {c, n};
    shape.insert(shape.end(), s.shape.begin(), s.shape.end());
    samples_[s.name] = y.reshape(shape);
  }
  complete_ = true;
  if (options_.progress()) {  // as Stan: divergences after warmup are worth a warning
    int64_t total_divergent = 0;
    for (auto d : divergences()) total_divergent += d;
    if (total_divergent > 0) std::fprintf(stderr, "%s", divergence_advice(total_divergent).c_str());
  }
}

ValueMap MCMC::get_samples(bool group_by_chain) const {
  if (!complete_) throw RuntimeError("MCMC::get_samples: no completed run (call run or resume first)");
  if (group_by_chain) return samples_;
  ValueMap out;
  for (const auto& [name, v] : samples_) out[name] = v.flatten(0, 1);
  return out;
}

std::vector<int64_t> MCMC::divergences() const {
  std::vector<int64_t> out;
  for (const auto& chain : stats_) {
    int64_t d = 0;
    for (const auto& s : chain) d += s.divergent;
    out.push_back(d);
  }
  return out;
}

std::vector<SiteSummary> MCMC::summary_sites() const {
  if (!complete_) throw RuntimeError("MCMC::summary: no completed run (call run or resume first)");
  std::vector<SiteSummary> out;
  for (const auto& name : names_) {
    const torch::Tensor& v = samples_.at(name);  // [c, n, ...]
    SiteSummary s;
    s.name = name;
    s.shape = v.sizes().slice(2).vec();
    torch::Tensor flat = v.flatten(0, 1).to(torch::kFloat64);
    s.mean = flat.mean(0);
    s.sd = flat.std(0, /*unbiased=*/true);
    torch::Tensor q = torch::quantile(flat, torch::tensor({0.05, 0.5, 0.95}, torch::kFloat64), 0);
    s.q5 = q[0], s.median = q[1], s.q95 = q[2];
    torch::Tensor per_elem = v.to(torch::kFloat64).reshape({v.size(0), v.size(1), -1});  // [c, n, k]
    const int64_t k = per_elem.size(2);
    std::vector<double> rh(k), eb(k), et(k);
    for (int64_t e = 0; e < k; ++e) {
      torch::Tensor d = per_elem.select(2, e);
      rh[e] = d.size(1) >= 4 ? split_rhat(d) : NAN;
      eb[e] = d.size(1) >= 8 ? ess_bulk(d) : NAN;
      et[e] = d.size(1) >= 8 ? ess_tail(d) : NAN;
    }
    s.r_hat = torch::tensor(rh, torch::kFloat64).reshape(s.shape);
    s.ess_bulk = torch::tensor(eb, torch::kFloat64).reshape(s.shape);
    s.ess_tail = torch::tensor(et, torch::kFloat64).reshape(s.shape);
    out.push_back(std::move(s));
  }
  return out;
}

nlohmann::json MCMC::summary() const {
  auto vec = [](const torch::Tensor& t) {
    torch::Tensor c = t.contiguous().to(torch::kFloat64);
    std::vector<double> v(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
    nlohmann::json j = nlohmann::json::array();
    for (double x : v) j.push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr));
    return j;
  };
  nlohmann::json j;
  j["sites"] = nlohmann::json::object();
  for (const auto& s : summary_sites()) {
    j["sites"][s.name] = {{"shape", s.shape},       {"mean", vec(s.mean)},     {"sd", vec(s.sd)},
                          {"q5", vec(s.q5)},        {"median", vec(s.median)}, {"q95", vec(s.q95)},
                          {"r_hat", vec(s.r_hat)}, {"ess_bulk", vec(s.ess_bulk)}, {"ess_tail", vec(s.ess_tail)}};
  }
  j["divergences"] = divergences();
  j["num_chains"] = options_.num_chains();
  j["num_samples"] = options_.num_samples();
  return j;
}

std::string MCMC::summary_table() const {
  std::ostringstream os;
  os << std::left << std::setw(16) << "" << std::right;
  for (const char* h : {"mean", "sd", "5%", "50%", "95%", "r_hat", "ess_bulk", "ess_tail"}) os << std::setw(11) << h;
  os << "\n" << std::fixed << std::setprecision(3);
  for (const auto& s : summary_sites()) {
    const int64_t k = s.mean.numel();
    std::vector<torch::Tensor> cols = {s.mean, s.sd, s.q5, s.median, s.q95, s.r_hat, s.ess_bulk, s.ess_tail};
    for (auto& c : cols) c = c.reshape({-1});
    for (int64_t e = 0; e < k; ++e) {
      std::string label = s.name;
      if (!s.shape.empty()) label += cat("[", e, "]");
      os << std::left << std::setw(16) << label << std::right;
      for (size_t i = 0; i < cols.size(); ++i) {
        const double x = cols[i][e].item<double>();
        if (i >= 6) os << std::setw(11) << std::setprecision(1) << x << std::setprecision(3);
        else os << std::setw(11) << x;
      }
      os << "\n";
    }
  }
  int64_t total = 0;
  for (auto d : divergences()) total += d;
  os << "\nNumber of divergences: " << total << "\n";
  if (total > 0) os << divergence_advice(total);
  return os.str();
}

}  // namespace ember::infer::mcmc
