"""TraceGraph_ELBO and optimiser-toolbox fixtures (Pyro 1.8.4).

TraceGraph_ELBO: losses, surrogate losses and gradients for fixed guide draws (`FixDraws`, as
in inference.py) on a model with non-reparameterised latents (a global Bernoulli and a local
Categorical in a plate), with and without baselines (decaying average, a learned baseline
value, an nn baseline). In these programs every site after a non-reparameterised site in the
guide or the model depends on it, so Pyro's provenance tracking and Ember's order-and-plate
dependency structure give the same downstream costs (docs/inference.md explains where they
differ).

Optimiser toolbox: Pyro's PyroLRScheduler wrappers (StepLR, ExponentialLR, ReduceLROnPlateau)
with per-param optimisers created on first sight, and `clip_args` (clip_norm, clip_value), on
fixed gradients. tests/test_inference_pyro.cpp runs the same programs in Ember.
"""
import pyro
import pyro.distributions as dist
import pyro.optim
import torch
from pyro.distributions import constraints
from pyro.infer import Trace_ELBO, TraceGraph_ELBO

from pyro_fixtures.inference import FixDraws, T, grads


# ------------------------------------------------------------- TraceGraph_ELBO

TG_X = T(0.5, -1.2, 1.4)
NN_WEIGHT = T([[0.2, -0.1, 0.3], [0.05, 0.4, -0.2], [-0.3, 0.1, 0.25]])
NN_BIAS = T(0.1, -0.2, 0.05)
NN_INPUT = T(0.3, -0.6, 0.9)


def tg_model():
    a = pyro.sample("a", dist.Bernoulli(T(0.4)))
    with pyro.plate("data", 3):
        z = pyro.sample("z", dist.Normal(0.8 * a, T(1.0)))
        c = pyro.sample("c", dist.Categorical(logits=torch.stack([z, -z, 0.5 * z], -1)))
        pyro.sample("x", dist.Normal(z + c.double() - 1.0, T(0.7)), obs=TG_X)


def make_tg_guide(baselines=None):
    baselines = baselines or {}

    def guide():
        phi = pyro.param("phi", T(0.3))
        a = pyro.sample("a", dist.Bernoulli(logits=phi), infer=baselines.get("a", {}))
        loc = pyro.param("z_loc", T(0.2, -0.1, 0.4))
        scale = pyro.param("z_scale", T(0.9, 1.1, 0.8), constraint=constraints.positive)
        lg = pyro.param("c_logits", T([[0.1, -0.2, 0.3], [0.0, 0.5, -0.4], [0.2, 0.2, -0.1]]))
        c_infer = baselines.get("c", {})
        if callable(c_infer):
            c_infer = c_infer()
        with pyro.plate("data", 3):
            z = pyro.sample("z", dist.Normal(loc + 0.5 * a, scale))
            pyro.sample("c", dist.Categorical(logits=lg + z.unsqueeze(-1) * T(0.3, -0.2, 0.1)), infer=c_infer)

    return guide


TG_FIXED = {"a": [T(1.0), T(0.0)], "z": [T(0.3, -0.8, 1.1), T(-0.2, 0.5, 0.7)],
            "c": [torch.tensor([2, 0, 1]), torch.tensor([1, 1, 0])]}


def tracegraph_run(elbo, guide, steps=1):
    """`steps` calls of loss_and_grads on one param store (params unchanged, gradients zeroed in
    between, so a decaying-average baseline moves): each call's loss, surrogate loss, gradients
    and the param store's values afterwards (the baseline averages among them)."""
    pyro.clear_param_store()
    fixed = FixDraws(TG_FIXED)
    out = {"loss": None, "steps": []}
    out["loss"] = elbo.loss(tg_model, fixed(guide))
    pyro.clear_param_store()
    fixed = FixDraws(TG_FIXED)
    for _ in range(steps):
        for _, u in pyro.get_param_store().named_parameters():
            u.grad = None
        loss = elbo.loss_and_grads(tg_model, fixed(guide))
        params = {name: pyro.param(name).detach().clone() for name in pyro.get_param_store().keys()}
        out["steps"].append({"loss": loss, "grads": grads(), "params": params})
    return out


def surrogate_value(elbo, guide):
    """The surrogate loss of the first particle (TraceGraph_ELBO's _loss_and_surrogate_loss)."""
    pyro.clear_param_store()
    fixed = FixDraws(TG_FIXED)
    _, surrogate = elbo._loss_and_surrogate_loss(tg_model, fixed(guide), (), {})
    return surrogate.item()


def nn_baseline_case():
    pyro.clear_param_store()
    net = torch.nn.Linear(3, 3).double()
    with torch.no_grad():
        net.weight.copy_(NN_WEIGHT)
        net.bias.copy_(NN_BIAS)

    def guide():
        pyro.module("bl", net)
        make_tg_guide({"c": {"baseline": {"nn_baseline": net, "nn_baseline_input": NN_INPUT}}})()

    return tracegraph_run(TraceGraph_ELBO(), guide)


