"""Autoguide fixtures (Pyro 1.8.4): param names/shapes, guide log-densities, ELBO values and
gradients at fixed params and fixed auxiliary draws, medians, quantiles, init strategies.

Each guide is built with `init_to_value`, so its initial params are known; its auxiliary
sites (`<site>_unconstrained` or `_<Guide>_latent`) are conditioned on fixed unconstrained
values and its params are substituted by leaf tensors, so the ELBO
log p(x, z) - log q(z) is deterministic and differentiable in the constrained params.
tests/test_autoguide.cpp runs the same programs in Ember.
"""
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import (AutoDelta, AutoDiagonalNormal, AutoLowRankMultivariateNormal,
                                  AutoMultivariateNormal, AutoNormal, init_to_feasible, init_to_mean,
                                  init_to_value)
from torch.distributions import biject_to


def T(v):
    return torch.tensor(v, dtype=torch.float64)


DATA = T([0.3, -1.2, 2.0, 0.7])
INIT = {"mu": T(0.5), "sigma": T(1.5), "p": T(0.3), "w": T([0.2, 0.3, 0.5]), "l": T([0.1, -0.4, 1.1, 0.6])}


def model(data):
    mu = pyro.sample("mu", dist.Normal(T(0.0), T(2.0)))
    sigma = pyro.sample("sigma", dist.LogNormal(T(0.0), T(1.0)))
    p = pyro.sample("p", dist.Beta(T(2.0), T(3.0)))
    w = pyro.sample("w", dist.Dirichlet(T([1.0, 2.0, 3.0])))
    with pyro.plate("data", 4):
        l = pyro.sample("l", dist.Normal(mu, T(1.0)))
        pyro.sample("x", dist.Normal(l * p + w[0], sigma), obs=data)


SUB_DATA = T([0.3, -1.2, 2.0, 0.7, 1.5, -0.1])
SUB_IDX = torch.tensor([4, 1, 5])
SUB_INIT = {"mu": T(0.2), "l": T([0.1, -0.4, 1.1, 0.6, 0.9, -0.3])[SUB_IDX.sort().values]}


def model_sub(data):
    mu = pyro.sample("mu", dist.Normal(T(0.0), T(1.0)))
    with pyro.plate("data", 6, subsample_size=3) as ind:
        l = pyro.sample("l", dist.Normal(mu, T(1.0)))
        pyro.sample("x", dist.Normal(l, T(0.5)), obs=data[ind])


def sites_of(guide_cls):
    return guide_cls.__name__


def aux_values(guide, name, latents):
    """Fixed unconstrained draws: the initial unconstrained value + 0.3 sin(k)."""
    if name in ("AutoNormal",):
        out = {}
        for site, value in latents.items():
            u = biject_to(guide.prototype_trace.nodes[site]["fn"].support).inv(value)
            out[site + "_unconstrained"] = u + 0.3 * torch.sin(torch.arange(u.numel(), dtype=torch.float64)).reshape(u.shape)
        return out
    if name == "AutoDelta":
        return {}
    loc = guide._init_loc().detach()
    return {"_%s_latent" % name: loc + 0.3 * torch.sin(torch.arange(loc.numel(), dtype=torch.float64))}


def run_guide(guide_cls, mdl, data, init, cond=None, **kw):
    pyro.clear_param_store()
    torch.manual_seed(0)
    guide = guide_cls(mdl, init_loc_fn=init_to_value(values=init), **kw)
    mc = poutine.condition(mdl, data=cond) if cond else mdl
    gc = poutine.condition(guide, data=cond) if cond else guide
    gc(data)  # prototype + params
    name = guide_cls.__name__
    ps = pyro.get_param_store()
    params = {k: ps[k].detach().clone() for k in ps.keys()}
    aux = aux_values(guide, name, {k: v for k, v in init.items()})
    cond_all = dict(aux)
    if cond:
        cond_all.update(cond)
    guide_tr = poutine.trace(poutine.condition(guide, data=cond_all)).get_trace(data)
    model_tr = poutine.trace(poutine.replay(mc, trace=guide_tr)).get_trace(data)
    model_lp = model_tr.log_prob_sum()
    guide_lp = guide_tr.log_prob_sum()
    elbo = model_lp - guide_lp
    names = sorted(ps.keys())
    unconstrained = [ps._params[k] for k in names]
    gr = torch.autograd.grad(elbo, unconstrained, allow_unused=True)
    grads = {}
    for k, u, g in zip(names, unconstrained, gr):
        g = g if g is not None else torch.zeros_like(u)
        c = ps._constraints[k]
        if c is dist.constraints.real or c is dist.constraints.positive or c is dist.constraints.softplus_positive or \
                isinstance(c, (dist.constraints.interval.__class__,)) or c is dist.constraints.unit_interval:
            # elementwise transform: gradient with respect to the constrained value
            uu = u.detach().clone().requires_grad_()
            dc = torch.autograd.grad(biject_to(c)(uu).sum(), uu)[0]
            grads[k] = {"constrained": True, "grad": g / dc}
        else:
            grads[k] = {"constrained": False, "grad": g}
    out = {
        "params": params,
        "aux": aux,
        "model_log_prob": model_lp.detach(),
        "guide_log_prob": guide_lp.detach(),
        "elbo": elbo.detach(),
        "grads": grads,
        "values": {k: guide_tr.nodes[k]["value"].detach() for k in init},
    }
    with torch.no_grad():
        out["median"] = {k: v.detach() for k, v in guide.median(data).items()}
        if guide_cls is not AutoDelta:
            out["quantiles"] = {k: v.detach() for k, v in guide.quantiles([0.1, 0.5, 0.9], data).items()}
    return out


def init_case(strategy):
    def m():
        pyro.sample("a", dist.Normal(T(1.0), T(2.0)))
        pyro.sample("b", dist.LogNormal(T(0.5), T(1.0)))
        pyro.sample("c", dist.Beta(T(2.0), T(3.0)))
        pyro.sample("d", dist.Dirichlet(T([1.0, 2.0, 3.0])))
        pyro.sample("e", dist.Gamma(T(2.0), T(3.0)).expand([2]).to_event(1))
    pyro.clear_param_store()
    g = AutoDelta(m, init_loc_fn=strategy)
    g()
    return {k: v for k, v in g.median().items()}


def generate():
    cases = {}
    for cls in (AutoNormal, AutoDelta, AutoDiagonalNormal, AutoMultivariateNormal):
        cases[cls.__name__] = run_guide(cls, model, DATA, INIT)
    cases["AutoLowRankMultivariateNormal"] = run_guide(AutoLowRankMultivariateNormal, model, DATA, INIT, rank=2)
    for cls in (AutoNormal, AutoDelta):
        cases["subsample_" + cls.__name__] = run_guide(cls, model_sub, SUB_DATA, SUB_INIT, cond={"data": SUB_IDX})
    cases["subsample_idx"] = SUB_IDX
    cases["init_to_mean"] = init_case(init_to_mean)
    cases["init_to_feasible"] = init_case(init_to_feasible)
    return cases
