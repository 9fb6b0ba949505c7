"""Adamax: values derived by hand, and parity with torch.optim.Adamax (the generic suites pick
the rule up from the registry).

    m <- b1 m + (1 - b1) g;   u <- max(b2 u, |g| + eps);   W <- W - lr / (1 - b1^t) m / u
"""

import numpy as np
import pytest

import fastopt
from conftest import require_torch, run_against_torch


def test_first_step_moves_by_lr_times_the_sign():
    # m = (1-b1) g, u = |g| (eps = 0), step size lr/(1-b1): the move is lr * sign(g)
    p = np.array([1.0, -1.0])
    m, u = np.zeros(2), np.zeros(2)
    fastopt.adamax_step(p, np.array([5.0, -0.2]), m, u, step=1, lr=0.1, eps=0.0)
    np.testing.assert_allclose(p, [0.9, -0.9], rtol=1e-14)
    np.testing.assert_allclose(u, [5.0, 0.2], rtol=1e-15)


def test_u_keeps_the_decayed_maximum():
    # t=1: g=2 -> m=0.2, u=2.  t=2: g=0.5 -> m = 0.18 + 0.05 = 0.23, u = max(0.5*2, 0.5) = 1;
    # step size 0.1 / (1 - 0.81) and W = W1 - 0.1/0.19 * 0.23 / 1
    p, m, u = np.array([0.0]), np.zeros(1), np.zeros(1)
    fastopt.adamax_step(p, np.array([2.0]), m, u, step=1, lr=0.1, beta2=0.5, eps=0.0)
    w1 = p[0]
    np.testing.assert_allclose(w1, -0.1, rtol=1e-14)
    fastopt.adamax_step(p, np.array([0.5]), m, u, step=2, lr=0.1, beta2=0.5, eps=0.0)
    np.testing.assert_allclose(m, [0.23], rtol=1e-14)
    assert u[0] == 1.0
    np.testing.assert_allclose(p, [w1 - 0.1 / 0.19 * 0.23], rtol=1e-14)


def test_nan_in_the_gradient_reaches_u_and_stays():
    p, m, u = np.ones(2), np.zeros(2), np.zeros(2)
    fastopt.adamax_step(p, np.array([np.nan, 1.0]), m, u, step=1)
    fastopt.adamax_step(p, np.array([1.0, 1.0]), m, u, step=2)
    assert np.isnan(u[0]) and np.isnan(p[0]) and np.isfinite(u[1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kw", [{}, {"weight_decay": 0.1}, {"maximize": True},
                                {"betas": (0.8, 0.95), "eps": 1e-3}])
def test_matches_torch(kw, dtype, rng):
    torch = require_torch()
    kw = {"lr": 0.01, **kw}
    mine = dict(kw)
    if "betas" in mine:
        mine["beta1"], mine["beta2"] = mine.pop("betas")

    def ours(t, p, g, s):
        return fastopt.adamax_step(p, g, s["m"], s["u"], step=t, **mine)

    run_against_torch(torch, torch.optim.Adamax, kw, ours, {"m": "exp_avg", "u": "exp_inf"},
                      dtype, rng, steps=40)
