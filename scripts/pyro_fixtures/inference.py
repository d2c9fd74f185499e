"""Inference fixtures: ELBO losses and gradients, optimiser steps, Predictive shapes (Pyro 1.8.4).

Every program is deterministic: guide draws are fixed by `FixDraws` (a Normal site's value is
loc + scale * eps with a fixed eps, so pathwise gradients flow; any other site gets a fixed
value), optimisers get fixed gradients, Predictive uses Delta guides. tests/test_inference*.cpp
run the same programs in Ember (the C++ side names each program as here).
"""
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.infer import Predictive, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger

def T(*v):
    """float64 tensor: T(1.0) a scalar, T(1.0, 2.0) a vector, T([[...], ...]) from nested lists."""
    return torch.tensor(v[0] if len(v) == 1 else v, dtype=torch.float64)


class FixDraws(Messenger):
    """Fixes the draws of the named sites: the i-th draw of a site uses the (i mod n)-th entry."""

    def __init__(self, fixed):
        super().__init__()
        self.fixed = fixed
        self.count = {}

    def _pyro_sample(self, msg):
        name = msg["name"]
        if name not in self.fixed or msg["is_observed"] or msg["value"] is not None:
            return
        i = self.count.get(name, 0)
        self.count[name] = i + 1
        values = self.fixed[name]
        v = values[i % len(values)]
        fn = msg["fn"]
        base = fn.base_dist if isinstance(fn, dist.Independent) else fn
        msg["value"] = base.loc + base.scale * v if isinstance(base, dist.Normal) else v


def grads():
    out = {}
    for name, u in pyro.get_param_store().named_parameters():
        out[name] = u.grad.clone() if u.grad is not None else torch.zeros_like(u)
    return out


def zero_grads():
    for _, u in pyro.get_param_store().named_parameters():
        u.grad = None


def run_elbo(elbo, model, guide, fixed, *args):
    """loss(), loss_and_grads() and its gradients, differentiable_loss() value and gradients."""
    out = {}
    pyro.clear_param_store()
    out["loss"] = elbo.loss(model, FixDraws(fixed)(guide), *args)
    pyro.clear_param_store()
    out["loss_and_grads"] = elbo.loss_and_grads(model, FixDraws(fixed)(guide), *args)
    out["grads"] = grads()
    if not isinstance(elbo, RenyiELBO):
        pyro.clear_param_store()
        dl = elbo.differentiable_loss(model, FixDraws(fixed)(guide), *args)
        out["differentiable_loss"] = dl.item()
        zero_grads()
        dl.backward()
        out["differentiable_grads"] = grads()
    return out


def trace_contents(elbo, model, guide, fixed, *args):
    """The first (model, guide) trace pair the ELBO computes with: each sample site's value and
    its scaled, masked log_prob, with their shapes."""
    pyro.clear_param_store()
    model_trace, guide_trace = next(iter(elbo._get_traces(model, FixDraws(fixed)(guide), args, {})))
    out = {}
    for role, tr in (("model", model_trace), ("guide", guide_trace)):
        out[role] = {name: {"value": site["value"], "log_prob": site["log_prob"]}
                     for name, site in tr.nodes.items() if site["type"] == "sample"}
    return out


# ------------------------------------------------------------- everyday Trace_ELBO / TraceMeanField

DATA = T(0.3, -1.1, 2.0, 0.7, -0.2, 1.5)
SUB = torch.tensor([1, 4, 5])
MASK = torch.tensor([True, False, True])
Y = T([[0.5, -0.3, 1.2], [2.2, 0.1, -0.8]])


def everyday_model():
    z = pyro.sample("z", dist.Normal(T(0.5), T(2.0)))
    with pyro.plate("data", 6, subsample=SUB) as ind:
        w = pyro.sample("w", dist.Normal(z, T(1.0)))
        with poutine.scale(scale=0.5), poutine.mask(mask=MASK):
            pyro.sample("x", dist.Normal(w, T(0.8)), obs=DATA[ind])
    with pyro.plate("rows", 2, dim=-2), pyro.plate("cols", 3, dim=-1):
        pyro.sample("y", dist.Normal(z, T(1.5)), obs=Y)


