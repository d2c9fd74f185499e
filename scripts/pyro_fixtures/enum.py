"""TraceEnum_ELBO fixtures: exact enumeration in model and guide (Pyro 1.8.4).

Deterministic: enumeration is exact, Normal guide sites get fixed draws (FixDraws). The C++
side (tests/test_inference_enum.cpp) runs the same programs, named as here.
"""
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyro_fixtures.inference import T, run_elbo, trace_contents

PAR = {"enumerate": "parallel"}
SEQ = {"enumerate": "sequential"}

# ------------------------------------------------------------- everyday: mixture in a subsampled plate

X6 = T(0.3, -1.1, 2.0, 0.7, -0.2, 1.5)
SUB = torch.tensor([0, 2, 3, 5])


def mixture_model():
    locs = pyro.param("locs", T(-1.0, 0.5, 2.0))
    weights = pyro.param("weights", T(0.2, 0.5, 0.3), constraint=constraints.positive)
    k = pyro.sample("k", dist.Bernoulli(T(0.4)))
    mu = pyro.sample("mu", dist.Normal(T(0.0), T(1.0)))
    with pyro.plate("data", 6, subsample=SUB) as ind:
        z = pyro.sample("z", dist.Categorical(weights), infer=PAR)
        pyro.sample("x", dist.Normal(locs[z] + 0.5 * k + mu, T(0.8)), obs=X6[ind])


def mixture_guide():
    p = pyro.param("k_logit", T(0.2))
    pyro.sample("k", dist.Bernoulli(logits=p), infer=PAR)
    m = pyro.param("mu_loc", T(0.1))
    pyro.sample("mu", dist.Normal(m, T(0.5)))
    with pyro.plate("data", 6, subsample=SUB):
        pass


# ------------------------------------------------------------- (a) the prior of a model-enumerated site is not masked

MASK = torch.tensor([True, False, True, True])
X4 = T(0.3, -1.1, 2.0, 0.7)


def masked_model():
    locs = pyro.param("locs", T(-1.0, 0.5, 2.0))
    with pyro.plate("data", 4), poutine.mask(mask=MASK):
        z = pyro.sample("z", dist.Categorical(T(0.2, 0.5, 0.3)), infer=PAR)
        pyro.sample("x", dist.Normal(locs[z], T(1.0)), obs=X4)


def empty_guide():
    pass


# ------------------------------------------------------------- (b) enumerated values of probability 0

def zero_model():
    locs = pyro.param("locs", T(-1.0, 0.5, 2.0))
    c = pyro.sample("c", dist.Categorical(T(0.3, 0.3, 0.4)))
    d = pyro.sample("d", dist.Categorical(logits=T(0.0, float("-inf"), 0.5)), infer=PAR)
    with pyro.plate("data", 4):
        pyro.sample("x", dist.Normal(locs[c] + locs[d], T(1.0)), obs=X4)


def zero_guide():
    q = pyro.param("q", T(0.3, -0.2))
    logits = torch.stack([q[0], torch.tensor(float("-inf"), dtype=torch.float64), q[1]])
    pyro.sample("c", dist.Categorical(logits=logits), infer=PAR)


# ------------------------------------------------------------- (c) sequential plates

X32 = T([[0.3, -1.1], [2.0, 0.7], [-0.2, 1.5], [0.9, 0.1], [1.2, -0.4]])


def seqplate_model():
    locs = pyro.param("locs", T(-1.0, 1.5))
    for i in pyro.plate("data", 5, subsample=torch.tensor([0, 2, 4])):
        z = pyro.sample(f"z_{i}", dist.Bernoulli(T(0.3)), infer=PAR)
        with pyro.plate(f"feat_{i}", 2):
            pyro.sample(f"x_{i}", dist.Normal(locs[z.long()], T(1.0)), obs=X32[i])


# ------------------------------------------------------------- (d) independent components in crossed plates

XA = T([[0.3, -1.1], [2.0, 0.7], [-0.2, 1.5]])
YB = T([[1.3, 0.1], [0.0, -0.7], [0.8, 2.5]])


