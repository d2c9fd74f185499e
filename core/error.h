#pragma once
/// \file Exception types raised by Ember, and helpers to format their messages.
///
/// Every error Ember raises derives from `ember::Error`, so user code can catch
/// Ember's errors apart from LibTorch's. Messages name the site, plate, argument,
/// shape, file or line at fault.

#include <c10/util/ArrayRef.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ember {

/// Base class of every error Ember raises.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Shapes that do not fit together (batch/event/plate/obs shapes).
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A value outside the set a function accepts (constraint or support violations).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// Misuse of the handler stack or of a primitive (duplicate sites, bad plates).
class RuntimeError : public Error {
 public:
  using Error::Error;
};

/// A capability a distribution or handler does not have (e.g. rsample of a Bernoulli).
class NotImplementedError : public Error {
 public:
  using Error::Error;
};

/// Reading or writing a file failed; the message names the file.
class IOError : public Error {
 public:
  using Error::Error;
};

/// Concatenates streamable parts into a string: `cat("site '", name, "'")`.
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

/// Formats a shape as `[2, 3]`.
inline std::string shape_str(c10::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace ember
