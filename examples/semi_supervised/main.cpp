// semi-supervised: Study 1 of section 5.3. For each task (anti-causal: the digit causes the
// image; causal: the image causes a teacher's label), label budget and random draw of the
// labelled subset, trains M2 (TraceEnum_ELBO + alpha-weighted classifier term) and the
// labels-only classifier, and writes results.json, results.md and accuracy.png to --out.
// See docs/section-5-3.md.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "examples/semi_supervised/semi_supervised.h"
#include "ppl/tensor_archive.h"
#include "viz/plot.h"
#include "viz/progress.h"

namespace fs = std::filesystem;
using namespace ember;
using namespace ember::semi_supervised;

namespace {

struct StudyOptions {
  std::string out = "runs/semi-supervised";
  bool quick = false;
  bool report_only = false;
  int64_t first_draw = 0;
  std::string merge;  // a folder whose results (draws first_draw..) complete --out's
  std::vector<int64_t> budgets = {100, 600, 1000, 3000};
  int64_t draws = 3;
  int64_t steps = 3000;
  int64_t unlabelled_batch = 64, labelled_batch = 100;
  double lr = 4.2e-4;  // Pyro's SS-VAE tutorial
  double alpha = 46;
  int64_t z_dim = 50, hidden_dim = 500;  // Pyro's SS-VAE tutorial
  uint64_t seed = 0, teacher_seed = 1;
  double noise = 0.05;
  int64_t threads = 1;
  int64_t train_limit = 0, test_limit = 0;  // 0: every image of the split
  // Tuning without the test set: hold this many training images out and report accuracy on
  // them instead of the test split (0: report test accuracy).
  int64_t validation = 0;
  int64_t eval_every = 0;
  std::string schedule = "joint";
  bool handwritten_only = false;  // a diagnostic: only the MNIST images (no typed digits)  // also print (and record) accuracy every this many steps
  std::vector<std::string> tasks = {"anti-causal", "causal"};
  std::vector<std::string> methods = {"M2", "labels-only"};
};

// Pyro's SS-VAE tutorial on MNIST (50k unlabelled), for the table.
const std::map<int64_t, std::pair<double, double>> kPyroReference = {
    {100, {0.932, 0.771}}, {600, {0.944, 0.872}}, {1000, {0.949, 0.886}}, {3000, {0.958, 0.911}}};

std::string fixed(double v, int digits = 3) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

void write_text(const std::string& path, const std::string& text) { write_file_atomic(path, text); }

// results.md and accuracy.png from results.json's content.
void write_report(const nlohmann::json& results, const std::string& out) {
  const auto budgets = results["config"]["budgets"].get<std::vector<int64_t>>();
  std::ostringstream md;
  md << "# Study 1: semi-supervised learning, anti-causal vs causal task\n\n"
     << "Test accuracy of q(y | x), mean over " << results["config"]["draws"] << " draws of the labelled subset with a 95% "
     << "Student-t interval. " << results["data"]["description"].get<std::string>() << "\n\n"
     << "| task | method |";
  for (auto b : budgets) md << " " << b << " labels |";
  md << "\n|---|---|";
  for (size_t i = 0; i < budgets.size(); ++i) md << "---|";
  md << "\n";
  std::vector<viz::Series> series;
  for (const std::string task : {"anti-causal", "causal"}) {
    for (const std::string method : {"M2", "labels-only"}) {
      viz::Series s;
      s.name = task + ", " + method;
      md << "| " << task << " | " << method << " |";
      for (auto b : budgets) {
        const std::string key = task + "/" + method + "/" + std::to_string(b);
        if (!results["cells"].contains(key) || results["cells"][key]["accuracy"].empty()) {
          md << " (not run) |";
          continue;
        }
        const auto& cell = results["cells"][key];
        md << " " << fixed(cell["mean"].get<double>()) << " [" << fixed(cell["low"].get<double>()) << ", "
           << fixed(cell["high"].get<double>()) << "]";
        // A cell with fewer draws than asked for (a run cut short) says so.
        if (static_cast<int64_t>(cell["accuracy"].size()) < results["config"]["draws"].get<int64_t>())
          md << " (" << cell["accuracy"].size() << " draw" << (cell["accuracy"].size() == 1 ? "" : "s") << ")";
        md << " |";
        s.x.push_back(static_cast<double>(b));
        s.y.push_back(cell["mean"].get<double>());
        s.lower.push_back(cell["low"].get<double>());
        s.upper.push_back(cell["high"].get<double>());
      }
      md << "\n";
      if (!s.x.empty()) series.push_back(s);
    }
  }
  md << "| anti-causal (Pyro tutorial, MNIST, 50k unlabelled) | M2 |";
  for (auto b : budgets) md << " " << (kPyroReference.count(b) ? fixed(kPyroReference.at(b).first) : "-") << " |";
  md << "\n| anti-causal (Pyro tutorial, MNIST) | labels-only |";
  for (auto b : budgets) md << " " << (kPyroReference.count(b) ? fixed(kPyroReference.at(b).second) : "-") << " |";
  // What unlabelled data adds: M2 minus labels-only on the same labelled subset, draw by draw.
  md << "\n\nM2 − labels-only in accuracy points, paired by draw (the same labelled subset), mean [95% interval]:\n\n| task |";
  for (auto b : budgets) md << " " << b << " labels |";
  md << "\n|---|";
  for (size_t i = 0; i < budgets.size(); ++i) md << "---|";
  md << "\n";
  for (const std::string task : {"anti-causal", "causal"}) {
    md << "| " << task << " |";
    for (auto b : budgets) {
      const std::string m2_key = task + "/M2/" + std::to_string(b), labels_key = task + "/labels-only/" + std::to_string(b);
      const auto& cells = results["cells"];
      if (!cells.contains(m2_key) || !cells.contains(labels_key)) {
        md << " (not run) |";
        continue;
      }
      const auto m2 = cells[m2_key]["accuracy"].get<std::vector<double>>();
      const auto labels = cells[labels_key]["accuracy"].get<std::vector<double>>();
      std::vector<double> difference;
      for (size_t i = 0; i < std::min(m2.size(), labels.size()); ++i) difference.push_back(100 * (m2[i] - labels[i]));
      if (difference.empty()) {
        md << " (not run) |";
        continue;
      }
      auto ci = interval95(difference);
      md << " " << fixed(ci.mean, 1) << " [" << fixed(ci.low, 1) << ", " << fixed(ci.high, 1) << "] |";
    }
    md << "\n";
  }
  md << "\nPer draw (accuracy, seconds):\n\n";
  for (auto it = results["cells"].begin(); it != results["cells"].end(); ++it) {
    md << "- `" << it.key() << "`:";
    for (size_t i = 0; i < it.value()["accuracy"].size(); ++i)
      md << " " << fixed(it.value()["accuracy"][i].get<double>()) << " (" << fixed(it.value()["seconds"][i].get<double>(), 0)
         << " s)";
    md << "\n";
  }
  // Accuracy during training (--eval-every), mean over the draws that recorded it.
  bool has_curves = false;
  for (auto it = results["cells"].begin(); it != results["cells"].end(); ++it) has_curves = has_curves || it.value().contains("curves");
  if (has_curves) {
    md << "\nTest accuracy during training (mean over draws; recorded only, not used to choose anything):\n\n";
    for (auto it = results["cells"].begin(); it != results["cells"].end(); ++it) {
      if (!it.value().contains("curves")) continue;
      const auto& curves = it.value()["curves"];
      md << "- `" << it.key() << "`, step: accuracy";
      for (size_t k = 0; k < curves[0].size(); ++k) {
        double sum = 0;
        size_t count = 0;
        for (const auto& c : curves)
          if (k < c.size()) sum += c[k][1].get<double>(), ++count;
        md << (k == 0 ? " " : ", ") << curves[0][k][0].get<int64_t>() << ": " << fixed(sum / static_cast<double>(count));
      }
      md << "\n";
    }
  }
  md << "\nTeacher (causal task): seed " << results["teacher"]["seed"] << ", label noise " << results["teacher"]["noise"]
     << ", class counts in the training split " << results["teacher"]["train_class_counts"].dump()
     << ", share of teacher labels equal to the digit " << fixed(results["teacher"]["agreement_with_digit"].get<double>()) << ".\n";
  if (results.contains("seconds")) md << "\nRun time of the first process: " << fixed(results["seconds"].get<double>() / 60, 1) << " minutes.\n";
  if (results.contains("merged")) md << "\nMerged: " << results["merged"].get<std::string>() << ".\n";
  write_text(out + "/results.md", md.str());
  if (!series.empty())
    viz::write_line_plot(out + "/accuracy.png", series,
                         viz::PlotOptions()
                             .title("Semi-supervised M2 vs labels only (95% intervals)")
                             .x_label("labelled images")
                             .y_label("test accuracy")
                             .log_x(true)
                             .markers(1));
}

int run(const StudyOptions& o) {
  fs::create_directories(o.out);
  if (!o.merge.empty()) {
    // --out holds draws 0.. (from one process), --merge holds draws K.. (another process
    // started with --first-draw K): keep --out's first K draws of each cell and append the others.
    auto read = [](const std::string& dir) {
      std::ifstream in(dir + "/results.json");
      if (!in) throw IOError(cat("--merge: cannot read '", dir, "/results.json'"));
      return nlohmann::json::parse(in);
    };
    auto results = read(o.out), later = read(o.merge);
    const auto k = later["config"]["first_draw"].get<size_t>();
    for (auto it = later["cells"].begin(); it != later["cells"].end(); ++it) {
      auto& cell = results["cells"][it.key()];
      for (const char* field : {"accuracy", "seconds", "curves"}) {
        // Accuracy curves (--eval-every) merge only when both processes recorded them.
        if (std::string(field) == "curves" && (!cell.contains(field) || !it.value().contains(field))) {
          cell.erase(field);
          continue;
        }
        auto kept = cell.contains(field) ? cell[field] : nlohmann::json::array();
        if (kept.size() < k)
          throw ValueError(cat("--merge: '", o.out, "' has only ", kept.size(), " draws of ", it.key(), ", fewer than ", k));
        kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(k), kept.end());
        for (const auto& v : it.value()[field]) kept.push_back(v);
        cell[field] = kept;
      }
      auto ci = interval95(cell["accuracy"].get<std::vector<double>>());
      cell["mean"] = ci.mean;
      cell["low"] = ci.low;
      cell["high"] = ci.high;
    }
    results["config"]["draws"] = later["config"]["draws"];
    results["merged"] = cat("draws 1..", k, " from one process, draws ", k + 1, "..", later["config"]["draws"].get<int64_t>(),
                            " from a second process run alongside (", later["seconds"].get<double>() / 60, " minutes)");
    write_text(o.out + "/results.json", results.dump(2));
    write_report(results, o.out);
    std::cout << "merged " << o.merge << " into " << o.out << "\n";
    return 0;
  }
  if (o.report_only) {
    std::ifstream in(o.out + "/results.json");
    if (!in) throw IOError(cat("--report-only: cannot read '", o.out, "/results.json'"));
    write_report(nlohmann::json::parse(in), o.out);
    std::cout << "wrote " << o.out << "/results.md and accuracy.png\n";
    return 0;
  }
  if (o.first_draw >= o.draws) throw ValueError(cat("--first-draw ", o.first_draw, " must be below --draws ", o.draws));
  if (o.threads > 0) torch::set_num_threads(static_cast<int>(o.threads));
  const auto t_start = std::chrono::steady_clock::now();
  auto table = data::load_bundled();
  data::DigitDataset ds(table, data::DatasetOptions().seed(o.seed));
  auto take = [&](data::Split split, int64_t limit) {
    auto rows = ds.rows(split);
    if (o.handwritten_only) {
      auto all = ds.gather(torch::tensor(rows, torch::kLong));
      std::vector<int64_t> kept;
      for (size_t i = 0; i < rows.size(); ++i)
        if (all.handwritten[static_cast<int64_t>(i)].item<float>() > 0.5f) kept.push_back(rows[i]);
      rows = kept;
    }
    if (limit > 0 && limit < static_cast<int64_t>(rows.size())) {
      data::shuffle_rows(rows, o.seed, 77);
      rows.resize(static_cast<size_t>(limit));
    }
    return ds.gather(torch::tensor(rows, torch::kLong));
  };
  auto train_batch = take(data::Split::Train, o.train_limit);
  auto test_batch = take(data::Split::Test, o.test_limit);
  // The teacher is calibrated on the whole training split, so --validation does not change it.
  Teacher teacher(o.teacher_seed, o.noise, train_batch.images);
  if (o.validation > 0) {
    if (o.validation >= train_batch.size())
      throw ValueError(cat("--validation ", o.validation, " must be below the ", train_batch.size(), " training images"));
    std::vector<int64_t> order(static_cast<size_t>(train_batch.size()));
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    data::shuffle_rows(order, o.seed, 91);
    auto held = torch::tensor(std::vector<int64_t>(order.end() - o.validation, order.end()), torch::kLong);
    auto kept = torch::tensor(std::vector<int64_t>(order.begin(), order.end() - o.validation), torch::kLong);
    auto part = [](const data::Batch& b, const torch::Tensor& rows) {
      return data::Batch{b.images.index_select(0, rows), b.labels.index_select(0, rows), b.handwritten.index_select(0, rows)};
    };
    test_batch = part(train_batch, held);
    train_batch = part(train_batch, kept);
  }
  const auto describe =
      cat("Images: the bundled ", o.handwritten_only ? "MNIST digits only (--handwritten-only)" : "MNIST + typed digits", ", stratified split (seed ", o.seed, "): ", train_batch.size(),
          " training images (labelled subset + unlabelled pool) and ", test_batch.size(),
          o.validation > 0 ? " validation images held out of the training split (the test split is not used)" : " held-out test images",
          o.quick ? " (--quick: reduced)" : "", ".");
  std::cout << describe << std::endl;

