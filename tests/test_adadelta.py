"""Adadelta: values derived by hand, and parity with torch.optim.Adadelta (the generic suites pick
the rule up from the registry).

    S <- rho S + (1-rho) g^2;  D = sqrt(A + eps) / sqrt(S + eps) g;  A <- rho A + (1-rho) D^2;
    W <- W - lr D
"""

import numpy as np
import pytest

import fastopt
from conftest import require_torch, run_against_torch


def test_first_step_by_hand():
    # rho = 0.5, eps = 0.01, g = 2: S = 2, D = sqrt(0.01)/sqrt(2.01) * 2, A = 0.5 D^2
    p, s, a = np.array([1.0]), np.zeros(1), np.zeros(1)
    fastopt.adadelta_step(p, np.array([2.0]), s, a, lr=1.0, rho=0.5, eps=0.01)
    d = 0.1 / np.sqrt(2.01) * 2
    np.testing.assert_allclose(s, [2.0], rtol=1e-15)
    np.testing.assert_allclose(a, [0.5 * d * d], rtol=1e-14)
    np.testing.assert_allclose(p, [1.0 - d], rtol=1e-14)


def test_second_step_uses_the_accumulated_delta():
    # rho = 0.5, eps = 0.01.  Step 1, g = 2: S1 = 2, D1 = 0.2/sqrt(2.01), A1 = 0.5 D1^2.
    # Step 2, g = 1: S2 = 1 + 0.5 = 1.5, D2 = sqrt(A1 + 0.01)/sqrt(1.51), W2 = W1 - D2
    p, s, a = np.array([0.0]), np.zeros(1), np.zeros(1)
    fastopt.adadelta_step(p, np.array([2.0]), s, a, rho=0.5, eps=0.01)
    d1 = 0.2 / np.sqrt(2.01)
    a1 = 0.5 * d1 * d1
    fastopt.adadelta_step(p, np.array([1.0]), s, a, rho=0.5, eps=0.01)
    d2 = np.sqrt(a1 + 0.01) / np.sqrt(1.51)
    np.testing.assert_allclose(s, [1.5], rtol=1e-15)
    np.testing.assert_allclose(p, [-d1 - d2], rtol=1e-13)
    np.testing.assert_allclose(a, [0.5 * a1 + 0.5 * d2 * d2], rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kw", [{}, {"weight_decay": 0.1}, {"maximize": True},
                                {"rho": 0.5, "eps": 1e-3, "lr": 0.3}])
def test_matches_torch(kw, dtype, rng):
    torch = require_torch()

    def ours(t, p, g, s):
        return fastopt.adadelta_step(p, g, s["sq_avg"], s["acc_delta"], **kw)

    run_against_torch(torch, torch.optim.Adadelta, kw, ours,
                      {"sq_avg": "square_avg", "acc_delta": "acc_delta"}, dtype, rng, steps=40)
