#pragma once
/// \file PNG grids of grey images (MNIST digits, reconstructions, samples).
///
/// `write_image_grid("samples.png", images, ImageGridOptions().cols(10).upscale(2))` lays the
/// images of a tensor out row by row in a grid, grey values in [0, 1] mapped to 0..255 (0 is
/// black), and writes an 8-bit greyscale PNG atomically (temporary file + rename), so a reader
/// never sees a half-written picture and an interrupted run never destroys the previous one.
/// Rows and columns can carry short ASCII labels (drawn with stb_easy_font).
///
/// Typical grids for the causal VAE:
/// ```
/// // Test images beside their reconstructions, 8 pairs per row (x, x_hat: [k, 784]).
/// write_image_grid(out + "/reconstructions.png", torch::stack({x, x_hat}, 1).reshape({-1, 784}),
///                  ImageGridOptions().cols(16).upscale(2));
/// // One sample per (style, digit): rows handwritten/typed, columns 0..9 (samples: [20, 784]).
/// write_image_grid(out + "/generated.png", samples,
///                  ImageGridOptions().rows(2).cols(10).upscale(2).row_labels({"hand", "typed"})
///                      .col_labels({"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}));
/// ```

#include <torch/arg.h>

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ember::viz {

/// Layout of an image grid. Defaults: a near-square grid, 2 pixels of white padding, no
/// upscaling, no labels.
struct ImageGridOptions {
  /// Number of grid rows; 0 (default) derives it from the image count and `cols`.
  TORCH_ARG(int64_t, rows) = 0;
  /// Number of grid columns; 0 (default) derives it: `ceil(N / rows)` when rows are given,
  /// else `ceil(sqrt(N))`.
  TORCH_ARG(int64_t, cols) = 0;
  /// Pixels between images and around the grid (before upscaling), >= 0. Default 2.
  TORCH_ARG(int64_t, padding) = 2;
  /// Integer nearest-neighbour magnification of the whole grid, >= 1. Default 1.
  TORCH_ARG(int64_t, upscale) = 1;
  /// Grey value of padding, empty cells and label margins, in [0, 1]. Default 1 (white).
  TORCH_ARG(double, background) = 1.0;
  /// Height of each image when the input is flat [N, D] and D is not a perfect square (a
  /// perfect square D, e.g. 784, is read as sqrt(D) x sqrt(D) by default); 0: square.
  TORCH_ARG(int64_t, image_height) = 0;
  /// Width of each image for flat input; 0: square.
  TORCH_ARG(int64_t, image_width) = 0;
  /// One label per grid row, drawn left of the row (printable ASCII). Empty: none.
  TORCH_ARG(std::vector<std::string>, row_labels);
  /// One label per grid column, drawn above the column (printable ASCII). Empty: none.
  TORCH_ARG(std::vector<std::string>, col_labels);

 public:
  /// Height and width of each image for flat input: `image_height(h).image_width(w)`.
  ImageGridOptions& image_size(int64_t h, int64_t w) { return image_height(h).image_width(w); }
};

/// Composes the grid as a uint8 tensor [height, width] (0 black, 255 white) on the CPU.
///
/// `images`: floating point, any device, values in [0, 1] (NaN rejected), shaped [N, H*W],
/// [N, H, W] or [N, 1, H, W]; N >= 1. Images fill the grid row by row; cells beyond N are left
/// blank. Throws ember::ShapeError naming the shape when the shape is not one of these, or
/// when N images do not fit rows x cols; ember::ValueError naming the offending value, index
/// and shape for values outside [0, 1], a non-floating dtype, bad options, or label counts
/// that differ from the grid's rows/columns.
torch::Tensor make_image_grid(const torch::Tensor& images, const ImageGridOptions& options = {});

/// The grid of make_image_grid() encoded as an 8-bit greyscale PNG (the file's bytes).
std::string encode_image_grid_png(const torch::Tensor& images, const ImageGridOptions& options = {});

/// Writes the grid of make_image_grid() to `path` as a PNG, atomically. Errors as in
/// make_image_grid(); ember::IOError naming `path` when it cannot be written.
void write_image_grid(const std::string& path, const torch::Tensor& images, const ImageGridOptions& options = {});

/// Encodes a uint8 [height, width] greyscale image as PNG bytes. Throws ember::ShapeError /
/// ember::ValueError naming the shape or dtype otherwise.
std::string encode_png_grey(const torch::Tensor& pixels);

}  // namespace ember::viz
