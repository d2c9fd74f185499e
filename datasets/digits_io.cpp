#include "datasets/digits_io.h"

#include "core/error.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

namespace ember::data {

// ---------------------------------------------------------------- DigitTable

void DigitTable::append(const DigitTable& other) {
  const size_t n0 = size();
  if (!other.names.empty() || !names.empty()) {
    names.resize(n0);
    if (other.names.empty())
      names.resize(n0 + other.size());
    else
      names.insert(names.end(), other.names.begin(), other.names.end());
  }
  pixels.insert(pixels.end(), other.pixels.begin(), other.pixels.end());
  labels.insert(labels.end(), other.labels.begin(), other.labels.end());
  handwritten.insert(handwritten.end(), other.handwritten.begin(), other.handwritten.end());
  source.insert(source.end(), other.source.begin(), other.source.end());
}

void DigitTable::validate(const std::string& what) const {
  const size_t n = labels.size();
  if (pixels.size() != n * kPixels || handwritten.size() != n || source.size() != n || (!names.empty() && names.size() != n))
    throw ValueError(cat(what, ": inconsistent digit table (", n, " labels, ", pixels.size(), " pixels, ", handwritten.size(),
                         " style flags, ", source.size(), " sources, ", names.size(), " names)"));
  for (size_t i = 0; i < n; ++i) {
    if (labels[i] > 9) throw ValueError(cat(what, ": image ", i, " has label ", int(labels[i]), ", outside 0..9"));
    if (handwritten[i] > 1)
      throw ValueError(cat(what, ": image ", i, " has is_handwritten = ", int(handwritten[i]), ", expected 0 or 1"));
  }
}

// ---------------------------------------------------------------- gzip

bool is_gzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f && static_cast<uint8_t>(bytes[1]) == 0x8b;
}

std::string gunzip(std::string_view bytes, const std::string& name) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) throw IOError(cat("'", name, "': cannot initialise zlib"));
  std::string out;
  char buf[1 << 16];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  size_t consumed = 0;  // input bytes before the current member
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
    if (rc == Z_STREAM_END) {
      consumed += zs.total_in;
      if (zs.avail_in == 0) break;
      inflateReset(&zs);  // another gzip member follows
      continue;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      const size_t at = consumed + zs.total_in;
      inflateEnd(&zs);
      throw IOError(cat("'", name, "' is truncated: the gzip stream ends at byte offset ", at, " before its end marker"));
    }
    const size_t at = consumed + zs.total_in;
    const std::string msg = zs.msg ? zs.msg : "error " + std::to_string(rc);
    inflateEnd(&zs);
    throw IOError(cat("'", name, "': corrupt gzip data near byte offset ", at, ": ", msg));
  }
  inflateEnd(&zs);
  return out;
}

std::string gzip(std::string_view bytes) {
  z_stream zs{};
  if (deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK) throw IOError("cannot initialise zlib");
  std::string out(deflateBound(&zs, static_cast<uLong>(bytes.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw IOError("gzip compression failed");
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IOError(cat("cannot open '", path, "': ", std::strerror(errno)));
  std::string data;
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size > 0) {  // a regular file: read it in one go
    data.resize(size_t(size));
    in.read(data.data(), size);
    data.resize(size_t(in.gcount()));
  }
  in.clear();
  data.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());  // pipes, growth
  if (in.bad()) throw IOError(cat("cannot read '", path, "'"));
  if (is_gzip(data)) return gunzip(data, path);
  return data;
}

// ---------------------------------------------------------------- IDX

namespace {

size_t idx_elem_size(uint8_t type) {
  switch (type) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
  }
}

uint32_t get_be32(std::string_view b, size_t at) {
  return (uint32_t(uint8_t(b[at])) << 24) | (uint32_t(uint8_t(b[at + 1])) << 16) | (uint32_t(uint8_t(b[at + 2])) << 8) |
         uint32_t(uint8_t(b[at + 3]));
}

void put_be32(std::string& out, uint32_t v) {
  out.push_back(char(v >> 24));
  out.push_back(char(v >> 16));
  out.push_back(char(v >> 8));
  out.push_back(char(v));
}

std::string dims_str(const std::vector<uint32_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
  return s.empty() ? "(none)" : s;
}

}  // namespace

