"""The distributions of issue #15 in torch 1.13 / Pyro 1.8.4: log_prob, mean, variance, mode,
entropy, cdf and icdf (where torch or Pyro defines them) of NegativeBinomial, GammaPoisson,
BetaBinomial, the zero-inflated counts, Gumbel, Weibull, Chi2, Pareto, Logistic, VonMises,
Kumaraswamy, LogisticNormal, FoldedDistribution, ImproperUniform, Empirical,
MultivariateStudentT, LKJCholesky and Wishart; the tanh, power, abs and corr-Cholesky
transforms and their registrations; and the KL pairs added with them.

tests/test_distributions_more.cpp builds the same distributions in Ember and compares at 1e-6
(float64). Random parameters come from a fixed seed.
"""
import torch
import torch.distributions as D
import torch.distributions.transforms as T
import pyro.distributions as dist
from pyro.distributions import constraints
from torch.distributions import biject_to, transform_to


def pos(*shape):
    return torch.rand(*shape) * 2.0 + 0.3


def real(*shape):
    return torch.randn(*shape)


def unit(*shape):
    return torch.rand(*shape) * 0.9 + 0.05


def spd(*batch, n=3):
    a = torch.randn(*batch, n, n)
    return a @ a.transpose(-1, -2) + n * torch.eye(n)


def tril(*batch, n=3):
    a = torch.randn(*batch, n, n).tril(-1)
    return a + torch.diag_embed(pos(*batch, n))


def build(name, p):
    """The torch / Pyro distribution for a case (the C++ test mirrors this switch)."""
    if name == "NegativeBinomial":
        return D.NegativeBinomial(p["total_count"], probs=p.get("probs"), logits=p.get("logits"))
    if name == "GammaPoisson":
        return dist.GammaPoisson(p["concentration"], p["rate"])
    if name == "BetaBinomial":
        return dist.BetaBinomial(p["concentration1"], p["concentration0"], p["total_count"])
    if name == "ZeroInflatedPoisson":
        return dist.ZeroInflatedPoisson(p["rate"], gate=p.get("gate"), gate_logits=p.get("gate_logits"))
    if name == "ZeroInflatedNegativeBinomial":
        return dist.ZeroInflatedNegativeBinomial(p["total_count"], probs=p.get("probs"), logits=p.get("logits"),
                                                 gate=p.get("gate"), gate_logits=p.get("gate_logits"))
    if name == "Gumbel":
        return D.Gumbel(p["loc"], p["scale"])
    if name == "Weibull":
        return D.Weibull(p["scale"], p["concentration"])
    if name == "Chi2":
        return D.Chi2(p["df"])
    if name == "Pareto":
        return D.Pareto(p["scale"], p["alpha"])
    if name == "Logistic":
        return dist.Logistic(p["loc"], p["scale"])
    if name == "VonMises":
        return D.VonMises(p["loc"], p["concentration"])
    if name == "Kumaraswamy":
        return D.Kumaraswamy(p["concentration1"], p["concentration0"])
    if name == "LogisticNormal":
        return D.LogisticNormal(p["loc"], p["scale"])
    if name == "FoldedNormal":
        return dist.FoldedDistribution(D.Normal(p["loc"], p["scale"]))
    if name == "MultivariateStudentT":
        return dist.MultivariateStudentT(p["df"], p["loc"], p["scale_tril"])
    if name == "LKJCholesky":
        return D.LKJCholesky(int(p["dim"]), p["concentration"])
    if name == "Wishart":
        return D.Wishart(p["df"], covariance_matrix=p.get("covariance_matrix"), precision_matrix=p.get("precision_matrix"),
                         scale_tril=p.get("scale_tril"))
    raise ValueError(name)


def maybe(f):
    try:
        return f()
    except NotImplementedError:
        return None


