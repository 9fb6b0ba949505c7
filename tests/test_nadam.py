"""NAdam (torch.optim.NAdam's form): hand-derived steps and the mu_product convention.  The
generic suites (test_kernels, test_lowp, test_errors) run on it from the registry; torch parity on
torch's own option grid is in test_torch_grid.py."""

import numpy as np
import pytest

import fastopt
from fastopt import reference


def mu(t, beta1=0.9, psi=4e-3):
    return beta1 * (1 - 0.5 * 0.96 ** (t * psi))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_step_by_hand(dtype):
    # m = v = 0, t = 1, mu_product = 1, eps = 0: v_hat = g^2, so g/d = sign(g) and m/d = (1-b1)
    # sign(g): p1 = p - lr sign(g) (1 + mu_2 (1 - b1) / (1 - mu_1 mu_2))
    lr, b1, psi = 0.01, 0.9, 4e-3
    p = np.array([1.0, -2.0, 0.5], dtype)
    g = np.array([0.3, -4.0, 1e-3], dtype)
    m, v = np.zeros(3, dtype), np.zeros(3, dtype)
    expect = p - lr * np.sign(g) * (1 + mu(2) * (1 - b1) / (1 - mu(1) * mu(2)))
    fastopt.nadam_step(p, g, m, v, step=1, mu_product=1.0, lr=lr, eps=0.0)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(p, expect, rtol=tol)
    np.testing.assert_allclose(m, (1 - b1) * g, rtol=tol)
    np.testing.assert_allclose(v, (1 - 0.999) * g * g, rtol=tol)


def test_mu_product_is_the_product_before_this_step(rng):
    # ten kernel steps carrying mu_product by hand equal the twin, and the class keeps the same
    p = rng.standard_normal(50)
    q, r = p.copy(), p.copy()
    m, v, m2, v2 = (np.zeros(50) for _ in range(4))
    prod = 1.0
    opt = fastopt.NAdam([r], lr=0.02)
    for t in range(1, 11):
        g = rng.standard_normal(50)
        fastopt.nadam_step(q, g, m, v, step=t, mu_product=prod, lr=0.02)
        reference.nadam_step(p, g, m2, v2, step=t, mu_product=prod, lr=0.02)
        opt.step([g])
        prod = reference.nadam_carry(prod, step=t)
        np.testing.assert_allclose(q, p, rtol=1e-13)
        assert q.tobytes() == r.tobytes()
    assert opt._carry["mu_product"] == prod
    assert prod == pytest.approx(np.prod([mu(t) for t in range(1, 11)]), rel=1e-15)


def test_a_wrong_mu_product_changes_the_step(rng):
    p = rng.standard_normal(8)
    g = rng.standard_normal(8)
    a, b = p.copy(), p.copy()
    fastopt.nadam_step(a, g, np.zeros(8), np.zeros(8), step=3, mu_product=0.5)
    fastopt.nadam_step(b, g, np.zeros(8), np.zeros(8), step=3, mu_product=0.7)
    assert not np.array_equal(a, b)


def test_mu_product_is_required_and_checked():
    p, g = np.zeros(2), np.ones(2)
    with pytest.raises(TypeError, match="mu_product"):
        fastopt.nadam_step(p, g, np.zeros(2), np.zeros(2), step=1)
    for bad, exc in ((1.5, ValueError), (-0.1, ValueError), (None, TypeError)):
        with pytest.raises(exc, match="mu_product"):
            fastopt.nadam_step(p, g, np.zeros(2), np.zeros(2), step=1, mu_product=bad)
    assert not p.any()


def test_decoupled_weight_decay_is_nadamw():
    # torch's NAdam(decoupled_weight_decay=True): p *= 1 - lr wd before the update
    p = np.array([2.0])
    q = p * (1 - 0.01 * 0.5)
    fastopt.nadam_step(p, np.array([1.0]), np.zeros(1), np.zeros(1), step=1, mu_product=1.0,
                       lr=0.01, weight_decay=0.5, decoupled_weight_decay=True)
    fastopt.nadam_step(q, np.array([1.0]), np.zeros(1), np.zeros(1), step=1, mu_product=1.0,
                       lr=0.01)
    assert p.tobytes() == q.tobytes()
