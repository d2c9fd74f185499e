"""NumPyro's SVI step on the small-model workload of bench/bench_inference.cpp's SVI suite.

    build/venv-numpyro/bin/python bench/bench_svi_numpyro.py [--quick] [--out FILE.json]

k = 1, 10, 100 scalar latents z_i ~ N(0, 1), x ~ N(z_{k-1}, 1) observed at 0.5; guide
z_i ~ N(loc_i, softplus(s_i)) with loc_i = 0.1 (i mod 7), s_i = 0.5 + 0.01 (i mod 5); Trace_ELBO
with one particle; Adam(lr 0.01); float64; one core, one XLA thread.

Two ways a NumPyro user runs it, both reported per step:
  * `jit(svi.update)` called from Python once per step (the loop a user writes), and
  * 1,000 steps fused in one compiled `lax.scan` (what `SVI.run` does without a progress bar).
The JIT compile time of each is reported separately (first call minus a warm call of the same
work). Times are wall clock on a pinned core and the minimum over trials; process CPU time is
reported beside them.
"""
import argparse
import json
import time

import numpyro_common  # noqa: F401  (XLA flags, one core, x64)
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax import lax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.optim import Adam

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true")
parser.add_argument("--out", default="bench-results/svi_numpyro.json")
args = parser.parse_args()


def make(k):
    obs = jnp.array(0.5)

    def model():
        last = None
        for i in range(k):
            last = numpyro.sample(f"z{i}", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(last, 1.0), obs=obs)

    def guide():
        for i in range(k):
            loc = numpyro.param(f"loc{i}", jnp.array(0.1 * (i % 7)))
            s = numpyro.param(f"s{i}", jnp.array(0.5 + 0.01 * (i % 5)))
            numpyro.sample(f"z{i}", dist.Normal(loc, jax.nn.softplus(s)))

    return SVI(model, guide, Adam(0.01), Trace_ELBO())


def timed(f):
    c0, w0 = time.process_time(), time.perf_counter()
    out = f()
    jax.block_until_ready(out)
    return time.perf_counter() - w0, time.process_time() - c0, out


trials = 3 if args.quick else 7
fused_steps = 1000
rows = []
print("NumPyro SVI step (Trace_ELBO + Adam), us per step\nsites  jit_step_us  (cpu)  fused_step_us  (cpu)  compile_jit_s  compile_fused_s")
for k in (1, 10, 100):
    svi = make(k)
    state = svi.init(jax.random.PRNGKey(0))
    step = jax.jit(svi.update)
    # Compile time: the first call minus a warm call from the same state (the same work).
    first, _, _ = timed(lambda: step(state))
    warm, _, _ = timed(lambda: step(state))
    compile_jit = first - warm

    reps = (1000 if args.quick else 4000) // (k + 4) + 5
    best_w, best_c = float("inf"), float("inf")
    for _ in range(trials):
        def loop():
            s = state
            for _ in range(reps):
                s, loss = step(s)
            return loss
        w, c, _ = timed(loop)
        best_w, best_c = min(best_w, w / reps), min(best_c, c / reps)

    fused = jax.jit(lambda s: lax.scan(lambda t, _: svi.update(t), s, None, length=fused_steps))
    first_f, _, _ = timed(lambda: fused(state))
    fw, fc = float("inf"), float("inf")
    for _ in range(trials):
        w, c, _ = timed(lambda: fused(state))
        fw, fc = min(fw, w / fused_steps), min(fc, c / fused_steps)
    compile_fused = first_f - fw * fused_steps

    rows.append({"sites": k, "jit_step_us": 1e6 * best_w, "jit_step_cpu_us": 1e6 * best_c,
                 "fused_step_us": 1e6 * fw, "fused_step_cpu_us": 1e6 * fc,
                 "compile_jit_s": compile_jit, "compile_fused_s": compile_fused})
    print(f"{k}  {1e6 * best_w:.1f}  ({1e6 * best_c:.1f})  {1e6 * fw:.2f}  ({1e6 * fc:.2f})  {compile_jit:.3f}  {compile_fused:.3f}")


def slope(key):
    xs = [r["sites"] for r in rows]
    ys = [r[key] for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


result = {"benchmark": "NumPyro SVI step, k scalar Normal latents (bench_inference.cpp's SVI workload)",
          "versions": numpyro_common.versions(), "rows": rows,
          "jit_step_slope_us_per_site": slope("jit_step_us"),
          "fused_step_slope_us_per_site": slope("fused_step_us")}
print(f"slope (us/site): jit step {result['jit_step_slope_us_per_site']:.2f}, "
      f"fused {result['fused_step_slope_us_per_site']:.3f}")
import pathlib  # noqa: E402

pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
