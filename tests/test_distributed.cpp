// Data-parallel SVI across processes on loopback (distributed/distributed.h). This executable
// is its own worker: `test_distributed --worker KIND ...` runs one rank, so the cases below
// start real processes, each with its own c10d group over TCP on 127.0.0.1.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "distributed/distributed.h"
#include "distributions/delta.h"
#include "distributions/normal.h"
#include "inference/svi.h"
#include "ppl/ppl.h"
#ifdef EMBER_TEST_CAUSAL_VAE
#include "examples/causal_vae/causal_vae.h"
#endif

extern char** environ;

using namespace ember;
namespace edist = ember::distributed;
namespace fs = std::filesystem;

namespace {

// ------------------------------------------------------------------ processes

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

// A TCP port on 127.0.0.1 that nothing listens on right now.
int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  socklen_t len = sizeof(a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

struct Child {
  pid_t pid = -1;
  std::string log;
};

// Starts `args` with stdout and stderr in `log`, without the torchrun variables of this process.
Child spawn(const std::vector<std::string>& args, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool torchrun = false;
    for (const char* k : {"WORLD_SIZE=", "RANK=", "MASTER_ADDR=", "MASTER_PORT="}) torchrun |= kv.rfind(k, 0) == 0;
    if (!torchrun) env_strings.push_back(kv);
  }
  std::vector<char*> envp;
  for (auto& kv : env_strings) envp.push_back(kv.data());
  envp.push_back(nullptr);
  Child c;
  c.log = log;
  REQUIRE(posix_spawn(&c.pid, args[0].c_str(), &actions, nullptr, argv.data(), envp.data()) == 0);
  posix_spawn_file_actions_destroy(&actions);
  return c;
}

// The exit code (128 + signal when killed), or nullopt if it still runs after `seconds`.
std::optional<int> wait_for(const Child& c, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    int status = 0;
    if (::waitpid(c.pid, &status, WNOHANG) == c.pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Waits up to `seconds`; a process still running then is killed, and the check fails.
int finish(const Child& c, double seconds) {
  auto code = wait_for(c, seconds);
  if (!code) {
    ::kill(c.pid, SIGKILL);
    wait_for(c, 10);
    FAIL_CHECK("process ", c.pid, " still ran after ", seconds, " s; its log ", c.log, ":\n", std::ifstream(c.log).rdbuf());
    return -1;
  }
  return *code;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string scratch(const std::string& name) {
  auto dir = fs::temp_directory_path() / cat("ember-test-distributed-", ::getpid(), "-", name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// ------------------------------------------------------------------ what the workers train

// Writes the reported losses and every param of the current store (flattened, float64) as text.
void write_result(const std::string& path, const std::vector<double>& losses) {
  std::ofstream out(path);
  out << std::setprecision(17);
  out << "losses";
  for (double l : losses) out << " " << l;
  out << "\n";
  auto& store = get_param_store();
  auto names = store.names();
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    auto v = store.get(n).detach().to(torch::kDouble).reshape(-1).contiguous();
    out << n;
    for (int64_t i = 0; i < v.numel(); ++i) out << " " << v[i].item<double>();
    out << "\n";
  }
}

std::map<std::string, std::vector<double>> read_result(const std::string& path) {
  std::map<std::string, std::vector<double>> r;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string name;
    ls >> name;
    double v;
    while (ls >> v) r[name].push_back(v);
  }
  return r;
}

// Largest difference between two results, relative to the value where it exceeds 1 (losses
// are sums over a batch), with where it is.
std::pair<double, std::string> max_difference(const std::map<std::string, std::vector<double>>& a,
                                              const std::map<std::string, std::vector<double>>& b) {
  double worst = 0;
  std::string where = "(none)";
  REQUIRE(a.size() == b.size());
  for (const auto& [name, va] : a) {
    REQUIRE_MESSAGE(b.count(name), "missing ", name);
    const auto& vb = b.at(name);
    REQUIRE_MESSAGE(va.size() == vb.size(), name);
    for (size_t i = 0; i < va.size(); ++i)
      if (const double d = std::abs(va[i] - vb[i]) / std::max(1.0, std::abs(va[i])); d > worst) worst = d, where = cat(name, "[", i, "]");
  }
  return {worst, where};
}

// A model with a global latent and a subsampled plate, fit by MAP (Delta guides), in float64:
// its ELBO has no Monte Carlo noise, so one process and two must agree to rounding.
constexpr int64_t kToyN = 12, kToyBatch = 7, kToySteps = 6;

torch::Tensor toy_data() {
  return torch::sin(torch::arange(kToyN, torch::kDouble) * 1.3) * 2.0 + 0.5;
}

void toy_model(const torch::Tensor& idx) {
  auto mu = sample("mu", dist::Normal(torch::tensor(0.0, torch::kDouble), torch::tensor(10.0, torch::kDouble)));
  auto noise = param("noise", torch::tensor(1.0, torch::kDouble), constraints::positive());
  auto data = plate("data", kToyN, PlateOptions().subsample(idx));
  auto z = sample("z", dist::Normal(mu, torch::tensor(1.0, torch::kDouble)));
  sample("x", dist::Normal(z, noise), toy_data().index_select(0, idx));
}

// How a rank's guide departs from the common one.
enum class Variant { same, extra_param, own_init };

void toy_guide(const torch::Tensor& idx, Variant variant, int64_t rank) {
  // own_init: each rank initialises mu_loc differently (rank 0 as one process does).
  const double init = 0.3 + (variant == Variant::own_init ? 0.5 * static_cast<double>(rank) : 0.0);
  auto mu_loc = param("mu_loc", torch::tensor(init, torch::kDouble));
  const bool extra_param = variant == Variant::extra_param && rank == 1;
  sample("mu", dist::Delta(mu_loc));
  auto z_loc = param("z_loc", torch::zeros({kToyN}, torch::kDouble));
  if (extra_param) param("created_on_rank_1_only", torch::zeros({2}, torch::kDouble));
  auto data = plate("data", kToyN, PlateOptions().subsample(idx));
  sample("z", dist::Delta(z_loc.index_select(0, idx)));
}

// Step t's global batch: 7 of the 12 points (7 and 12 are coprime, so the 7 differ).
torch::Tensor toy_batch(int64_t t) { return (torch::arange(kToyBatch, torch::kLong) * 7 + t * 5) % kToyN; }

std::vector<double> train_toy(edist::DataParallel* parallel, int64_t rank, int64_t world, Variant variant) {
  clear_param_store();
  infer::SVI svi([](const torch::Tensor& idx) { toy_model(idx); },
                 [variant, rank](const torch::Tensor& idx) { toy_guide(idx, variant, rank); }, infer::Adam(infer::AdamOptions().lr(0.1)),
                 infer::Trace_ELBO());
  if (parallel) parallel->attach(svi);
  std::vector<double> losses;
  for (int64_t t = 0; t < kToySteps; ++t) {
    const auto global = toy_batch(t);
    const auto local = edist::shard_rows(global, rank, world);
    std::optional<edist::ShardMessenger> shard;
    if (parallel) shard.emplace("data", local.size(0), global.size(0), world);
    losses.push_back(svi.step(local));
  }
  return losses;
}

#ifdef EMBER_TEST_CAUSAL_VAE
// Guide draws of Z replaced by the guide's mean (still a function of the encoder, so every
// weight gets a gradient): the VAE's ELBO without Monte Carlo noise.
class ZAtGuideMean : public Messenger {
 public:
  ZAtGuideMean() { enter(); }
  void process(Message& msg) override {
    if (msg.type == SiteType::sample && msg.name == "Z" && !msg.value.defined() && !msg.is_observed) msg.value = msg.fn->mean();
  }
};

constexpr int64_t kVaeBatch = 10, kVaeSteps = 4;

causal_vae::Batch vae_batch(int64_t t) {
  auto rows = torch::arange(kVaeBatch, torch::kLong) + t;
  auto pixels = torch::arange(kVaeBatch * 784, torch::kFloat).reshape({kVaeBatch, 784});
  return {torch::sin(pixels * 0.37f + static_cast<float>(t)) * 0.5f + 0.5f,
          torch::one_hot(rows % 10, 10).to(torch::kFloat), (rows % 2).to(torch::kFloat).unsqueeze(1)};
}

std::vector<double> train_vae(edist::DataParallel* parallel, int64_t rank, int64_t world) {
  clear_param_store();
  torch::manual_seed(7);  // the same initial networks on every rank
  causal_vae::Config config;
  config.z_dim = 3;
  config.hidden_dim = 8;
  causal_vae::CausalVAE vae(config);
  infer::SVI svi([&](const causal_vae::Batch& b) { vae.training_model(b); },
                 [&](const causal_vae::Batch& b) { vae.training_guide(b); }, infer::Adam(infer::AdamOptions().lr(0.01)),
                 infer::Trace_ELBO());
  if (parallel) parallel->attach(svi);
  std::vector<double> losses;
  for (int64_t t = 0; t < kVaeSteps; ++t) {
    const auto global = vae_batch(t);
    const auto [begin, end] = edist::shard_range(kVaeBatch, rank, world);
    causal_vae::Batch local{global.image.slice(0, begin, end), global.digit.slice(0, begin, end),
                            global.is_handwritten.slice(0, begin, end)};
    ZAtGuideMean deterministic;
    std::optional<edist::ShardMessenger> shard;
    if (parallel) shard.emplace("data", end - begin, kVaeBatch, world);
    losses.push_back(svi.step(local));
  }
  return losses;
}
#endif

// `test_distributed --worker KIND --rank R --world W --port P --out FILE`: one rank.
int worker(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 1; i + 1 < argc; i += 2) a[argv[i]] = argv[i + 1];
  torch::set_num_threads(1);
  const int64_t rank = std::stoll(a.at("--rank")), world = std::stoll(a.at("--world"));
  try {
    edist::ProcessGroup group(edist::GroupOptions().master_port(std::stoll(a.at("--port"))).rank(rank).world_size(world).timeout(20));
    edist::DataParallel parallel(group, edist::DataParallelOptions().bucket_bytes(std::stoll(a.count("--bucket") ? a.at("--bucket") : "1000000")));
    const std::string& kind = a.at("--worker");
    std::vector<double> losses;
    if (kind == "toy") losses = train_toy(&parallel, rank, world, Variant::same);
    else if (kind == "lazy") losses = train_toy(&parallel, rank, world, Variant::extra_param);
    else if (kind == "own-init") losses = train_toy(&parallel, rank, world, Variant::own_init);
#ifdef EMBER_TEST_CAUSAL_VAE
    else if (kind == "vae") losses = train_vae(&parallel, rank, world);
#endif
    else throw ValueError(cat("unknown worker kind ", kind));
    write_result(cat(a.at("--out"), ".rank", rank), losses);
    std::cout << "buckets per step " << parallel.stats().last_step_buckets << ", recomputed steps "
              << parallel.stats().recomputed_steps << "\n";
  } catch (const std::exception& e) {
    std::cerr << "worker rank " << rank << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}

// Runs `world` workers of `kind`; returns the path prefix of their results.
std::string run_workers(const std::string& kind, int64_t world, const std::string& dir, const std::string& bucket = "1000000") {
  const int port = free_port();
  const std::string out = dir + "/" + kind;
  std::vector<Child> children;
  for (int64_t r = 0; r < world; ++r)
    children.push_back(spawn({self_exe(), "--worker", kind, "--rank", std::to_string(r), "--world", std::to_string(world), "--port",
                              std::to_string(port), "--out", out, "--bucket", bucket},
                             cat(out, ".log", r)));
  for (const auto& c : children) CHECK_MESSAGE(finish(c, 50) == 0, read_all(c.log));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--worker") return worker(argc, argv);
  doctest::Context context(argc, argv);
  return context.run();
}

// ------------------------------------------------------------------ in one process

TEST_CASE("shard_range cuts n items into contiguous parts whose sizes differ by at most one") {
  CHECK(edist::shard_range(7, 0, 2) == std::pair<int64_t, int64_t>{0, 4});
  CHECK(edist::shard_range(7, 1, 2) == std::pair<int64_t, int64_t>{4, 7});
  CHECK(edist::shard_range(10, 2, 3) == std::pair<int64_t, int64_t>{7, 10});
  CHECK(edist::shard_range(2, 2, 3) == std::pair<int64_t, int64_t>{2, 2});
  CHECK_THROWS_AS(edist::shard_range(5, 2, 2), ValueError);
  auto rows = edist::shard_rows(torch::arange(10, 20), 1, 3);
  CHECK(rows.equal(torch::arange(14, 17)));
}

TEST_CASE("ShardMessenger weights a plate over the rank's rows by the world size and a subsampled plate to the global batch") {
  auto run = [](int64_t local, int64_t global, int64_t world, bool subsampled) {
    std::optional<edist::ShardMessenger> shard;
    shard.emplace("data", local, global, world);
    auto tr = trace([&] {
      auto g = sample("g", dist::Normal(0., 1.));
      auto p = subsampled ? plate("data", 100, PlateOptions().subsample(torch::arange(local))) : plate("data", local);
      sample("x", dist::Normal(g, 1.));
    });
    return tr.get_trace();
  };
  auto whole = run(3, 7, 2, false);
  CHECK(whole.at("g").scale == 1.0);       // outside the plate: a global latent counts once per rank
  CHECK(whole.at("x").scale == 2.0);       // 3 of 7 units: the average over 2 ranks counts each once
  auto sub = run(3, 7, 2, true);
  CHECK(sub.at("x").scale == doctest::Approx(100.0 / 3 * 2 * 3 / 7));  // = 2 * 100 / 7
  // A plate that does not hold the shard's rows is a mistake, named.
  edist::ShardMessenger shard("data", 3, 7, 2);
  CHECK_THROWS_WITH_AS(trace([] {
                         auto p = plate("data", 4);
                         sample("x", dist::Normal(0., 1.));
                       }).get_trace(),
                       doctest::Contains("plate 'data' holds 4 units, but this rank's shard of the 7 units of the global batch has 3"),
                       ShapeError);
}

TEST_CASE("torchrun variables and --master parse, and malformed ones are refused with their name") {
  ::setenv("MASTER_ADDR", "10.1.2.3", 1);
  ::setenv("MASTER_PORT", "1234", 1);
  ::setenv("RANK", "3", 1);
  ::setenv("WORLD_SIZE", "4", 1);
  auto o = edist::group_options_from_env();
  CHECK(o.master_addr() == "10.1.2.3");
  CHECK(o.master_port() == 1234);
  CHECK(o.rank() == 3);
  CHECK(o.world_size() == 4);
  ::setenv("RANK", "three", 1);
  CHECK_THROWS_WITH_AS(edist::group_options_from_env(), doctest::Contains("RANK 'three'"), ValueError);
  for (const char* k : {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"}) ::unsetenv(k);
  edist::GroupOptions g;
  edist::parse_master("host.example:29501", g);
  CHECK(g.master_addr() == "host.example");
  CHECK(g.master_port() == 29501);
  CHECK_THROWS_WITH_AS(edist::parse_master("host.example", g), doctest::Contains("ADDR:PORT"), ValueError);
  CHECK_THROWS_AS(edist::ProcessGroup(edist::GroupOptions().rank(2).world_size(2)), ValueError);
}

// ------------------------------------------------------------------ across processes

TEST_CASE("two processes train a model with a global latent and a subsampled plate to the params and losses of one process") {
  // One process: plain SVI on the global batch of 7. Two: 4 + 3 rows, gradients averaged.
  // One bucket per param (bucket_bytes 8) also checks that bucketing does not change the sums.
  const auto dir = scratch("toy");
  const auto losses = train_toy(nullptr, 0, 1, Variant::same);
  write_result(dir + "/one", losses);
  const auto one = read_result(dir + "/one");
  for (const std::string bucket : {"1000000", "8"}) {
    CAPTURE(bucket);
    const auto prefix = run_workers("toy", 2, dir, bucket);
    CHECK(read_all(prefix + ".log0").find("recomputed steps 0") != std::string::npos);
    for (int r = 0; r < 2; ++r) {
      const auto two = read_result(cat(prefix, ".rank", r));
      const auto [worst, where] = max_difference(one, two);
      CAPTURE(where);
      MESSAGE("toy model, 2 processes vs 1: largest difference ", worst, " at ", where);
      CHECK(worst < 1e-12);  // float64, 6 Adam steps: rounding only
    }
  }
  // The params moved: the test compares trained values, not initial ones.
  CHECK(std::abs(one.at("mu_loc")[0] - 0.3) > 0.1);

  // Ranks that initialise a param differently train with rank 0's value: the first step is
  // recomputed from it, and the result is still one process's.
  const auto prefix = run_workers("own-init", 2, dir);
  for (int r = 0; r < 2; ++r) {
    CHECK(read_all(cat(prefix, ".log", r)).find("recomputed steps 1") != std::string::npos);
    const auto [worst, where] = max_difference(one, read_result(cat(prefix, ".rank", r)));
    CAPTURE(where);
    CHECK(worst < 1e-12);
  }
  fs::remove_all(dir);  // kept when a REQUIRE stops the case early
}

#ifdef EMBER_TEST_CAUSAL_VAE
TEST_CASE("two processes train the causal VAE to the params and losses of one process with the same global batch") {
  const auto dir = scratch("vae");
  const auto losses = train_vae(nullptr, 0, 1);
  write_result(dir + "/one", losses);
  const auto one = read_result(dir + "/one");
  const auto prefix = run_workers("vae", 2, dir);
  for (int r = 0; r < 2; ++r) {
    const auto two = read_result(cat(prefix, ".rank", r));
    const auto [worst, where] = max_difference(one, two);
    CAPTURE(where);
    MESSAGE("VAE, 2 processes vs 1: largest difference ", worst, " at ", where);
    CHECK(worst < 1e-5);  // float32 sums in another order, 4 Adam steps of lr 0.01 (measured: 1.7e-7)
  }
  CHECK(std::abs(one.at("losses")[0] - one.at("losses")[3]) > 1.0);
  fs::remove_all(dir);  // kept when a REQUIRE stops the case early
}
#endif

TEST_CASE("a param created on one rank only stops every rank with an error naming it") {
  const auto dir = scratch("lazy");
  const int port = free_port();
  std::vector<Child> children;
  for (int r = 0; r < 2; ++r)
    children.push_back(spawn({self_exe(), "--worker", "lazy", "--rank", std::to_string(r), "--world", "2", "--port",
                              std::to_string(port), "--out", dir + "/lazy"},
                             cat(dir, "/lazy.log", r)));
  for (const auto& c : children) {
    CHECK(finish(c, 50) == 1);
    const auto log = read_all(c.log);
    CHECK_MESSAGE(log.find("param 'created_on_rank_1_only' exists on rank(s) 1 but not on rank(s) 0") != std::string::npos, log);
  }
  fs::remove_all(dir);
}

#ifdef EMBER_CAUSAL_VAE_BIN
namespace {

std::vector<std::string> train_args(const std::string& out, int port, int rank, int world, const std::vector<std::string>& extra = {},
                                    const std::string& timeout = "20", const std::string& epochs = "3") {
  std::vector<std::string> a = {EMBER_CAUSAL_VAE_BIN, "train", "--world-size", std::to_string(world), "--rank", std::to_string(rank),
                                "--master", cat("127.0.0.1:", port), "--epochs", epochs, "--z-dim", "4", "--hidden-dim", "16",
                                "--batch-size", "256", "--threads", "1", "--test-every", "100", "--timeout", timeout, "--out", out};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

std::map<std::string, std::vector<double>> checkpoint_params(const std::string& path) {
  ParamStore store;
  ParamStoreScope scope(store);
  infer::Adam unused;
  infer::load_checkpoint(path, unused, infer::CheckpointOptions().rng(false));
  std::map<std::string, std::vector<double>> r;
  for (const auto& n : store.names()) {
    auto v = store.get(n).detach().to(torch::kDouble).reshape(-1).contiguous();
    r[n] = std::vector<double>(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
  }
  return r;
}

}  // namespace

TEST_CASE("killing one rank mid-run stops the other within the timeout, and restarting both resumes to the uninterrupted params") {
  const auto dir = scratch("resume");
  // Uninterrupted: 2 ranks, 2 epochs.
  int port = free_port();
  std::vector<Child> whole;
  for (int r = 0; r < 2; ++r) whole.push_back(spawn(train_args(dir + "/whole", port, r, 2, {}, "20", "2"), cat(dir, "/whole.log", r)));
  for (const auto& c : whole) REQUIRE_MESSAGE(finish(c, 55) == 0, read_all(c.log));

  // Interrupted: rank 1 is killed as soon as rank 0 has checkpointed epoch 1.
  port = free_port();
  const std::string cut = dir + "/cut";
  std::vector<Child> ranks;
  for (int r = 0; r < 2; ++r) ranks.push_back(spawn(train_args(cut, port, r, 2, {}, "20", "2"), cat(dir, "/cut.log", r)));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  while (!fs::exists(cut + "/checkpoint.ember") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(fs::exists(cut + "/checkpoint.ember"));
  ::kill(ranks[1].pid, SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  CHECK(finish(ranks[1], 10) == 128 + SIGKILL);
  const int code = finish(ranks[0], 30);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  CHECK(code == 1);
  CHECK(took < 20.0);  // --timeout 20
  const auto log0 = read_all(ranks[0].log);
  CHECK_MESSAGE(log0.find("rank 0 of 2: the all-reduce of step") != std::string::npos, log0);
  CHECK_MESSAGE(log0.find("Rank 1 did not report") != std::string::npos, log0);
  CHECK(read_all(cut + "/metrics.jsonl").find("\"epoch\":2") == std::string::npos);  // it did stop early

  // Restart both: rank 0 resumes from its checkpoint and sends it to rank 1.
  port = free_port();
  std::vector<Child> again;
  for (int r = 0; r < 2; ++r) again.push_back(spawn(train_args(cut, port, r, 2, {"--resume"}, "20", "2"), cat(dir, "/again.log", r)));
  for (const auto& c : again) REQUIRE_MESSAGE(finish(c, 55) == 0, read_all(c.log));
  CHECK(read_all(again[0].log).find("resuming") != std::string::npos);
  const auto [worst, where] = max_difference(checkpoint_params(dir + "/whole/checkpoint.ember"), checkpoint_params(cut + "/checkpoint.ember"));
  CAPTURE(where);
  CHECK(worst == 0.0);  // the same operations in the same order: bit for bit
  CHECK(read_all(again[1].log).find("Run directory") == std::string::npos);  // rank 0 alone writes and reports
  fs::remove_all(dir);  // kept when a REQUIRE stops the case early
}

TEST_CASE("a rank that hangs makes the other stop within the timeout") {
  const auto dir = scratch("hang");
  const int port = free_port();
  std::vector<Child> ranks;
  for (int r = 0; r < 2; ++r) ranks.push_back(spawn(train_args(dir + "/run", port, r, 2, {}, "6"), cat(dir, "/hang.log", r)));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  while (read_all(ranks[0].log).find("data-parallel:") == std::string::npos && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // into the steps
  ::kill(ranks[1].pid, SIGSTOP);
  const auto stopped = std::chrono::steady_clock::now();
  const int code = finish(ranks[0], 30);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  ::kill(ranks[1].pid, SIGKILL);
  finish(ranks[1], 10);
  CHECK(code == 1);
  CHECK(took < 6.0 + 3.0);  // --timeout 6 bounds the wait and the grace together; then the process exits (measured: 6.4 s)
  const auto log0 = read_all(ranks[0].log);
  CHECK_MESSAGE(log0.find("Rank 1 did not report") != std::string::npos, log0);
  MESSAGE("rank 0 stopped ", took, " s after rank 1 hung: ", log0.substr(std::min(log0.size(), log0.rfind("causal-vae: error"))));
  fs::remove_all(dir);
}

TEST_CASE("a rank started with another world size, or without a reachable master, fails fast with a clear message") {
  const auto dir = scratch("fail-fast");
  int port = free_port();
  auto t0 = std::chrono::steady_clock::now();
  auto r0 = spawn(train_args(dir + "/run", port, 0, 2), dir + "/ws0.log");
  auto r1 = spawn(train_args(dir + "/run", port, 1, 3), dir + "/ws1.log");
  CHECK(finish(r0, 30) == 1);
  CHECK(finish(r1, 30) == 1);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(15));
  CHECK_MESSAGE(read_all(r0.log).find("was started with world size 3 but rank 0 with 2") != std::string::npos, read_all(r0.log));
  CHECK_MESSAGE(read_all(r1.log).find("world size") != std::string::npos, read_all(r1.log));

  port = free_port();  // nobody listens there
  t0 = std::chrono::steady_clock::now();
  auto lonely = spawn(train_args(dir + "/run", port, 1, 2, {}, "3"), dir + "/lonely.log");
  CHECK(finish(lonely, 30) == 1);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  CHECK_MESSAGE(read_all(lonely.log).find(cat("rank 1 of 2: cannot reach the master 127.0.0.1:", port, " within 3 s")) != std::string::npos,
                read_all(lonely.log));
  fs::remove_all(dir);  // kept when a REQUIRE stops the case early
}
#endif

#ifdef EMBER_CAUSAL_VAE_BIN
TEST_CASE("a run checkpointed by two processes resumes in one, and that one in two") {
  const auto dir = scratch("regroup");
  const std::string run = dir + "/run";
  int port = free_port();
  std::vector<Child> first;
  for (int r = 0; r < 2; ++r) {
    first.push_back(spawn(train_args(run, port, r, 2, {}, "20", "1"), cat(dir, "/first.log", r)));
  }
  for (const auto& c : first) REQUIRE_MESSAGE(finish(c, 55) == 0, read_all(c.log));
  auto alone = spawn(train_args(run, free_port(), 0, 1, {"--resume"}, "20", "2"), dir + "/alone.log");
  REQUIRE_MESSAGE(finish(alone, 55) == 0, read_all(alone.log));
  CHECK(read_all(alone.log).find("resuming " + run + " after epoch 1") != std::string::npos);
  port = free_port();
  std::vector<Child> again;
  for (int r = 0; r < 2; ++r) again.push_back(spawn(train_args(run, port, r, 2, {"--resume"}), cat(dir, "/again.log", r)));
  for (const auto& c : again) REQUIRE_MESSAGE(finish(c, 55) == 0, read_all(c.log));
  CHECK(read_all(again[0].log).find("resuming " + run + " after epoch 2") != std::string::npos);
  const auto metrics = read_all(run + "/metrics.jsonl");
  for (const char* e : {"\"epoch\":1,", "\"epoch\":2,", "\"epoch\":3,"}) CHECK_MESSAGE(metrics.find(e) != std::string::npos, metrics);
  fs::remove_all(dir);  // kept when a REQUIRE stops the case early
}
#endif
