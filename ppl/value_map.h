#pragma once
/// \file Name -> tensor maps passed to condition, do, substitute.

#include <torch/types.h>

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ember {

/// Values by site name: `{{"x", x}, {"y", y}}`.
using ValueMap = std::unordered_map<std::string, torch::Tensor>;

/// Which names of a handler's ValueMap its runs reached, for the error that names a site the
/// program never samples (condition, do_). Recording stops once every name is found, so a
/// correct program pays a hash lookup per sample site only until then.
class SiteUsage {
 public:
  /// Records sample site `site` of a run; returns whether `data` names it.
  bool record(const std::string& site, const ValueMap& data);
  /// Whether any run reached a sample site.
  bool ran() const { return ran_; }
  /// Throws ValueError naming each name of `data` no run sampled and listing the sample sites
  /// reached (in program order): "<handler>: the program never samples 'w', so <consequence>; ...".
  void check(const char* handler, const char* consequence, const ValueMap& data) const;

 private:
  bool ran_ = false;
  std::unordered_set<std::string> used_, seen_index_;
  std::vector<std::string> seen_;
};

}  // namespace ember
