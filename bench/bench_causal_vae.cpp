// SVI on the causal VAE with Ember versus the strongest hand-written LibTorch loop of the same
// mathematics (same networks and initialisation, same single-sample ELBO, same data order;
// logits straight into binary_cross_entropy_with_logits, torch::optim::Adam), both run by
// this one invocation. A third variant is the same hand-written loop given Ember's two
// kernels (its Bernoulli(logits) log-density and one-pass Adam): Ember's ratio to it is the
// cost of the PPL itself (handlers, traces, validation, the label sites), apart from what the
// kernels win over stock LibTorch. Each variant runs in its own child process (this binary
// re-executed) so that its peak memory can be measured apart.
//
//   bench_causal_vae [--epochs 2] [--batch-size 256] [--b1-steps 300] [--threads N] [--repeats R]
//                    [--out FILE.json]
//
// Epoch time: the median over epochs after the first (the first warms caches) when there are
// at least three epochs.
//
// Prints and writes: seconds per epoch at the batch size, seconds per step at batch 1,
// peak RSS, the test loss (average negative ELBO per image) of each, and their ratios.
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <CLI/CLI.hpp>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>

#include "examples/causal_vae/causal_vae.h"
#include "distributions/bernoulli.h"
#include "inference/elbo.h"
#include "inference/fused_adam.h"
#include "inference/svi.h"

using namespace ember;
using causal_vae::CausalVAE;
using Clock = std::chrono::steady_clock;

