"""NumPyro's NUTS on the NUTS benchmarks: eight schools (non-centred), the model and settings of
bench/bench_mcmc.cpp and bench/bench_mcmc_pyro.py, and a logistic regression with 100 features
and 1,000 rows (bench/logistic_data.py, reproducible in any language).

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
