"""Handler semantics in Pyro 1.8.4: condition (None values, traces with plate subsamples),
lift (one draw per param per run, priors used as given, random_module), deterministic sites
given other values, and sample(..., obs_mask).

Every program is deterministic: latent values are fixed by condition, so the C++ tests in
tests/test_handlers.cpp run the same programs in Ember and compare values, shapes and
log-densities at 1e-6 (float64).
"""
import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch


def sites(tr):
    """What the C++ tests compare: per sample site its value, observed flag, shapes and log-prob."""
    tr.compute_log_prob()
    out = []
    for name, node in tr.nodes.items():
        if node["type"] != "sample":
            continue
        out.append({
            "name": name,
            "is_observed": bool(node["is_observed"]),
            "value": node["value"],
            "batch_shape": list(getattr(node["fn"], "batch_shape", [])),
            "event_shape": list(getattr(node["fn"], "event_shape", [])),
            "log_prob": node["log_prob"],
        })
    return out


def condition_none():
    # A None value un-observes a site observed in the program; replay then supplies its value.
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        return pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(0.5))

    guide_tr = poutine.trace(poutine.condition(model, {"x": None, "z": torch.tensor(0.3)})).get_trace()
    assert not guide_tr.nodes["x"]["is_observed"]
    guide_tr.nodes["x"]["value"] = torch.tensor(0.9)
    tr = poutine.trace(poutine.replay(poutine.condition(model, {"x": None, "z": torch.tensor(0.3)}), trace=guide_tr)).get_trace()
    return {"sites": sites(tr), "log_prob_sum": tr.log_prob_sum()}


def condition_trace_subsample():
    # condition(model, trace) reuses the trace's subsample indices: z and x stay paired.
    data = torch.tensor([10.0, 11.0, 12.0, 13.0, 14.0])

    def model(subsample):
        kwargs = {"subsample": subsample} if subsample is not None else {"subsample_size": 2}
        with pyro.plate("N", 5, **kwargs) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data[idx])

    z = torch.tensor([0.25, -0.5])
    source = poutine.trace(poutine.condition(model, {"z": z})).get_trace(torch.tensor([3, 1]))
    tr = poutine.trace(poutine.condition(model, source)).get_trace(None)
    return {"data": data, "z": z, "subsample": torch.tensor([3, 1]), "sites": sites(tr), "log_prob_sum": tr.log_prob_sum()}


def lift_cases():
    def model():
        w = pyro.param("w", torch.zeros(3))
        w_again = pyro.param("w")
        return w + w_again

    # A scalar prior on a [3] param: one scalar draw, used as given.
    scalar = poutine.trace(poutine.condition(poutine.lift(model, prior=dist.Normal(0.0, 1.0)),
                                             {"w": torch.tensor(0.7)})).get_trace()
    # A prior covering the whole param.
    prior = {"w": dist.Normal(torch.zeros(3), 2.0).to_event(1)}
    w = torch.tensor([0.1, -0.2, 0.3])
    vector = poutine.trace(poutine.condition(poutine.lift(model, prior=prior), {"w": w})).get_trace()

    # random_module: a module's parameters drawn from priors keyed by parameter name.
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.5, -1.0]]))
        net.bias.copy_(torch.tensor([0.25]))
    module_prior = {"weight": dist.Normal(torch.zeros(1, 2), 1.0).to_event(2),
                    "bias": dist.Normal(torch.zeros(1), 3.0).to_event(1)}
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    W = torch.tensor([[2.0, 0.5]])
    b = torch.tensor([-1.5])

    def bayes_net():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            lifted = pyro.random_module("net", net, module_prior)()
        return lifted(x)

    module = poutine.trace(poutine.condition(bayes_net, {"net$$$weight": W, "net$$$bias": b})).get_trace()
    return {
        "scalar_prior": {"sites": sites(scalar), "return": scalar.nodes["_RETURN"]["value"],
                         "log_prob_sum": scalar.log_prob_sum()},
        "vector_prior": {"w": w, "sites": sites(vector), "return": vector.nodes["_RETURN"]["value"],
                         "log_prob_sum": vector.log_prob_sum()},
        "random_module": {"x": x, "weight": W, "bias": b, "init_weight": torch.tensor([[0.5, -1.0]]),
                          "init_bias": torch.tensor([0.25]), "sites": sites(module),
                          "return": module.nodes["_RETURN"]["value"], "log_prob_sum": module.log_prob_sum()},
    }