size_t IdxArray::count() const {
  size_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

IdxArray parse_idx(std::string_view b, const std::string& name) {
  if (b.size() < 4)
    throw IOError(cat("'", name, "' is truncated at byte offset ", b.size(), ": an IDX header needs at least 4 bytes"));
  const uint32_t magic = get_be32(b, 0);
  IdxArray a;
  a.type = uint8_t(b[2]);
  const size_t nd = uint8_t(b[3]);
  const size_t esize = idx_elem_size(a.type);
  if (b[0] != 0 || b[1] != 0 || esize == 0 || nd == 0) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08X", magic);
    throw IOError(cat("'", name, "': bad IDX magic number ", hex, " at byte offset 0 (expected 0x00000801..0x00000E0F: two zero bytes, ",
                      "a type code 08/09/0B/0C/0D/0E and a dimension count >= 1)"));
  }
  const size_t header = 4 + 4 * nd;
  if (b.size() < header)
    throw IOError(cat("'", name, "' is truncated at byte offset ", b.size(), ": its IDX header declares ", nd, " dimensions, needing ",
                      header, " header bytes"));
  // 2^40 bytes is far beyond any digit file and keeps the product free of overflow.
  constexpr uint64_t kMax = uint64_t(1) << 40;
  uint64_t count = 1;
  for (size_t i = 0; i < nd; ++i) {
    a.dims.push_back(get_be32(b, 4 + 4 * i));
    count *= a.dims.back();
    if (count > kMax)
      throw IOError(cat("'", name, "': IDX dimensions ", dims_str(a.dims), "... (byte offset 4) are implausibly large"));
  }
  const uint64_t need = header + count * esize;
  if (b.size() < need)
    throw IOError(cat("'", name, "' is truncated at byte offset ", b.size(), ": dimensions ", dims_str(a.dims), " need ", need,
                      " bytes (", count, " elements of ", esize, " bytes from byte offset ", header, ")"));
  if (b.size() > need)
    throw IOError(cat("'", name, "': ", b.size() - need, " unexpected trailing bytes from byte offset ", need, " after the ",
                      dims_str(a.dims), " IDX array"));
  a.bytes.assign(b.data() + header, count * esize);
  return a;
}

std::string format_idx(const IdxArray& a) {
  const size_t esize = idx_elem_size(a.type);
  if (esize == 0 || a.dims.empty() || a.dims.size() > 255) throw ValueError("format_idx: bad IDX type or dimension count");
  if (a.bytes.size() != a.count() * esize)
    throw ValueError(cat("format_idx: ", a.bytes.size(), " bytes do not fit dimensions ", dims_str(a.dims)));
  std::string out;
  out.reserve(4 + 4 * a.dims.size() + a.bytes.size());
  out.push_back(0);
  out.push_back(0);
  out.push_back(char(a.type));
  out.push_back(char(a.dims.size()));
  for (auto d : a.dims) put_be32(out, d);
  out += a.bytes;
  return out;
}

void check_idx_images(const IdxArray& a, const std::string& name) {
  if (a.type != 0x08)
    throw IOError(cat("'", name, "': IDX element type 0x", std::hex, int(a.type), std::dec,
                      " at byte offset 2, expected 0x08 (unsigned byte) for images"));
  if (a.dims.size() != 3 || a.dims[1] != kSide || a.dims[2] != kSide)
    throw IOError(cat("'", name, "': IDX image dimensions ", dims_str(a.dims), " (byte offset 3), expected N x 28 x 28"));
}

