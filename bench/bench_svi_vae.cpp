// SVI on a VAE versus a hand-written LibTorch loop of identical mathematics: the same encoder
// and decoder (784 -> 400 -> 2x50, 50 -> 400 -> 784), the same single-sample ELBO
// (Bernoulli likelihood, standard normal prior, diagonal normal guide), the same Adam (lr 1e-3).
// (A stand-in for the causal VAE of issue 5 until that model lands.)
//
//   bench_svi_vae [--out FILE.json] [--quick]
//
// Each measurement runs in a fresh child process (this executable, re-executed) so that its
// peak resident memory is its own; the parent prints the ratios SVI / hand-written for time
// per step at batch 256 and at batch 1, and for peak memory, and writes them as JSON.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "inference/inference.h"
#include "ppl/ppl.h"

using namespace ember;

namespace {

struct Nets {
  torch::nn::Sequential enc{torch::nn::Linear(784, 400), torch::nn::Softplus(), torch::nn::Linear(400, 100)};
  torch::nn::Sequential dec{torch::nn::Linear(50, 400), torch::nn::Softplus(), torch::nn::Linear(400, 784)};
};

// Thread-CPU seconds per step after a warm-up (LibTorch runs single-threaded here), robust to
// other processes sharing the machine.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
template <class Step>
double time_steps(Step&& step, int steps) {
  for (int i = 0; i < 3; ++i) step();
  const double t0 = thread_seconds();
  for (int i = 0; i < steps; ++i) step();
  return (thread_seconds() - t0) / steps;
}

double run_child(const std::string& mode, int64_t batch, int steps) {
  torch::manual_seed(0);
  Nets nets;
  auto x = (torch::rand({batch, 784}) > 0.5).to(torch::kFloat);
  if (mode == "hand") {
    std::vector<torch::Tensor> params;
    for (auto& p : nets.enc->parameters()) params.push_back(p);
    for (auto& p : nets.dec->parameters()) params.push_back(p);
    torch::optim::Adam opt(params, torch::optim::AdamOptions(1e-3));
    const double log2pi = std::log(2 * M_PI);
    return time_steps(
        [&] {
          auto h = nets.enc->forward(x);
          auto loc = h.narrow(1, 0, 50), scale = torch::nn::functional::softplus(h.narrow(1, 50, 50)) + 1e-3;
          auto eps = torch::randn_like(loc);
          auto z = loc + scale * eps;
          auto logits = nets.dec->forward(z);
          // The densities exactly as the ELBO evaluates them (log q at the reparameterised z).
          auto log_px = -torch::binary_cross_entropy_with_logits(logits, x, {}, {}, at::Reduction::Sum);
          auto log_pz = (-0.5 * z.pow(2) - 0.5 * log2pi).sum();
          auto zq = (z - loc) / scale;
          auto log_qz = (-0.5 * zq * zq - scale.log() - 0.5 * log2pi).sum();
          auto loss = -(log_px + log_pz - log_qz);
          opt.zero_grad();
          loss.backward();
          opt.step();
        },
        steps);
  }
  dist::enable_validation(mode == "svi_validated");
  auto model = [&nets](const torch::Tensor& x) {
    module("decoder", nets.dec);
    auto p = plate("data", x.size(0));
    auto z = sample("z", dist::Normal(torch::zeros({50}), torch::ones({50})).to_event(1));
    auto logits = nets.dec->forward(z);
    sample("x", dist::Bernoulli(dist::Logits{logits}).to_event(1), x);
  };
  auto guide = [&nets](const torch::Tensor& x) {
    module("encoder", nets.enc);
    auto p = plate("data", x.size(0));
    auto h = nets.enc->forward(x);
    auto loc = h.narrow(1, 0, 50), scale = torch::nn::functional::softplus(h.narrow(1, 50, 50)) + 1e-3;
    sample("z", dist::Normal(loc, scale).to_event(1));
  };
  infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(1e-3)), infer::Trace_ELBO());
  return time_steps([&] { svi.step(x); }, steps);
}

struct Result {
  double seconds_per_step = 0;
  double peak_rss_mb = 0;
};

// Re-executes this program as a child measuring one configuration.
Result measure(const char* self, const std::string& mode, int64_t batch, int steps) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    std::string b = std::to_string(batch), s = std::to_string(steps);
    execl(self, self, "--child", mode.c_str(), b.c_str(), s.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("child " + mode + " failed: " + out);
  return {std::stod(out), static_cast<double>(ru.ru_maxrss) / 1024.0};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--child") {
    at::set_num_threads(1);
    std::printf("%.9g\n", run_child(argv[2], std::stoll(argv[3]), std::stoi(argv[4])));
    return 0;
  }
  std::string out = "bench_svi_vae.json";
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--out" && i + 1 < argc) out = argv[++i];
    if (a == "--quick") quick = true;
  }
  const char* self = "/proc/self/exe";
  char path[4096];
  ssize_t len = readlink(self, path, sizeof path - 1);
  if (len > 0) {
    path[len] = 0;
    self = path;
  }
  nlohmann::json j = {{"benchmark", "SVI (Trace_ELBO + Adam) on a VAE vs a hand-written LibTorch loop"}, {"threads", 1}, {"clock", "thread CPU time"}};
  // Alternate the configurations and keep each one's fastest run: the machine may be shared.
  auto best = [](Result a, const Result& b) {
    a.seconds_per_step = std::min(a.seconds_per_step, b.seconds_per_step);
    a.peak_rss_mb = std::max(a.peak_rss_mb, b.peak_rss_mb);
    return a;
  };
  const int rounds = quick ? 1 : 3;
  for (int64_t batch : {int64_t{256}, int64_t{1}}) {
    const int steps = batch == 1 ? (quick ? 200 : 500) : (quick ? 10 : 30);
    Result hand = measure(self, "hand", batch, steps), svi = measure(self, "svi", batch, steps),
           svi_v = measure(self, "svi_validated", batch, steps);
    for (int r = 1; r < rounds; ++r) {
      hand = best(hand, measure(self, "hand", batch, steps));
      svi = best(svi, measure(self, "svi", batch, steps));
      svi_v = best(svi_v, measure(self, "svi_validated", batch, steps));
    }
    const std::string key = "batch_" + std::to_string(batch);
    j[key] = {{"hand_seconds_per_step", hand.seconds_per_step},
              {"svi_seconds_per_step", svi.seconds_per_step},
              {"svi_validated_seconds_per_step", svi_v.seconds_per_step},
              {"time_ratio", svi.seconds_per_step / hand.seconds_per_step},
              {"time_ratio_validated", svi_v.seconds_per_step / hand.seconds_per_step},
              {"hand_peak_rss_mb", hand.peak_rss_mb},
              {"svi_peak_rss_mb", svi.peak_rss_mb},
              {"peak_memory_ratio", svi.peak_rss_mb / hand.peak_rss_mb}};
    std::cout << "batch " << batch << ": hand " << hand.seconds_per_step * 1e3 << " ms/step, SVI "
              << svi.seconds_per_step * 1e3 << " ms/step (ratio " << svi.seconds_per_step / hand.seconds_per_step
              << "; with validation " << svi_v.seconds_per_step / hand.seconds_per_step << "), peak RSS "
              << hand.peak_rss_mb << " vs " << svi.peak_rss_mb << " MB (ratio " << svi.peak_rss_mb / hand.peak_rss_mb
              << ")\n";
  }
  std::ofstream f(out);
  f << j.dump(2) << "\n";
  std::cout << "wrote " << out << "\n";
  return 0;
}
