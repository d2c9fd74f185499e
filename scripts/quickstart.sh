#!/usr/bin/env bash
# Ember's one entry point for a fresh Debian 12 machine (run as root, or with sudo).
#
#   scripts/quickstart.sh main   install what is missing, build, run the main job
#   scripts/quickstart.sh test   install what is missing, build, run the whole test suite
#   scripts/quickstart.sh build  install what is missing and build only
#
# Idempotent: packages already installed are not fetched again, and the build is
# incremental (ccache + precompiled headers).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case "$mode" in main|test|build) ;; *) echo "usage: $0 main|test|build" >&2; exit 2 ;; esac

# Runtime and build dependencies, all from Debian's archive.
# libopenblas0-pthread: Debian's libtorch calls the generic libblas.so.3, which is the
# slow reference BLAS unless OpenBLAS is installed (one VAE epoch: 8.07 s -> 0.49 s).
# libgraphviz-dev: model DAGs (viz/model_graph.h); libgvc6 carries Graphviz's dot layout and
# PNG renderer plugins, fonts-dejavu-core a font for their labels.
packages=(
  build-essential cmake ccache pkg-config
  libtorch-dev libopenblas0-pthread
  libboost-dev doctest-dev nlohmann-json3-dev libcli11-dev zlib1g-dev
  libpng-dev libstb-dev libplplot-dev plplot-driver-cairo libzip-dev libfreetype-dev
  libgraphviz-dev libgvc6 fonts-dejavu-core
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir=${EMBER_BUILD_DIR:-build}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build_dir" -j "$(nproc)"

case "$mode" in
  build) ;;
  test)
    cd "$build_dir"
    ctest --output-on-failure -j "$(nproc)"
    ;;
  main)
    # The bundled causal VAE with the book's settings (batch 256, lr 1e-3, z 50, hidden 400);
    # about a second per epoch on a 2-core machine. Pictures land in runs/causal-vae/.
    out=runs/causal-vae
    if [ -f "$out/checkpoint.ember" ]; then
      "$build_dir/bin/causal-vae" train --epochs 50 --out "$out" --resume
    else
      "$build_dir/bin/causal-vae" train --epochs 50 --out "$out"
    fi
    ;;
esac