def case(name, value=None, n_values=2, icdf=True, **params):
    d = build(name, params)
    if value is None:
        value = d.sample((n_values,))
    out = {"dist": name, "params": params, "value": value, "log_prob": d.log_prob(value),
           "batch_shape": list(d.batch_shape), "event_shape": list(d.event_shape)}
    for key in ("mean", "variance", "mode"):
        r = maybe(lambda: getattr(d, key))
        if r is not None:
            out[key] = r
    r = maybe(d.entropy)
    if r is not None:
        out["entropy"] = r
    if not d.event_shape:
        r = maybe(lambda: d.cdf(value))
        if r is not None:
            out["cdf"] = r
        if icdf:
            prob = torch.rand((2,) + tuple(d.batch_shape)) * 0.9 + 0.05
            r = maybe(lambda: d.icdf(prob))
            if r is not None:
                out["icdf_p"] = prob
                out["icdf"] = r
    if name.startswith("ZeroInflated") and "gate_logits" in params:
        # Pyro 1.8.4 turns gate_logits into `gate` with logits_to_probs(..., is_binary=False), a
        # softmax across the last batch dim, so its mean, variance and sampler disagree with its
        # own log_prob. Reference: the same distribution built from gate = sigmoid(gate_logits).
        out["pyro_mean"], out["pyro_variance"] = out.pop("mean"), out.pop("variance")
        same = dict(params)
        same["gate"] = torch.sigmoid(same.pop("gate_logits"))
        ref = build(name, same)
        out["mean"], out["variance"] = ref.mean, ref.variance
    if name == "Chi2":  # torch 1.13 has no Gamma/Chi2 cdf: the regularised incomplete gamma function
        out["cdf"] = torch.special.gammainc(d.concentration, d.rate * value)
    if name == "Kumaraswamy":  # torch 1.13's mode formula is wrong; recorded, not compared (see the docs)
        out["torch_mode"] = out.pop("mode")
    if d.has_enumerate_support and name == "BetaBinomial" and d.total_count.unique().numel() == 1:
        out["enumerate_support"] = d.enumerate_support(expand=True)
    return out


def count_cases():
    c = []
    c.append(case("NegativeBinomial", total_count=pos(2, 1) * 3, probs=unit(3)))
    c.append(case("NegativeBinomial", total_count=torch.tensor(4.0), logits=real(2, 3)))
    # total_count 0 is the point mass at 0 (torch zeroes the normaliser where total_count + value == 0).
    c.append(case("NegativeBinomial", value=torch.tensor([[0.0, 1.0], [0.0, 0.0]]), total_count=torch.tensor([0.0, 2.5]),
                  probs=torch.tensor([0.3, 0.6])))
    c.append(case("GammaPoisson", concentration=pos(2, 1), rate=pos(3)))
    c.append(case("BetaBinomial", concentration1=pos(2, 3), concentration0=pos(3), total_count=torch.tensor([[3.0], [7.0]])))
    c.append(case("BetaBinomial", concentration1=pos(3), concentration0=pos(2, 1), total_count=torch.tensor(5.0)))
    zeros_first = lambda d, shape: torch.cat([torch.zeros((1,) + shape), d.sample((2,))])
    p = dict(rate=pos(2, 3) * 2, gate=unit(3))
    c.append(case("ZeroInflatedPoisson", value=zeros_first(build("ZeroInflatedPoisson", p), (2, 3)), **p))
    p = dict(rate=pos(3) * 2, gate_logits=real(2, 3) * 2)
    c.append(case("ZeroInflatedPoisson", value=zeros_first(build("ZeroInflatedPoisson", p), (2, 3)), **p))
    p = dict(total_count=pos(3) * 2, probs=unit(2, 3), gate=unit(2, 1))
    c.append(case("ZeroInflatedNegativeBinomial", value=zeros_first(build("ZeroInflatedNegativeBinomial", p), (2, 3)), **p))
    p = dict(total_count=pos(2, 3) * 2, logits=real(3), gate_logits=real(2, 3))
    c.append(case("ZeroInflatedNegativeBinomial", value=zeros_first(build("ZeroInflatedNegativeBinomial", p), (2, 3)), **p))
    return c


