"""NumPyro's NUTS on the NUTS benchmarks: eight schools (non-centred), the model and settings of
bench/bench_mcmc.cpp and bench/bench_mcmc_pyro.py, and a logistic regression with 100 features
and 1,000 rows (data defined below, reproducible in any language).

    build/venv-numpyro/bin/python bench/bench_mcmc_numpyro.py [schools|logistic] [warmup] [samples] [seed]

One chain, NUTS with default options (target acceptance 0.8, tree depth 10, diagonal mass
matrix adapted in warmup), float64, one core, one XLA thread. NumPyro traces and compiles its
sampling loop afresh in every `run`; JAX's own monitoring events time that (tracing, lowering,
XLA compile: "JIT compile" below), and the rest of the run is sampling. ESS per second is given
for sampling alone and for the whole run. Process CPU time is reported beside wall time (on a
loaded machine compare CPU times). The bulk ESS is the one bench_mcmc.cpp reports (Stan's, split
and rank-normalised, minimum over every scalar).
"""
import sys
import time

import numpyro_common
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


def splitmix64_uniforms(n, state=20261127):
    """n uniforms in [0, 1) from SplitMix64 (Steele, Lea and Flood 2014): the top 53 bits of each
    output over 2^53. Integer arithmetic only, so any language reproduces them bit for bit."""
    mask = (1 << 64) - 1
    out = np.empty(n)
    for i in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out[i] = (z >> 11) * 2.0 ** -53
    return out


def logistic_data(rows=1000, features=100):
    """X[n, d] = sqrt(3) (2 u - 1) (unit variance), row-major from one SplitMix64 stream seeded
    20261127; then the true coefficients beta_d = 0.6 (u - 1/2) (so X beta has variance about 3);
    then y_n = 1 if u < sigmoid(X_n beta) else 0, all from the same stream in that order."""
    u = splitmix64_uniforms(rows * features + features + rows)
    x = np.sqrt(3.0) * (2.0 * u[: rows * features] - 1.0)
    x = x.reshape(rows, features)
    beta = 0.6 * (u[rows * features: rows * features + features] - 0.5)
    p = 1.0 / (1.0 + np.exp(-(x @ beta)))
    y = (u[rows * features + features:] < p).astype(np.float64)
    return jnp.asarray(x), jnp.asarray(y)


X, YL = logistic_data()


def logistic():
    with numpyro.plate("features", X.shape[1]):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=YL)


model = {"schools": eight_schools, "logistic": logistic}[which]
mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, num_chains=1, progress_bar=False)
compile_wall = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **kw: compile_wall.append(secs) if event in (
        "/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration") else None)
c0, w0 = time.process_time(), time.perf_counter()
mcmc.run(jax.random.PRNGKey(seed), extra_fields=("num_steps",))
jax.block_until_ready(mcmc.get_samples())
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
jit = sum(compile_wall)
draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
min_ess = numpyro_common.min_bulk_ess(draws)
leapfrogs = int(np.sum(np.asarray(mcmc.get_extra_fields()["num_steps"])))
v = numpyro_common.versions()
print(f"numpyro {v['numpyro']} (jax {v['jax']}) NUTS {which}: {warmup} warmup + {samples} samples, seed {seed}: "
      f"{wall:.2f} s wall ({cpu:.2f} s CPU) of which JIT compile {jit:.2f} s wall, sampling {wall - jit:.2f} s wall "
      f"({1000 * (wall - jit) / (warmup + samples):.3f} ms per iteration); {leapfrogs} leapfrog steps while sampling, "
      f"min bulk ESS {min_ess:.0f}: {min_ess / (wall - jit):.1f} ESS/s sampling only, {min_ess / wall:.1f} ESS/s whole run "
      f"({min_ess / cpu:.1f} per CPU second, whole run)")
mcmc.print_summary(exclude_deterministic=True) if which == "schools" else None
