#!/usr/bin/python3
"""Generates the golden-value fixtures for Ember's distribution tests.

Run with Debian's python3 (python3-torch, torch 1.13):

    /usr/bin/python3 scripts/gen_distribution_fixtures.py

It writes tests/fixtures/distributions/golden.json: for each case, a distribution spec
(name, parameters, optional to_event), a value batch, and torch.distributions' log_prob,
mean, variance, entropy, cdf and icdf (where torch defines them), in float64 and float32,
over random parameters with non-trivial batch shapes and broadcasting; plus analytic KL
divergences for the registered pairs. Non-finite numbers are written as strings.
"""
import json
import math
import os

import torch
import torch.distributions as D
import torch.distributions.transforms as T

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "distributions", "golden.json")


def enc(t):
    t = torch.as_tensor(t).detach()
    data = []
    for x in t.reshape(-1).tolist():
        if isinstance(x, bool):
            x = float(x)
        if isinstance(x, float) and not math.isfinite(x):
            data.append("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))
        else:
            data.append(x)
    return {"shape": list(t.shape), "data": data}


def pos(*shape):
    return torch.rand(*shape, dtype=torch.float64) * 2.0 + 0.3


def real(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def unit(*shape):
    return torch.rand(*shape, dtype=torch.float64) * 0.9 + 0.05


def spd(*batch, n=3):
    a = torch.randn(*batch, n, n, dtype=torch.float64)
    return a @ a.transpose(-1, -2) + n * torch.eye(n, dtype=torch.float64)


def tril(*batch, n=3):
    a = torch.randn(*batch, n, n, dtype=torch.float64).tril(-1)
    return a + torch.diag_embed(pos(*batch, n))


# --------------------------------------------------------------------------- builders
# A spec is {"dist": name, "params": {name: tensor}, ...}; build() makes the torch object.


def build(spec, dtype):
    p = {k: (v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in spec.get("params", {}).items()}
    name = spec["dist"]
    if name == "InverseGamma":  # not in torch 1.13: Pyro's definition, 1/X for X ~ Gamma
        d = D.TransformedDistribution(D.Gamma(p["concentration"], p["rate"]), [T.PowerTransform(-torch.ones((), dtype=dtype))])
    elif name == "TransformedDistribution":
        base = build(spec["base"], dtype)
        ts = []
        for t in spec["transforms"]:
            if t["type"] == "exp":
                ts.append(T.ExpTransform())
            elif t["type"] == "sigmoid":
                ts.append(T.SigmoidTransform())
            elif t["type"] == "affine":
                ts.append(T.AffineTransform(t["loc"].to(dtype), t["scale"].to(dtype)))
            elif t["type"] == "stick_breaking":
                ts.append(T.StickBreakingTransform())
        d = D.TransformedDistribution(base, ts)
    elif name == "MixtureSameFamily":
        d = D.MixtureSameFamily(build(spec["mixture"], dtype), build(spec["component"], dtype))
    elif name in ("RelaxedBernoulli", "RelaxedOneHotCategorical"):
        p = dict(p)
        temp = p.pop("temperature")
        d = getattr(D, name)(temp, **p)
    else:
        d = getattr(D, name)(**p)
    if spec.get("to_event"):
        d = D.Independent(d, spec["to_event"])
    return d


def enc_spec(spec):
    out = {"dist": spec["dist"]}
    if "params" in spec:
        out["params"] = {k: (enc(v) if torch.is_tensor(v) else v) for k, v in spec.get("params", {}).items()}
    if spec.get("to_event"):
        out["to_event"] = spec["to_event"]
    if "base" in spec:
        out["base"] = enc_spec(spec["base"])
    if "transforms" in spec:
        out["transforms"] = [{k: (enc(v) if torch.is_tensor(v) else v) for k, v in t.items()} for t in spec["transforms"]]
    if "mixture" in spec:
        out["mixture"] = enc_spec(spec["mixture"])
        out["component"] = enc_spec(spec["component"])
    return out


def S(dist, **params):
    return {"dist": dist, "params": {"probs" if k == "probs_" else k: v for k, v in params.items()}}


def cases():
    """Distribution specs; several per family to cover parameterisations and broadcasting."""
    c = []
    c.append(S("Normal", loc=real(2, 1), scale=pos(3)))
    c.append(S("Uniform", low=real(2, 3) - 2.0, high=real(3).abs() + 0.5))
    c.append(S("Exponential", rate=pos(2, 3)))
    c.append(S("LogNormal", loc=real(2, 1) * 0.5, scale=pos(3) * 0.5))
    c.append(S("Laplace", loc=real(3), scale=pos(2, 1)))
    c.append(S("Cauchy", loc=real(2, 3), scale=pos(3)))
    c.append(S("HalfCauchy", scale=pos(2, 3)))
    c.append(S("HalfNormal", scale=pos(2, 3)))
    c.append(S("StudentT", df=pos(2, 1) * 3, loc=real(3), scale=pos(3)))
    c.append(S("StudentT", df=torch.tensor([0.7, 1.5, 4.0], dtype=torch.float64), loc=real(3), scale=pos(3)))
    c.append(S("Gamma", concentration=pos(2, 1), rate=pos(3)))
    c.append(S("Beta", concentration1=pos(2, 3), concentration0=pos(3)))
    c.append(S("Dirichlet", concentration=pos(2, 4)))
    c.append(S("ContinuousBernoulli", probs=unit(2, 3)))
    c.append(S("ContinuousBernoulli", probs=torch.tensor([0.4995, 0.5, 0.5007, 0.2], dtype=torch.float64)))
    c.append(S("ContinuousBernoulli", logits=real(2, 3) * 2))
    c.append(S("Bernoulli", probs=unit(2, 3)))
    c.append(S("Bernoulli", logits=real(2, 3) * 3))
    c.append(S("Categorical", probs=pos(2, 4)))
    c.append(S("Categorical", logits=real(3, 5)))
    c.append(S("OneHotCategorical", probs=pos(2, 4)))
    c.append(S("OneHotCategorical", logits=real(3, 5)))
    c.append(S("Poisson", rate=pos(2, 3) * 3))
    c.append(S("Binomial", total_count=torch.tensor([[3.0], [7.0]], dtype=torch.float64), probs=unit(3)))
    c.append(S("Binomial", total_count=torch.tensor(5.0, dtype=torch.float64), logits=real(2, 3) * 2))
    c.append(S("Geometric", probs=unit(2, 3)))
    c.append(S("Geometric", logits=real(3) * 2))
    c.append(S("Multinomial", total_count=6, probs=pos(2, 4)))
    c.append(S("Multinomial", total_count=4, logits=real(3)))
    c.append(S("MultivariateNormal", loc=real(2, 1, 3), covariance_matrix=spd(2)))
    c.append(S("MultivariateNormal", loc=real(3), scale_tril=tril(2)))
    c.append(S("MultivariateNormal", loc=real(2, 3), precision_matrix=spd()))
    c.append(S("LowRankMultivariateNormal", loc=real(2, 3), cov_factor=real(3, 2), cov_diag=pos(2, 3)))
    c.append(S("InverseGamma", concentration=pos(2, 1) * 2, rate=pos(3)))
    c.append(S("RelaxedBernoulli", temperature=torch.tensor(0.7, dtype=torch.float64), probs=unit(2, 3)))
    c.append(S("RelaxedOneHotCategorical", temperature=torch.tensor(1.3, dtype=torch.float64), logits=real(2, 4)))
    c.append(dict(S("Normal", loc=real(2, 3), scale=pos(2, 3)), to_event=1))
    c.append({"dist": "TransformedDistribution", "base": S("Normal", loc=real(2, 3), scale=pos(3)),
              "transforms": [{"type": "exp"}, {"type": "affine", "loc": real(3), "scale": pos(2, 1)}]})
    c.append({"dist": "TransformedDistribution", "base": S("Normal", loc=real(2, 3), scale=pos(3)),
              "transforms": [{"type": "stick_breaking"}]})
    c.append({"dist": "MixtureSameFamily", "mixture": S("Categorical", probs=pos(2, 3)),
              "component": S("Normal", loc=real(2, 3) * 2, scale=pos(3))})
    c.append({"dist": "MixtureSameFamily", "mixture": S("Categorical", logits=real(2, 3)),
              "component": dict(S("Normal", loc=real(2, 3, 2), scale=pos(2, 3, 2)), to_event=1)})
    return c


def kl_pairs():
    P = []
    P.append((S("Normal", loc=real(2, 3), scale=pos(3)), S("Normal", loc=real(3), scale=pos(2, 1))))
    P.append((S("Bernoulli", probs=unit(2, 3)), S("Bernoulli", logits=real(2, 3))))
    P.append((S("Bernoulli", probs=torch.tensor([0.0, 1.0, 0.3], dtype=torch.float64)),
              S("Bernoulli", probs=torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))))
    P.append((S("Categorical", probs=pos(2, 4)), S("Categorical", logits=real(4))))
    P.append((S("OneHotCategorical", logits=real(2, 4)), S("OneHotCategorical", probs=pos(2, 4))))
    P.append((S("Beta", concentration1=pos(2, 3), concentration0=pos(3)), S("Beta", concentration1=pos(3), concentration0=pos(2, 3))))
    P.append((S("Gamma", concentration=pos(2, 3), rate=pos(3)), S("Gamma", concentration=pos(3), rate=pos(2, 1))))
    P.append((S("Dirichlet", concentration=pos(2, 4)), S("Dirichlet", concentration=pos(4))))
    P.append((S("Exponential", rate=pos(2, 3)), S("Exponential", rate=pos(3))))
    P.append((S("Laplace", loc=real(2, 3), scale=pos(3)), S("Laplace", loc=real(3), scale=pos(2, 3))))
    P.append((S("Poisson", rate=pos(2, 3)), S("Poisson", rate=pos(3))))
    P.append((S("Uniform", low=torch.tensor([0.0, -1.0, 0.5], dtype=torch.float64), high=torch.tensor([1.0, 2.0, 0.7], dtype=torch.float64)),
              S("Uniform", low=torch.tensor([-0.5, -1.0, 0.6], dtype=torch.float64), high=torch.tensor([1.5, 3.0, 2.0], dtype=torch.float64))))
    P.append((S("MultivariateNormal", loc=real(2, 3), scale_tril=tril(2)), S("MultivariateNormal", loc=real(3), covariance_matrix=spd())))
    P.append((dict(S("Normal", loc=real(2, 3), scale=pos(2, 3)), to_event=1), dict(S("Normal", loc=real(3), scale=pos(3)), to_event=1)))
    P.append((dict(S("Gamma", concentration=pos(2, 3), rate=pos(2, 3)), to_event=2), dict(S("Gamma", concentration=pos(2, 3), rate=pos(2, 3)), to_event=2)))
    return P


def try_call(f):
    try:
        return enc(f())
    except NotImplementedError:
        return None


def main():
    torch.manual_seed(20240601)
    out = {"generator": "scripts/gen_distribution_fixtures.py", "torch": torch.__version__, "cases": [], "kl": []}
    for spec in cases():
        for dtype in (torch.float64, torch.float32):
            d = build(spec, dtype)
            value = d.sample((2,))
            if spec["dist"] in ("RelaxedBernoulli",):
                value = value.clamp(0.01, 0.99)
            case = {"spec": enc_spec(spec), "dtype": str(dtype).replace("torch.", ""), "value": enc(value),
                    "batch_shape": list(d.batch_shape), "event_shape": list(d.event_shape)}
            case["log_prob"] = enc(d.log_prob(value))
            for key in ("mean", "variance"):
                r = try_call(lambda: getattr(d, key))
                if r is not None:
                    case[key] = r
            if spec["dist"] == "InverseGamma":  # closed forms (torch's TransformedDistribution has none)
                a, b = d.base_dist.concentration, d.base_dist.rate
                case["mean"] = enc(torch.where(a > 1, b / (a - 1), torch.full_like(a, math.inf)))
                case["variance"] = enc(torch.where(a > 2, b ** 2 / ((a - 1) ** 2 * (a - 2)), torch.full_like(a, math.inf)))
                case["entropy"] = enc(a + b.log() + a.lgamma() - (1 + a) * a.digamma())
                case["cdf"] = enc(torch.special.gammaincc(a, b / value))
            else:
                r = try_call(d.entropy)
                if r is not None and spec["dist"] not in ("TransformedDistribution",):
                    case["entropy"] = r
            if spec["dist"] == "Gamma":  # torch 1.13 has no Gamma.cdf: the regularised incomplete gamma
                case["cdf"] = enc(torch.special.gammainc(d.concentration, d.rate * value))
            if len(d.event_shape) == 0 and spec["dist"] not in ("InverseGamma", "Gamma"):
                r = try_call(lambda: d.cdf(value))
                if r is not None:
                    case["cdf"] = r
                p = torch.rand((2,) + tuple(d.batch_shape), dtype=dtype) * 0.9 + 0.05
                r = try_call(lambda: d.icdf(p))
                if r is not None:
                    case["icdf_p"] = enc(p)
                    case["icdf"] = r
            if d.has_enumerate_support and spec["dist"] != "Binomial" or (spec["dist"] == "Binomial" and d.total_count.unique().numel() == 1):
                case["enumerate_support"] = enc(d.enumerate_support(expand=True))
            out["cases"].append(case)
    for ps, qs in kl_pairs():
        for dtype in (torch.float64, torch.float32):
            p, q = build(ps, dtype), build(qs, dtype)
            out["kl"].append({"p": enc_spec(ps), "q": enc_spec(qs), "dtype": str(dtype).replace("torch.", ""),
                              "kl": enc(D.kl_divergence(p, q))})
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {OUT}: {len(out['cases'])} cases, {len(out['kl'])} KL pairs, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
