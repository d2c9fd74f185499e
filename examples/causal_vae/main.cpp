// causal-vae: train, evaluate, look at, intervene on and ask counterfactuals of the causal
// VAE of chapter 5 of Ness, *Causal AI*, from the command line. See
// docs/tutorial-causal-vae.md.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <unistd.h>

#include "examples/causal_vae/causal_vae.h"
#include "examples/causal_vae/run_dir.h"
#include "inference/elbo.h"
#include "inference/svi.h"
#include "io/state_dict.h"
#include "viz/image_grid.h"
#include "viz/model_graph.h"
#include "viz/plot.h"
#include "viz/progress.h"
#ifdef EMBER_HAVE_DISTRIBUTED
#include "distributed/distributed.h"
#endif

namespace fs = std::filesystem;
using namespace ember;
using causal_vae::CausalVAE;

namespace {

// ------------------------------------------------------------------ shared options

// Bounds on a number, with a plain message (CLI11's own print the range's limits in full).
CLI::Validator number_above(double lower, bool inclusive) {
  return CLI::Validator(
      [lower, inclusive](std::string& input) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(input, v)) return cat("'", input, "' is not a number");
        if (inclusive ? v >= lower : v > lower) return std::string();
        return cat("must be ", inclusive ? ">= " : "> ", lower, ", got ", input);
      },
      inclusive ? "NONNEGATIVE" : "POSITIVE");
}
const CLI::Validator kPositive = number_above(0, false);
const CLI::Validator kNonNegative = number_above(0, true);

struct DataOptions {
  std::string data = "bundled";
  int64_t threads = 0;
  std::string device = "cpu";
};

void add_data_options(CLI::App* app, DataOptions& o) {
  app->add_option("--data", o.data, "bundled | a folder of MNIST IDX files | a CSV in the book's or Kaggle's layout")
      ->capture_default_str();
  app->add_option("--threads", o.threads, "LibTorch intra-op threads (0 = LibTorch's default)")
      ->check(kNonNegative)
      ->capture_default_str();
  app->add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
}

torch::Device parse_device(const std::string& s) {
  torch::Device d(s);
  if (d.is_cuda() && !torch::cuda::is_available()) throw ValueError(cat("--device ", s, ": CUDA is not available on this machine"));
  return d;
}

void apply_threads(int64_t threads) {
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
}

// Positions in the test split -> a model batch.
causal_vae::Batch test_examples(const data::DigitDataset& ds, const std::vector<int64_t>& positions) {
  const auto& rows = ds.rows(data::Split::Test);
  std::vector<int64_t> picked;
  for (auto p : positions) {
    if (p < 0 || p >= static_cast<int64_t>(rows.size()))
      throw ValueError(cat("test example ", p, " is out of range: the test split has ", rows.size(), " images"));
    picked.push_back(rows[static_cast<size_t>(p)]);
  }
  return causal_vae::to_model_batch(ds.gather(torch::tensor(picked, torch::kLong)));
}

// Digit and is_handwritten of each test-split position.
std::pair<std::vector<int64_t>, std::vector<bool>> test_labels(const data::DigitDataset& ds) {
  auto batch = ds.gather(torch::tensor(ds.rows(data::Split::Test), torch::kLong));
  auto labels = batch.labels.cpu().contiguous(), styles = (batch.handwritten > 0.5).cpu().contiguous();
  const int64_t n = labels.size(0);
  std::vector<int64_t> l(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + n);
  std::vector<bool> h(styles.data_ptr<bool>(), styles.data_ptr<bool>() + n);
  return {l, h};
}

// Up to `n` positions in the test split covering every (style, digit) cell: one handwritten
// image of each digit 0-9, then one typed of each, then the next round, in split order.
std::vector<int64_t> varied_test_positions(const data::DigitDataset& ds, int64_t n) {
  const auto [labels, styles] = test_labels(ds);
  std::vector<std::vector<int64_t>> cells(20);  // handwritten 0-9, then typed 0-9
  for (size_t i = 0; i < labels.size(); ++i) cells[(styles[i] ? 0 : 10) + static_cast<size_t>(labels[i])].push_back(int64_t(i));
  std::vector<int64_t> picked;
  for (size_t round = 0; static_cast<int64_t>(picked.size()) < n; ++round) {
    const size_t before = picked.size();
    for (const auto& cell : cells)
      if (round < cell.size() && static_cast<int64_t>(picked.size()) < n) picked.push_back(cell[round]);
    if (picked.size() == before) break;  // every test image is taken
  }
  return picked;
}

// One test image of each digit 0-9, handwritten for even digits and typed for odd ones (the
// other style where the split has none).
std::vector<int64_t> one_per_digit_test_positions(const data::DigitDataset& ds) {
  const auto [labels, styles] = test_labels(ds);
  std::vector<int64_t> picked;
  for (int64_t d = 0; d < 10; ++d) {
    std::optional<int64_t> wanted, other;
    for (size_t p = 0; p < labels.size(); ++p) {
      if (labels[p] != d) continue;
      auto& slot = styles[p] == (d % 2 == 0) ? wanted : other;
      if (!slot) slot = int64_t(p);
    }
    if (wanted || other) picked.push_back(wanted ? *wanted : *other);
  }
  return picked;
}

// ------------------------------------------------------------------ pictures