namespace {

struct Settings {
  int64_t epochs = 2, batch_size = 256, b1_steps = 300, threads = 0;
  bool count_ops = false, profile_ops = false;
  uint64_t seed = 0;
  double lr = 1e-3;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds of this process, all threads: on a loaded machine a steadier measure of the
// work done than wall-clock time (at one thread, with OPENBLAS_NUM_THREADS=1, they agree
// on an idle machine; spinning worker threads inflate it).
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The strongest hand-written LibTorch loop for the same model and guide: the negative ELBO
// summed over the batch, with the decoder's logits going straight into
// binary_cross_entropy_with_logits (no sigmoid, no clamp), the Gaussian terms written in the
// noise eps (log sqrt(2 pi) cancels between log p(z) and log q(z)), the labels' log-priors a
// constant, and the data already float (as every batch of the data set is).
torch::Tensor handwritten_loss(CausalVAE& vae, const causal_vae::Batch& b, bool ember_kernels) {
  auto& enc = vae.encoder();
  auto& dec = vae.decoder();
  auto style = vae.encode_style(b.is_handwritten);
  auto [loc, scale] = enc->forward(b.image, b.digit, style);
  auto eps = torch::randn_like(loc);
  auto z = loc + scale * eps;
  auto logits = dec->logits(z, b.digit, style);
  // With Ember's kernels: its one-node Bernoulli(logits) log-density in place of LibTorch's BCE.
  auto nll_x = ember_kernels ? -dist::Bernoulli(dist::Logits{logits}, /*validate_args=*/false).log_prob(b.image).sum()
                             : torch::binary_cross_entropy_with_logits(logits, b.image, {}, {}, at::Reduction::Sum);
  const double log_labels = static_cast<double>(b.image.size(0)) * (std::log(0.1) + std::log(0.5));
  // -log p(z) + log q(z) = 0.5 z^2 - 0.5 eps^2 - log scale
  auto kl_term = (0.5 * (z * z - eps * eps) - scale.log()).sum();
  return nll_x + kl_term - log_labels;
}

// Adam over a list of tensors through Ember's one-pass update (inference/fused_adam.h), with
// the moments and step count kept here: the hand-written loop given Ember's optimiser kernel.
struct HandFusedAdam {
  std::vector<torch::Tensor> params, exp_avg, exp_avg_sq;
  int64_t t = 0;
  double lr;
  HandFusedAdam(std::vector<torch::Tensor> ps, double lr_) : params(std::move(ps)), lr(lr_) {
    for (auto& p : params) {
      exp_avg.push_back(torch::zeros_like(p));
      exp_avg_sq.push_back(torch::zeros_like(p));
    }
  }
  void step() {
    ++t;
    infer::kernels::AdamStepScalars sc;
    sc.lr = lr;
    sc.bias_correction1 = 1 - std::pow(sc.beta1, static_cast<double>(t));
    sc.bias_correction2 = 1 - std::pow(sc.beta2, static_cast<double>(t));
    for (size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i];
      if (!p.grad().defined()) continue;
      float *pp = p.data_ptr<float>(), *gp = p.mutable_grad().data_ptr<float>(), *mp = exp_avg[i].data_ptr<float>(),
            *vp = exp_avg_sq[i].data_ptr<float>();
      at::parallel_for(0, p.numel(), at::internal::GRAIN_SIZE, [&](int64_t b, int64_t e) {
        infer::kernels::adam_update(pp + b, gp + b, mp + b, vp + b, nullptr, e - b, sc, /*zero_gradient=*/true);
      });
    }
  }
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

causal_vae::Batch batch_for_profile(data::DigitDataset& ds, int64_t batch_size) {
  static std::optional<causal_vae::Batch> b;
  if (!b) b = causal_vae::to_model_batch(ds.epoch(data::Split::Train, batch_size, 0)[0]);
  return *b;
}

// Time of each top-level LibTorch operator (and autograd node) over 20 steps, inclusive of
// the operators it calls, to stderr: where one step's time goes, by name.
struct OpTimes {
  std::map<std::string, std::pair<double, int64_t>> by_name;
};
OpTimes* op_times = nullptr;
thread_local int op_depth = 0;
struct OpStart : at::ObserverContext {
  Clock::time_point t0;
  int depth = 0;
};

template <class Step>
void profile_ops(const std::string& variant, Step&& step) {
  for (int i = 0; i < 5; ++i) step();
  OpTimes times;
  op_times = &times;
  auto handle = at::addThreadLocalCallback(at::RecordFunctionCallback(
      [](const at::RecordFunction&) -> std::unique_ptr<at::ObserverContext> {
        auto ctx = std::make_unique<OpStart>();
        ctx->depth = ++op_depth;
        ctx->t0 = Clock::now();
        return ctx;
      },
      [](const at::RecordFunction& fn, at::ObserverContext* ctx) {
        auto* start = static_cast<OpStart*>(ctx);
        --op_depth;
        if (op_times && start->depth == 1) {
          auto& e = op_times->by_name[fn.name()];
          e.first += seconds_since(start->t0);
          e.second += 1;
        }
      }));
  const int steps = 20;
  auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double total = seconds_since(t0) / steps;
  at::removeCallback(handle);
  op_times = nullptr;
  std::vector<std::pair<double, std::string>> rows;
  double in_ops = 0;
  for (const auto& [name, e] : times.by_name) {
    rows.emplace_back(e.first / steps, name + " x" + std::to_string(e.second / steps));
    in_ops += e.first / steps;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::fprintf(stderr, "%s: %.3f ms per step, %.3f ms in top-level operators\n", variant.c_str(), 1e3 * total, 1e3 * in_ops);
  for (const auto& [t, name] : rows)
    if (t > 1e-6) std::fprintf(stderr, "  %8.1f us  %s\n", 1e6 * t, name.c_str());
}

nlohmann::json run_variant(const std::string& variant, const Settings& s) {
  if (s.threads > 0) torch::set_num_threads(static_cast<int>(s.threads));
  data::DatasetOptions dopt;
  dopt.seed(s.seed);
  dopt.balance(data::Balance::Balanced);  // as when docs/benchmarks.md's figures were taken
  data::DigitDataset ds(data::load_bundled(), dopt);
  torch::manual_seed(static_cast<uint64_t>(s.seed));
  clear_param_store();
  CausalVAE vae(causal_vae::Config{});
  auto model = [&](const causal_vae::Batch& b) { vae.training_model(b); };
  auto guide = [&](const causal_vae::Batch& b) { vae.training_guide(b); };
  infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(s.lr)), infer::Trace_ELBO());
  std::vector<torch::Tensor> params = vae.encoder()->parameters();
  for (auto& p : vae.decoder()->parameters()) params.push_back(p);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(s.lr));

  HandFusedAdam fused_adam(params, s.lr);
  const bool kernels = variant == "kernels";
  auto step = [&](const causal_vae::Batch& b) -> double {
    if (variant == "ember") return svi.step(b);
    auto loss = handwritten_loss(vae, b, kernels);
    if (kernels) {
      loss.backward();
      fused_adam.step();  // zeroes the gradients in its pass
    } else {
      adam.zero_grad();
      loss.backward();
      adam.step();
    }
    return loss.item<double>();
  };
  auto eval = [&](const causal_vae::Batch& b) -> double {
    if (variant == "ember") return svi.evaluate_loss(b);
    torch::NoGradGuard no_grad;
    return handwritten_loss(vae, b, kernels).item<double>();
  };

