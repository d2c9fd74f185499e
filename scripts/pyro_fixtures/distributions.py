"""Distribution, transform and constraint semantics in Pyro 1.8.4 (on torch 1.13): masks that
broadcast, transformed shapes, to_event, the Independent and masked KLs, the clamps of the
sigmoid-based transforms, the simplex transforms and the param store's simplex layout,
integer constraints and ContinuousBernoulli's normaliser.

The C++ tests in tests/test_distributions_api.cpp and tests/test_param_store.cpp compare at
1e-6 (float64).
"""
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch.distributions import biject_to, transform_to
from torch.distributions.transforms import AffineTransform


def shapes(d):
    return {"batch_shape": list(d.batch_shape), "event_shape": list(d.event_shape)}


def mask_cases():
    m = torch.tensor([True, False])
    d = dist.Normal(0.0, 1.0).mask(m)
    x = torch.tensor([0.5, -1.5])
    # A [3, 1] mask on a [2] batch: both broadcast to [3, 2].
    m2 = torch.tensor([[True], [False], [True]])
    d2 = dist.Normal(torch.tensor([0.0, 1.0]), 2.0).mask(m2)
    return {
        "vector": {"mask": m, "x": x, "log_prob": d.log_prob(x), **shapes(d)},
        "broadcast": {"mask": m2, "x": x, "log_prob": d2.log_prob(x), **shapes(d2)},
        "false": {"log_prob": dist.Normal(torch.zeros(3), 1.0).mask(False).log_prob(torch.tensor(7.0)),
                  **shapes(dist.Normal(torch.zeros(3), 1.0).mask(False))},
    }


def affine_case():
    loc = torch.tensor([1.0, 2.0, 3.0])
    d = dist.TransformedDistribution(dist.Normal(0.0, 1.0), [AffineTransform(loc, 2.0)])
    x = torch.tensor([0.5, 2.5, -1.0])
    return {"loc": loc, "scale": 2.0, "x": x, "log_prob": d.log_prob(x), **shapes(d)}


def to_event_cases():
    base = dist.Normal(torch.zeros(2, 3, 4), 1.0)
    nested = base.to_event(1).to_event(1)
    back = base.to_event(3).to_event(-2)
    x = torch.linspace(-1, 1, 24).reshape(2, 3, 4)
    return {
        "nested": {"reinterpreted": nested.reinterpreted_batch_ndims,
                   "base_is_independent": isinstance(nested.base_dist, torch.distributions.Independent),
                   "log_prob": nested.log_prob(x), **shapes(nested)},
        "negative": {"reinterpreted": back.reinterpreted_batch_ndims, "log_prob": back.log_prob(x), **shapes(back)},
        "all": shapes(base.to_event()),
        "remove_all": {"is_normal": isinstance(base.to_event(2).to_event(-2), dist.Normal)},
        "x": x,
    }


def kl_cases():
    loc_p = torch.linspace(-1, 1, 24).reshape(2, 3, 4)
    loc_q = torch.linspace(0.5, -0.5, 24).reshape(2, 3, 4)
    p = dist.Independent(dist.Independent(dist.Normal(loc_p, 1.5), 1), 1)
    q = dist.Independent(dist.Normal(loc_q, 0.7), 2)
    m_p = torch.tensor([True, True, False])
    m_q = torch.tensor([True, False, True])
    mp = dist.Normal(torch.tensor([0.0, 1.0, 2.0]), 1.0).mask(m_p)
    mq = dist.Normal(torch.tensor([1.0, 0.0, -1.0]), 2.0).mask(m_q)
    return {
        "independent": {"loc_p": loc_p, "loc_q": loc_q, "scale_p": 1.5, "scale_q": 0.7,
                        "kl": torch.distributions.kl_divergence(p, q)},
        "masked": {"mask_p": m_p, "mask_q": m_q, "kl": torch.distributions.kl_divergence(mp, mq),
                   "kl_false": torch.tensor(torch.distributions.kl_divergence(mp, dist.Normal(0.0, 1.0).expand([3]).mask(False)))},
    }


