#!/usr/bin/env bash
# Packs a LibTorch 2.x build of the test suite (scripts/quickstart.sh test-libtorch2) for a GPU
# machine that has the same PyPI torch but none of Ember's Debian build dependencies (a rented
# GPU box, a CI runner with a GPU): the test binaries, their CTest files, the sources' data and
# fixtures, the Debian shared libraries the binaries load, and a script that runs CTest there.
#
#   scripts/gpu_bundle.sh OUT_DIR [BUILD_DIR]        (default BUILD_DIR: build-libtorch2/build)
#
# On the GPU machine, from the folder holding OUT_DIR's files:
#   bash run-gpu-tests.sh LOG_DIR [ctest arguments...]
# It unpacks the tree at this checkout's absolute path (the binaries have the fixture and data
# paths compiled in), links the build's LibTorch path to that machine's torch (same version:
# `python3 -c 'import torch; print(torch.__version__)'` must print the version recorded in
# bundle-info.txt), and runs CTest with the GPU tests active.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$(realpath -m "${1:?usage: $0 OUT_DIR [BUILD_DIR]}")
build=$(realpath "${2:-build-libtorch2/build}")
torch_lib=$(sed -n 's/^TORCH_LIBRARY:FILEPATH=//p' "$build/CMakeCache.txt")
torch_site=$(dirname "$(dirname "$(dirname "$torch_lib")")")   # .../site-packages
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# The sources (committed files: data, fixtures, example data) at their absolute path.
mkdir -p "$stage/tree"
git archive HEAD | tar -x -C "$stage/tree"
# The build's test side: executables (stripped) and CTest's files.
rel_build=${build#"$root"/}
mkdir -p "$stage/tree/$rel_build/bin"
for f in "$build"/bin/*; do
  [ -x "$f" ] && [ -f "$f" ] || continue
  strip -o "$stage/tree/$rel_build/bin/$(basename "$f")" "$f"
done
(cd "$build" && find . \( -name CTestTestfile.cmake -o -name '*_tests*.cmake' -o -name '*_include*.cmake' \) -print0 |
  while IFS= read -r -d '' f; do mkdir -p "$stage/tree/$rel_build/$(dirname "$f")"; cp "$f" "$stage/tree/$rel_build/$f"; done)

# Debian's shared libraries the binaries need, except glibc's, the C++ runtime's, LibTorch's
# and CUDA's (the GPU machine has its own, newer ones).
mkdir -p "$stage/tree/.debian-lib"
for f in "$build"/bin/*; do [ -x "$f" ] && [ -f "$f" ] && ldd "$f" || true; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/(libc|libm|libdl|librt|libpthread|libutil|libresolv|libstdc\+\+|libgcc_s|ld-linux-x86-64)\.so' |
  grep -v -F -e "$torch_site" -e /usr/local/cuda |
  while read -r lib; do cp -L "$lib" "$stage/tree/.debian-lib/"; done

tar -C "$stage/tree" -czf "$out/bundle.tar.gz" .
{
  echo "root=$root"
  echo "build=$rel_build"
  echo "torch_site=$torch_site"
  "$torch_site/../../../bin/python" -c 'import torch; print("torch=" + torch.__version__)' 2>/dev/null || true
  echo "commit=$(git rev-parse HEAD)"
} > "$out/bundle-info.txt"
cat > "$out/run-gpu-tests.sh" <<'EOF'
#!/usr/bin/env bash
# Runs the bundled CTest suite on this machine's GPU (see scripts/gpu_bundle.sh).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log=${1:?usage: run-gpu-tests.sh LOG_DIR [ctest arguments...]}; shift
mkdir -p "$log"
. <(grep -E '^(root|build|torch_site)=' "$here/bundle-info.txt")
mkdir -p "$root" && tar -xzf "$here/bundle.tar.gz" -C "$root"
# The build's LibTorch path -> this machine's site-packages (torch/lib and the nvidia/ wheels).
site=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
mkdir -p "$(dirname "$torch_site")" && ln -sfn "$site" "$torch_site"
# CTest's files name the configuring machine's cmake.
[ -x /usr/bin/cmake ] || ln -s "$(command -v cmake)" /usr/bin/cmake
export LD_LIBRARY_PATH="$root/.debian-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  grep -E '^(torch|commit)=' "$here/bundle-info.txt"
  python3 -c 'import torch; print("here: torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  nproc
} 2>&1 | tee "$log/machine.txt"
cd "$root/$build"
start=$(date +%s)
ctest --output-on-failure -j "$(nproc)" "$@" 2>&1 | tee "$log/ctest.log"
rc=${PIPESTATUS[0]}
echo "ctest exit $rc after $(( $(date +%s) - start )) s" | tee -a "$log/ctest.log"
# The GPU tests' own output, verbose (each case's checks and timings).
if [ -x bin/test_cuda ]; then bin/test_cuda --success=false --duration=true 2>&1 | tee "$log/test_cuda.log"; fi
exit $rc
EOF
chmod +x "$out/run-gpu-tests.sh"
du -sh "$out"/*