// Test images (odd rows) above their reconstructions (even rows).
void write_reconstructions(CausalVAE& vae, const causal_vae::Batch& b, const std::string& path, int64_t per_row) {
  torch::NoGradGuard no_grad;
  auto recon = vae.reconstruct(b);
  const int64_t n = b.image.size(0), rows = (n + per_row - 1) / per_row;
  std::vector<torch::Tensor> tiles;
  for (int64_t r = 0; r < rows; ++r) {
    const torch::Tensor* sources[] = {&b.image, &recon};
    for (const torch::Tensor* src : sources)
      for (int64_t c = 0; c < per_row; ++c) {
        int64_t i = r * per_row + c;
        tiles.push_back(i < n ? (*src)[i].cpu() : torch::zeros({b.image.size(1)}));
      }
  }
  viz::write_image_grid(path, torch::stack(tiles), viz::ImageGridOptions().cols(per_row).upscale(2));
}

// Rows: digits 0-9. Columns: `per_cell` handwritten, then `per_cell` typed.
torch::Tensor generate_grid(CausalVAE& vae, int64_t per_cell) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> rows;
  for (int64_t d = 0; d < 10; ++d) {
    for (double h : {1.0, 0.0}) rows.push_back(vae.generate(d, h, per_cell).cpu());
  }
  return torch::cat(rows, 0);
}

// Rows labelled by digit, columns by style.
viz::ImageGridOptions generate_grid_options(int64_t per_cell) {
  std::vector<std::string> rows, cols;
  for (int d = 0; d < 10; ++d) rows.push_back(std::to_string(d));
  for (const char* style : {"hand", "typed"})
    for (int64_t i = 0; i < per_cell; ++i) cols.push_back(style);
  return viz::ImageGridOptions().cols(2 * per_cell).upscale(2).row_labels(rows).col_labels(cols);
}

void write_loss_curve(const causal_vae::RunDir& run) {
  viz::Series train{"train", {}, {}}, test{"test", {}, {}};
  for (const auto& m : run.read_metrics()) {
    train.x.push_back(m["epoch"].get<double>());
    train.y.push_back(m["train_loss"].get<double>());
    if (!m["test_loss"].is_null()) {
      test.x.push_back(m["epoch"].get<double>());
      test.y.push_back(m["test_loss"].get<double>());
    }
  }
  viz::write_line_plot(run.path("loss-curve.png"), {train, test},
                       viz::PlotOptions().title("Causal VAE: negative ELBO per image").x_label("epoch").y_label("loss (nats)"));
}

// ------------------------------------------------------------------ train

// Where a diverged step went wrong: the first site whose parameters are not valid, and the
// network parameters holding non-finite values.
std::string diagnose_divergence(CausalVAE& vae, const causal_vae::Batch& b) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> found;
  auto [loc, scale] = vae.encoder()->forward(b.image, b.digit, vae.encode_style(b.is_handwritten));
  if (!loc.isfinite().all().item<bool>()) found.push_back("site 'Z' (guide): the encoder's loc is not finite");
  else if (!(scale.isfinite() & (scale > 0)).all().item<bool>())
    found.push_back(cat("site 'Z' (guide): the encoder's scale is not finite and positive (it ranges over [",
                        scale.min().item<double>(), ", ", scale.max().item<double>(), "])"));
  else if (auto probs = vae.decoder()->forward(loc, b.digit, vae.encode_style(b.is_handwritten)); !probs.isfinite().all().item<bool>())
    found.push_back("site 'img' (model): the decoder's pixel probabilities are not finite");
  std::string bad;
  for (auto* net : {static_cast<torch::nn::Module*>(vae.encoder().get()), static_cast<torch::nn::Module*>(vae.decoder().get())})
    for (const auto& p : net->named_parameters())
      if (!p.value().isfinite().all().item<bool>())
        bad += cat(bad.empty() ? "" : ", ", net == vae.encoder().get() ? "encoder." : "decoder.", p.key());
  if (!bad.empty()) found.push_back(cat("parameters with non-finite values: ", bad));
  std::string out;
  for (const auto& f : found) out += cat("; ", f);
  return out;
}

// The message of a diverged run: where, why, what is kept, what to try.
ValueError divergence_error(const causal_vae::RunDir& run, const causal_vae::TrainConfig& cfg, int64_t epoch, int64_t step,
                            const std::string& what, const std::string& diagnosis) {
  const std::string kept = run.has_checkpoint()
                               ? cat("The last good checkpoint (after epoch ", epoch - 1, ") is kept in ", run.checkpoint())
                               : std::string("No checkpoint was written");
  return ValueError(cat("training diverged in epoch ", epoch, ", step ", step, ": ", what, diagnosis, ". ", kept,
                        ". Train again with a lower --lr than ", cfg.lr, " (e.g. --lr ", cfg.lr / 10, ") into a new --out"));
}

struct TrainOptions {
  DataOptions data;
  causal_vae::TrainConfig train;
  std::string out = "runs/causal-vae";
  bool resume = false;
  /// Settings given on the command line (a resumed run must not contradict its config).
  std::vector<std::string> given;
  /// Data-parallel training: world size (0: WORLD_SIZE if set, else 1), rank (-1: RANK if
  /// set, else 0), master "ADDR:PORT" (empty: MASTER_ADDR/MASTER_PORT), timeout in seconds.
  int64_t world_size = 0, rank = -1;
  std::string master;
  double timeout = 60;
};

