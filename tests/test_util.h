#pragma once
// Helpers shared by the test suites.

#include <cmath>
#include <exception>
#include <string>

namespace ember::testing {

/// The message of the exception `fn` throws, or "" if it throws none.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// log N(x; mu, sigma^2), as an independent reference for log-densities.
inline double normal_log_prob(double x, double mu, double sigma) {
  const double z = (x - mu) / sigma;
  return -0.5 * z * z - std::log(sigma) - 0.5 * std::log(2 * M_PI);
}

}  // namespace ember::testing
