#pragma once
/// \file Name -> tensor maps passed to condition, do, substitute.

#include <torch/types.h>

#include <string>
#include <unordered_map>

namespace ember {

/// Values by site name: `{{"x", x}, {"y", y}}`.
using ValueMap = std::unordered_map<std::string, torch::Tensor>;

}  // namespace ember