// What the train loop needs of data-parallel training (distributed/distributed.h); inert in a
// single process and in builds without distributed/.
class Parallel {
 public:
  explicit Parallel(const TrainOptions& o) {
#ifdef EMBER_HAVE_DISTRIBUTED
    auto g = distributed::group_options_from_env();
    if (o.world_size > 0) g.world_size(o.world_size);
    if (o.rank >= 0) g.rank(o.rank);
    if (!o.master.empty()) distributed::parse_master(o.master, g);
    g.timeout(o.timeout);
    if (g.world_size() > 1) group_ = std::make_unique<distributed::ProcessGroup>(g);
    else if (g.rank() != 0) throw ValueError(cat("--rank ", g.rank(), " needs a --world-size above it"));
#else
    if (o.world_size > 1 || !o.master.empty() || std::getenv("WORLD_SIZE"))
      throw ValueError("this causal-vae was built without distributed/ (c10d + Gloo headers): install libgloo-dev and "
                       "rebuild to train on several processes");
#endif
  }
#ifdef EMBER_HAVE_DISTRIBUTED
  bool active() const { return group_ != nullptr; }
  int64_t rank() const { return group_ ? group_->rank() : 0; }
  int64_t world_size() const { return group_ ? group_->world_size() : 1; }
#else
  bool active() const { return false; }
  int64_t rank() const { return 0; }
  int64_t world_size() const { return 1; }
#endif

  // Every rank trains with rank 0's settings and follows its decision to resume; a fresh run's
  // ranks must have been given the same settings (--data may name another path elsewhere).
  void share_settings(causal_vae::TrainConfig& cfg, bool& resume, const std::vector<std::string>& given) {
#ifdef EMBER_HAVE_DISTRIBUTED
    if (!group_) return;
    std::string text = rank() == 0 ? nlohmann::json{{"config", causal_vae::to_json(cfg)}, {"resume", resume}}.dump() : "";
    group_->broadcast_bytes(text, "receiving rank 0's training settings");
    if (rank() == 0) return;
    const auto j = nlohmann::json::parse(text);
    const auto theirs = causal_vae::train_config_from_json(j.at("config"), "rank 0's settings");
    resume = j.at("resume").get<bool>();
    const auto mine = causal_vae::to_json(cfg), zero = causal_vae::to_json(theirs);
    if (!resume)
      for (const auto& [key, value] : zero.items())
        if (key != "data" && mine.at(key) != value)
          throw ValueError(cat("--", key, " ", mine.at(key).dump(), " differs from rank 0's ", value.dump(),
                               "; start every rank with the same settings"));
    const bool data_given = std::find(given.begin(), given.end(), "--data") != given.end();
    const std::string data = cfg.data;
    cfg = theirs;
    if (data_given) cfg.data = data;
#endif
  }

  template <class SVI>
  void attach(SVI& svi, int64_t batch_size) {
#ifdef EMBER_HAVE_DISTRIBUTED
    if (!group_) return;
    if (batch_size < world_size())
      throw ValueError(cat("--batch-size ", batch_size, " is smaller than the world size ", world_size(),
                           ": every rank needs a share of each batch"));
    parallel_ = std::make_unique<distributed::DataParallel>(*group_);
    parallel_->attach(svi);
#endif
  }

  template <class SVI>
  void load(SVI& svi, const std::string& checkpoint) {
#ifdef EMBER_HAVE_DISTRIBUTED
    if (parallel_) return parallel_->load(svi, checkpoint);
#endif
    svi.load(checkpoint);
  }

  // Each rank's own stream of Z draws per epoch: ranks draw independent noise, and a run
  // resumed at an epoch boundary draws what the uninterrupted run drew.
  void seed_epoch(uint64_t seed, int64_t epoch) const {
    if (!active()) return;
    uint64_t x = seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(epoch + 1)) ^
                 (0xBF58476D1CE4E5B9ull * static_cast<uint64_t>(rank() + 1));
    x ^= x >> 31;
    torch::manual_seed(x & 0x7FFFFFFFFFFFFFFFull);
  }

  // This rank's rows of a global batch.
  torch::Tensor rows(const torch::Tensor& global_rows) const {
#ifdef EMBER_HAVE_DISTRIBUTED
    if (group_) return distributed::shard_rows(global_rows, rank(), world_size());
#endif
    return global_rows;
  }

  // Plate "data" holds this rank's share of the global batch (scaling for the global batch).
  std::unique_ptr<Messenger> shard(int64_t local_size, int64_t global_size) const {
#ifdef EMBER_HAVE_DISTRIBUTED
    if (parallel_) return std::make_unique<distributed::ShardMessenger>("data", local_size, global_size, world_size());
#endif
    return nullptr;
  }

  // Whether `e` is an error of data-parallel training itself (another rank stopped, the ranks
  // disagree), not of this rank's model.
  static bool owns(const ember::Error& e) {
#ifdef EMBER_HAVE_DISTRIBUTED
    return dynamic_cast<const distributed::DataParallelError*>(&e) != nullptr;
#else
    return false;
#endif
  }

  void report_failure(const std::string& what) {
#ifdef EMBER_HAVE_DISTRIBUTED
    if (group_) group_->report_failure(cat("rank ", rank(), " stopped: ", what.substr(0, what.find('\n'))));
#endif
  }

  std::string summary() const {
#ifdef EMBER_HAVE_DISTRIBUTED
    if (parallel_) {
      const auto& st = parallel_->stats();
      return cat(world_size(), " processes; per step ", st.last_step_buckets, " gradient bucket(s), ", st.last_step_bytes,
                 " bytes all-reduced; ", st.communication_seconds, " s of rank 0's time in collectives over ", st.steps, " steps");
    }
#endif
    return "";
  }

 private:
#ifdef EMBER_HAVE_DISTRIBUTED
  std::unique_ptr<distributed::ProcessGroup> group_;
  std::unique_ptr<distributed::DataParallel> parallel_;
#endif
};

