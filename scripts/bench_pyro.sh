#!/usr/bin/env bash
# The Pyro column of docs/benchmarks.md, measured on this machine (not run in CI): the
# causal-VAE epoch at 1 thread, 2 threads and LibTorch's default, and the k-site SVI step,
# in Pyro 1.8.4 (bench/bench_pyro.py), then the same workloads in Ember and the hand-written
# LibTorch loops (bench_causal_vae, bench_inference), one after the other.
#
#   scripts/bench_pyro.sh [epochs]        # results in bench-results/*.json
#
# Python: $EMBER_PYRO_PYTHON, else /work/venv-pyro/bin/python, else build/venv-pyro (made by
# scripts/setup_pyro_venv.sh). The machine should be otherwise idle; `uptime` is recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-6}
py=${EMBER_PYRO_PYTHON:-}
for candidate in /work/venv-pyro/bin/python build/venv-pyro/bin/python; do
  [ -n "$py" ] || { [ -x "$candidate" ] && py=$candidate; } || true
done
[ -n "$py" ] || { echo "no Python with Pyro 1.8.4: run scripts/setup_pyro_venv.sh or set EMBER_PYRO_PYTHON" >&2; exit 1; }
bin=${EMBER_BUILD_DIR:-build}/bin
out=bench-results
mkdir -p "$out"
echo "load: $(uptime)"
for threads in 1 2 0; do
  "$py" bench/bench_pyro.py vae --threads "$threads" --epochs "$epochs" --out "$out/pyro_vae_threads$threads.json" >/dev/null
  "$bin/bench_causal_vae" --epochs "$epochs" --threads "$threads" --out "$out/causal_vae_threads$threads.json" >/dev/null
  python3 - "$out/pyro_vae_threads$threads.json" "$out/causal_vae_threads$threads.json" "$threads" <<'PY'
import json, sys
p, e = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
label = "default" if sys.argv[3] == "0" else sys.argv[3]
print(f"VAE epoch, threads {label}: Pyro {p['seconds_per_epoch']:.3f} s, hand-written {e['handwritten_libtorch']['seconds_per_epoch']:.3f} s, "
      f"Ember {e['ember']['seconds_per_epoch']:.3f} s (Ember / hand-written {e['ratio_epoch_time']:.3f}); batch 1: Pyro "
      f"{p['seconds_per_step_batch1'] * 1e3:.2f} ms, hand-written {e['handwritten_libtorch']['seconds_per_step_batch1'] * 1e3:.2f} ms, "
      f"Ember {e['ember']['seconds_per_step_batch1'] * 1e3:.2f} ms")
PY
done
"$py" bench/bench_pyro.py svi-step --out "$out/pyro_svi_step.json" >/dev/null
taskset -c 0 "$bin/bench_inference" --svi-only --out "$out/svi_step.json" >/dev/null
python3 - "$out/pyro_svi_step.json" "$out/svi_step.json" <<'PY'
import json, sys
p, e = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["svi_step"]
print(f"SVI step per scalar site: Pyro {p['pyro_us_per_site']:.1f} us, hand-written {e['handwritten_us_per_site']:.1f} us, "
      f"Ember {e['ember_us_per_site']:.1f} us")
PY
echo "load: $(uptime)"