  double train_loss = 0;
  int64_t n_train = 0;
  std::vector<double> epoch_seconds, epoch_cpu_seconds;
  for (int64_t e = 0; e < s.epochs; ++e) {
    auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    for (const auto& batch : ds.epoch(data::Split::Train, s.batch_size, e)) {
      auto b = causal_vae::to_model_batch(batch);
      train_loss += step(b);
      n_train += b.image.size(0);
    }
    epoch_seconds.push_back(seconds_since(t0));
    epoch_cpu_seconds.push_back(cpu_seconds() - c0);
  }
  // The first epoch warms allocators and caches: the median of the others (when there are).
  const auto skip = static_cast<std::ptrdiff_t>(epoch_seconds.size() > 2 ? 1 : 0);
  const std::vector<double> timed(epoch_seconds.begin() + skip, epoch_seconds.end()),
      timed_cpu(epoch_cpu_seconds.begin() + skip, epoch_cpu_seconds.end());
  double test_loss = 0;
  int64_t n_test = 0;
  for (const auto& batch : ds.epoch(data::Split::Test, 1024, 0)) {
    auto b = causal_vae::to_model_batch(batch);
    test_loss += eval(b);
    n_test += b.image.size(0);
  }
  // Per-step cost at batch size 1 (dominated by overhead rather than arithmetic).
  auto one = causal_vae::to_model_batch(ds.epoch(data::Split::Train, 1, 0)[0]);
  for (int i = 0; i < 20; ++i) step(one);
  if (s.count_ops) {
    // Operator calls of one batch-1 step, by name, to stderr (what the per-op overhead buys).
    std::map<std::string, int64_t> counts;
    static std::map<std::string, int64_t>* sink = nullptr;
    sink = &counts;
    auto handle = at::addThreadLocalCallback(at::RecordFunctionCallback(
        [](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
          if (sink) ++(*sink)[fn.name()];
          return nullptr;
        }));
    step(one);
    at::removeCallback(handle);
    sink = nullptr;
    int64_t total = 0;
    for (const auto& [name, n] : counts) total += n;
    std::cerr << variant << ": " << total << " operator calls per batch-1 step\n";
    for (const auto& [name, n] : counts) std::cerr << "  " << name << " " << n << "\n";
  }
  if (s.profile_ops) profile_ops(variant, [&] { step(batch_for_profile(ds, s.batch_size)); });
  auto t1 = Clock::now();
  const double c1 = cpu_seconds();
  for (int64_t i = 0; i < s.b1_steps; ++i) step(one);
  const double b1 = seconds_since(t1) / static_cast<double>(s.b1_steps);
  const double b1_cpu = (cpu_seconds() - c1) / static_cast<double>(s.b1_steps);
  return {{"variant", variant},
          {"seconds_per_epoch", median(timed)},
          {"epoch_seconds", epoch_seconds},
          {"cpu_seconds_per_epoch", median(timed_cpu)},
          {"epoch_cpu_seconds", epoch_cpu_seconds},
          {"cpu_seconds_per_step_batch1", b1_cpu},
          {"threads", at::get_num_threads()},
          {"images_per_epoch", n_train / s.epochs},
          {"seconds_per_step_batch1", b1},
          {"train_loss", train_loss / static_cast<double>(n_train)},
          {"test_loss", test_loss / static_cast<double>(n_test)}};
}

// The 1-minute load average (the machine's load when the figures were taken).
double load_average() {
  double load[1] = {0};
  return getloadavg(load, 1) == 1 ? load[0] : -1;
}