int train_rank(TrainOptions& o, Parallel& parallel) {
  const bool root = parallel.rank() == 0;
  causal_vae::RunDir run(o.out);
  causal_vae::TrainConfig cfg = o.train;
  bool resume = o.resume;
  if (root && o.resume) {
    if (!run.has_checkpoint()) throw ValueError(cat("--resume: ", run.checkpoint(), " does not exist"));
    cfg = run.read_config();
    cfg.epochs = o.train.epochs;  // the only setting a resumed run may change
    const auto saved = causal_vae::to_json(cfg), asked = causal_vae::to_json(o.train);
    for (const auto& flag : o.given) {
      std::string key = flag.substr(2);
      std::replace(key.begin(), key.end(), '-', '_');
      if (key == "epochs" || !saved.contains(key)) continue;
      if (saved[key] != asked[key])
        throw ValueError(cat(flag, " ", asked[key].dump(), " differs from ", run.path("config.json"), " (", saved[key].dump(),
                             "); a resumed run keeps its settings (only --epochs may change)"));
    }
  } else if (root && run.has_checkpoint()) {
    throw ValueError(cat("--out ", o.out, " already holds a run (", run.checkpoint(),
                         "); pass --resume to continue it or choose another --out"));
  }
  parallel.share_settings(cfg, resume, o.given);
  apply_threads(o.data.threads);
  const auto device = parse_device(o.data.device);
  if (root) run.create();

  auto ds = causal_vae::open_dataset(cfg, device);
  if (root) std::cout << causal_vae::describe_data(cfg, ds) << std::endl;
  torch::manual_seed(cfg.seed);
  clear_param_store();
  CausalVAE vae(cfg.model, device);
  auto model = [&](const causal_vae::Batch& b) { vae.training_model(b); };
  auto guide = [&](const causal_vae::Batch& b) { vae.training_guide(b); };
  infer::SVI svi(model, guide, infer::Adam(infer::AdamOptions().lr(cfg.lr)), infer::Trace_ELBO());
  parallel.attach(svi, cfg.batch_size);

  const int64_t steps_per_epoch = ds.epoch(data::Split::Train, cfg.batch_size, 0).size();
  int64_t start_epoch = 0;
  if (resume) {
    parallel.load(svi, run.checkpoint());
    start_epoch = svi.num_steps() / steps_per_epoch;
    if (root) {
      run.truncate_metrics(start_epoch);
      std::cout << "resuming " << run.dir() << " after epoch " << start_epoch << "\n";
    }
  }
  if (root) run.write_config(cfg);  // only once the data and any checkpoint have loaded
  if (root && parallel.active())
    std::cout << "data-parallel: " << parallel.world_size() << " processes, each takes its share of every batch of "
              << cfg.batch_size << "; rank 0 writes " << run.dir() << std::endl;
  const auto examples = test_examples(ds, varied_test_positions(ds, 20));

  // A bar redrawn in place on a terminal; elsewhere (CI logs, files) the metrics line below is
  // the one line per epoch.
  std::optional<viz::ProgressBar> bar;
  if (root && ::isatty(::fileno(stdout)) && ::isatty(::fileno(stderr)))
    bar.emplace(viz::ProgressOptions().epochs(cfg.epochs).steps_per_epoch(steps_per_epoch).label("train"));
  for (int64_t epoch = start_epoch; epoch < cfg.epochs; ++epoch) {
    auto t0 = std::chrono::steady_clock::now();
    if (bar) bar->start_epoch(epoch + 1);
    parallel.seed_epoch(cfg.seed, epoch);
    double total = 0;
    int64_t seen = 0, step = 0;
    const auto batches = ds.epoch(data::Split::Train, cfg.batch_size, epoch);
    const int64_t rows = batches.order().size(0);
    for (int64_t i = 0; i < batches.size(); ++i) {
      // Every rank sees the same shuffled order and reads only its rows of each global batch.
      const auto global_rows = batches.order().slice(0, i * cfg.batch_size, std::min((i + 1) * cfg.batch_size, rows));
      const int64_t global_size = global_rows.size(0);
      const auto b = causal_vae::to_model_batch(ds.gather(parallel.rows(global_rows)));
      double loss = 0;
      try {
        const auto shard = parallel.shard(b.image.size(0), global_size);
        loss = svi.step(b);  // the global batch's loss, on every rank
      } catch (const ember::Error& e) {
        if (Parallel::owns(e)) throw;
        // The first line says what was invalid; the rest (trace shapes, how to turn checks off)
        // does not help here.
        std::string what = e.what();
        what = what.substr(0, std::min(what.find('\n'), what.find(" Pass validate_args")));
        throw divergence_error(run, cfg, epoch + 1, step + 1, cat("invalid distribution parameter (", what, ")"),
                               diagnose_divergence(vae, b));
      }
      if (!std::isfinite(loss))
        throw divergence_error(run, cfg, epoch + 1, step + 1, cat("the loss is ", loss), diagnose_divergence(vae, b));
      total += loss;
      seen += global_size;
      ++step;
      if (bar) bar->update(step, total / static_cast<double>(seen));
    }
    if (bar) bar->finish_epoch(total / static_cast<double>(seen));
    if (!root) continue;  // rank 0 alone evaluates and writes
    nlohmann::json metrics = {{"epoch", epoch + 1}, {"train_loss", total / static_cast<double>(seen)}, {"test_loss", nullptr}};
    const bool test_now = (epoch + 1) % cfg.test_every == 0 || epoch + 1 == cfg.epochs;
    // Evaluation and pictures draw from their own seeded stream, which `seed` restores on
    // exit: the training stream (and so a resumed run) does not depend on --test-every.
    std::optional<SeedMessenger> evaluation_stream;
    if (test_now) {
      evaluation_stream.emplace(cfg.seed + 1000003 * static_cast<uint64_t>(epoch + 1));
      metrics["test_loss"] = causal_vae::test_loss(vae, ds, svi);
    }
    metrics["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (test_now) {
      write_reconstructions(vae, examples, run.path("reconstructions.png"), 10);
      viz::write_image_grid(run.path("prior-samples.png"), generate_grid(vae, 4), generate_grid_options(4));
    }
    evaluation_stream.reset();
    svi.save(run.checkpoint());  // atomic: a crash keeps the previous checkpoint
    run.append_metrics(metrics);
    if (test_now) write_loss_curve(run);
    std::cout << metrics.dump() << std::endl;
  }
  if (!root) return 0;
  std::cout << "\nRun directory: " << fs::absolute(run.dir()).string() << "\n"
            << "  metrics:          " << run.path("metrics.jsonl") << "\n"
            << "  loss curve:       " << run.path("loss-curve.png") << "\n"
            << "  reconstructions:  " << run.path("reconstructions.png") << " (each digit 0-9 handwritten, then typed; reconstructions below each row)\n"
            << "  generated digits: " << run.path("prior-samples.png")
            << " (rows: digits 0-9; columns: 4 handwritten, then 4 typed)\n";
  if (parallel.active()) std::cout << "  data-parallel:    " << parallel.summary() << "\n";
  return 0;
}

