"""Shared set-up of the NumPyro benchmarks (bench/*_numpyro.py): one CPU core, one XLA thread,
float64, and the bulk ESS computed exactly as bench_mcmc.cpp and bench_mcmc_pyro.py compute it.

Import this module before JAX: it sets the XLA flags and pins the process to one core.
"""
import ast
import os
import pathlib
import statistics

# One thread: Eigen's and XLA's intra-op pools off, and the process pinned to one core, as the
# Ember and Pyro benchmarks run with one LibTorch thread (taskset -c 0 from the shell does the same).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
# Synchronous execution: each compiled call returns when it is done, so the times below separate
# compiling from running.
jax.config.update("jax_cpu_enable_async_dispatch", False)


def _stan_ess_functions():
    """Stan's ESS and the chain splitting of scripts/pyro_fixtures/mcmc.py, taken from that file's
    source (it imports Pyro and torch at the top, which this environment does not have)."""
    path = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "pyro_fixtures" / "mcmc.py"
    tree = ast.parse(path.read_text())
    wanted = {"_mean", "_var", "stan_ess", "split_chains"}
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    namespace = {"math": __import__("math")}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return namespace["stan_ess"], namespace["split_chains"]


stan_ess, split_chains = _stan_ess_functions()


def rank_normalize(chains):
    """Rank normalisation (Blom's offsets, ties get their mean rank) as in
    scripts/pyro_fixtures/mcmc.py, with the standard Normal quantile from Python's statistics."""
    flat = [(x, i) for i, x in enumerate(v for c in chains for v in c)]
    s = len(flat)
    order = sorted(flat)
    ranks = [0.0] * s
    i = 0
    while i < s:
        j = i
        while j + 1 < s and order[j + 1][0] == order[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k][1]] = (i + j) / 2 + 1
        i = j + 1
    normal = statistics.NormalDist()
    z = [normal.inv_cdf((r - 0.375) / (s - 0.75 + 1)) for r in ranks]
    n = len(chains[0])
    return [z[c * n:(c + 1) * n] for c in range(len(chains))]


def min_bulk_ess(samples_by_chain):
    """Minimum over every scalar element of every site of the bulk ESS (split, rank-normalised)."""
    best = float("inf")
    for v in samples_by_chain.values():
        v = v.reshape(v.shape[0], v.shape[1], -1)
        for e in range(v.shape[2]):
            best = min(best, stan_ess(rank_normalize(split_chains(v[:, :, e].tolist()))))
    return best


def versions():
    import jaxlib
    import numpyro
    return {"numpyro": numpyro.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__}
