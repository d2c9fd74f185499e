"""Pyro 1.8.4's NUTS on the models, data and settings of bench/bench_mcmc.cpp: eight schools
(non-centred) and a logistic regression (100 features x 1000 rows, the same LCG data).

    /work/venv-pyro/bin/python bench/bench_mcmc_pyro.py [--model eight_schools|logistic]
        [--warmup N] [--samples N] [--seed S] [--chains C] [--novalidate] [--jit]
"""
import argparse
import math
import pathlib
import sys
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
from pyro_fixtures.mcmc import rank_normalize, split_chains, stan_ess  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="eight_schools", choices=["eight_schools", "logistic"])
parser.add_argument("--warmup", type=int, default=500)
parser.add_argument("--samples", type=int, default=500)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--chains", type=int, default=1)
parser.add_argument("--novalidate", action="store_true")
parser.add_argument("--jit", action="store_true", help="NUTS(jit_compile=True)")
args = parser.parse_args()

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
pyro.enable_validation(not args.novalidate)
y8 = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
sigma8 = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools():
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", 8):
        theta_tilde = pyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu + tau * theta_tilde, sigma8), obs=y8)


def logistic_data(rows, features):
    """The LCG data of bench_mcmc.cpp, bit for bit."""
    state = 12345

    def uniform():
        nonlocal state
        state = (1664525 * state + 1013904223) % 4294967296
        return (state + 0.5) / 4294967296.0

    x = [(uniform() - 0.5) * math.sqrt(12.0) for _ in range(rows * features)]
    y = []
    for i in range(rows):
        logit = 0.0
        for j in range(features):
            logit += x[i * features + j] * 0.25 * (j % 5 - 2)
        y.append(1.0 if uniform() < 1.0 / (1.0 + math.exp(-logit)) else 0.0)
    return torch.tensor(x).reshape(rows, features), torch.tensor(y)


X, Y = logistic_data(1000, 100)


def logistic():
    beta = pyro.sample("beta", dist.Normal(torch.zeros(100), 1.0).to_event(1))
    with pyro.plate("data", 1000):
        pyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=Y)


model = eight_schools if args.model == "eight_schools" else logistic
pyro.set_rng_seed(args.seed)
kernel = NUTS(model, jit_compile=args.jit, ignore_jit_warnings=True)
mcmc = MCMC(kernel, num_samples=args.samples, warmup_steps=args.warmup, num_chains=args.chains,
            mp_context=None, disable_progbar=True)
cpu_start, start = time.process_time(), time.perf_counter()
mcmc.run()
secs, wall = time.process_time() - cpu_start, time.perf_counter() - start
# Bulk ESS as bench_mcmc.cpp computes it (Stan's definition, written out in the fixture script).
min_ess, slowest = float("inf"), ""
for name, v in mcmc.get_samples(group_by_chain=True).items():
    v = v.reshape(v.shape[0], v.shape[1], -1)
    for e in range(v.shape[2]):
        ess = stan_ess(rank_normalize(split_chains(v[:, :, e].tolist())))
        if ess < min_ess:
            min_ess, slowest = ess, name + (f"[{e}]" if v.shape[2] > 1 else "")
print(f"pyro NUTS {args.model} (validation {'off' if args.novalidate else 'on'}, {args.chains} chain(s){', jit' if args.jit else ''}): "
      f"{args.warmup} warmup + {args.samples} samples in {secs:.2f} s CPU ({wall:.2f} s wall, "
      f"{1000 * secs / (args.chains * (args.warmup + args.samples)):.3f} ms CPU per iteration), min bulk ESS {min_ess:.0f} ({slowest}), "
      f"{min_ess / secs:.1f} ESS per CPU second (whole run)")
