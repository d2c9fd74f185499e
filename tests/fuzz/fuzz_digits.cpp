// libFuzzer target for the digit-file parsers (datasets/digits_io.cpp): the first byte
// picks a parser, the rest is its input. Parsers may throw ember::Error (IOError,
// ValueError) on bad input; any other exception, crash, leak or sanitizer report is a bug.
// Build and run: tests/fuzz/run.sh [seconds]
#include "core/error.h"
#include "datasets/digits_io.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace ember::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0] % 5) {
      case 0: {  // IDX images + labels, split where the second byte says
        const size_t cut = in.empty() ? 0 : size_t(uint8_t(in[0])) * in.size() / 256;
        const std::string_view rest = in.substr(in.empty() ? 0 : 1);
        const size_t c = std::min(cut, rest.size());
        DigitTable t = parse_idx_pair(rest.substr(0, c), "images", rest.substr(c), "labels", 1);
        t.validate("fuzz");
        break;
      }
      case 1: {
        DigitTable t = parse_book_csv(in, "book.csv");
        t.validate("fuzz");
        if (parse_book_csv(format_book_csv(t), "again").pixels != t.pixels) __builtin_trap();
        break;
      }
      case 2: {
        DigitTable t = parse_tmnist_csv(in, "tmnist.csv");
        t.validate("fuzz");
        if (parse_tmnist_csv(format_tmnist_csv(t), "again").names.size() != t.size()) __builtin_trap();
        break;
      }
      case 3: {
        const std::string out = gunzip(in, "data.gz");
        if (gunzip(gzip(out), "again") != out) __builtin_trap();
        break;
      }
      default: {
        IdxArray a = parse_idx(in, "array.idx");
        if (format_idx(a) != in) __builtin_trap();
        break;
      }
    }
  } catch (const ember::Error&) {
  }
  return 0;
}