def deterministic_other_value():
    def model():
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        return pyro.deterministic("d", a * 2)

    tr = poutine.trace(poutine.condition(model, {"a": torch.tensor(0.5), "d": torch.tensor(3.0)})).get_trace()
    return {"sites": sites(tr), "return": tr.nodes["_RETURN"]["value"], "log_prob_sum": tr.log_prob_sum()}


def obs_mask():
    data = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mask = torch.tensor([True, False, True, False])
    imputed = torch.tensor([10.0, 20.0, 30.0, 40.0])

    def model():
        loc = pyro.param("loc", torch.tensor(0.5))
        with pyro.plate("N", 4):
            return pyro.sample("x", dist.Normal(loc, 2.0), obs=data, obs_mask=mask)

    pyro.clear_param_store()  # "loc" is a fresh param here
    tr = poutine.trace(poutine.condition(model, {"x_unobserved": imputed})).get_trace()
    # The latent part as a guide sees it: unobserved.
    def guide():
        with pyro.plate("N", 4):
            pyro.sample("x_unobserved", dist.Delta(imputed))

    latent = poutine.trace(poutine.replay(model, trace=poutine.trace(guide).get_trace())).get_trace()
    # Vector events: the mask covers batch dims only.
    vdata = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    vmask = torch.tensor([False, True, True])
    vimputed = torch.full((3, 2), -1.0)

    def vmodel():
        with pyro.plate("N", 3):
            return pyro.sample("y", dist.Normal(torch.zeros(2), 1.0).to_event(1), obs=vdata, obs_mask=vmask)

    vtr = poutine.trace(poutine.condition(vmodel, {"y_unobserved": vimputed})).get_trace()
    return {
        "data": data, "mask": mask, "imputed": imputed,
        "sites": sites(tr), "return": tr.nodes["_RETURN"]["value"], "log_prob_sum": tr.log_prob_sum(),
        "latent_sites": sites(latent), "latent_log_prob_sum": latent.log_prob_sum(),
        "vector": {"data": vdata, "mask": vmask, "imputed": vimputed, "sites": sites(vtr),
                   "return": vtr.nodes["_RETURN"]["value"], "log_prob_sum": vtr.log_prob_sum()},
    }


def everyday():
    # Nested plates (one subsampled), scale, a broadcasting mask and block, as SVI sees them.
    data = torch.linspace(-2, 2, 12).reshape(4, 3)
    s_value = torch.tensor([0.5, 1.0, 2.0])

    def model():
        loc = pyro.param("loc", torch.tensor(0.25))
        with pyro.plate("outer", 3, dim=-1):
            s = pyro.sample("s", dist.Gamma(2.0, 3.0))
            with pyro.plate("inner", 10, subsample=torch.tensor([1, 4, 7, 9]), dim=-2):
                with poutine.scale(scale=2.0), poutine.mask(mask=torch.tensor([[True], [False], [True], [True]])):
                    pyro.sample("x", dist.Normal(loc, s), obs=data)
        with poutine.block(hide=["hidden"]):
            pyro.sample("hidden", dist.Normal(0.0, 1.0))

    pyro.clear_param_store()  # "loc" is a fresh param here
    tr = poutine.trace(poutine.condition(model, {"s": s_value})).get_trace()
    return {"data": data, "s": s_value, "sites": sites(tr), "log_prob_sum": tr.log_prob_sum()}


def generate():
    pyro.clear_param_store()
    return {
        "condition_none": condition_none(),
        "condition_trace_subsample": condition_trace_subsample(),
        "lift": lift_cases(),
        "deterministic_other_value": deterministic_other_value(),
        "obs_mask": obs_mask(),
        "everyday": everyday(),
    }