def transform_cases():
    x = torch.tensor([-800.0, -40.0, -20.0, 0.0, 3.0, 40.0])
    xg = x.clone().requires_grad_()
    sig = transform_to(constraints.unit_interval)
    y = sig(xg)
    (grad,) = torch.autograd.grad(y.log().sum(), xg)
    x32 = torch.tensor([-20.0, -16.5, -3.0], dtype=torch.float32).requires_grad_()
    y32 = sig(x32)
    (grad32,) = torch.autograd.grad(y32.log().sum(), x32)
    sb_x = torch.tensor([[-800.0, 0.0, 3.0], [-40.0, -40.0, 1.0]])
    sb = biject_to(constraints.simplex)
    sb_y = sb(sb_x)
    soft_x = torch.tensor([[0.5, -1.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]])
    soft = transform_to(constraints.simplex)
    probs = torch.tensor([0.2, 0.3, 0.5])
    return {
        "sigmoid": {"x": x, "y": y, "grad_log_y": grad, "inverse": sig.inv(torch.tensor([0.0, 1e-300, 0.5, 1.0]))},
        "sigmoid32": {"x": x32.detach(), "y": y32, "grad_log_y": grad32},
        "stick_breaking": {"x": sb_x, "y": sb_y, "inverse": sb.inv(sb_y),
                           "log_abs_det_jacobian": sb.log_abs_det_jacobian(sb_x, sb_y),
                           "name": type(sb).__name__},
        "softmax": {"x": soft_x, "y": soft(soft_x), "probs": probs, "inverse": soft.inv(probs),
                    "name": type(soft).__name__},
    }


def constraint_cases():
    v = torch.tensor([1.0, 2.0, float("inf"), float("-inf"), float("nan"), 1.5, -3.0])
    return {
        "values": v,
        "integer": constraints.integer.check(v),
        "nonnegative_integer": constraints.nonnegative_integer.check(v),
        "positive_integer": constraints.positive_integer.check(v),
        "integer_interval": constraints.integer_interval(-5, 5).check(v),
    }


def continuous_bernoulli_cases():
    logits = torch.tensor([-3.0, -0.5, 0.001, 2.0, 10.0])
    x = torch.tensor(0.3)
    probs = torch.tensor([0.05, 0.4999, 0.5, 0.7, 0.999])
    return {
        "logits": logits, "x": x, "log_prob": dist.ContinuousBernoulli(logits=logits).log_prob(x),
        "probs": probs, "log_prob_probs": dist.ContinuousBernoulli(probs=probs).log_prob(x),
        # torch clamps probs to 1 - eps before the normaliser: for |logits| > ~36 its value
        # is stuck at log(36.04...) (recorded to document the deviation, not compared).
        "large_logits": torch.tensor([50.0, -50.0, 100.0]),
        "torch_large_log_prob": dist.ContinuousBernoulli(logits=torch.tensor([50.0, -50.0, 100.0])).log_prob(x),
    }


def simplex_param_case():
    pyro.clear_param_store()
    init = torch.tensor([0.2, 0.3, 0.5])
    p = pyro.param("p", init, constraint=constraints.simplex)
    store = pyro.get_param_store()
    unconstrained = store._params["p"].detach().clone()
    # One SGD step on a linear loss through the softmax.
    w = torch.tensor([1.0, -2.0, 0.5])
    opt = torch.optim.SGD([store._params["p"]], lr=0.3)
    loss = (pyro.param("p") * w).sum()
    opt.zero_grad()
    loss.backward()
    grad = store._params["p"].grad.detach().clone()
    opt.step()
    after = pyro.param("p").detach().clone()
    state = store.get_state()
    out = {"init": init, "constrained": p, "unconstrained": unconstrained, "w": w, "lr": 0.3, "grad": grad,
           "after": after, "after_unconstrained": state["params"]["p"].detach(),
           "constraint": type(state["constraints"]["p"]).__name__}
    pyro.clear_param_store()
    return out


def generate():
    return {
        "mask": mask_cases(),
        "affine": affine_case(),
        "to_event": to_event_cases(),
        "kl": kl_cases(),
        "transforms": transform_cases(),
        "constraints": constraint_cases(),
        "continuous_bernoulli": continuous_bernoulli_cases(),
        "simplex_param": simplex_param_case(),
    }
