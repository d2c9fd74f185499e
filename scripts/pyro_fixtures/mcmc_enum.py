"""MCMC with discrete latents enumerated out (Pyro 1.8.4): potential energies and gradients.

Pyro's `initialize_model(model, max_plate_nesting=1)` wraps the model in
`poutine.enum(config_enumerate(model))`, so every discrete latent with finite support is
summed out exactly (TraceEinsumEvaluator contracts the enumerated dims along the plate tree);
the potential is -log p(data, T(z)) - log|det dT/dz| of the continuous latents z only.
tests/test_mcmc.cpp runs the same models in Ember at the same unconstrained points.

`gmm`: a three-component Gaussian mixture, the assignment enumerated inside the data plate.
`global_local`: a global Bernoulli latent (outside every plate) and a local one inside the
plate, both enumerated: the local one is summed per datum, the plate multiplied out, then the
global one summed (the plate-tree contraction).
`marked`: the local assignment marked "parallel" by hand, plus an observed discrete site.
"""
import pyro
import pyro.distributions as dist
import torch
from pyro.infer.mcmc.util import initialize_model


def T(*v):
    return torch.tensor(v[0] if len(v) == 1 else v, dtype=torch.float64)


X_GMM = T(-2.1, -1.7, 0.2, 2.5, 3.1, 2.2)


def gmm():
    weights = pyro.sample("weights", dist.Dirichlet(T(1.0, 1.0, 1.0)))
    with pyro.plate("components", 3):
        locs = pyro.sample("locs", dist.Normal(T(0.0), T(10.0)))
    scale = pyro.sample("scale", dist.LogNormal(T(0.0), T(1.0)))
    with pyro.plate("data", 6):
        z = pyro.sample("z", dist.Categorical(weights))
        pyro.sample("x", dist.Normal(locs[z], scale), obs=X_GMM)


X_GL = T(0.3, 2.9, 3.4, -0.2, 1.1)


def global_local():
    p = pyro.sample("p", dist.Beta(T(2.0), T(2.0)))
    mu = pyro.sample("mu", dist.Normal(T(0.0), T(3.0)))
    delta = pyro.sample("delta", dist.Normal(T(0.0), T(1.0)))
    c = pyro.sample("c", dist.Bernoulli(T(0.3)))
    with pyro.plate("data", 5):
        z = pyro.sample("z", dist.Bernoulli(p))
        pyro.sample("x", dist.Normal(mu * z + delta * c, T(1.0)), obs=X_GL)


X_M = T(1.2, -0.4, 2.2, 0.9)
K_M = torch.tensor([1, 0, 1, 1])


def marked():
    locs = pyro.sample("locs", dist.Normal(T(0.0, 1.0), T(2.0)).to_event(1))
    with pyro.plate("data", 4):
        z = pyro.sample("z", dist.Categorical(T(0.4, 0.6)), infer={"enumerate": "parallel"})
        pyro.sample("k", dist.Bernoulli(T(0.5)), obs=K_M.double())
        pyro.sample("x", dist.Normal(locs[z], T(1.0)), obs=X_M)


MODELS = {"gmm": gmm, "global_local": global_local, "marked": marked}

POINTS = {
    "gmm": [
        {"weights": T(0.3, -0.2), "locs": T(-2.0, 0.5, 2.7), "scale": T(-0.3)},
        {"weights": T(-1.0, 0.8), "locs": T(1.0, -1.5, 4.0), "scale": T(0.6)},
    ],
    "global_local": [
        {"p": T(0.4), "mu": T(2.5), "delta": T(0.3)},
        {"p": T(-1.2), "mu": T(-0.7), "delta": T(1.9)},
    ],
    "marked": [
        {"locs": T(0.8, 1.9)},
        {"locs": T(-1.1, 0.2)},
    ],
}


def generate():
    out = {}
    for name, model in MODELS.items():
        pyro.set_rng_seed(0)
        _, potential_fn, transforms, _ = initialize_model(model, max_plate_nesting=1)
        points = []
        for z in POINTS[name]:
            z = {k: v.clone().requires_grad_(True) for k, v in z.items()}
            u = potential_fn(z)
            grads = torch.autograd.grad(u, list(z.values()))
            points.append({"z": {k: v.detach() for k, v in z.items()}, "potential": u.detach(),
                           "grad": dict(zip(z.keys(), grads))})
        out[name] = points
    return out