  auto causal_train = teacher.labels(train_batch.images), causal_test = teacher.labels(test_batch.images);
  const double agreement = causal_train.eq(train_batch.labels).to(torch::kDouble).mean().item<double>();
  auto counts = torch::bincount(causal_train, {}, kClasses);

  nlohmann::json results;
  results["study"] = "section 5.3, study 1: semi-supervised learning in the anti-causal and causal directions";
  results["config"] = {{"budgets", o.budgets}, {"draws", o.draws}, {"steps", o.steps}, {"unlabelled_batch", o.unlabelled_batch},
                       {"labelled_batch", o.labelled_batch}, {"lr", o.lr}, {"alpha", o.alpha}, {"z_dim", o.z_dim},
                       {"hidden_dim", o.hidden_dim}, {"seed", o.seed}, {"quick", o.quick}, {"threads", o.threads},
                       {"first_draw", o.first_draw}, {"validation", o.validation}, {"schedule", o.schedule}, {"tasks", o.tasks}, {"methods", o.methods}};
  results["data"] = {{"description", describe}, {"train", train_batch.size()}, {"test", test_batch.size()}};
  results["teacher"] = {{"seed", o.teacher_seed},
                        {"noise", o.noise},
                        {"train_class_counts", std::vector<int64_t>(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + kClasses)},
                        {"agreement_with_digit", agreement}};
  results["cells"] = nlohmann::json::object();
  std::cout << "teacher labels: class counts " << results["teacher"]["train_class_counts"].dump() << ", equal to the digit for "
            << fixed(100 * agreement, 1) << "% of training images\n";

