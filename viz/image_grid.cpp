// Image grids: composition with LibTorch, PNG encoding with Debian's stb_image_write,
// labels with stb_easy_font (both header-only; the implementations live in this file only).
#include "viz/image_grid.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "ppl/tensor_archive.h"

// stb is C code compiled here as C++; silence its warnings only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace ember::viz {
namespace {

/// Axis-aligned filled rectangles that draw `text` with stb_easy_font, origin top-left.
struct TextQuads {
  struct Quad {
    float x0, y0, x1, y1;
  };
  std::vector<Quad> quads;
  int width = 0, height = 0;  // bounding box, in pixels
};

TextQuads layout_text(const std::string& text) {
  for (char c : text) {
    if (c < 32 || c > 126) throw ValueError(cat("image grid label '", text, "' has a non-printable or non-ASCII character"));
  }
  std::vector<char> chars(text.begin(), text.end());
  chars.push_back('\0');
  struct Vertex {
    float x, y, z;
    unsigned char color[4];
  };
  std::vector<Vertex> buffer(text.size() * 4 * 20 + 16);  // stb_easy_font: <= ~17 quads per glyph
  int n = stb_easy_font_print(0, 0, chars.data(), nullptr, buffer.data(), int(buffer.size() * sizeof(Vertex)));
  TextQuads out;
  for (int q = 0; q < n; ++q) {
    const Vertex* v = &buffer[4 * q];
    TextQuads::Quad quad{v[0].x, v[0].y, v[2].x, v[2].y};
    out.quads.push_back(quad);
    out.width = std::max(out.width, int(std::ceil(quad.x1)));
    out.height = std::max(out.height, int(std::ceil(quad.y1)));
  }
  return out;
}

void draw_text(torch::Tensor& canvas, const TextQuads& text, int64_t x, int64_t y, uint8_t value) {
  auto a = canvas.accessor<uint8_t, 2>();
  const int64_t h = canvas.size(0), w = canvas.size(1);
  for (const auto& q : text.quads) {
    for (int64_t yy = y + int64_t(q.y0); yy < y + int64_t(std::ceil(q.y1)); ++yy) {
      for (int64_t xx = x + int64_t(q.x0); xx < x + int64_t(std::ceil(q.x1)); ++xx) {
        if (yy >= 0 && yy < h && xx >= 0 && xx < w) a[yy][xx] = value;
      }
    }
  }
}

void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
}

}  // namespace

