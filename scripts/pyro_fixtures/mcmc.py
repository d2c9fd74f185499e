"""MCMC fixtures (Pyro 1.8.4): potential energies and their gradients, and reference diagnostics.

`potential_*` cases: Pyro's `initialize_model(model).potential_fn` (the energy HMC/NUTS sample
from: -log p(data, T(z)) - log|det dT/dz| with T = biject_to(support) per site) and its gradient
by autograd, at fixed unconstrained values. tests/test_mcmc.cpp runs the same models in Ember.

`diagnostics`: split R-hat (pyro.ops.stats.split_gelman_rubin) and Stan's ESS, written out here
in plain Python after Stan's reference manual / ArviZ's `_ess` (multi-chain autocorrelation,
Geyer's initial positive then monotone sequence, the 1/log10 floor), without and with the
split + rank normalisation that makes the bulk ESS, and the tail ESS, on fixed pseudo-random draws.
"""
import math

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.mcmc.util import initialize_model
from pyro.ops.stats import split_gelman_rubin


def T(*v):
    return torch.tensor(v[0] if len(v) == 1 else v, dtype=torch.float64)


Y_NN = T(0.3, 1.9, 1.1, -0.4, 2.2)


def normal_normal():
    mu = pyro.sample("mu", dist.Normal(T(0.0), T(10.0)))
    with pyro.plate("data", 5):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=Y_NN)


Y_POS = T(0.5, 1.7, 2.9, 0.8)
K_OBS = torch.tensor([0, 2, 2, 1])
B_OBS = T(1.0, 0.0, 1.0, 1.0)


def constrained():
    loc = pyro.sample("loc", dist.Normal(T(0.0), T(1.0)))
    scale = pyro.sample("scale", dist.Gamma(T(2.0), T(1.0)))
    p = pyro.sample("p", dist.Beta(T(2.0), T(3.0)))
    w = pyro.sample("w", dist.Dirichlet(T(1.0, 2.0, 3.0)))
    u = pyro.sample("u", dist.Uniform(T(-1.0), T(3.0)))
    with pyro.plate("data", 4):
        pyro.sample("y", dist.LogNormal(loc + u, scale), obs=Y_POS)
        pyro.sample("k", dist.Categorical(w), obs=K_OBS)
        pyro.sample("b", dist.Bernoulli(p), obs=B_OBS)