  M2Options m2;
  m2.z_dim(o.z_dim).hidden_dim(o.hidden_dim).aux_weight(o.alpha);
  const int64_t total_runs = static_cast<int64_t>(o.tasks.size() * o.budgets.size() * o.methods.size()) * (o.draws - o.first_draw);
  viz::ProgressBar bar(viz::ProgressOptions().epochs(total_runs).steps_per_epoch(o.steps).label("study 1").every_percent(25));
  int64_t run_index = 0;
  // Draws outermost: should a run be cut short, every (task, method, budget) cell has the
  // same number of draws.
  for (int64_t draw = o.first_draw; draw < o.draws; ++draw) {
    for (int64_t budget : o.budgets) {
      for (Task task : {Task::anti_causal, Task::causal}) {
        if (std::find(o.tasks.begin(), o.tasks.end(), to_string(task)) == o.tasks.end()) continue;
        const auto& train_labels = task == Task::anti_causal ? train_batch.labels : causal_train;
        const auto& test_labels = task == Task::anti_causal ? test_batch.labels : causal_test;
        auto data = draw_labelled_subset(train_batch.images, train_labels, budget,
                                         o.seed * 1000003 + static_cast<uint64_t>(budget) * 101 + static_cast<uint64_t>(draw));
        for (Method method : {Method::m2, Method::labels_only}) {
          if (std::find(o.methods.begin(), o.methods.end(), to_string(method)) == o.methods.end()) continue;
          const std::string key = to_string(task) + "/" + to_string(method) + "/" + std::to_string(budget);
          nlohmann::json curve = nlohmann::json::array();
          const auto t0 = std::chrono::steady_clock::now();
          bar.start_epoch(++run_index);
          auto trained = train(method, data, m2,
                               TrainOptions()
                                   .steps(o.steps)
                                   .unlabelled_batch(o.unlabelled_batch)
                                   .labelled_batch(o.labelled_batch)
                                   .lr(o.lr)
                                   .seed(o.seed + 17 * static_cast<uint64_t>(draw) + 1)
                                   .checkpoint_every(o.eval_every)
                                   .schedule(schedule_from_string(o.schedule)),
                               [&](int64_t step, double loss) { bar.update(step, loss); },
                               [&](int64_t step, M2& model) {
                                 const double a = accuracy(model, test_batch.images, test_labels);
                                 curve.push_back({step, a});
                                 std::cout << "  " << key << " draw " << draw + 1 << " step " << step << ": accuracy " << fixed(a)
                                           << std::endl;
                               });
          bar.finish_epoch();
          const double acc = accuracy(trained, test_batch.images, test_labels);
          const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          auto& cell = results["cells"][key];
          cell["accuracy"].push_back(acc);
          cell["seconds"].push_back(seconds);
          if (!curve.empty()) cell["curves"].push_back(curve);
          auto ci = interval95(cell["accuracy"].get<std::vector<double>>());
          cell["mean"] = ci.mean;
          cell["low"] = ci.low;
          cell["high"] = ci.high;
          std::cout << "run " << run_index << "/" << total_runs << ": " << key << " draw " << draw + 1 << ": test accuracy "
                    << fixed(acc) << " (" << fixed(seconds, 1) << " s)" << std::endl;
          results["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
          write_text(o.out + "/results.json", results.dump(2));  // after every run: partial results survive
        }
      }
    }
  }
  results["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  write_text(o.out + "/results.json", results.dump(2));
  write_report(results, o.out);
  std::cout << "\nwrote " << o.out << "/results.json, results.md, accuracy.png (" << fixed(results["seconds"].get<double>() / 60, 1)
            << " minutes)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Section 5.3, study 1: does unlabelled data help? M2 (semi-supervised VAE) vs a labels-only classifier, "
               "when the label causes the image (anti-causal) and when the image causes the label (causal)"};
  StudyOptions o;
  app.add_option("--out", o.out, "folder for results.json, results.md and accuracy.png")->capture_default_str();
  app.add_flag("--quick", o.quick, "a reduced study for CI (2 budgets, 2 draws, few steps, fewer images)");
  app.add_flag("--report-only", o.report_only, "re-render results.md and accuracy.png from --out's results.json");
  app.add_option("--first-draw", o.first_draw, "start at this draw (0-based), to run later draws in a second process")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--merge", o.merge, "complete --out's results with a folder written by a --first-draw process, then report");
  app.add_option("--budgets", o.budgets, "label budgets (multiples of 10, balanced over classes)")->capture_default_str();
  app.add_option("--draws", o.draws, "random draws of the labelled subset per budget")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--steps", o.steps, "optimisation steps per run (both methods)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--unlabelled-batch", o.unlabelled_batch, "unlabelled images per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--labelled-batch", o.labelled_batch, "labelled images per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", o.lr, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--alpha", o.alpha, "weight of the classifier term on labelled images (0: none)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--z-dim", o.z_dim, "width of z")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--hidden-dim", o.hidden_dim, "hidden units per network")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the split, subsets and training")->capture_default_str();
  app.add_option("--teacher-seed", o.teacher_seed, "seed of the causal task's teacher network")->capture_default_str();
  app.add_option("--noise", o.noise, "label noise of the teacher")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--threads", o.threads, "LibTorch threads (0: LibTorch's default)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--train-limit", o.train_limit, "use this many training images (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--test-limit", o.test_limit, "use this many test images (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--validation", o.validation,
                 "for tuning: hold this many training images out and report accuracy on them, not on the test split")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--handwritten-only", o.handwritten_only, "a diagnostic: use only the MNIST images of the data set, not the typed digits");
  app.add_option("--schedule", o.schedule, "M2's steps: joint (labelled + unlabelled in each, scaled) or alternating (Pyro's)")
      ->check(CLI::IsMember({"joint", "alternating"}))
      ->capture_default_str();
  app.add_option("--eval-every", o.eval_every, "also print and record accuracy every this many steps")->check(CLI::NonNegativeNumber);
  app.add_option("--tasks", o.tasks, "tasks to run")->check(CLI::IsMember({"anti-causal", "causal"}))->capture_default_str();
  app.add_option("--methods", o.methods, "methods to run")->check(CLI::IsMember({"M2", "labels-only"}))->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (o.quick) {
    // Each unset option takes its quick value.
    if (!app.count("--budgets")) o.budgets = {100, 600};
    if (!app.count("--draws")) o.draws = 2;
    if (!app.count("--steps")) o.steps = 30;
    if (!app.count("--train-limit")) o.train_limit = 3000;
    if (!app.count("--test-limit")) o.test_limit = 1000;
  }
  try {
    return run(o);
  } catch (const ember::Error& e) {
    std::cerr << "semi-supervised: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "semi-supervised: error: " << e.what_without_backtrace() << "\n";
    return 1;
  }
}