def crossed_model():
    mu_a = pyro.param("mu_a", T(-1.0, 0.5, 2.0))
    mu_b = pyro.param("mu_b", T(0.2, 1.1))
    plate_a, plate_b = pyro.plate("A", 2, dim=-1), pyro.plate("B", 3, dim=-2)
    with plate_a:
        a = pyro.sample("a", dist.Categorical(T(0.2, 0.5, 0.3)), infer=PAR)
    with plate_b:
        b = pyro.sample("b", dist.Bernoulli(T(0.35)), infer=PAR)
    with plate_a, plate_b:
        pyro.sample("x", dist.Normal(mu_a[a], T(1.0)), obs=XA)
        pyro.sample("y", dist.Normal(mu_b[b.long()], T(0.7)), obs=YB)


# ------------------------------------------------------------- (e) sequential enumeration in the guide

X5 = T(0.3, -1.1, 2.0, 0.7, -0.2)


def seqguide_model():
    locs = pyro.param("locs", T(-1.0, 0.5, 2.0))
    c = pyro.sample("c", dist.Categorical(T(0.3, 0.3, 0.4)))
    with pyro.plate("data", 5):
        z = pyro.sample("z", dist.Bernoulli(T(0.3)), infer=PAR)
        pyro.sample("x", dist.Normal(locs[c] + z, T(1.0)), obs=X5)


def seqguide_guide():
    q = pyro.param("q", T(0.3, -0.2, 0.1))
    pyro.sample("c", dist.Categorical(logits=q), infer=SEQ)


X3 = T(0.3, -1.1, 2.0)


def seqlocal_model():
    m = pyro.sample("m", dist.Normal(T(0.0), T(1.0)))
    with pyro.plate("data", 3):
        z = pyro.sample("z", dist.Bernoulli(T(0.3)))
        pyro.sample("x", dist.Normal(m + 2 * z - 1, T(1.0)), obs=X3)


def seqlocal_guide():
    loc = pyro.param("m_loc", T(0.2))
    pyro.sample("m", dist.Normal(loc, T(0.5)))
    theta = pyro.param("theta", T(0.2, -0.4, 1.0))
    with pyro.plate("data", 3):
        pyro.sample("z", dist.Bernoulli(logits=theta), infer=SEQ)


def generate():
    pyro.enable_validation(True)
    cases = {}
    cases["mixture"] = run_elbo(TraceEnum_ELBO(max_plate_nesting=1), mixture_model, mixture_guide,
                                {"mu": [T(0.7)]})
    cases["mixture"]["traces"] = trace_contents(TraceEnum_ELBO(max_plate_nesting=1), mixture_model, mixture_guide,
                                                {"mu": [T(0.7)]})
    cases["mixture_2particles"] = run_elbo(TraceEnum_ELBO(max_plate_nesting=1, num_particles=2), mixture_model,
                                           mixture_guide, {"mu": [T(0.7), T(-0.4)]})
    cases["mixture_2particles_vectorized"] = run_elbo(
        TraceEnum_ELBO(max_plate_nesting=1, num_particles=2, vectorize_particles=True), mixture_model, mixture_guide,
        {"mu": [T(0.7, -0.4).reshape(2, 1)]})
    cases["masked_prior"] = run_elbo(TraceEnum_ELBO(max_plate_nesting=1), masked_model, empty_guide, {})
    cases["zero_probability"] = run_elbo(TraceEnum_ELBO(max_plate_nesting=1), zero_model, zero_guide, {})
    cases["sequential_plate"] = run_elbo(TraceEnum_ELBO(max_plate_nesting=1), seqplate_model, empty_guide, {})
    cases["crossed_plates"] = run_elbo(TraceEnum_ELBO(max_plate_nesting=2), crossed_model, empty_guide, {})
    cases["crossed_plates"]["traces"] = trace_contents(TraceEnum_ELBO(max_plate_nesting=2), crossed_model,
                                                       empty_guide, {})
    cases["sequential_guide"] = run_elbo(TraceEnum_ELBO(max_plate_nesting=1), seqguide_model, seqguide_guide, {})
    cases["sequential_guide_local"] = run_elbo(TraceEnum_ELBO(max_plate_nesting=1), seqlocal_model, seqlocal_guide,
                                               {"m": [T(0.6)]})
    return cases