void check_idx_labels(const IdxArray& a, const std::string& name) {
  if (a.type != 0x08)
    throw IOError(cat("'", name, "': IDX element type 0x", std::hex, int(a.type), std::dec,
                      " at byte offset 2, expected 0x08 (unsigned byte) for labels"));
  if (a.dims.size() != 1) throw IOError(cat("'", name, "': IDX label dimensions ", dims_str(a.dims), " (byte offset 3), expected N"));
  for (size_t i = 0; i < a.bytes.size(); ++i)
    if (uint8_t(a.bytes[i]) > 9)
      throw ValueError(cat("'", name, "': label ", int(uint8_t(a.bytes[i])), " at byte offset ", 8 + i, " is outside 0..9"));
}

DigitTable parse_idx_pair(std::string_view images, const std::string& images_name, std::string_view labels,
                          const std::string& labels_name, uint8_t handwritten) {
  IdxArray im = parse_idx(images, images_name);
  check_idx_images(im, images_name);
  IdxArray lb = parse_idx(labels, labels_name);
  check_idx_labels(lb, labels_name);
  if (im.dims[0] != lb.dims[0])
    throw IOError(cat("'", images_name, "' holds ", im.dims[0], " images but '", labels_name, "' holds ", lb.dims[0], " labels"));
  DigitTable t;
  const size_t n = lb.dims[0];
  t.pixels.assign(im.bytes.begin(), im.bytes.end());
  t.labels.assign(lb.bytes.begin(), lb.bytes.end());
  t.handwritten.assign(n, handwritten);
  t.source.resize(n);
  for (size_t i = 0; i < n; ++i) t.source[i] = static_cast<int32_t>(i);
  return t;
}

// ---------------------------------------------------------------- CSV

namespace {

/// Splits CSV text into lines and lines into cells, tracking the line number.
class CsvReader {
 public:
  CsvReader(std::string_view text, const std::string& name) : p_(text.data()), end_(text.data() + text.size()), name_(name) {}

  /// Reads the next non-empty line into `cells`; false at the end of the text.
  bool next(std::vector<std::string_view>& cells) {
    for (;;) {
      if (p_ >= end_) return false;
      ++line_;
      const char* nl = static_cast<const char*>(std::memchr(p_, '\n', size_t(end_ - p_)));
      const char* le = nl ? nl : end_;
      const char* lb = p_;
      p_ = nl ? nl + 1 : end_;
      if (le > lb && le[-1] == '\r') --le;
      if (le == lb) continue;  // blank line
      split(lb, le, cells);
      return true;
    }
  }

  size_t line() const { return line_; }
  const std::string& name() const { return name_; }

  [[noreturn]] void fail_columns(size_t found, size_t expected) const {
    throw IOError(cat("'", name_, "' line ", line_, ": expected ", expected, " columns, found ", found));
  }

  /// Parses an integer cell (optionally with a zero fraction such as "12.0"); IOError if not numeric.
  int64_t integer(std::string_view c, size_t col, const char* what) const {
    const char* s = c.data();
    const char* e = s + c.size();
    while (s < e && (*s == ' ' || *s == '\t')) ++s;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) --e;
    bool neg = false;
    if (s < e && (*s == '-' || *s == '+')) neg = *s++ == '-';
    const char* digits = s;
    int64_t v = 0;
    while (s < e && *s >= '0' && *s <= '9') {
      if (v > 100000000000000LL) bad(c, col, what, "a number too large");
      v = v * 10 + (*s++ - '0');
    }
    if (s == digits) bad(c, col, what, "not a number");
    if (s < e && *s == '.') {
      ++s;
      bool nonzero = false;
      while (s < e && *s >= '0' && *s <= '9') nonzero |= *s++ != '0';
      if (s == e && nonzero)
        throw ValueError(cat("'", name_, "' line ", line_, ", column ", col + 1, ": ", what, " '", c, "' is not a whole number"));
    }
    if (s != e) bad(c, col, what, "not a number");
    return neg ? -v : v;
  }