def univariate_cases():
    c = []
    c.append(case("Gumbel", loc=real(2, 1), scale=pos(3)))
    c.append(case("Weibull", scale=pos(2, 1), concentration=pos(3) * 1.5))
    c.append(case("Weibull", scale=pos(3), concentration=torch.tensor([0.5, 1.0, 3.0])))
    c.append(case("Chi2", df=pos(2, 3) * 3))
    c.append(case("Pareto", scale=pos(2, 1), alpha=torch.tensor([0.8, 1.5, 3.0])))
    c.append(case("Logistic", loc=real(2, 1), scale=pos(3)))
    c.append(case("VonMises", loc=real(2, 1), concentration=torch.tensor([0.1, 2.0, 8.0])))
    c.append(case("Kumaraswamy", concentration1=pos(2, 1) * 2, concentration0=pos(3) * 2))
    c.append(case("FoldedNormal", loc=real(2, 1), scale=pos(3)))
    return c


def multivariate_cases():
    c = []
    c.append(case("LogisticNormal", loc=real(2, 3), scale=pos(3)))
    c.append(case("MultivariateStudentT", df=torch.tensor([[0.8], [2.0], [5.0]]), loc=real(3), scale_tril=tril(2)))
    c.append(case("LKJCholesky", dim=3, concentration=torch.tensor([0.5, 1.0, 2.5])))
    c.append(case("LKJCholesky", dim=4, concentration=torch.tensor(1.7)))
    c.append(case("Wishart", df=torch.tensor([3.5, 6.0]), covariance_matrix=spd(2)))
    c.append(case("Wishart", df=torch.tensor(4.0), scale_tril=tril(2)))
    c.append(case("Wishart", df=torch.tensor([[3.5], [7.0]]), precision_matrix=spd()))
    return c


def vonmises_exact():
    """log I0 exactly (torch.special.i0e), to show where torch's polynomial approximation differs."""
    k = torch.tensor([0.1, 2.0, 3.7, 3.8, 8.0, 50.0])
    return {"concentration": k, "log_i0": torch.special.i0e(k).log() + k,
            "torch_log_prob_at_loc": D.VonMises(torch.zeros(6), k).log_prob(torch.zeros(6))}


def empirical_cases():
    samples = torch.tensor([[0.0, 1.0, 1.0, 3.0], [2.0, 2.0, 5.0, -1.0]])
    log_weights = torch.tensor([[0.1, -0.3, 0.5, 0.0], [1.0, 0.0, -2.0, 0.2]])
    d = dist.Empirical(samples, log_weights)
    value = torch.tensor([1.0, 2.0])
    vec_samples = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 3.0]])
    vec_w = torch.tensor([0.2, -0.1, 0.4])
    dv = dist.Empirical(vec_samples, vec_w)
    return {
        "scalar": {"samples": samples, "log_weights": log_weights, "value": value, "log_prob": d.log_prob(value),
                   "mean": d.mean, "variance": d.variance, "batch_shape": list(d.batch_shape),
                   "event_shape": list(d.event_shape), "missing_log_prob": d.log_prob(torch.tensor([7.0, 2.0]))},
        "vector": {"samples": vec_samples, "log_weights": vec_w, "value": torch.tensor([1.0, 2.0]),
                   "log_prob": dv.log_prob(torch.tensor([1.0, 2.0])), "mean": dv.mean, "variance": dv.variance,
                   "batch_shape": list(dv.batch_shape), "event_shape": list(dv.event_shape)},
    }


def improper_uniform_case():
    d = dist.ImproperUniform(constraints.positive, (2, 3), (4,))
    x = torch.rand(5, 1, 3, 4)
    lp = d.log_prob(x)
    return {"log_prob_shape": list(lp.shape), "log_prob": lp, "batch_shape": list(d.batch_shape),
            "event_shape": list(d.event_shape)}