torch::Tensor make_image_grid(const torch::Tensor& images, const ImageGridOptions& o) {
  if (o.rows() < 0 || o.cols() < 0) throw ValueError(cat("image grid: rows (", o.rows(), ") and cols (", o.cols(), ") must be >= 0"));
  if (o.padding() < 0 || o.padding() > 1024) throw ValueError(cat("image grid: padding ", o.padding(), " is not in [0, 1024]"));
  if (o.upscale() < 1 || o.upscale() > 64) throw ValueError(cat("image grid: upscale ", o.upscale(), " is not in [1, 64]"));
  if (!(o.background() >= 0.0 && o.background() <= 1.0)) throw ValueError(cat("image grid: background ", o.background(), " is not in [0, 1]"));
  if ((o.image_height() != 0) != (o.image_width() != 0) || o.image_height() < 0 || o.image_width() < 0) {
    throw ValueError(cat("image grid: image_size(", o.image_height(), ", ", o.image_width(), ") must be two positive sizes"));
  }
  if (!images.defined()) throw ValueError("image grid: the images tensor is undefined");
  const std::string shape = shape_str(images.sizes());
  if (!images.is_floating_point()) {
    throw ValueError(cat("image grid: images of shape ", shape, " have dtype ", images.dtype(), "; expected floating point values in [0, 1]"));
  }

  // Bring every accepted layout to [N, H, W].
  torch::Tensor x;
  if (images.dim() == 2) {
    int64_t d = images.size(1);
    int64_t h = o.image_height(), w = o.image_width();
    if (h == 0) {
      h = w = int64_t(std::llround(std::sqrt(double(d))));
      if (h * w != d) {
        throw ShapeError(cat("image grid: flat images of shape ", shape, " have ", d,
                             " pixels, not a perfect square; pass image_size(height, width)"));
      }
    } else if (h * w != d) {
      throw ShapeError(cat("image grid: flat images of shape ", shape, " do not have image_size ", h, " x ", w, " = ", h * w, " pixels"));
    }
    x = images.reshape({images.size(0), h, w});
  } else if (images.dim() == 3) {
    x = images;
  } else if (images.dim() == 4 && images.size(1) == 1) {
    x = images.squeeze(1);
  } else {
    throw ShapeError(cat("image grid: images of shape ", shape, "; expected [N, H*W], [N, H, W] or [N, 1, H, W]"));
  }
  const int64_t n = x.size(0), h = x.size(1), w = x.size(2);
  if (n < 1 || h < 1 || w < 1) throw ShapeError(cat("image grid: images of shape ", shape, " hold no pixels"));
  x = x.detach();

  // Values: strictly [0, 1] in the input's own dtype and device; report the first offender.
  auto bad = torch::logical_not((x >= 0) & (x <= 1));  // NaN compares false: caught here too
  if (bad.any().item<bool>()) {
    int64_t flat = bad.reshape(-1).nonzero()[0][0].item<int64_t>();
    int64_t img = flat / (h * w), row = (flat % (h * w)) / w, col = flat % w;
    throw ValueError(cat("image grid: images of shape ", shape, " must have values in [0, 1]; image ", img, " pixel (", row,
                         ", ", col, ") is ", x.reshape(-1)[flat].item<double>()));
  }
  x = x.to(torch::kCPU, torch::kFloat32).contiguous();

  // Grid size.
  int64_t rows = o.rows(), cols = o.cols();
  if (rows == 0 && cols == 0) {
    cols = int64_t(std::ceil(std::sqrt(double(n))));
    rows = (n + cols - 1) / cols;
  } else if (rows == 0) {
    rows = (n + cols - 1) / cols;
  } else if (cols == 0) {
    cols = (n + rows - 1) / rows;
  }
  if (rows * cols < n) {
    throw ShapeError(cat("image grid: ", n, " images (shape ", shape, ") do not fit ", rows, " rows x ", cols, " cols"));
  }
  if (!o.row_labels().empty() && int64_t(o.row_labels().size()) != rows) {
    throw ValueError(cat("image grid: ", o.row_labels().size(), " row labels for ", rows, " rows"));
  }
  if (!o.col_labels().empty() && int64_t(o.col_labels().size()) != cols) {
    throw ValueError(cat("image grid: ", o.col_labels().size(), " column labels for ", cols, " columns"));
  }

  // Label margins.
  std::vector<TextQuads> row_text, col_text;
  int64_t left = 0, top = 0;
  const int64_t pad = o.padding(), gap = std::max<int64_t>(pad, 2);
  for (auto& s : o.row_labels()) {
    row_text.push_back(layout_text(s));
    left = std::max<int64_t>(left, row_text.back().width + 2 * gap);
  }
  for (auto& s : o.col_labels()) {
    col_text.push_back(layout_text(s));
    top = std::max<int64_t>(top, col_text.back().height + gap);
  }

  const int64_t height = top + pad + rows * (h + pad), width = left + pad + cols * (w + pad);
  if (height * o.upscale() > 32768 || width * o.upscale() > 32768) {
    throw ValueError(cat("image grid: ", height * o.upscale(), " x ", width * o.upscale(), " pixels is too large (limit 32768 per side)"));
  }
  const auto bg = uint8_t(std::lround(o.background() * 255.0));
  auto canvas = torch::full({height, width}, bg, torch::kUInt8);
  auto pixels = (x * 255.0f).round().to(torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = i / cols, c = i % cols;
    int64_t y0 = top + pad + r * (h + pad), x0 = left + pad + c * (w + pad);
    canvas.narrow(0, y0, h).narrow(1, x0, w).copy_(pixels[i]);
  }
  const uint8_t ink = o.background() > 0.5 ? 0 : 255;
  for (int64_t r = 0; r < int64_t(row_text.size()); ++r) {
    int64_t y0 = top + pad + r * (h + pad) + (h - row_text[r].height) / 2;
    draw_text(canvas, row_text[r], left - gap - row_text[r].width, y0, ink);  // right-aligned
  }
  for (int64_t c = 0; c < int64_t(col_text.size()); ++c) {
    int64_t x0 = left + pad + c * (w + pad) + (w - col_text[c].width) / 2;
    draw_text(canvas, col_text[c], x0, (top - col_text[c].height) / 2, ink);
  }
  if (o.upscale() > 1) canvas = canvas.repeat_interleave(o.upscale(), 0).repeat_interleave(o.upscale(), 1).contiguous();
  return canvas;
}

std::string encode_png_grey(const torch::Tensor& pixels) {
  if (!pixels.defined() || pixels.dim() != 2 || pixels.size(0) < 1 || pixels.size(1) < 1) {
    throw ShapeError(cat("PNG encoding: expected a [height, width] image, got ",
                         pixels.defined() ? shape_str(pixels.sizes()) : std::string("an undefined tensor")));
  }
  if (pixels.scalar_type() != torch::kUInt8) {
    throw ValueError(cat("PNG encoding: expected uint8 pixels, got ", pixels.dtype(), " of shape ", shape_str(pixels.sizes())));
  }
  auto p = pixels.to(torch::kCPU).contiguous();
  std::string png;
  int ok = stbi_write_png_to_func(append_bytes, &png, int(p.size(1)), int(p.size(0)), 1, p.data_ptr<uint8_t>(), int(p.size(1)));
  if (!ok) throw RuntimeError(cat("PNG encoding of a ", shape_str(p.sizes()), " image failed (stb_image_write)"));
  return png;
}

std::string encode_image_grid_png(const torch::Tensor& images, const ImageGridOptions& options) {
  return encode_png_grey(make_image_grid(images, options));
}

void write_image_grid(const std::string& path, const torch::Tensor& images, const ImageGridOptions& options) {
  std::string png = encode_image_grid_png(images, options);
  try {
    write_file_atomic(path, png);
  } catch (const IOError& e) {
    throw IOError(cat("image grid: cannot write '", path, "': ", e.what()));
  }
}

}  // namespace ember::viz