  [[noreturn]] void bad(std::string_view c, size_t col, const char* what, const char* why) const {
    std::string shown(c.substr(0, 40));
    throw IOError(cat("'", name_, "' line ", line_, ", column ", col + 1, ": ", what, " '", shown, c.size() > 40 ? "..." : "",
                      "' is ", why));
  }

  [[noreturn]] void out_of_range(int64_t v, size_t col, const char* what, const char* range) const {
    throw ValueError(cat("'", name_, "' line ", line_, ", column ", col + 1, ": ", what, " ", v, " is outside ", range));
  }

 private:
  void split(const char* s, const char* e, std::vector<std::string_view>& cells) {
    cells.clear();
    for (;;) {
      if (s < e && *s == '"') {  // quoted cell: "" is an escaped quote; no line breaks inside
        const char* q = s + 1;
        for (;;) {
          q = static_cast<const char*>(std::memchr(q, '"', size_t(e - q)));
          if (!q) throw IOError(cat("'", name_, "' line ", line_, ": unterminated quoted cell in column ", cells.size() + 1));
          if (q + 1 < e && q[1] == '"') { q += 2; continue; }
          break;
        }
        cells.emplace_back(s + 1, size_t(q - s - 1));
        s = q + 1;
        if (s == e) return;
        if (*s != ',')
          throw IOError(cat("'", name_, "' line ", line_, ": unexpected text after the quoted cell in column ", cells.size()));
        ++s;
        continue;
      }
      const char* c = static_cast<const char*>(std::memchr(s, ',', size_t(e - s)));
      if (!c) {
        cells.emplace_back(s, size_t(e - s));
        return;
      }
      cells.emplace_back(s, size_t(c - s));
      s = c + 1;
    }
  }

  const char* p_;
  const char* end_;
  std::string name_;
  size_t line_ = 0;
};

std::string lower_trim(std::string_view s) {
  std::string r;
  for (char ch : s)
    if (ch != ' ' && ch != '\t') r.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
  return r;
}

void read_pixels(const CsvReader& rd, const std::vector<std::string_view>& cells, size_t first, std::vector<uint8_t>& out) {
  const size_t base = out.size();
  out.resize(base + kPixels);
  uint8_t* dst = out.data() + base;
  for (size_t k = 0; k < kPixels; ++k) {
    std::string_view c = cells[first + k];
    // Fast path: one to three plain digits.
    if (!c.empty() && c.size() <= 3) {
      unsigned v = 0;
      size_t i = 0;
      for (; i < c.size() && c[i] >= '0' && c[i] <= '9'; ++i) v = v * 10 + unsigned(c[i] - '0');
      if (i == c.size()) {
        if (v > 255) rd.out_of_range(v, first + k, "pixel", "0..255");
        dst[k] = uint8_t(v);
        continue;
      }
    }
    const int64_t v = rd.integer(c, first + k, "pixel");
    if (v < 0 || v > 255) rd.out_of_range(v, first + k, "pixel", "0..255");
    dst[k] = uint8_t(v);
  }
}

uint8_t read_label(const CsvReader& rd, std::string_view c, size_t col) {
  const int64_t v = rd.integer(c, col, "label");
  if (v < 0 || v > 9) rd.out_of_range(v, col, "label", "0..9");
  return uint8_t(v);
}

}  // namespace

