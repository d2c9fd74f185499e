#pragma once
/// \file Shape arithmetic shared by distributions, plates and inference.

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace ember {

/// A tensor shape; `sample_shape + batch_shape + event_shape` in distributions.
using Shape = std::vector<int64_t>;

/// Converts a tensor's sizes to a Shape.
inline Shape to_shape(c10::IntArrayRef sizes) { return Shape(sizes.begin(), sizes.end()); }

/// Concatenates shapes left to right.
inline Shape concat(const Shape& a, const Shape& b) {
  Shape r(a);
  r.insert(r.end(), b.begin(), b.end());
  return r;
}
inline Shape concat(const Shape& a, const Shape& b, const Shape& c) { return concat(concat(a, b), c); }

/// Numpy-style broadcast of two shapes; throws ember::ShapeError naming `what` if they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what = "broadcast_shapes");

/// True when `a` and `b` broadcast against each other.
bool shapes_broadcast(const Shape& a, const Shape& b);

/// Sums the rightmost `n` dimensions of `x` (n == 0 returns x).
torch::Tensor sum_rightmost(const torch::Tensor& x, int64_t n);

/// Number of elements of a shape.
int64_t numel(const Shape& s);

}  // namespace ember