def transform_cases():
    out = {}
    x = torch.tensor([-3.0, -0.5, 0.0, 0.7, 2.5])
    t = T.TanhTransform()
    y = t(x)
    out["tanh"] = {"x": x, "y": y, "inverse": t.inv(y), "log_abs_det_jacobian": t.log_abs_det_jacobian(x, y),
                   "large_x": torch.tensor([20.0, -30.0]), "large_ladj": t.log_abs_det_jacobian(torch.tensor([20.0, -30.0]), t(torch.tensor([20.0, -30.0])))}
    xp = torch.tensor([0.3, 1.0, 2.5, 4.0])
    exponent = torch.tensor([2.0, -0.5, 1.5, 3.0])
    t = T.PowerTransform(exponent)
    yp = t(xp)
    out["power"] = {"x": xp, "exponent": exponent, "y": yp, "inverse": t.inv(yp),
                    "log_abs_det_jacobian": t.log_abs_det_jacobian(xp, yp)}
    t = T.AbsTransform()
    out["abs"] = {"x": x, "y": t(x), "inverse": t.inv(t(x))}
    xc = real(2, 6)
    t = T.CorrCholeskyTransform()
    yc = t(xc)
    out["corr_cholesky"] = {"x": xc, "y": yc, "inverse": t.inv(yc), "log_abs_det_jacobian": t.log_abs_det_jacobian(xc, yc),
                            "biject_to": type(biject_to(constraints.corr_cholesky)).__name__,
                            "transform_to": type(transform_to(constraints.corr_cholesky)).__name__,
                            "check": constraints.corr_cholesky.check(torch.stack([yc[0], yc[1] * 1.01]))}
    return out


def kl_cases():
    pairs = []

    def add(name_p, p, name_q, q):
        pairs.append({"p": {"dist": name_p, "params": p}, "q": {"dist": name_q, "params": q},
                      "kl": D.kl_divergence(build_kl(name_p, p), build_kl(name_q, q))})

    W1, W2 = real(2, 4, 2), real(4, 3)
    add("LowRankMultivariateNormal", dict(loc=real(2, 4), cov_factor=W1, cov_diag=pos(2, 4)),
        "LowRankMultivariateNormal", dict(loc=real(4), cov_factor=W2, cov_diag=pos(4)))
    add("LowRankMultivariateNormal", dict(loc=real(2, 4), cov_factor=W1, cov_diag=pos(2, 4)),
        "MultivariateNormal", dict(loc=real(4), scale_tril=tril(n=4)))
    add("MultivariateNormal", dict(loc=real(2, 4), scale_tril=tril(2, n=4)),
        "LowRankMultivariateNormal", dict(loc=real(4), cov_factor=W2, cov_diag=pos(4)))
    add("LogNormal", dict(loc=real(2, 3), scale=pos(3)), "LogNormal", dict(loc=real(3), scale=pos(2, 1)))
    add("HalfNormal", dict(scale=pos(2, 3)), "HalfNormal", dict(scale=pos(3)))
    add("Binomial", dict(total_count=torch.tensor([[5.0], [8.0]]), probs=unit(2, 3)),
        "Binomial", dict(total_count=torch.tensor([[5.0], [7.0]]), probs=unit(3)))
    add("Geometric", dict(probs=unit(2, 3)), "Geometric", dict(probs=unit(3)))
    add("Gumbel", dict(loc=real(2, 3), scale=pos(3)), "Gumbel", dict(loc=real(3), scale=pos(2, 1)))
    add("Pareto", dict(scale=torch.tensor([1.0, 2.0, 0.5]), alpha=pos(3)),
        "Pareto", dict(scale=torch.tensor([0.5, 2.5, 0.5]), alpha=pos(3)))
    # Found through the parent type: Chi2 is a Gamma.
    add("Chi2", dict(df=pos(2, 3) * 2), "Chi2", dict(df=pos(3) * 2))
    add("Chi2", dict(df=pos(3) * 2), "Gamma", dict(concentration=pos(3), rate=pos(3)))
    return pairs