DigitTable parse_book_csv(std::string_view text, const std::string& name) {
  constexpr size_t kCols = 3 + kPixels;
  CsvReader rd(text, name);
  std::vector<std::string_view> cells;
  cells.reserve(kCols + 1);
  if (!rd.next(cells)) throw IOError(cat("'", name, "' is empty: expected a header row of ", kCols, " columns"));
  if (cells.size() != kCols) rd.fail_columns(cells.size(), kCols);
  size_t col_hw = 1, col_label = 2;
  if (lower_trim(cells[1]) == "label" && lower_trim(cells[2]) == "is_handwritten") std::swap(col_hw, col_label);
  DigitTable t;
  t.pixels.reserve(text.size() / 3);
  while (rd.next(cells)) {
    if (cells.size() != kCols) rd.fail_columns(cells.size(), kCols);
    const int64_t idx = rd.integer(cells[0], 0, "row index");
    std::string_view hw = cells[col_hw];
    uint8_t h;
    if (hw == "True" || hw == "true" || hw == "TRUE") h = 1;
    else if (hw == "False" || hw == "false" || hw == "FALSE") h = 0;
    else {
      const int64_t v = rd.integer(hw, col_hw, "is_handwritten");
      if (v != 0 && v != 1) rd.out_of_range(v, col_hw, "is_handwritten", "{0, 1}");
      h = uint8_t(v);
    }
    t.handwritten.push_back(h);
    t.labels.push_back(read_label(rd, cells[col_label], col_label));
    t.source.push_back(idx >= 0 && idx <= std::numeric_limits<int32_t>::max() ? int32_t(idx) : -1);
    read_pixels(rd, cells, 3, t.pixels);
  }
  return t;
}

DigitTable parse_tmnist_csv(std::string_view text, const std::string& name) {
  constexpr size_t kCols = 2 + kPixels;
  CsvReader rd(text, name);
  std::vector<std::string_view> cells;
  cells.reserve(kCols + 1);
  if (!rd.next(cells)) throw IOError(cat("'", name, "' is empty: expected a header row of ", kCols, " columns"));
  if (cells.size() != kCols) rd.fail_columns(cells.size(), kCols);
  DigitTable t;
  t.pixels.reserve(text.size() / 3);
  while (rd.next(cells)) {
    if (cells.size() != kCols) rd.fail_columns(cells.size(), kCols);
    std::string name(cells[0]);
    for (size_t q = name.find("\"\""); q != std::string::npos; q = name.find("\"\"", q + 1)) name.erase(q, 1);
    t.names.push_back(std::move(name));
    t.labels.push_back(read_label(rd, cells[1], 1));
    t.handwritten.push_back(0);
    t.source.push_back(-1);
    read_pixels(rd, cells, 2, t.pixels);
  }
  return t;
}

namespace {

void append_uint(std::string& out, unsigned v) {
  char buf[12];
  int n = 0;
  do { buf[n++] = char('0' + v % 10); v /= 10; } while (v);
  while (n) out.push_back(buf[--n]);
}

void append_pixels(std::string& out, const DigitTable& t, size_t i) {
  const uint8_t* p = t.pixels.data() + i * kPixels;
  for (size_t k = 0; k < kPixels; ++k) {
    out.push_back(',');
    append_uint(out, p[k]);
  }
  out.push_back('\n');
}

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string r = "\"";
  for (char c : s) {
    if (c == '\n' || c == '\r') c = ' ';
    if (c == '"') r.push_back('"');
    r.push_back(c);
  }
  return r + "\"";
}

}  // namespace

std::string format_book_csv(const DigitTable& t) {
  t.validate("format_book_csv");
  std::string out = ",is_handwritten,label";
  for (int k = 1; k <= kPixels; ++k) out += "," + std::to_string(k);
  out.push_back('\n');
  out.reserve(out.size() + t.size() * (kPixels * 2 + 16));
  for (size_t i = 0; i < t.size(); ++i) {
    append_uint(out, unsigned(i));
    out.push_back(',');
    append_uint(out, t.handwritten[i]);
    out.push_back(',');
    append_uint(out, t.labels[i]);
    append_pixels(out, t, i);
  }
  return out;
}

std::string format_tmnist_csv(const DigitTable& t) {
  t.validate("format_tmnist_csv");
  std::string out = "names,labels";
  for (int k = 1; k <= kPixels; ++k) out += "," + std::to_string(k);
  out.push_back('\n');
  for (size_t i = 0; i < t.size(); ++i) {
    out += csv_quote(t.names.empty() ? std::string() : t.names[i]);
    out.push_back(',');
    append_uint(out, t.labels[i]);
    append_pixels(out, t, i);
  }
  return out;
}

}  // namespace ember::data
