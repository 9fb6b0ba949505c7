"""The kernels against torch.optim (Adam, AdamW, RMSprop, SGD) over 10 steps, every element.

Skipped when torch is not importable, unless FASTOPT_REQUIRE_TORCH=1, where the tests fail.

Conventions mapped (see README.md, "Conventions: where the tools differ"):
* RMSprop: torch's ``alpha`` is our ``beta``; eps outside the square root (our default).
* SGD with momentum: torch's first step sets ``buf = g``; the kernel reproduces it with
  ``dampening=0`` on the first step from a zero velocity, and ``dampening=d`` afterwards.
* Adam ``weight_decay`` is L2 (added to the gradient); AdamW is ``decoupled_weight_decay=True``.
"""

import itertools
import os

import numpy as np
import pytest

import fastopt
from conftest import run_against_torch as _run
from conftest import torch_close as _compare
from conftest import torch_tolerance as _tol

try:
    import torch
except ImportError:     # pragma: no cover - depends on the environment
    torch = None

STEPS = 10
N = 257
DTYPES = (np.float64, np.float32)


def need_torch():
    """torch, or a skip; a test failure (not a skip, not a setup error) when
    FASTOPT_REQUIRE_TORCH=1.  Called at the top of each test, so it reports as FAILED."""
    if torch is None:
        if os.environ.get("FASTOPT_REQUIRE_TORCH") == "1":
            pytest.fail("FASTOPT_REQUIRE_TORCH=1 but torch is not importable", pytrace=False)
        pytest.skip("torch is not installed")
    return torch


def _ids(d):
    return "-".join(f"{k}={v}" for k, v in d.items())


def _dtype_id(d):
    return np.dtype(d).name


# ------------------------------------------------------------------------------------------------
# Adam / AdamW
# ------------------------------------------------------------------------------------------------

