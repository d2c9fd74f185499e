"""Pyro 1.8.4's NUTS on the models and settings of bench/bench_mcmc.cpp: eight schools
(non-centred, the default) or the logistic regression of bench/logistic_data.py.

    /work/venv-pyro/bin/python bench/bench_mcmc_pyro.py [warmup] [samples] [seed] [validate|novalidate] [schools|logistic]
"""
import pathlib
import sys
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
from pyro_fixtures.mcmc import rank_normalize, split_chains, stan_ess  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
warmup = int(sys.argv[1]) if len(sys.argv) > 1 else 500
samples = int(sys.argv[2]) if len(sys.argv) > 2 else 500
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
validate = not (len(sys.argv) > 4 and sys.argv[4] == "novalidate")
which = sys.argv[5] if len(sys.argv) > 5 else "schools"
pyro.enable_validation(validate)
y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def model():
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", 8):
        theta_tilde = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from logistic_data import logistic_data  # noqa: E402

X, YL = (torch.tensor(a, dtype=torch.float64) for a in logistic_data())


def logistic():
    with pyro.plate("features", X.shape[1]):
        beta = pyro.sample("beta", dist.Normal(0.0, 1.0))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=YL)


pyro.set_rng_seed(seed)
mcmc = MCMC(NUTS({"schools": model, "logistic": logistic}[which]), num_samples=samples, warmup_steps=warmup, num_chains=1, disable_progbar=True)
cpu_start, start = time.process_time(), time.perf_counter()
mcmc.run()
secs, wall = time.process_time() - cpu_start, time.perf_counter() - start
# Bulk ESS as bench_mcmc.cpp computes it (Stan's definition, written out in the fixture script).
min_ess = float("inf")
for v in mcmc.get_samples(group_by_chain=True).values():
    v = v.reshape(v.shape[0], v.shape[1], -1)
    for e in range(v.shape[2]):
        min_ess = min(min_ess, stan_ess(rank_normalize(split_chains(v[:, :, e].tolist()))))
print(f"pyro NUTS {which} (validation {'on' if validate else 'off'}): {warmup} warmup + {samples} samples in {secs:.2f} s CPU ({wall:.2f} s wall, "
      f"{1000 * secs / (warmup + samples):.2f} ms CPU per iteration), min bulk ESS {min_ess:.0f}, "
      f"{min_ess / secs:.1f} ESS per CPU second (whole run)")
if which == "schools":
    mcmc.summary()
