#!/usr/bin/env bash
# Compares the reference BLAS with OpenBLAS on the causal VAE's dense workload, in one
# invocation: the same binary runs once against each libblas.so.3.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${EMBER_BUILD_DIR:-build}/bin/bench_blas
ref=/usr/lib/x86_64-linux-gnu/blas
openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread
steps=${1:-20}
[ -e "$ref/libblas.so.3" ] || { echo "reference BLAS not installed (apt-get install libblas3)" >&2; exit 1; }
[ -e "$openblas/libblas.so.3" ] || { echo "OpenBLAS not installed (apt-get install libopenblas0-pthread)" >&2; exit 1; }
t_ref=$(LD_LIBRARY_PATH=$ref "$bin" "$steps" | awk '/seconds_per_step/{print $2}')
t_open=$(LD_LIBRARY_PATH=$openblas "$bin" "$steps" | awk '/seconds_per_step/{print $2}')
awk -v r="$t_ref" -v o="$t_open" 'BEGIN {
  printf "reference BLAS: %.4f s/step\nOpenBLAS:       %.4f s/step\nspeed-up:       %.1fx\n", r, o, r / o
  printf "{\"reference_blas_s_per_step\": %.6f, \"openblas_s_per_step\": %.6f, \"ratio\": %.3f}\n", r, o, r / o
}'