// Re-executes this binary for one variant; returns its JSON and peak RSS (MiB).
nlohmann::json spawn_variant(const std::string& self, const std::string& variant, const Settings& s) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    std::vector<std::string> args = {self, "--variant", variant, "--epochs", std::to_string(s.epochs), "--batch-size",
                                     std::to_string(s.batch_size), "--b1-steps", std::to_string(s.b1_steps), "--seed",
                                     std::to_string(s.seed), "--threads", std::to_string(s.threads)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(self.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("variant " + variant + " failed:\n" + out);
  auto j = nlohmann::json::parse(out.substr(out.find('{')));
  j["peak_rss_mib"] = static_cast<double>(ru.ru_maxrss) / 1024.0;
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  std::string variant, out = "bench-results/causal_vae.json";
  int64_t repeats = 1;
  CLI::App app{"Ember SVI vs a hand-written LibTorch loop on the causal VAE"};
  app.add_option("--epochs", s.epochs, "training epochs per variant");
  app.add_option("--batch-size", s.batch_size, "minibatch size");
  app.add_option("--b1-steps", s.b1_steps, "steps timed at batch size 1");
  app.add_option("--seed", s.seed, "seed of the data order and initialisation");
  app.add_option("--threads", s.threads, "LibTorch intra-op threads (0 = default)");
  app.add_option("--out", out, "where to write the JSON results");
  app.add_option("--repeats", repeats, "runs of each variant, alternating (the median run is reported)");
  app.add_flag("--count-ops", s.count_ops, "with --variant: print the operator calls of one batch-1 step to stderr");
  app.add_flag("--profile-ops", s.profile_ops,
               "with --variant: print the time of each top-level operator over 20 steps at --batch-size to stderr");
  app.add_option("--variant", variant, "internal: run one variant and print its JSON")->check(CLI::IsMember({"ember", "torch", "kernels"}));
  CLI11_PARSE(app, argc, argv);
  if (!variant.empty()) {
    std::cout << run_variant(variant, s).dump() << std::endl;
    return 0;
  }
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  // Alternate the variants `repeats` times (load drifts on a shared machine) and keep, per
  // variant, the run with the median epoch time.
  std::vector<nlohmann::json> torch_runs, ember_runs, kernel_runs;
  for (int64_t r = 0; r < repeats; ++r) {
    torch_runs.push_back(spawn_variant(self, "torch", s));
    ember_runs.push_back(spawn_variant(self, "ember", s));
    kernel_runs.push_back(spawn_variant(self, "kernels", s));
  }
  auto median_run = [](std::vector<nlohmann::json> runs) {
    std::sort(runs.begin(), runs.end(), [](const auto& a, const auto& b) {
      return a["seconds_per_epoch"].template get<double>() < b["seconds_per_epoch"].template get<double>();
    });
    auto m = runs[runs.size() / 2];
    std::vector<double> b1;
    std::vector<double> b1_cpu, epoch_cpu;
    for (const auto& r : runs) {
      b1.push_back(r["seconds_per_step_batch1"].get<double>());
      b1_cpu.push_back(r["cpu_seconds_per_step_batch1"].get<double>());
      epoch_cpu.push_back(r["cpu_seconds_per_epoch"].get<double>());
    }
    m["seconds_per_step_batch1"] = median(b1);
    m["cpu_seconds_per_step_batch1"] = median(b1_cpu);
    m["cpu_seconds_per_epoch"] = median(epoch_cpu);
    return m;
  };
  auto torch_run = median_run(torch_runs), ember_run = median_run(ember_runs), kernel_run = median_run(kernel_runs);
  auto ratio = [&](const char* key) { return ember_run[key].get<double>() / torch_run[key].get<double>(); };
  auto kernel_ratio = [&](const char* key) { return ember_run[key].get<double>() / kernel_run[key].get<double>(); };
  nlohmann::json result = {
      {"settings",
       {{"epochs", s.epochs}, {"batch_size", s.batch_size}, {"b1_steps", s.b1_steps}, {"seed", s.seed},
        {"threads", s.threads}, {"repeats", repeats}}},
      {"baseline", "hand-written LibTorch: decoder logits straight into binary_cross_entropy_with_logits, torch::optim::Adam"},
      {"baseline_with_ember_kernels",
       "the same hand-written loop with Ember's Bernoulli(logits) log-density and one-pass Adam in place of LibTorch's "
       "binary_cross_entropy_with_logits and torch::optim::Adam: the ratio to it is the cost of the PPL itself"},
      {"ember", ember_run},
      {"handwritten_libtorch", torch_run},
      {"handwritten_with_ember_kernels", kernel_run},
      {"ratio_epoch_time", ratio("seconds_per_epoch")},
      {"ratio_step_time_batch1", ratio("seconds_per_step_batch1")},
      {"ratio_epoch_cpu_time", ratio("cpu_seconds_per_epoch")},
      {"ratio_step_cpu_time_batch1", ratio("cpu_seconds_per_step_batch1")},
      {"ratio_to_same_kernels_epoch_time", kernel_ratio("seconds_per_epoch")},
      {"ratio_to_same_kernels_step_time_batch1", kernel_ratio("seconds_per_step_batch1")},
      {"load_average", load_average()},
      {"ratio_peak_memory", ratio("peak_rss_mib")},
      {"test_loss_relative_difference", ratio("test_loss") - 1.0}};
  std::printf("%-28s %12s %12s %8s %16s %8s\n", "", "Ember", "LibTorch", "ratio", "LibTorch+kernels", "ratio");
  for (const char* k : {"seconds_per_epoch", "cpu_seconds_per_epoch", "seconds_per_step_batch1", "cpu_seconds_per_step_batch1",
                        "peak_rss_mib", "test_loss"})
    std::printf("%-28s %12.5g %12.5g %8.3f %16.5g %8.3f\n", k, ember_run[k].get<double>(), torch_run[k].get<double>(),
                ratio(k), kernel_run[k].get<double>(), kernel_ratio(k));
  std::filesystem::create_directories(std::filesystem::path(out).parent_path().empty() ? "." : std::filesystem::path(out).parent_path());
  write_file_atomic(out, result.dump(2) + "\n");
  std::cout << "wrote " << out << "\n";
  return 0;
}