int train(TrainOptions& o) {
  // Join the group first: a wrong world size or an unreachable master fails before data loads.
  Parallel parallel(o);
  try {
    return train_rank(o, parallel);
  } catch (const ember::Error& e) {
    parallel.report_failure(e.what());  // the other ranks' errors then say why this one stopped
    throw;
  } catch (const c10::Error& e) {
    parallel.report_failure(e.what_without_backtrace());
    throw;
  }
}

// ------------------------------------------------------------------ the other commands

struct RunOptions {
  DataOptions data;
  std::string run = "runs/causal-vae";
  std::string out;
};

void add_run_options(CLI::App* app, RunOptions& o) {
  add_data_options(app, o.data);
  app->add_option("--run", o.run, "run directory written by `train` or `import-weights`")->capture_default_str();
  app->add_option("--out", o.out, "output file (default: inside the run directory)");
}

// Loads the run's config and checkpoint into a fresh model.
struct LoadedRun {
  causal_vae::TrainConfig cfg;
  std::unique_ptr<CausalVAE> vae;
};

LoadedRun load_run(const RunOptions& o) {
  causal_vae::RunDir run(o.run);
  LoadedRun r;
  r.cfg = run.read_config();
  if (o.data.data != "bundled") r.cfg.data = o.data.data;
  apply_threads(o.data.threads);
  clear_param_store();
  r.vae = std::make_unique<CausalVAE>(r.cfg.model, parse_device(o.data.device));
  infer::Adam unused(infer::AdamOptions().lr(r.cfg.lr));
  infer::load_checkpoint(run.checkpoint(), unused);
  r.vae->register_modules();  // copies the loaded values into the networks
  return r;
}

std::string out_or(const RunOptions& o, const std::string& name) {
  return o.out.empty() ? causal_vae::RunDir(o.run).path(name) : o.out;
}

int evaluate(const RunOptions& o, int64_t k) {
  auto r = load_run(o);
  auto ds = causal_vae::open_dataset(r.cfg, r.vae->device());
  torch::manual_seed(r.cfg.seed);
  auto result = causal_vae::evaluate(*r.vae, ds, k);
  const auto path = out_or(o, "evaluation.json");
  write_file_atomic(path, result.dump(2) + "\n");
  std::cout << result.dump(2) << "\nwrote " << path << "\n";
  return 0;
}

int reconstruct(const RunOptions& o, int64_t count) {
  auto r = load_run(o);
  auto ds = causal_vae::open_dataset(r.cfg, r.vae->device());
  const auto path = out_or(o, "reconstructions.png");
  write_reconstructions(*r.vae, test_examples(ds, varied_test_positions(ds, count)), path, 10);
  std::cout << "wrote " << path << " (each digit 0-9 handwritten, then typed; reconstructions below each row)\n";
  return 0;
}

int generate(const RunOptions& o, int64_t per_cell, uint64_t seed) {
  auto r = load_run(o);
  auto seeded = ember::seed(seed);
  const auto path = out_or(o, "generated.png");
  viz::write_image_grid(path, generate_grid(*r.vae, per_cell), generate_grid_options(per_cell));
  std::cout << "wrote " << path << " (rows: digits 0-9; columns: " << per_cell << " handwritten, then " << per_cell
            << " typed)\n";
  return 0;
}

// The chapter's plate diagram (figure 5.9), read from training_model by running it on a
// minibatch of grey images with alternating labels: weights and pixel values do not change the
// DAG, so no run directory or data is needed.
int render(const std::string& prefix, int64_t batch_size) {
  CausalVAE vae(causal_vae::Config{});
  auto labels = torch::arange(batch_size);
  causal_vae::Batch units{torch::full({batch_size, 784}, 0.5), torch::one_hot(labels % 10, 10).to(torch::kFloat),
                          (labels % 2).to(torch::kFloat).unsqueeze(1)};
  auto graph = get_model_graph([&] { vae.training_model(units); });
  auto options = viz::RenderModelOptions().render_distributions(true);
  if (fs::path(prefix).has_parent_path()) fs::create_directories(fs::path(prefix).parent_path());
  viz::write_model_graph_dot(graph, prefix + ".dot", options);
  viz::write_model_graph_png(graph, prefix + ".png", options);
  std::cout << viz::model_graph_text(graph) << "wrote " << prefix << ".png and " << prefix << ".dot\n";
  return 0;
}

