"""RAdam (torch.optim.RAdam's form): the un-rectified early steps and the rectified step, by
hand.  The generic suites run on it from the registry; torch parity is in test_torch_grid.py."""

import math

import numpy as np
import pytest

import fastopt


def rho(t, b2):
    rho_inf = 2 / (1 - b2) - 1
    return rho_inf, rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)


def test_rho_crosses_5_at_step_6_for_the_default_beta2():
    assert [rho(t, 0.999)[1] > 5 for t in range(1, 8)] == [False] * 5 + [True] * 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_gradient_by_hand(dtype):
    # a constant g: m_hat = g exactly in exact arithmetic; steps 1-5 move by lr g (SGD with
    # momentum, un-rectified); step 6 by lr r_6 sign(g) (v = (1 - b2^6) g^2, eps = 0)
    lr, b1, b2 = 0.01, 0.9, 0.999
    p0 = np.array([1.0, -1.0, 3.0], dtype)
    g = np.array([0.5, -2.0, 1.0], dtype)
    p, m, v = p0.copy(), np.zeros(3, dtype), np.zeros(3, dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for t in range(1, 6):
        fastopt.radam_step(p, g, m, v, step=t, lr=lr, eps=0.0)
        np.testing.assert_allclose(p, p0 - t * lr * g, **tol)
    rho_inf, r6 = rho(6, b2)
    rect = math.sqrt((r6 - 4) * (r6 - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * r6))
    fastopt.radam_step(p, g, m, v, step=6, lr=lr, eps=0.0)
    np.testing.assert_allclose(p, p0 - 5 * lr * g - lr * rect * np.sign(g), **tol)


def test_eps_is_added_to_sqrt_v_as_torch_and_inside_differs():
    # one rectified step from known m, v: torch's form sqrt(1-b2^t) / (sqrt(v) + eps)
    b1, b2, t, lr, eps = 0.9, 0.999, 10, 0.1, 0.5
    rho_inf, rt = rho(t, b2)
    rect = math.sqrt((rt - 4) * (rt - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rt))
    m0, v0, g = 0.2, 0.04, 0.3
    m1, v1 = b1 * m0 + (1 - b1) * g, b2 * v0 + (1 - b2) * g * g
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    torch_form = -lr * m1 / bc1 * rect * math.sqrt(bc2) / (math.sqrt(v1) + eps)
    inside = -lr * m1 / bc1 * rect / math.sqrt(v1 / bc2 + eps)
    out = {}
    for mode in ("torch", "keras", "inside"):
        p, m, v = np.zeros(1), np.array([m0]), np.array([v0])
        fastopt.radam_step(p, np.array([g]), m, v, step=t, lr=lr, eps=eps, eps_mode=mode)
        out[mode] = p[0]
    assert out["torch"] == pytest.approx(torch_form, rel=1e-14)
    assert out["keras"] == out["torch"]
    assert out["inside"] == pytest.approx(inside, rel=1e-14)
    assert abs(out["inside"] - out["torch"]) > 0.5 * abs(out["torch"])


def test_beta2_zero_never_rectifies():
    # rho_inf = 1: the step stays lr m_hat for ever
    p, m, v = np.zeros(1), np.zeros(1), np.zeros(1)
    for t in range(1, 20):
        fastopt.radam_step(p, np.array([1.0]), m, v, step=t, lr=0.1, beta1=0.0, beta2=0.0)
    assert p[0] == pytest.approx(-1.9, rel=1e-14)