def build_kl(name, p):
    if name == "LowRankMultivariateNormal":
        return D.LowRankMultivariateNormal(p["loc"], p["cov_factor"], p["cov_diag"])
    if name == "MultivariateNormal":
        return D.MultivariateNormal(p["loc"], scale_tril=p["scale_tril"])
    if name == "LogNormal":
        return D.LogNormal(p["loc"], p["scale"])
    if name == "HalfNormal":
        return D.HalfNormal(p["scale"])
    if name == "Binomial":
        return D.Binomial(p["total_count"], probs=p["probs"])
    if name == "Geometric":
        return D.Geometric(probs=p["probs"])
    if name == "Gamma":
        return D.Gamma(p["concentration"], p["rate"])
    return build(name, p)


def mode_cases():
    """torch's `mode` of the families Ember had before issue #15."""
    half = torch.tensor([0.2, 0.5, 0.9])
    specs = [
        ("Normal", dict(loc=real(3), scale=pos(3)), lambda p: D.Normal(**p)),
        ("Uniform", dict(low=torch.zeros(3), high=pos(3)), lambda p: D.Uniform(**p)),
        ("Exponential", dict(rate=pos(3)), lambda p: D.Exponential(**p)),
        ("LogNormal", dict(loc=real(3), scale=pos(3)), lambda p: D.LogNormal(**p)),
        ("Laplace", dict(loc=real(3), scale=pos(3)), lambda p: D.Laplace(**p)),
        ("Cauchy", dict(loc=real(3), scale=pos(3)), lambda p: D.Cauchy(**p)),
        ("HalfCauchy", dict(scale=pos(3)), lambda p: D.HalfCauchy(**p)),
        ("HalfNormal", dict(scale=pos(3)), lambda p: D.HalfNormal(**p)),
        ("StudentT", dict(df=pos(3), loc=real(3), scale=pos(3)), lambda p: D.StudentT(**p)),
        ("Gamma", dict(concentration=torch.tensor([0.5, 1.0, 3.0]), rate=pos(3)), lambda p: D.Gamma(**p)),
        ("Beta", dict(concentration1=torch.tensor([0.5, 2.0, 3.0, 0.7]), concentration0=torch.tensor([0.6, 3.0, 0.5, 2.0])),
         lambda p: D.Beta(**p)),
        ("Dirichlet", dict(concentration=torch.tensor([[0.5, 0.7, 0.9], [2.0, 3.0, 0.5]])), lambda p: D.Dirichlet(**p)),
        ("Bernoulli", dict(probs=half), lambda p: D.Bernoulli(**p)),
        ("Categorical", dict(probs=pos(2, 4)), lambda p: D.Categorical(**p)),
        ("OneHotCategorical", dict(probs=pos(2, 4)), lambda p: D.OneHotCategorical(**p)),
        ("Poisson", dict(rate=pos(3) * 3), lambda p: D.Poisson(**p)),
        ("Binomial", dict(total_count=torch.tensor([3.0, 10.0, 4.0]), probs=torch.tensor([0.3, 0.55, 1.0])), lambda p: D.Binomial(**p)),
        ("Geometric", dict(probs=unit(3)), lambda p: D.Geometric(**p)),
        ("MultivariateNormal", dict(loc=real(2, 3), scale_tril=tril()), lambda p: D.MultivariateNormal(**p)),
        ("LowRankMultivariateNormal", dict(loc=real(2, 3), cov_factor=real(3, 1), cov_diag=pos(3)),
         lambda p: D.LowRankMultivariateNormal(**p)),
    ]
    return [{"dist": n, "params": p, "mode": make(p).mode} for n, p, make in specs]


def generate():
    torch.manual_seed(20261127)
    return {
        "counts": count_cases(),
        "univariate": univariate_cases(),
        "multivariate": multivariate_cases(),
        "vonmises_exact": vonmises_exact(),
        "empirical": empirical_cases(),
        "improper_uniform": improper_uniform_case(),
        "transforms": transform_cases(),
        "kl": kl_cases(),
        "modes": mode_cases(),
    }