def everyday_guide():
    zl = pyro.param("z_loc", T(0.1))
    zs = pyro.param("z_scale", T(0.7), constraint=constraints.positive)
    pyro.sample("z", dist.Normal(zl, zs))
    wl = pyro.param("w_loc", T(0.2, -0.1, 0.4, 0.0, 0.3, -0.5))
    ws = pyro.param("w_scale", T(0.5, 0.6, 0.7, 0.8, 0.9, 1.1), constraint=constraints.positive)
    with pyro.plate("data", 6, subsample=SUB) as ind:
        pyro.sample("w", dist.Normal(wl[ind], ws[ind]))


EVERYDAY_FIXED = {"z": [T(0.4)], "w": [T(-0.3, 1.2, 0.5)]}

# Tensor scale weights on local sites (model and guide), a guide mask: TraceMeanField's KL.
WEIGHTS = T(0.5, 2.0, 1.5)
GUIDE_MASK = torch.tensor([True, True, False])


def weighted_model():
    z = pyro.sample("z", dist.Normal(T(0.5), T(2.0)))
    with pyro.plate("data", 3), poutine.scale(scale=WEIGHTS):
        w = pyro.sample("w", dist.Normal(z, T(1.0)))
        pyro.sample("x", dist.Normal(w, T(0.8)), obs=DATA[:3])


def weighted_guide():
    zl = pyro.param("z_loc", T(0.1))
    zs = pyro.param("z_scale", T(0.7), constraint=constraints.positive)
    pyro.sample("z", dist.Normal(zl, zs))
    wl = pyro.param("w_loc", T(0.2, -0.1, 0.4))
    ws = pyro.param("w_scale", T(0.5, 0.6, 0.7), constraint=constraints.positive)
    with pyro.plate("data", 3), poutine.scale(scale=WEIGHTS), poutine.mask(mask=GUIDE_MASK):
        pyro.sample("w", dist.Normal(wl, ws))


WEIGHTED_FIXED = {"z": [T(0.4)], "w": [T(-0.3, 1.2, 0.5)]}

# Score-function sites: a global and a local Bernoulli with fixed draws.
SF_X = T(0.5, -1.2, 1.4)


def sf_model():
    c = pyro.sample("c", dist.Bernoulli(T(0.4)))
    with pyro.plate("data", 3):
        z = pyro.sample("z", dist.Bernoulli(T(0.3)))
        pyro.sample("x", dist.Normal(2 * z - 1 + 0.5 * c, T(1.0)), obs=SF_X)


def sf_guide():
    phi = pyro.param("phi", T(0.3))
    pyro.sample("c", dist.Bernoulli(logits=phi))
    theta = pyro.param("theta", T(0.2, -0.4, 1.0))
    with pyro.plate("data", 3):
        pyro.sample("z", dist.Bernoulli(logits=theta))


SF_FIXED = {"c": [T(1.0)], "z": [T(1.0, 0.0, 1.0)]}

# ------------------------------------------------------------- RenyiELBO / IWAE

RX = T(0.9, -0.4, 1.7)
REPS = [T(0.3, -1.0, 0.8), T(-1.4, 0.2, 0.6), T(1.1, 0.9, -0.7)]


def renyi_model():
    # VAE-style: every model site lives in the data plate.
    with pyro.plate("data", 3):
        z = pyro.sample("z", dist.Normal(T(0.0), T(1.0)))
        pyro.sample("x", dist.Normal(z, T(0.5)), obs=RX)


def renyi_guide():
    loc = pyro.param("loc", T(0.2, -0.3, 0.5))
    scale = pyro.param("scale", T(0.8, 1.2, 0.6), constraint=constraints.positive)
    with pyro.plate("data", 3):
        pyro.sample("z", dist.Normal(loc, scale))


RX2 = T([[0.9, 1.1], [-0.4, 0.2], [1.7, 1.3]])


def renyi_nested_model():
    # The data plate is shared by every site; the feature plate is not (summed first).
    with pyro.plate("data", 3, dim=-2):
        z = pyro.sample("z", dist.Normal(T(0.0), T(1.0)))
        with pyro.plate("feat", 2, dim=-1):
            pyro.sample("x", dist.Normal(z, T(0.5)), obs=RX2)


def renyi_nested_guide():
    loc = pyro.param("loc", T([[0.2], [-0.3], [0.5]]))
    scale = pyro.param("scale", T([[0.8], [1.2], [0.6]]), constraint=constraints.positive)
    with pyro.plate("data", 3, dim=-2):
        pyro.sample("z", dist.Normal(loc, scale))


