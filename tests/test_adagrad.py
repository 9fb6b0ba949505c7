"""Adagrad: values derived by hand, and parity with torch.optim.Adagrad (the generic suites pick
the rule up from the registry).

    lr_t = lr / (1 + (t - 1) lr_decay);   S <- S + g^2;   W <- W - lr_t g / (sqrt(S) + eps)
"""

import numpy as np
import pytest

import fastopt
from conftest import require_torch, run_against_torch


def test_first_step_moves_by_lr_times_the_sign():
    # S = g^2, so g / sqrt(S) = sign(g) (eps = 0): every element moves by lr
    p = np.array([1.0, -1.0, 2.0])
    g = np.array([4.0, -0.01, 0.0])
    s = np.zeros(3)
    fastopt.adagrad_step(p, g, s, step=1, lr=0.1, eps=0.0)
    # the zero gradient gives 0 / (0 + 0) = NaN with eps = 0, as torch does; skip it here
    np.testing.assert_allclose(p[:2], [0.9, -0.9], rtol=1e-15)
    np.testing.assert_allclose(s, [16.0, 1e-4, 0.0], rtol=1e-15)


def test_second_step_and_lr_decay():
    # t=1: g=3 -> S=9, W = 0 - 0.5*3/3 = -0.5.  t=2: g=4 -> S=25, lr_2 = 0.5/(1+0.5) = 1/3,
    # W = -0.5 - (1/3)*4/5 = -0.5 - 4/15
    p, s = np.array([0.0]), np.zeros(1)
    fastopt.adagrad_step(p, np.array([3.0]), s, step=1, lr=0.5, lr_decay=0.5, eps=0.0)
    fastopt.adagrad_step(p, np.array([4.0]), s, step=2, lr=0.5, lr_decay=0.5, eps=0.0)
    np.testing.assert_allclose(p, [-0.5 - 4 / 15], rtol=1e-15)
    np.testing.assert_allclose(s, [25.0], rtol=1e-15)


def test_weight_decay_is_l2_through_the_accumulator():
    # g = 1 + 0.5 * 2 = 2: S = 4, W = 2 - 0.1 * 2 / 2 = 1.9
    p, s = np.array([2.0]), np.zeros(1)
    fastopt.adagrad_step(p, np.array([1.0]), s, step=1, lr=0.1, weight_decay=0.5, eps=0.0)
    assert p[0] == pytest.approx(1.9, rel=1e-15) and s[0] == 4.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kw", [{}, {"lr_decay": 0.01}, {"weight_decay": 0.1},
                                {"maximize": True}, {"eps": 1e-3, "lr": 0.3}])
def test_matches_torch(kw, dtype, rng):
    torch = require_torch()
    kw = {"lr": 0.05, **kw}

    def ours(t, p, g, s):
        return fastopt.adagrad_step(p, g, s["sum_sq"], step=t, **kw)

    run_against_torch(torch, torch.optim.Adagrad, kw, ours, {"sum_sq": "sum"}, dtype, rng,
                      steps=40)
