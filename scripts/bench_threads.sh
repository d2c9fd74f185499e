#!/usr/bin/env bash
# Which thread configuration is fastest for the main job (`causal-vae train` on the bundled
# data): LibTorch intra-op threads 1 or 2 x OpenBLAS threads 1 or 2, plus the defaults (no
# --threads, OPENBLAS_NUM_THREADS unset). Wall-clock seconds per training epoch (median of the
# epochs between the first and the last), the configurations alternated `repeats` times. Run it on an
# otherwise idle machine: thread counts trade wall time against CPU time, so only wall time
# on a free machine decides. Not run in CI.
#
#   scripts/bench_threads.sh [epochs=4] [repeats=2]     # writes bench-results/threads.json
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-4}
[ "$epochs" -ge 3 ] || { echo "epochs must be >= 3 (the first and the last epoch are not timed)" >&2; exit 1; }
repeats=${2:-2}
bin=${EMBER_BUILD_DIR:-build}/bin
out=bench-results
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
configs=("default default" "1 1" "1 2" "2 1" "2 2")
for ((r = 0; r < repeats; ++r)); do
  for c in "${configs[@]}"; do
    read -r intra blas <<<"$c"
    args=(train --epochs "$epochs" --test-every "$epochs" --out "$work/run-$intra-$blas-$r")
    [ "$intra" = default ] || args+=(--threads "$intra")
    if [ "$blas" = default ]; then
      env -u OPENBLAS_NUM_THREADS "$bin/causal-vae" "${args[@]}" >/dev/null
    else
      OPENBLAS_NUM_THREADS=$blas "$bin/causal-vae" "${args[@]}" >/dev/null
    fi
  done
done
python3 - "$work" "$out/threads.json" "$epochs" "$repeats" <<'PY'
import glob, json, os, statistics, sys
work, out, epochs, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = {}
for run in sorted(glob.glob(os.path.join(work, "run-*"))):
    _, intra, blas, r = os.path.basename(run).split("-")
    secs = [json.loads(l)["seconds"] for l in open(os.path.join(run, "metrics.jsonl"))]
    # The first epoch warms caches; the last also evaluates the test split.
    rows.setdefault((intra, blas), []).extend(secs[1:-1])
result = {"epochs": epochs, "repeats": repeats, "load_after": open("/proc/loadavg").read().split()[:3], "configs": []}
print(f"{'intra-op':>9} {'OpenBLAS':>9} {'s/epoch':>8}")
for (intra, blas), secs in sorted(rows.items(), key=lambda kv: statistics.median(kv[1])):
    m = statistics.median(secs)
    result["configs"].append({"intra_op_threads": intra, "openblas_threads": blas, "seconds_per_epoch": m, "epochs_seconds": secs})
    print(f"{intra:>9} {blas:>9} {m:8.3f}")
json.dump(result, open(out, "w"), indent=2)
print("wrote", out)
PY