int intervene(const RunOptions& o, int64_t digit, int64_t handwritten, int64_t count, uint64_t seed) {
  auto r = load_run(o);
  auto seeded = ember::seed(seed);
  torch::NoGradGuard no_grad;
  auto images = r.vae->intervene(digit, static_cast<double>(handwritten), count);
  const auto path = out_or(o, cat("do-digit", digit, "-handwritten", handwritten, ".png"));
  viz::write_image_grid(path, images.cpu(), viz::ImageGridOptions().cols(std::min<int64_t>(count, 10)).upscale(2));
  std::cout << "wrote " << path << ": " << count << " draws from P(image | do(digit = " << digit
            << ", is_handwritten = " << handwritten << "))\n";
  return 0;
}

int counterfactual(const RunOptions& o, std::vector<int64_t> indices, const std::string& set_style, int64_t set_digit,
                   const std::string& abduction, int64_t samples, uint64_t seed) {
  auto r = load_run(o);
  auto ds = causal_vae::open_dataset(r.cfg, r.vae->device());
  if (indices.empty()) indices = one_per_digit_test_positions(ds);
  auto b = test_examples(ds, indices);
  torch::NoGradGuard no_grad;
  auto seeded = ember::seed(seed);
  const auto how = causal_vae::abduction_from_string(abduction);
  if (how == causal_vae::Abduction::mean && samples != 1)
    throw ValueError(cat("--samples ", samples, " needs --abduction sample: the posterior mean gives one answer per image"));
  std::optional<torch::Tensor> style;
  if (set_style == "flip") style = 1 - b.is_handwritten;
  else if (set_style == "handwritten") style = torch::ones_like(b.is_handwritten);
  else if (set_style == "typed") style = torch::zeros_like(b.is_handwritten);
  std::optional<int64_t> digit;
  if (set_digit >= 0) digit = set_digit;
  // Column 0: the observed image; column 1: its reconstruction (factual world, Z at the
  // posterior mean); then the counterfactual world with the labels set (TwinWorldCounterfactual):
  // one column by the posterior mean, or one per posterior draw of Z.
  std::vector<torch::Tensor> columns = {b.image.cpu(), r.vae->reconstruct(b).cpu()};
  std::vector<std::string> labels = {"seen", "recon"};
  const std::string action = cat(set_style == "handwritten" ? "hand" : set_style, set_digit >= 0 ? cat(",", set_digit) : "");
  if (how == causal_vae::Abduction::mean) {
    columns.push_back(r.vae->counterfactual(b, style, digit).cpu());
    labels.push_back(action);
  } else {
    auto draws = r.vae->counterfactual_samples(b, style, digit, samples).cpu();
    for (int64_t k = 0; k < samples; ++k) {
      columns.push_back(draws[k]);
      labels.push_back(k == 0 ? action : cat("#", k + 1));
    }
  }
  auto grid = torch::stack(columns, 1).reshape({-1, b.image.size(1)});
  const auto path = out_or(o, "counterfactuals.png");
  viz::write_image_grid(path, grid,
                        viz::ImageGridOptions().cols(static_cast<int64_t>(columns.size())).upscale(3).col_labels(labels));
  std::cout << "wrote " << path << ": each row is one test image; columns: observed, reconstruction, then had it been: is_handwritten "
            << set_style << (set_digit >= 0 ? cat(", digit ", set_digit) : std::string()) << " (abduction: "
            << (how == causal_vae::Abduction::mean ? std::string("posterior mean of Z") : cat(samples, " posterior draws of Z"))
            << ")\n";
  return 0;
}

int judge(const RunOptions& o, causal_vae::JudgeOptions jo) {
  auto r = load_run(o);
  auto ds = causal_vae::open_dataset(r.cfg, r.vae->device());
  auto report = causal_vae::judge(*r.vae, ds, jo);
  const auto path = out_or(o, "judge.json");
  write_file_atomic(path, report.dump(2) + "\n");
  std::cout << "classifier held-out accuracy: digit " << report["classifier"]["held_out_digit_accuracy"] << ", style "
            << report["classifier"]["held_out_style_accuracy"] << "\n"
            << "generated images labelled as intended: digit " << report["generated"]["digit_accuracy"] << ", style "
            << report["generated"]["style_accuracy"] << "\n"
            << "counterfactuals flipping is_handwritten: style flipped " << report["counterfactual_flip_style"]["style_flipped"]
            << ", digit kept " << report["counterfactual_flip_style"]["digit_kept"] << "\nwrote " << path << "\n";
  return 0;
}

int import_weights(const causal_vae::ImportOptions& io_options, causal_vae::TrainConfig cfg, const std::string& out) {
  causal_vae::RunDir run(out);
  if (run.has_checkpoint())
    throw ValueError(cat("--out ", out, " already holds a run (", run.checkpoint(), "); choose another --out"));
  clear_param_store();
  auto imported = causal_vae::import_weights(io_options, cfg.model);
  for (const auto& note : imported.notes) std::cout << note << "\n";
  cfg.model = imported.config;
  imported.vae->register_modules();
  run.create();
  run.write_config(cfg);
  infer::Adam fresh(infer::AdamOptions().lr(cfg.lr));
  infer::save_checkpoint(run.checkpoint(), fresh, 0);
  std::cout << "imported weights into " << run.checkpoint() << "; use --run " << out << " with the other commands\n";
  return 0;
}

