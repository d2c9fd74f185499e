#pragma once
/// \file A causal VAE run directory: config.json, metrics.jsonl, checkpoint.ember, pictures.

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "examples/causal_vae/causal_vae.h"

namespace ember::causal_vae {

/// The files of one run. Every write is atomic (temporary file + rename), so a crash never
/// leaves a torn file nor destroys the previous checkpoint.
class RunDir {
 public:
  explicit RunDir(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string checkpoint() const { return path("checkpoint.ember"); }
  bool has_checkpoint() const;
  /// Creates the directory; IOError naming it on failure.
  void create() const;

  void write_config(const TrainConfig& c) const;
  /// Reads config.json; IOError/ValueError naming the file and field.
  TrainConfig read_config() const;

  /// One JSON object per line.
  std::vector<nlohmann::json> read_metrics() const;
  void append_metrics(const nlohmann::json& m) const;
  /// Keeps the first `epochs` lines (a resumed run rewrites later epochs).
  void truncate_metrics(int64_t epochs) const;

 private:
  void write_metrics(const std::vector<nlohmann::json>& lines) const;
  std::string dir_;
};

}  // namespace ember::causal_vae
