// mechanisms: Study 2 of section 5.3. For random causal pairs A -> B, fits the causal and the
// anti-causal factorisation, shifts the joint (a new P(A); the control: a new P(B | A)) and
// records how fast each adapts, averaged over shifts with 95% intervals. Writes
// results.json, results.md, adaptation.png and adaptation-control.png to --out.
// See docs/section-5-3.md.
#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "examples/mechanisms/mechanisms.h"
#include "ppl/tensor_archive.h"
#include "viz/plot.h"
#include "viz/progress.h"

namespace fs = std::filesystem;
using namespace ember;
using namespace ember::mechanisms;

namespace {

struct Cli {
  std::string out = "runs/mechanisms";
  bool quick = false, report_only = false;
  StudyOptions study;
  int64_t threads = 1;
};

std::string fixed(double v, int digits = 3) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

// Mean and 95% normal-approximation interval (>= 20 shifts) of the values.
std::array<double, 3> mean_interval(const std::vector<double>& v) {
  double mean = 0, var = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  for (double x : v) var += (x - mean) * (x - mean);
  var /= std::max<double>(1.0, static_cast<double>(v.size()) - 1);
  const double half = 1.96 * std::sqrt(var / static_cast<double>(v.size()));
  return {mean, mean - half, mean + half};
}

const char* kShiftKeys[] = {"cause", "mechanism"};

void write_report(const nlohmann::json& results, const std::string& out) {
  const auto n = results["checkpoints"].get<std::vector<int64_t>>();
  std::ostringstream md;
  md << "# Study 2: adaptation after a shift, causal vs anti-causal factorisation\n\n"
     << "A -> B, both categorical with " << results["config"]["values"] << " values; " << results["config"]["shifts"]
     << " random shifts per row block (each with its own ground truth); models fitted to "
     << (results["config"]["pretrain_samples"].get<int64_t>() > 0
             ? results["config"]["pretrain_samples"].dump() + " samples of the original joint"
             : std::string("the exact original joint (infinite data)"))
     << " before the shift (" << results["config"]["pretrain_steps"] << " Adam steps), then adapted by online SGD (lr "
     << results["config"]["lr"] << ", one step per sample). Entries: expected log-likelihood per sample under the new "
     << "joint (exact), mean [95% interval]; `causal - anti` is the paired difference.\n\n";
  for (const char* key : kShiftKeys) {
    if (!results["shifts"].contains(key)) continue;
    const auto& r = results["shifts"][key];
    md << "## " << r["title"].get<std::string>() << "\n\n| n | causal P(A)P(B|A) | anti-causal P(B)P(A|B) | causal - anti |\n|---|---|---|---|\n";
    for (size_t i = 0; i < n.size(); ++i) {
      md << "| " << n[i] << " |";
      for (const char* curve : {"causal", "anti_causal", "difference"})
        md << " " << fixed(r[curve]["mean"][i].get<double>()) << " [" << fixed(r[curve]["low"][i].get<double>()) << ", "
           << fixed(r[curve]["high"][i].get<double>()) << "] |";
      md << "\n";
    }
    md << "\nBest possible (minus the new joint's entropy), mean over shifts: " << fixed(r["optimum_mean"].get<double>())
       << ".\n\n";
  }
  if (results.contains("seconds")) md << "Total run time: " << fixed(results["seconds"].get<double>() / 60, 1) << " minutes.\n";
  write_file_atomic(out + "/results.md", md.str());

  for (const char* key : kShiftKeys) {
    if (!results["shifts"].contains(key)) continue;
    const auto& r = results["shifts"][key];
    std::vector<viz::Series> series;
    for (auto [curve, name] : {std::pair<const char*, const char*>{"causal", "causal P(A) P(B|A)"},
                               std::pair<const char*, const char*>{"anti_causal", "anti-causal P(B) P(A|B)"}}) {
      viz::Series s;
      s.name = name;
      for (size_t i = 0; i < n.size(); ++i) {
        if (n[i] == 0) continue;  // log axis
        s.x.push_back(static_cast<double>(n[i]));
        s.y.push_back(r[curve]["mean"][i].get<double>());
        s.lower.push_back(r[curve]["low"][i].get<double>());
        s.upper.push_back(r[curve]["high"][i].get<double>());
      }
      series.push_back(s);
    }
    const std::string file = std::string(key) == "cause" ? "/adaptation.png" : "/adaptation-control.png";
    viz::write_line_plot(out + file, series,
                         viz::PlotOptions()
                             .title(r["title"].get<std::string>() + ": adaptation (95% bands)")
                             .x_label("adaptation samples n (one SGD step each)")
                             .y_label("expected log-likelihood under the new joint")
                             .log_x(true));
  }
}

int run(const Cli& c) {
  fs::create_directories(c.out);
  if (c.report_only) {
    std::ifstream in(c.out + "/results.json");
    if (!in) throw IOError(cat("--report-only: cannot read '", c.out, "/results.json'"));
    write_report(nlohmann::json::parse(in), c.out);
    std::cout << "wrote " << c.out << "/results.md and the plots\n";
    return 0;
  }
  if (c.threads > 0) torch::set_num_threads(static_cast<int>(c.threads));
  const auto& o = c.study;
  const auto t_start = std::chrono::steady_clock::now();
  const auto marks = checkpoints(o.max_samples());
  nlohmann::json results;
  results["study"] = "section 5.3, study 2: independence of mechanism as adaptation speed (Bengio et al. 2019)";
  results["config"] = {{"values", o.values()}, {"shifts", o.shifts()}, {"pretrain_samples", o.pretrain_samples()},
                       {"pretrain_steps", o.pretrain_steps()}, {"max_samples", o.max_samples()}, {"lr", o.lr()},
                       {"seed", o.seed()}, {"quick", c.quick}};
  results["checkpoints"] = marks;
  viz::ProgressBar bar(viz::ProgressOptions().epochs(2).steps_per_epoch(o.shifts()).label("study 2").every_percent(10));
  int64_t epoch = 0;
  for (Shift shift : {Shift::cause, Shift::mechanism}) {
    bar.start_epoch(++epoch);
    std::vector<std::vector<double>> causal(marks.size()), anti(marks.size()), diff(marks.size());
    std::vector<double> optimum;
    nlohmann::json per_shift = nlohmann::json::array();
    for (int64_t s = 0; s < o.shifts(); ++s) {
      auto r = run_shift(shift, o, o.seed() * 1000003 + static_cast<uint64_t>(s) * 2 + (shift == Shift::cause ? 0 : 1));
      for (size_t i = 0; i < marks.size(); ++i) {
        causal[i].push_back(r.causal[i]);
        anti[i].push_back(r.anti_causal[i]);
        diff[i].push_back(r.causal[i] - r.anti_causal[i]);
      }
      optimum.push_back(r.optimum);
      per_shift.push_back({{"causal", r.causal}, {"anti_causal", r.anti_causal}, {"optimum", r.optimum}});
      bar.update(s + 1, r.causal.back() - r.anti_causal.back());
    }
    bar.finish_epoch();
    nlohmann::json block;
    block["title"] = to_string(shift);
    for (auto [name, values] : {std::pair<const char*, std::vector<std::vector<double>>*>{"causal", &causal},
                                {"anti_causal", &anti}, {"difference", &diff}}) {
      std::vector<double> mean, low, high;
      for (const auto& v : *values) {
        auto ci = mean_interval(v);
        mean.push_back(ci[0]);
        low.push_back(ci[1]);
        high.push_back(ci[2]);
      }
      block[name] = {{"mean", mean}, {"low", low}, {"high", high}};
    }
    block["optimum_mean"] = mean_interval(optimum)[0];
    block["per_shift"] = per_shift;
    results["shifts"][shift == Shift::cause ? "cause" : "mechanism"] = block;
  }
  results["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  write_file_atomic(c.out + "/results.json", results.dump(2));
  write_report(results, c.out);
  std::cout << "wrote " << c.out << "/results.json, results.md, adaptation.png, adaptation-control.png ("
            << fixed(results["seconds"].get<double>() / 60, 1) << " minutes)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Section 5.3, study 2: after an intervention on the cause, does the causal factorisation P(A)P(B|A) adapt "
               "faster than the anti-causal P(B)P(A|B)? (Bengio et al. 2019)"};
  Cli c;
  int64_t values = c.study.values(), shifts = c.study.shifts(), pretrain = c.study.pretrain_samples(),
          pretrain_steps = c.study.pretrain_steps(), max_samples = c.study.max_samples();
  double lr = c.study.lr();
  uint64_t seed = c.study.seed();
  app.add_option("--out", c.out, "folder for results.json, results.md and the plots")->capture_default_str();
  app.add_flag("--quick", c.quick, "a reduced study for CI (10 shifts, 200 adaptation samples, 300 pre-shift steps)");
  app.add_flag("--report-only", c.report_only, "re-render results.md and the plots from --out's results.json");
  app.add_option("--values", values, "N, the values of A and of B")->check(CLI::Range(2, 1000))->capture_default_str();
  app.add_option("--shifts", shifts, "random shifts per kind")->check(CLI::Range(2, 100000))->capture_default_str();
  app.add_option("--pretrain-samples", pretrain, "samples of the original joint (0: the exact joint, infinite data)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--pretrain-steps", pretrain_steps, "Adam steps of the pre-shift fit")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--max-samples", max_samples, "adaptation samples")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", lr, "SGD learning rate of the adaptation")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", seed, "seed of the ground truths, shifts and samples")->capture_default_str();
  app.add_option("--threads", c.threads, "LibTorch threads (0: LibTorch's default)")->check(CLI::NonNegativeNumber)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (c.quick) {
    if (!app.count("--shifts")) shifts = 10;
    if (!app.count("--max-samples")) max_samples = 200;
    if (!app.count("--pretrain-steps")) pretrain_steps = 300;
  }
  c.study.values(values).shifts(shifts).pretrain_samples(pretrain).pretrain_steps(pretrain_steps).max_samples(max_samples).lr(lr).seed(seed);
  try {
    return run(c);
  } catch (const ember::Error& e) {
    std::cerr << "mechanisms: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "mechanisms: error: " << e.what_without_backtrace() << "\n";
    return 1;
  }
}
