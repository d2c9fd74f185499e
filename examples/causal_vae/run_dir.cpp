#include "examples/causal_vae/run_dir.h"

#include <filesystem>
#include <fstream>

#include "ppl/tensor_archive.h"

namespace ember::causal_vae {

namespace fs = std::filesystem;

bool RunDir::has_checkpoint() const { return fs::exists(checkpoint()); }

void RunDir::create() const {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw IOError(cat("cannot create run directory '", dir_, "': ", ec.message()));
}

void RunDir::write_config(const TrainConfig& c) const { write_file_atomic(path("config.json"), to_json(c).dump(2) + "\n"); }

TrainConfig RunDir::read_config() const {
  const auto p = path("config.json");
  std::ifstream in(p);
  if (!in) throw IOError(cat("cannot read '", p, "': is --run a directory written by `causal-vae train`?"));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw IOError(cat("'", p, "' is not valid JSON: ", e.what()));
  }
  return train_config_from_json(j, p);
}

std::vector<nlohmann::json> RunDir::read_metrics() const {
  std::vector<nlohmann::json> lines;
  const auto p = path("metrics.jsonl");
  std::ifstream in(p);
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    try {
      lines.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      throw IOError(cat("'", p, "' line ", n, " is not valid JSON: ", e.what()));
    }
  }
  return lines;
}

void RunDir::write_metrics(const std::vector<nlohmann::json>& lines) const {
  std::string s;
  for (const auto& l : lines) s += l.dump() + "\n";
  write_file_atomic(path("metrics.jsonl"), s);
}

void RunDir::append_metrics(const nlohmann::json& m) const {
  auto lines = read_metrics();
  lines.push_back(m);
  write_metrics(lines);
}

void RunDir::truncate_metrics(int64_t epochs) const {
  auto lines = read_metrics();
  if (static_cast<int64_t>(lines.size()) > epochs) lines.resize(static_cast<size_t>(epochs));
  write_metrics(lines);
}

}  // namespace ember::causal_vae
