"""NumPyro's NUTS on the NUTS benchmarks: eight schools (non-centred), the model and settings of
bench/bench_mcmc.cpp and bench/bench_mcmc_pyro.py, and a logistic regression with 100 features
and 1,000 rows (bench/logistic_data.py, reproducible in any language).

    build/venv-numpyro/bin/python bench/bench_mcmc_numpyro.py [schools|logistic] [warmup] [samples] [seed]

One chain, NUTS with default options (target acceptance 0.8, tree depth 10, diagonal mass
matrix adapted in warmup), float64, one core, one XLA thread. NumPyro traces and compiles its
sampling loop afresh in every `run`; JAX's own monitoring events time that (tracing, lowering,
XLA compile: "JIT compile" below); the longest stretch between compile phases is the compiled
sampling loop (warmup and sampling), timed in wall and process CPU time. ESS per second is given
for that loop alone and for the whole run, per CPU second (on a loaded machine compare CPU
times) and per wall second. The bulk ESS is the one bench_mcmc.cpp reports (Stan's, split
and rank-normalised, minimum over every scalar).
"""
import sys
import time

import numpyro_common
from logistic_data import logistic_data
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

which = sys.argv[1] if len(sys.argv) > 1 else "schools"
warmup = int(sys.argv[2]) if len(sys.argv) > 2 else 500
samples = int(sys.argv[3]) if len(sys.argv) > 3 else 500
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0

Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools():
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("schools", 8):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu + tau * theta_tilde, SIGMA), obs=Y)


X, YL = (jnp.asarray(a) for a in logistic_data())


def logistic():
    with numpyro.plate("features", X.shape[1]):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=YL)


model = {"schools": eight_schools, "logistic": logistic}[which]
mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, num_chains=1, progress_bar=False)
# Every compile phase reports its wall duration when it ends; the process CPU clock is read there
# too, so the longest stretch between phases (the compiled sampling loop) gets its CPU time.
events = []  # (wall duration of the phase, perf_counter at its end, process_time at its end)
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **kw: events.append((secs, time.perf_counter(), time.process_time())) if event in (
        "/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration") else None)
c0, w0 = time.process_time(), time.perf_counter()
mcmc.run(jax.random.PRNGKey(seed), extra_fields=("num_steps",))
jax.block_until_ready(mcmc.get_samples())
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
jit = sum(e[0] for e in events)
points = [(0.0, w0, c0)] + events + [(0.0, time.perf_counter(), time.process_time())]
# The stretch from the end of one phase to the end of the next, less the next phase's own wall
# time: the longest is the sampling loop; its CPU time includes that next (small) phase's.
gaps = [(b[1] - a[1] - b[0], b[2] - a[2]) for a, b in zip(points, points[1:])]
loop_wall, loop_cpu = max(gaps)
draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
min_ess = numpyro_common.min_bulk_ess(draws)
leapfrogs = int(np.sum(np.asarray(mcmc.get_extra_fields()["num_steps"])))
v = numpyro_common.versions()
print(f"numpyro {v['numpyro']} (jax {v['jax']}) NUTS {which}: {warmup} warmup + {samples} samples, seed {seed}: "
      f"{wall:.2f} s wall ({cpu:.2f} s CPU) of which JIT compile {jit:.2f} s wall; the compiled sampling loop "
      f"{loop_wall:.3f} s wall, {loop_cpu:.3f} s CPU ({1000 * loop_cpu / (warmup + samples):.3f} ms CPU per iteration); "
      f"{leapfrogs} leapfrog steps while sampling, min bulk ESS {min_ess:.0f}: "
      f"{min_ess / loop_cpu:.1f} ESS per CPU second of sampling, {min_ess / cpu:.1f} per CPU second of the whole run "
      f"({min_ess / loop_wall:.1f} and {min_ess / wall:.1f} per wall second)")
mcmc.print_summary(exclude_deterministic=True) if which == "schools" else None
