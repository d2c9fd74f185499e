#pragma once
/// \file Parsers and writers for digit-image files, free of LibTorch.
///
/// Formats:
///   * IDX (LeCun's MNIST format), optionally gzip'd: `train-images-idx3-ubyte[.gz]`,
///     `train-labels-idx1-ubyte[.gz]`, and the bundled `data/*.gz` files.
///   * The book's `combined_mnist_tmnist_data.csv`: header row, then
///     `row index, is_handwritten, label, 784 pixels` per line.
///   * Kaggle's `TMNIST_Data.csv`: header row, then `names, labels, 784 pixels` per line.
///
/// Every parser takes the bytes plus the name of the file they came from, and throws
/// `ember::IOError` (truncated or malformed files) or `ember::ValueError` (a value out of
/// range) whose message names the file and the line (CSV) or byte offset (IDX) at fault.
/// Nothing here needs LibTorch, so the fuzz targets in `tests/fuzz/` build in seconds.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ember::data {

inline constexpr int kSide = 28;
inline constexpr int kPixels = kSide * kSide;  ///< 784

/// Digit images in memory: row-major uint8 pixels (0 = background, 255 = ink).
struct DigitTable {
  std::vector<uint8_t> pixels;       ///< size() * 784 grey values.
  std::vector<uint8_t> labels;       ///< Digit 0..9 of each image.
  std::vector<uint8_t> handwritten;  ///< 1 = handwritten (MNIST), 0 = typed (a font).
  std::vector<int32_t> source;       ///< Per image: MNIST index or font-face index; -1 if unknown.
  std::vector<std::string> names;    ///< Per image: font name (TMNIST CSV, bundled typed data) or empty.

  size_t size() const { return labels.size(); }
  /// Appends the images of `other`.
  void append(const DigitTable& other);
  /// Throws ValueError if the columns disagree in length or a value is out of range.
  void validate(const std::string& what) const;
};

/// An IDX array: element type code (0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32,
/// 0x0D float32, 0x0E float64), dimensions, and its elements as raw big-endian bytes.
struct IdxArray {
  uint8_t type = 0x08;
  std::vector<uint32_t> dims;
  std::string bytes;
  size_t count() const;
};

/// True if `bytes` starts with the gzip magic number.
bool is_gzip(std::string_view bytes);
/// Decompresses a gzip stream (several members allowed). Throws IOError naming `name`
/// and the compressed byte offset if it is corrupt or truncated.
std::string gunzip(std::string_view bytes, const std::string& name);
/// Compresses deterministically (zlib level 9, no file name, mtime 0).
std::string gzip(std::string_view bytes);

/// Reads a whole file, decompressing it if it is gzip'd. Throws IOError naming `path`.
std::string read_file(const std::string& path);

/// Parses an IDX array. Throws IOError on a bad magic number, unknown element type,
/// wrong dimension count, truncation or trailing bytes, naming `name` and the byte offset.
IdxArray parse_idx(std::string_view bytes, const std::string& name);
/// Serialises an IDX array (not compressed).
std::string format_idx(const IdxArray& array);

/// Checks an IDX array holds N x 28 x 28 unsigned bytes (IOError otherwise).
void check_idx_images(const IdxArray& images, const std::string& name);
/// Checks an IDX array holds N labels 0..9 as unsigned bytes (IOError / ValueError otherwise).
void check_idx_labels(const IdxArray& labels, const std::string& name);

/// Builds a table from IDX image and label arrays (bytes already decompressed); all
/// images get `handwritten`, `source` = their index in the file.
DigitTable parse_idx_pair(std::string_view images, const std::string& images_name, std::string_view labels,
                          const std::string& labels_name, uint8_t handwritten);

/// Parses the book's CSV layout (see file comment). `is_handwritten` may be 0/1 or
/// True/False; numbers may carry a zero fraction ("12.0"). Columns are located by header
/// name when the header names `label` and `is_handwritten`, else by position.
DigitTable parse_book_csv(std::string_view text, const std::string& name);
/// Parses Kaggle's TMNIST layout (names, labels, 784 pixels); all images are typed.
DigitTable parse_tmnist_csv(std::string_view text, const std::string& name);

/// Writes the book's CSV layout (header `,is_handwritten,label,0,...,783`).
std::string format_book_csv(const DigitTable& table);
/// Writes Kaggle's TMNIST layout (header `names,labels,1,...,784`).
std::string format_tmnist_csv(const DigitTable& table);

}  // namespace ember::data