Y_8 = T(28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
SIGMA_8 = T(15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


def eight_schools():
    mu = pyro.sample("mu", dist.Normal(T(0.0), T(5.0)))
    tau = pyro.sample("tau", dist.HalfCauchy(T(5.0)))
    with pyro.plate("schools", 8):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("y", dist.Normal(theta, SIGMA_8), obs=Y_8)


MODELS = {"normal_normal": normal_normal, "constrained": constrained, "eight_schools": eight_schools}

POINTS = {
    "normal_normal": [{"mu": T(0.7)}, {"mu": T(-3.2)}],
    "constrained": [
        {"loc": T(0.2), "scale": T(-0.5), "p": T(0.3), "w": T(0.4, -1.1), "u": T(0.25)},
        {"loc": T(-1.3), "scale": T(0.9), "p": T(-2.0), "w": T(-0.2, 0.7), "u": T(-1.5)},
    ],
    "eight_schools": [
        {"mu": T(4.0), "tau": T(1.2), "theta": T(10.0, 7.0, -2.0, 6.5, 0.0, 2.0, 15.0, 9.0)},
        {"mu": T(-1.0), "tau": T(-2.5), "theta": T(0.1, 0.2, 0.3, -0.4, 0.5, 0.6, -0.7, 0.8)},
    ],
}


def potential_cases():
    out = {}
    for name, model in MODELS.items():
        pyro.set_rng_seed(0)
        _, potential_fn, transforms, _ = initialize_model(model)
        points = []
        for z in POINTS[name]:
            z = {k: v.clone().requires_grad_(True) for k, v in z.items()}
            u = potential_fn(z)
            grads = torch.autograd.grad(u, list(z.values()))
            constrained = {k: transforms[k].inv(v.detach()) for k, v in z.items()}
            points.append({"z": {k: v.detach() for k, v in z.items()}, "potential": u.detach(),
                           "grad": dict(zip(z.keys(), grads)), "constrained": constrained})
        out[name] = points
    return out


# ---- Stan's ESS in plain Python (after Stan's reference manual and ArviZ's _ess) ----

def _mean(v):
    return sum(v) / len(v)


def _var(v):
    m = _mean(v)
    return sum((x - m) ** 2 for x in v) / (len(v) - 1)


def stan_ess(chains):
    m, n = len(chains), len(chains[0])
    means = [_mean(c) for c in chains]

    def acov(c, t):
        mu = means[c]
        x = chains[c]
        return sum((x[i] - mu) * (x[i + t] - mu) for i in range(n - t)) / n

    acovs = [[acov(c, t) for t in range(n)] for c in range(m)]
    chain_var = [acovs[c][0] * n / (n - 1) for c in range(m)]
    mean_var = _mean(chain_var)
    var_plus = mean_var * (n - 1) / n + (_var(means) if m > 1 else 0.0)
    mean_acov = [_mean([acovs[c][t] for c in range(m)]) for t in range(n)]
    rho = [0.0] * n
    rho[0] = 1.0
    even, odd = 1.0, 1.0 - (mean_var - mean_acov[1]) / var_plus
    rho[1] = odd
    t = 1
    while t < n - 3 and even + odd > 0:
        even = 1.0 - (mean_var - mean_acov[t + 1]) / var_plus
        odd = 1.0 - (mean_var - mean_acov[t + 2]) / var_plus
        if even + odd >= 0:
            rho[t + 1], rho[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        rho[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2
            rho[t + 2] = rho[t + 1]
        t += 2
    tau = -1 + 2 * sum(rho[: max_t + 1]) + sum(rho[max_t + 1: max_t + 2])
    tau = max(tau, 1 / math.log10(m * n))
    return m * n / tau


def split_chains(chains):
    half = len(chains[0]) // 2
    out = []
    for c in chains:
        out += [c[:half], c[len(c) - half:]]
    return out


def rank_normalize(chains):
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
    normal = torch.distributions.Normal(0.0, 1.0)
    z = [normal.icdf(torch.tensor((r - 0.375) / (s - 0.75 + 1), dtype=torch.float64)).item() for r in ranks]
    n = len(chains[0])
    return [z[c * n:(c + 1) * n] for c in range(len(chains))]


def ess_tail(chains):
    """ArviZ's _ess_tail: min ESS of the indicators draws <= 5% / 95% quantile (split chains)."""
    chains = split_chains(chains)
    flat = torch.tensor([x for c in chains for x in c], dtype=torch.float64)
    out = float("inf")
    for prob in (0.05, 0.95):
        q = torch.quantile(flat, prob).item()
        out = min(out, stan_ess([[1.0 if x <= q else 0.0 for x in c] for c in chains]))
    return out


def diagnostics():
    g = torch.Generator().manual_seed(20261127)
    cases = []
    # AR(1) chains with different autocorrelation, an odd length, and a chain offset (poor mixing).
    for phi, n, offset in [(0.0, 40, 0.0), (0.7, 51, 0.0), (0.9, 60, 0.5), (-0.3, 33, 0.0)]:
        eps = torch.randn(3, n, generator=g, dtype=torch.float64)
        x = torch.zeros(3, n, dtype=torch.float64)
        x[:, 0] = eps[:, 0]
        for i in range(1, n):
            x[:, i] = phi * x[:, i - 1] + eps[:, i]
        x[1] += offset
        chains = x.tolist()
        cases.append({
            "draws": x,
            "split_rhat": split_gelman_rubin(x),
            "ess": stan_ess(chains),
            "ess_bulk": stan_ess(rank_normalize(split_chains(chains))),
            "ess_tail": ess_tail(chains),
        })
    return cases


def generate():
    return {"potential": potential_cases(), "diagnostics": diagnostics()}
