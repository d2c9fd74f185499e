#!/usr/bin/env bash
# Builds the libFuzzer target for the digit-file parsers with clang (Debian's clang-14 +
# libclang-rt-14-dev) and runs it for the given number of seconds (default 120) on a corpus
# seeded with small valid files. Not part of the normal build.
#   tests/fuzz/run.sh [seconds] [extra libFuzzer flags...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-120}; shift || true
out=${FUZZ_DIR:-$root/build-fuzz}
mkdir -p "$out/corpus"
cxx=${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++)}
# core/error.h includes a c10 header: Debian's is under /usr/include; else set TORCH_INCLUDE.
"$cxx" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root" ${TORCH_INCLUDE:+-I"$TORCH_INCLUDE"} \
  "$root/tests/fuzz/fuzz_digits.cpp" "$root/datasets/digits_io.cpp" -lz -o "$out/fuzz_digits"
# Seeds: a 2-image IDX pair, both CSV layouts, a gzip stream, an IDX array.
python3 - "$out/corpus" <<'PY'
import gzip, struct, sys, os
d = sys.argv[1]
img = struct.pack('>IIII', 0x803, 2, 28, 28) + bytes(range(256)) * 6 + bytes(32)
lab = struct.pack('>II', 0x801, 2) + bytes([3, 9])
open(os.path.join(d, 'idx'), 'wb').write(b'\x00' + bytes([int(256 * len(img) / (len(img) + len(lab) + 1)) + 1]) + img + lab)
px = ','.join(str(i % 256) for i in range(784))
open(os.path.join(d, 'book'), 'wb').write(b'\x01' + (',is_handwritten,label,' + ','.join(map(str, range(784))) + '\n0,1,7,' + px + '\n1,False,2.0,' + px + '\n').encode())
open(os.path.join(d, 'tmnist'), 'wb').write(b'\x02' + ('names,labels,' + ','.join(map(str, range(1, 785))) + '\n"A, b",4,' + px + '\n').encode())
open(os.path.join(d, 'gz'), 'wb').write(b'\x03' + gzip.compress(b'hello digits' * 20, mtime=0))
open(os.path.join(d, 'arr'), 'wb').write(b'\x04' + struct.pack('>IIII', 0x0C02, 2, 2, 7) + bytes(16))
PY
"$out/fuzz_digits" "$out/corpus" -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -print_final_stats=1 "$@"