# ------------------------------------------------------------- schedulers and clipping

def optimiser_run(optim, epochs, metrics=None, late_param_epoch=None):
    """`epochs` epochs of one optimiser step on fixed gradients then `scheduler.step()` (with the
    metric for ReduceLROnPlateau). Param "p" exists from the start, "q" from `late_param_epoch`.
    Records each param's learning rate and value after every epoch."""
    pyro.clear_param_store()
    grad_p, grad_q = T(0.5, -1.5), T(2.0)
    out = {"lr_p": [], "lr_q": [], "p": [], "q": []}
    for epoch in range(epochs):
        names = ["p"]
        p = pyro.param("p", T(1.0, -2.0)).unconstrained()
        p.grad = grad_p * (1.0 + 0.1 * epoch)
        if late_param_epoch is not None and epoch >= late_param_epoch:
            q = pyro.param("q", T(0.5)).unconstrained()
            q.grad = grad_q.clone()
            names.append("q")
        params = [pyro.get_param_store().get_param(n).unconstrained() for n in names]
        optim(params)
        if hasattr(optim, "optim_objs") and isinstance(optim, pyro.optim.PyroLRScheduler):
            if metrics is not None:
                optim.step(metrics[epoch])
            else:
                optim.step()
        for n in ("p", "q"):
            u = pyro.get_param_store().get_param(n).unconstrained() if n in pyro.get_param_store() else None
            if u is None:
                out["lr_" + n].append(-1.0)
                continue
            obj = optim.optim_objs[u]
            opt = obj.optimizer if hasattr(obj, "optimizer") else obj
            out["lr_" + n].append(opt.param_groups[0]["lr"])
            out[n].append(pyro.param(n).detach().clone())
    return out


PLATEAU_METRICS = [1.0, 0.9, 0.95, 0.96, 0.97, 0.8, 0.85, 0.9, 0.91, 0.92]


def generate():
    pyro.enable_validation(True)
    cases = {}
    cases["tracegraph_plain"] = tracegraph_run(TraceGraph_ELBO(), make_tg_guide())
    cases["tracegraph_plain"]["surrogate"] = surrogate_value(TraceGraph_ELBO(), make_tg_guide())
    cases["tracegraph_2particles"] = tracegraph_run(TraceGraph_ELBO(num_particles=2), make_tg_guide())
    cases["trace_elbo_same_model"] = tracegraph_run(Trace_ELBO(), make_tg_guide())
    cases["tracegraph_baselines"] = tracegraph_run(
        TraceGraph_ELBO(),
        make_tg_guide({"a": {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": 0.8}},
                       "c": lambda: {"baseline": {"baseline_value": pyro.param("c_baseline", T(0.3, -0.5, 1.0))}}}),
        steps=3)
    cases["tracegraph_nn_baseline"] = nn_baseline_case()

    sgd = torch.optim.SGD
    adam = torch.optim.Adam
    cases["step_lr"] = optimiser_run(
        pyro.optim.StepLR({"optimizer": sgd, "optim_args": {"lr": 0.1}, "step_size": 2, "gamma": 0.5}), 6,
        late_param_epoch=3)
    cases["exponential_lr"] = optimiser_run(
        pyro.optim.ExponentialLR({"optimizer": adam, "optim_args": {"lr": 0.05}, "gamma": 0.7}), 5,
        late_param_epoch=2)
    cases["reduce_lr_on_plateau"] = optimiser_run(
        pyro.optim.ReduceLROnPlateau({"optimizer": sgd, "optim_args": {"lr": 0.2},
                                      "factor": 0.5, "patience": 1, "cooldown": 1, "min_lr": 0.03}),
        len(PLATEAU_METRICS), metrics=PLATEAU_METRICS)
    cases["plateau_max_abs"] = optimiser_run(
        pyro.optim.ReduceLROnPlateau({"optimizer": sgd, "optim_args": {"lr": 0.2}, "mode": "max",
                                      "threshold_mode": "abs", "threshold": 0.02, "factor": 0.3, "patience": 0}),
        len(PLATEAU_METRICS), metrics=[-m for m in PLATEAU_METRICS])
    cases["adam_clip_norm"] = optimiser_run(pyro.optim.Adam({"lr": 0.1}, {"clip_norm": 0.5}), 3, late_param_epoch=1)
    cases["sgd_clip_value"] = optimiser_run(pyro.optim.SGD({"lr": 0.1}, {"clip_value": 0.6}), 3, late_param_epoch=1)
    cases["sgd_clip_both"] = optimiser_run(pyro.optim.SGD({"lr": 0.1}, {"clip_norm": 1.0, "clip_value": 0.3}), 2)
    return cases