def renyi_global_model():
    # A global site: no plate is shared by every site, every plate is summed.
    m = pyro.sample("m", dist.Normal(T(0.0), T(2.0)))
    with pyro.plate("data", 3):
        z = pyro.sample("z", dist.Normal(m, T(1.0)))
        pyro.sample("x", dist.Normal(z, T(0.5)), obs=RX)


def renyi_global_guide():
    ml = pyro.param("m_loc", T(0.4))
    pyro.sample("m", dist.Normal(ml, T(0.9)))
    renyi_guide()


RENYI_FIXED = {"z": REPS, "m": [T(0.5), T(-0.2), T(1.3)]}
RENYI_NESTED_FIXED = {"z": [e.reshape(3, 1) for e in REPS]}

# ------------------------------------------------------------- optimisers

P0 = T(0.1, 0.2, -0.3)
GRADS = [T(0.5, -1.5, 2.0), T(-0.2, 30.0, 0.7), T(1.0, 0.1, -25.0), T(0.3, -0.6, 0.05)]

OPTIMS = {
    "Adam": (pyro.optim.Adam, {"lr": 0.1, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.01}),
    "Adam_amsgrad": (pyro.optim.Adam, {"lr": 0.1, "amsgrad": True}),
    "ClippedAdam": (pyro.optim.ClippedAdam, {"lr": 0.1, "betas": (0.8, 0.95), "clip_norm": 5.0, "lrd": 0.9,
                                             "weight_decay": 0.01}),
    "SGD": (pyro.optim.SGD, {"lr": 0.05}),
    "SGD_nesterov": (pyro.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    "SGD_dampening": (pyro.optim.SGD, {"lr": 0.05, "momentum": 0.7, "dampening": 0.3}),
    "RMSprop": (pyro.optim.RMSprop, {"lr": 0.01, "alpha": 0.9}),
    "RMSprop_centered": (pyro.optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    "Adagrad": (pyro.optim.Adagrad, {"lr": 0.3, "lr_decay": 0.01, "initial_accumulator_value": 0.1,
                                     "weight_decay": 0.05}),
}


def optim_case(cls, kwargs):
    """Steps with fixed gradients; then the store is cleared and 'p' re-created (fresh state);
    then 'p' is replaced by assignment (fresh state again). 'q' has no gradient at steps 2 and 5."""
    pyro.clear_param_store()
    optim = cls(dict(kwargs))
    p_trace, q_trace = [], []
    q0 = T(1.0, -1.0, 0.5)

    def step(i, q_grad):
        ps = pyro.get_param_store()
        u, v = ps.get_param("p").unconstrained(), ps.get_param("q").unconstrained()
        u.grad = GRADS[i % len(GRADS)].clone()
        v.grad = (-GRADS[(i + 1) % len(GRADS)]).clone() if q_grad else None
        optim([u, v])
        p_trace.append(u.detach().clone())
        q_trace.append(v.detach().clone())
        u.grad = None
        v.grad = None

    pyro.param("p", P0.clone())
    pyro.param("q", q0.clone())
    for i in range(4):
        step(i, q_grad=(i != 1))
    pyro.clear_param_store()
    pyro.param("p", P0.clone())
    pyro.param("q", q0.clone())
    for i in range(2):
        step(i, q_grad=True)
    pyro.get_param_store()["p"] = T(0.4, 0.4, 0.4)
    for i in range(2):
        step(i, q_grad=(i != 0))
    return {"kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
            "p": torch.stack(p_trace), "q": torch.stack(q_trace)}


# ------------------------------------------------------------- Predictive

PDATA = T(0.5, -0.5, 1.0)


def pred_model(data):
    z = pyro.sample("z", dist.Normal(T(0.0), T(1.0)))
    s = pyro.sample("s", dist.Normal(T(0.0), T(1.0)).expand([2]).to_event(1))
    pyro.sample("y", dist.Delta(3 * z))
    with pyro.plate("data", 3):
        w = pyro.sample("w", dist.Normal(z, T(1.0)))
        pyro.deterministic("d", 2 * w)
        pyro.sample("x", dist.Normal(w, T(1.0)), obs=data)


def pred_guide(data):
    pyro.sample("z", dist.Delta(T(0.3)))
    pyro.sample("s", dist.Delta(T(0.1, -0.2), event_dim=1))
    with pyro.plate("data", 3):
        pyro.sample("w", dist.Delta(T(0.4, -0.6, 1.2)))


def predictive_cases():
    out = {}
    for parallel in (False, True):
        tag = "parallel" if parallel else "sequential"
        out[f"guide_{tag}"] = Predictive(pred_model, guide=pred_guide, num_samples=2, parallel=parallel)(PDATA)
        out[f"guide_return_sites_{tag}"] = Predictive(pred_model, guide=pred_guide, num_samples=2, parallel=parallel,
                                                      return_sites=["z", "s", "d"])(PDATA)
        samples = {"z": T(0.3, -0.1), "s": T([[0.1, -0.2], [0.5, 0.0]]), "w": T([[0.4, -0.6, 1.2], [0.0, 0.1, 0.2]])}
        out[f"samples_{tag}"] = Predictive(pred_model, posterior_samples=samples, parallel=parallel)(PDATA)
    return out


def svi_case(model, guide, fixed, optim, elbo, steps=3):
    """SVI steps end to end: the losses, then every param's constrained value."""
    pyro.clear_param_store()
    svi = pyro.infer.SVI(model, FixDraws(fixed)(guide), optim, elbo)
    losses = [svi.step() for _ in range(steps)]
    params = {name: pyro.param(name).detach().clone() for name in pyro.get_param_store().keys()}
    return {"losses": losses, "params": params}


def generate():
    pyro.enable_validation(True)
    cases = {}
    for elbo_name, elbo in (("Trace_ELBO", Trace_ELBO()), ("TraceMeanField_ELBO", TraceMeanField_ELBO())):
        cases[f"everyday_{elbo_name}"] = run_elbo(elbo, everyday_model, everyday_guide, EVERYDAY_FIXED)
        cases[f"weighted_{elbo_name}"] = run_elbo(elbo, weighted_model, weighted_guide, WEIGHTED_FIXED)
    cases["everyday_Trace_ELBO"]["traces"] = trace_contents(Trace_ELBO(), everyday_model, everyday_guide,
                                                            EVERYDAY_FIXED)
    cases["score_function_Trace_ELBO"] = run_elbo(Trace_ELBO(), sf_model, sf_guide, SF_FIXED)
    cases["everyday_Trace_ELBO_2particles"] = run_elbo(Trace_ELBO(num_particles=2), everyday_model, everyday_guide,
                                                       {"z": [T(0.4), T(-1.0)], "w": [T(-0.3, 1.2, 0.5), T(0.1, 0.2, 0.3)]})
    cases["everyday_Trace_ELBO_2particles_vectorized"] = run_elbo(
        Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=2), everyday_model, everyday_guide,
        {"z": [T(0.4, -1.0).reshape(2, 1, 1)], "w": [T([[-0.3, 1.2, 0.5], [0.1, 0.2, 0.3]]).reshape(2, 1, 3)]})
    for alpha in (0.0, 0.5):
        for tag, model, guide, fixed in (("vae", renyi_model, renyi_guide, RENYI_FIXED),
                                         ("nested", renyi_nested_model, renyi_nested_guide, RENYI_NESTED_FIXED),
                                         ("global", renyi_global_model, renyi_global_guide, RENYI_FIXED)):
            cases[f"renyi_{tag}_alpha{alpha}"] = run_elbo(RenyiELBO(alpha=alpha, num_particles=3), model, guide, fixed)
            # All particles at once: the draws of one guide run carry the particle dim
            # (left of the plates) and broadcast against it.
            nesting = 2 if tag == "nested" else 1
            vec_fixed = {name: [torch.stack(v).reshape((3,) + (1,) * (nesting - v[0].dim()) + v[0].shape)]
                         for name, v in fixed.items()}
            cases[f"renyi_{tag}_alpha{alpha}_vectorized"] = run_elbo(
                RenyiELBO(alpha=alpha, num_particles=3, vectorize_particles=True, max_plate_nesting=nesting),
                model, guide, vec_fixed)
    cases["svi_Trace_ELBO_Adam"] = svi_case(everyday_model, everyday_guide, EVERYDAY_FIXED,
                                            pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    cases["svi_TraceMeanField_ELBO_ClippedAdam"] = svi_case(
        weighted_model, weighted_guide, WEIGHTED_FIXED, pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.8, "clip_norm": 1.0}),
        TraceMeanField_ELBO())
    cases["optim"] = {name: optim_case(cls, kw) for name, (cls, kw) in OPTIMS.items()}
    cases["predictive"] = predictive_cases()
    return cases