ADAM_COMBOS = [dict(amsgrad=a, weight_decay=w, maximize=m) for a, w, m in
               itertools.product([False, True], [0.0, 0.1], [False, True])]


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("kw", ADAM_COMBOS, ids=_ids)
def test_adam(kw, dtype, rng):
    th = need_torch()
    hyper = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6)
    states = {"m": "exp_avg", "v": "exp_avg_sq"}
    if kw["amsgrad"]:
        states["v_max"] = "max_exp_avg_sq"

    def ours(t, p, g, s):
        return fastopt.adam_step(p, g, s["m"], s["v"], step=t, lr=0.01, beta1=0.8, beta2=0.95,
                                 eps=1e-6, v_max=s.get("v_max"), **kw)

    _run(th, th.optim.Adam, dict(hyper, foreach=False, **kw), ours, states, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
def test_adam_defaults(dtype, rng):
    th = need_torch()
    def ours(t, p, g, s):
        return fastopt.adam_step(p, g, s["m"], s["v"], step=t)

    _run(th, th.optim.Adam, dict(foreach=False), ours, {"m": "exp_avg", "v": "exp_avg_sq"},
         dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("kw", [dict(amsgrad=a, maximize=m) for a in (False, True)
                                for m in (False, True)], ids=_ids)
def test_adamw(kw, dtype, rng):
    th = need_torch()
    states = {"m": "exp_avg", "v": "exp_avg_sq"}
    if kw["amsgrad"]:
        states["v_max"] = "max_exp_avg_sq"

    def ours(t, p, g, s):
        return fastopt.adam_step(p, g, s["m"], s["v"], step=t, lr=0.01, beta1=0.9, beta2=0.99,
                                 eps=1e-8, weight_decay=0.05, decoupled_weight_decay=True,
                                 v_max=s.get("v_max"), **kw)

    _run(th, th.optim.AdamW, dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05,
                                   foreach=False, **kw), ours, states, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
def test_adam_multi_matches_torch(dtype, rng):
    """The multi-array kernel against one torch Adam over two parameters of different sizes."""
    th = need_torch()
    sizes = (33, 70)
    ps = [rng.standard_normal(n).astype(dtype) for n in sizes]
    tps = [th.tensor(p.copy(), requires_grad=True) for p in ps]
    opt = th.optim.Adam(tps, lr=0.02, weight_decay=0.01, amsgrad=True, foreach=False)
    ms = [np.zeros(n, dtype) for n in sizes]
    vs = [np.zeros(n, dtype) for n in sizes]
    vmaxs = [np.zeros(n, dtype) for n in sizes]
    mod = fastopt._dispatch.kernels
    for t in range(1, STEPS + 1):
        gs = [rng.standard_normal(n).astype(dtype) for n in sizes]
        for tp, g in zip(tps, gs):
            tp.grad = th.tensor(g.copy())
        opt.step()
        mod.adam_step_multi(ps, gs, ms, vs, step=t, lr=0.02, weight_decay=0.01, amsgrad=True,
                            v_maxs=vmaxs)
        for p, tp in zip(ps, tps):
            _compare(p, tp, dtype, f"step {t}")


# ------------------------------------------------------------------------------------------------
# RMSprop
# ------------------------------------------------------------------------------------------------

RMS_COMBOS = [dict(centered=c, momentum=mo, weight_decay=w, maximize=m) for c, mo, w, m in
              itertools.product([False, True], [0.0, 0.9], [0.0, 0.1], [False, True])]


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("kw", RMS_COMBOS, ids=_ids)
def test_rmsprop(kw, dtype, rng):
    th = need_torch()
    states = {"sq_avg": "square_avg"}
    if kw["centered"]:
        states["grad_avg"] = "grad_avg"
    if kw["momentum"] > 0:
        states["momentum_buf"] = "momentum_buffer"

    def ours(t, p, g, s):
        return fastopt.rmsprop_step(p, g, s["sq_avg"], lr=0.01, beta=0.95, eps=1e-6,
                                    grad_avg=s.get("grad_avg"),
                                    momentum_buf=s.get("momentum_buf"), **kw)

    _run(th, th.optim.RMSprop, dict(lr=0.01, alpha=0.95, eps=1e-6, foreach=False, **kw), ours,
         states, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
def test_rmsprop_torch_defaults(dtype, rng):
    """torch's defaults: alpha 0.99 (ours is 0.9, so pass it), eps 1e-8 outside the root."""
    th = need_torch()
    def ours(t, p, g, s):
        return fastopt.rmsprop_step(p, g, s["sq_avg"], lr=0.01, beta=0.99)

    _run(th, th.optim.RMSprop, dict(lr=0.01, foreach=False), ours, {"sq_avg": "square_avg"},
         dtype, rng)


# ------------------------------------------------------------------------------------------------
# SGD
# ------------------------------------------------------------------------------------------------

SGD_COMBOS = [dict(momentum=mo, dampening=d, nesterov=ne, weight_decay=w, maximize=m)
              for (mo, d, ne), w, m in itertools.product(
                  [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.3, False), (0.9, 0.0, True),
                   (0.5, 0.7, False)],
                  [0.0, 0.1], [False, True])]


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("kw", SGD_COMBOS, ids=_ids)
def test_sgd(kw, dtype, rng):
    th = need_torch()
    mo, d = kw["momentum"], kw["dampening"]
    common = dict(lr=0.05, weight_decay=kw["weight_decay"], maximize=kw["maximize"])

    def ours(t, p, g, s):
        if mo == 0:
            return fastopt.sgd_step(p, g, **common)
        # torch's first momentum step sets buf = g: dampening 0 from a zero velocity
        return fastopt.momentum_step(p, g, s["velocity"], beta=mo,
                                     dampening=0.0 if t == 1 else d,
                                     nesterov=kw["nesterov"], **common)

    states = {"velocity": "momentum_buffer"} if mo > 0 else {}
    _run(th, th.optim.SGD, dict(foreach=False, **kw, lr=0.05), ours, states, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
def test_sgd_large_threaded(dtype, rng):
    """Above the serial threshold (threaded path) still matches torch."""
    th = need_torch()
    n = fastopt.show_config(print_=False)["serial_threshold"] * 2 + 3

    def ours(t, p, g, s):
        return fastopt.momentum_step(p, g, s["velocity"], lr=0.05, beta=0.9,
                                     dampening=0.0, nesterov=True, n_threads=2)

    _run(th, th.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, foreach=False), ours,
         {"velocity": "momentum_buffer"}, dtype, rng, n=n, steps=3)


def test_require_torch_variable_is_honoured():
    """When FASTOPT_REQUIRE_TORCH=1 the fixture above must have given torch (or failed)."""
    th = need_torch()
    if os.environ.get("FASTOPT_REQUIRE_TORCH") == "1":
        assert th is not None and hasattr(th, "optim")