void add_model_options(CLI::App* app, causal_vae::TrainConfig& c, std::string& likelihood, std::string& labels) {
  app->add_option("--z-dim", c.model.z_dim, "dimension of the latent Z")->check(kPositive)->capture_default_str();
  app->add_option("--hidden-dim", c.model.hidden_dim, "hidden units of encoder and decoder")
      ->check(kPositive)
      ->capture_default_str();
  app->add_option("--beta", c.model.beta, "weight of Z's KL term (1 = the book's ELBO)")
      ->check(kPositive)
      ->capture_default_str();
  app->add_option("--likelihood", likelihood, "bernoulli (as the book) or continuous-bernoulli")
      ->check(CLI::IsMember({"bernoulli", "continuous-bernoulli"}))
      ->capture_default_str();
  app->add_option("--label-encoding", labels, "is_handwritten as an indicator (as the book) or one-hot")
      ->check(CLI::IsMember({"indicator", "one-hot"}))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The causal VAE of Causal AI, chapter 5: digit and is_handwritten cause the image."};
  app.require_subcommand(1);

  TrainOptions train_o;
  std::string likelihood = "bernoulli", labels = "indicator";
  auto* train_cmd = app.add_subcommand("train", "train with SVI; writes config, metrics, checkpoint and pictures into --out");
  add_data_options(train_cmd, train_o.data);
  add_model_options(train_cmd, train_o.train, likelihood, labels);
  train_cmd->add_option("--epochs", train_o.train.epochs, "training epochs")->check(kPositive)->capture_default_str();
  train_cmd->add_option("--batch-size", train_o.train.batch_size, "minibatch size")->check(kPositive)->capture_default_str();
  train_cmd->add_option("--lr", train_o.train.lr, "Adam learning rate")->check(kPositive)->capture_default_str();
  train_cmd->add_option("--seed", train_o.train.seed, "seed of the split, the data order and the initialisation")
      ->check(kNonNegative)
      ->capture_default_str();
  std::string split, balance = "none";
  train_cmd->add_option("--split", split, "book (random_split 80/20 with seed 42, as the book; default for a CSV) or stratified (default otherwise)")
      ->check(CLI::IsMember({"book", "stratified"}));
  train_cmd->add_option("--balance", balance, "none (every image each epoch, as the book) or styles (subsample the larger style each epoch)")
      ->check(CLI::IsMember({"none", "styles"}))
      ->capture_default_str();
  train_cmd->add_option("--test-every", train_o.train.test_every, "epochs between test evaluations and pictures")
      ->check(kPositive)
      ->capture_default_str();
  train_cmd->add_option("--out", train_o.out, "run directory")->capture_default_str();
  train_cmd->add_flag("--resume", train_o.resume, "continue the run in --out from its checkpoint");
  auto* parallel_group = "Data-parallel training (docs/distributed.md; torchrun's MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE are read when set)";
  train_cmd->add_option("--world-size", train_o.world_size, "number of processes training together (default: WORLD_SIZE, else 1)")
      ->check(CLI::PositiveNumber)
      ->group(parallel_group);
  train_cmd->add_option("--rank", train_o.rank, "this process's rank, 0 .. world size - 1 (default: RANK, else 0); rank 0 writes --out")
      ->check(CLI::NonNegativeNumber)
      ->group(parallel_group);
  train_cmd->add_option("--master", train_o.master, "ADDR:PORT of rank 0's rendezvous store (default: MASTER_ADDR:MASTER_PORT, else 127.0.0.1:29500)")
      ->group(parallel_group);
  train_cmd->add_option("--timeout", train_o.timeout, "seconds a rank waits for the others (rendezvous, collectives) before it stops with an error")
      ->check(kPositive)
      ->capture_default_str()
      ->group(parallel_group);

  RunOptions eval_o, recon_o, gen_o, int_o, cf_o;
  int64_t k = 100, count = 20, per_cell = 4, digit = 0, handwritten = 1, set_digit = -1;
  uint64_t seed = 0;
  std::vector<int64_t> indices;
  std::string set_style = "flip", abduction = "mean";
  int64_t cf_samples = 1;
  uint64_t cf_seed = 0;
  auto* eval_cmd = app.add_subcommand("evaluate", "test loss and an importance-weighted log-likelihood estimate");
  add_run_options(eval_cmd, eval_o);
  eval_cmd->add_option("-k,--num-samples", k, "importance samples per image")->check(kPositive)->capture_default_str();
  auto* recon_cmd = app.add_subcommand("reconstruct", "PNG of test images (each digit, handwritten and typed) above their reconstructions");
  add_run_options(recon_cmd, recon_o);
  recon_cmd->add_option("--count", count, "number of test images")->check(kPositive)->capture_default_str();
  auto* gen_cmd = app.add_subcommand("generate", "PNG grid: each digit 0-9 x handwritten/typed");
  add_run_options(gen_cmd, gen_o);
  gen_cmd->add_option("--per-cell", per_cell, "images per (digit, style)")->check(kPositive)->capture_default_str();
  gen_cmd->add_option("--seed", seed, "seed of the draws")->check(kNonNegative)->capture_default_str();
  auto* int_cmd = app.add_subcommand("intervene", "PNG of draws from P(image | do(digit = d, is_handwritten = h))");
  add_run_options(int_cmd, int_o);
  int_cmd->add_option("--digit", digit, "intervened digit")->check(CLI::Range(0, 9))->capture_default_str();
  int_cmd->add_option("--handwritten", handwritten, "intervened is_handwritten (0 or 1)")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  int_cmd->add_option("--count", count, "number of draws")->check(kPositive)->capture_default_str();
  int_cmd->add_option("--seed", seed, "seed of the draws")->check(kNonNegative)->capture_default_str();
  auto* cf_cmd = app.add_subcommand("counterfactual",
                                    "abduction (Z from the guide), action (set labels), prediction (decode)");
  add_run_options(cf_cmd, cf_o);
  cf_cmd->add_option("--indices", indices,
                     "positions of the images in the test split (default: one of each digit, handwritten for even digits, typed for odd)");
  cf_cmd->add_option("--set-handwritten", set_style, "flip, handwritten or typed")
      ->check(CLI::IsMember({"flip", "handwritten", "typed"}))
      ->capture_default_str();
  cf_cmd->add_option("--set-digit", set_digit, "also set the digit (-1: keep)")->check(CLI::Range(-1, 9))->capture_default_str();
  cf_cmd->add_option("--abduction", abduction, "Z from the guide: its posterior mean, or posterior draws")
      ->check(CLI::IsMember({"mean", "sample"}))
      ->capture_default_str();
  cf_cmd->add_option("--samples", cf_samples, "counterfactual draws per image (with --abduction sample)")
      ->check(CLI::Range(int64_t(1), int64_t(64)))
      ->capture_default_str();
  cf_cmd->add_option("--seed", cf_seed, "seed of the posterior draws")->capture_default_str();

  RunOptions judge_o;
  causal_vae::JudgeOptions judge_opts;
  auto* judge_cmd = app.add_subcommand(
      "judge", "train an independent digit/style classifier and score generated images and counterfactuals with it");
  add_run_options(judge_cmd, judge_o);
  judge_cmd->add_option("--classifier-epochs", judge_opts.classifier_epochs, "classifier training epochs")
      ->check(kPositive)
      ->capture_default_str();
  judge_cmd->add_option("--per-cell", judge_opts.images_per_cell, "generated images per (digit, style)")
      ->check(kPositive)
      ->capture_default_str();
  judge_cmd->add_option("--counterfactuals", judge_opts.counterfactuals, "test images to flip")
      ->check(kPositive)
      ->capture_default_str();
  judge_cmd->add_option("--seed", judge_opts.seed, "seed of the classifier and the draws")
      ->check(kNonNegative)
      ->capture_default_str();

  std::string render_prefix = "causal-vae-model";
  int64_t render_batch = 256;
  auto* render_cmd = app.add_subcommand("render", "draw the model's DAG (figure 5.9) from the model code: PNG, DOT and text");
  render_cmd->add_option("--out", render_prefix, "output path without extension (writes .png and .dot)")
      ->capture_default_str();
  render_cmd->add_option("--batch-size", render_batch, "size of plate 'data' in the run that is drawn")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  causal_vae::TrainConfig import_cfg;
  std::string import_sd, import_enc, import_dec, import_out = "runs/imported", ilik = "bernoulli", ilab = "indicator";
  std::vector<std::string> import_key_map;
  auto* import_cmd = app.add_subcommand(
      "import-weights",
      "load encoder/decoder weights saved with torch.save(state_dict); label encoding and sizes are read off the shapes "
      "unless given");
  import_cmd->add_option("--state-dict", import_sd, "state_dict of the whole VAE (keys encoder.fc1.weight, decoder.fc1.weight, ...)")
      ->check(CLI::ExistingFile);
  import_cmd->add_option("--encoder", import_enc, "state_dict of the encoder (fc1, fc21, fc22)")->check(CLI::ExistingFile);
  import_cmd->add_option("--decoder", import_dec, "state_dict of the decoder (fc1, fc2; fc21 as in the book's published weights)")
      ->check(CLI::ExistingFile);
  import_cmd->add_option("--key-map", import_key_map, "rename a layer of the files: <encoder|decoder>.<file layer>=<layer>, e.g. decoder.out=fc2");
  import_cmd->add_option("--out", import_out, "run directory to create")->capture_default_str();
  add_model_options(import_cmd, import_cfg, ilik, ilab);

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train_cmd) {
      train_o.train.model.likelihood = causal_vae::likelihood_from_string(likelihood);
      train_o.train.model.label_encoding = causal_vae::label_encoding_from_string(labels);
      train_o.train.data = train_o.data.data;
      train_o.train.split = split.empty() ? causal_vae::default_split(train_o.data.data) : data::split_method_from_string(split);
      train_o.train.balance = data::balance_from_string(balance);
      for (const auto* opt : train_cmd->get_options())
        if (opt->count() > 0 && !opt->get_lnames().empty()) train_o.given.push_back("--" + opt->get_lnames()[0]);
      return train(train_o);
    }
    if (*eval_cmd) return evaluate(eval_o, k);
    if (*recon_cmd) return reconstruct(recon_o, count);
    if (*gen_cmd) return generate(gen_o, per_cell, seed);
    if (*int_cmd) return intervene(int_o, digit, handwritten, count, seed);
    if (*cf_cmd) return counterfactual(cf_o, indices, set_style, set_digit, abduction, cf_samples, cf_seed);
    if (*judge_cmd) return judge(judge_o, judge_opts);
    if (*render_cmd) return render(render_prefix, render_batch);
    if (*import_cmd) {
      import_cfg.model.likelihood = causal_vae::likelihood_from_string(ilik);
      causal_vae::ImportOptions io_options;
      io_options.state_dict(import_sd).encoder(import_enc).decoder(import_dec).key_map(import_key_map);
      if (import_cmd->count("--label-encoding")) io_options.label_encoding(causal_vae::label_encoding_from_string(ilab));
      if (import_cmd->count("--z-dim")) io_options.z_dim(import_cfg.model.z_dim);
      if (import_cmd->count("--hidden-dim")) io_options.hidden_dim(import_cfg.model.hidden_dim);
      return import_weights(io_options, import_cfg, import_out);
    }
  } catch (const ember::Error& e) {
    std::cerr << "causal-vae: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "causal-vae: error: " << e.what_without_backtrace() << "\n";
    return 1;
  }
  return 0;
}
