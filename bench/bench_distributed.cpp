// Data-parallel SVI on the causal VAE (book sizes: z 50, hidden 400): images per second with 1
// process and with N processes on this machine, each with one LibTorch thread, at the same
// global batch; the share of a step rank 0 spends in collectives (all-reduce of the gradient
// buckets, including waiting for the slower rank); and the same all-reduce alone, to separate
// transfer from waiting. Every variant is this binary re-executed (one process per rank, over
// TCP on 127.0.0.1), all in this one invocation.
//
//   bench_distributed [--processes 2] [--steps 60] [--batch-size 256] [--out FILE.json]
#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "distributed/distributed.h"
#include "examples/causal_vae/causal_vae.h"
#include "inference/elbo.h"
#include "inference/svi.h"

using namespace ember;
namespace edist = ember::distributed;
using Clock = std::chrono::steady_clock;

namespace {

struct Settings {
  int64_t processes = 2, steps = 60, warmup = 5, batch_size = 256;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds this process has used (all its threads): unlike wall time, barely moved by other
// programs competing for the cores.
double cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

// One rank: `steps` SVI steps of the global batch (this rank's share), after `warmup`.
nlohmann::json run_rank(const Settings& s, int64_t rank, int64_t world, int port) {
  torch::set_num_threads(1);
  std::unique_ptr<edist::ProcessGroup> group;
  std::unique_ptr<edist::DataParallel> parallel;
  if (world > 1) group = std::make_unique<edist::ProcessGroup>(edist::GroupOptions().master_port(port).rank(rank).world_size(world));
  causal_vae::TrainConfig cfg;
  auto ds = causal_vae::open_dataset(cfg, torch::kCPU);
  torch::manual_seed(0);
  causal_vae::CausalVAE vae(cfg.model);
  infer::SVI svi([&](const causal_vae::Batch& b) { vae.training_model(b); },
                 [&](const causal_vae::Batch& b) { vae.training_guide(b); }, infer::Adam(infer::AdamOptions().lr(1e-3)),
                 infer::Trace_ELBO());
  if (group) {
    parallel = std::make_unique<edist::DataParallel>(*group);
    parallel->attach(svi);
  }
  const auto batches = ds.epoch(data::Split::Train, s.batch_size, 0, /*drop_last=*/true);
  auto step = [&](int64_t i) {
    const auto global = batches.order().slice(0, i * s.batch_size, (i + 1) * s.batch_size);
    const auto b = causal_vae::to_model_batch(ds.gather(edist::shard_rows(global, rank, world)));
    std::unique_ptr<Messenger> shard;
    if (parallel) shard = std::make_unique<edist::ShardMessenger>("data", b.image.size(0), s.batch_size, world);
    return svi.step(b);
  };
  for (int64_t i = 0; i < s.warmup; ++i) step(i);
  if (group) group->barrier("lining up before the timed steps");
  const double comm_before = parallel ? parallel->stats().communication_seconds : 0.0;
  const auto t0 = Clock::now();
  const double cpu0 = cpu_seconds();
  for (int64_t i = 0; i < s.steps; ++i) step((s.warmup + i) % batches.size());
  const double seconds = seconds_since(t0), cpu = cpu_seconds() - cpu0;
  nlohmann::json r = {{"rank", rank}, {"world", world}, {"seconds", seconds}, {"step_seconds", seconds / s.steps},
                      {"cpu_seconds_per_step", cpu / s.steps},
                      {"images_per_second", static_cast<double>(s.steps * s.batch_size) / seconds}};
  if (parallel) {
    const auto& st = parallel->stats();
    r["communication_seconds_per_step"] = (st.communication_seconds - comm_before) / s.steps;
    r["communication_share"] = (st.communication_seconds - comm_before) / seconds;
    r["bytes_all_reduced_per_step"] = st.last_step_bytes;
    r["buckets_per_step"] = st.last_step_buckets;
    // The gradient all-reduce alone (same bytes, one bucket), the ranks lined up by a barrier:
    // transfer without waiting for a slower rank.
    std::vector<torch::Tensor> bucket{torch::ones({st.last_step_bytes / 4}, torch::kFloat)};
    group->barrier("lining up before the all-reduce alone");
    const auto t1 = Clock::now();
    const double cpu1 = cpu_seconds();
    constexpr int kRounds = 30;
    for (int k = 0; k < kRounds; ++k) group->all_reduce_sum(bucket, "the all-reduce benchmark");
    r["all_reduce_alone_seconds"] = seconds_since(t1) / kRounds;
    r["all_reduce_alone_cpu_seconds"] = (cpu_seconds() - cpu1) / kRounds;
  }
  return r;
}

// Runs `world` ranks as child processes; returns their JSON results.
std::vector<nlohmann::json> run_children(const std::string& self, const Settings& s, int64_t world) {
  const int port = free_port();
  std::vector<pid_t> pids;
  std::vector<std::string> outs;
  for (int64_t r = 0; r < world; ++r) {
    outs.push_back(cat("/tmp/bench_distributed_", ::getpid(), "_", world, "_", r, ".json"));
    const pid_t pid = ::fork();
    if (pid == 0) {
      // One thread per process, BLAS included (OpenBLAS reads this when it loads).
      ::setenv("OPENBLAS_NUM_THREADS", "1", 1);
      ::setenv("OMP_NUM_THREADS", "1", 1);
      const std::vector<std::string> args = {self, "--child-rank", std::to_string(r), "--child-world", std::to_string(world),
                                             "--child-port", std::to_string(port), "--child-out", outs.back(),
                                             "--steps", std::to_string(s.steps), "--batch-size", std::to_string(s.batch_size)};
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(self.c_str(), argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  std::vector<nlohmann::json> results;
  for (size_t r = 0; r < pids.size(); ++r) {
    int status = 0;
    ::waitpid(pids[r], &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw RuntimeError(cat("bench rank ", r, " of ", world, " failed"));
    std::ifstream in(outs[r]);
    results.push_back(nlohmann::json::parse(in));
    std::remove(outs[r].c_str());
  }
  return results;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  std::string out = "bench-results/distributed.json", child_out;
  int64_t child_rank = -1, child_world = 1, child_port = 0;
  CLI::App app{"Data-parallel SVI on the causal VAE: 1 process vs N processes (1 thread each) on this machine"};
  app.add_option("--processes", s.processes, "processes of the data-parallel run")->check(CLI::Range(2, 64));
  app.add_option("--steps", s.steps, "timed steps")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", s.batch_size, "global batch")->check(CLI::PositiveNumber);
  app.add_option("--out", out, "JSON results");
  app.add_option("--child-rank", child_rank)->group("");
  app.add_option("--child-world", child_world)->group("");
  app.add_option("--child-port", child_port)->group("");
  app.add_option("--child-out", child_out)->group("");
  CLI11_PARSE(app, argc, argv);
  try {
    if (child_rank >= 0) {
      auto r = run_rank(s, child_rank, child_world, static_cast<int>(child_port));
      std::ofstream(child_out) << r.dump(2);
      return 0;
    }
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    const auto one = run_children(self, s, 1).at(0);
    const auto many = run_children(self, s, s.processes);
    const auto& zero = many.at(0);
    const double speedup = zero["images_per_second"].get<double>() / one["images_per_second"].get<double>();
    nlohmann::json report = {{"benchmark", "bench_distributed"},
                             {"model", "causal VAE, z 50, hidden 400, Trace_ELBO, Adam"},
                             {"global_batch", s.batch_size},
                             {"steps", s.steps},
                             {"threads_per_process", "1 (torch::set_num_threads(1), OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=1)"},
                             {"one_process", one},
                             {"processes", s.processes},
                             {"data_parallel", many},
                             {"speedup", speedup},
                             {"efficiency", speedup / static_cast<double>(s.processes)},
                             {"load_average", [] {
                                std::ifstream in("/proc/loadavg");
                                std::string l;
                                std::getline(in, l);
                                return l;
                              }()}};
    std::filesystem::create_directories(std::filesystem::path(out).parent_path().empty() ? "." : std::filesystem::path(out).parent_path());
    std::ofstream(out) << report.dump(2) << "\n";
    std::printf("global batch %lld, 1 thread per process, %lld timed steps\n", static_cast<long long>(s.batch_size),
                static_cast<long long>(s.steps));
    std::printf("1 process:   %8.1f images/s  (%.2f ms per step)\n", one["images_per_second"].get<double>(),
                1e3 * one["step_seconds"].get<double>());
    std::printf("%lld processes: %8.1f images/s  (%.2f ms per step): speed-up %.2f, efficiency %.0f%%\n",
                static_cast<long long>(s.processes), zero["images_per_second"].get<double>(), 1e3 * zero["step_seconds"].get<double>(),
                speedup, 100 * speedup / static_cast<double>(s.processes));
    std::printf("rank 0 in collectives: %.2f ms per step (%.0f%% of the step); %lld bytes in %lld bucket(s) all-reduced per step\n",
                1e3 * zero["communication_seconds_per_step"].get<double>(), 100 * zero["communication_share"].get<double>(),
                static_cast<long long>(zero["bytes_all_reduced_per_step"].get<int64_t>()),
                static_cast<long long>(zero["buckets_per_step"].get<int64_t>()));
    std::printf("the same all-reduce alone (ranks lined up): %.2f ms (%.2f ms of CPU)\n", 1e3 * zero["all_reduce_alone_seconds"].get<double>(),
                1e3 * zero["all_reduce_alone_cpu_seconds"].get<double>());
    // CPU time per step is what a step costs when the process has its core to itself.
    double slowest = 0;
    for (const auto& r : many) slowest = std::max(slowest, r["cpu_seconds_per_step"].get<double>());
    std::printf("CPU time per step: 1 process %.2f ms; %lld processes, slowest rank %.2f ms (Gloo's threads included)\n",
                1e3 * one["cpu_seconds_per_step"].get<double>(), static_cast<long long>(s.processes), 1e3 * slowest);
    std::printf("load average when done: %s", [] {
      std::ifstream in("/proc/loadavg");
      std::string l;
      std::getline(in, l);
      return l + "\n";
    }().c_str());
    std::printf("wrote %s\n", out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_distributed: %s\n", e.what());
    return 1;
  }
  return 0;
}
