"""Lion: values derived by hand from the formula (the generic parity, error, thread, ISA and
storage-type suites pick the rule up from the registry).

    c = beta1 m + (1 - beta1) g;   W <- W (1 - lr wd) - lr sign(c);   m <- beta2 m + (1 - beta2) g
"""

import numpy as np
import pytest

import fastopt


def test_first_step_moves_every_element_by_lr_against_the_gradient_sign():
    # m = 0: c = (1 - beta1) g, so the update is lr * sign(g), whatever |g|
    p = np.array([1.0, -2.0, 0.5, 3.0])
    g = np.array([0.3, -1e-6, 0.0, 40.0])
    m = np.zeros(4)
    fastopt.lion_step(p, g, m, lr=0.1, beta1=0.9, beta2=0.99)
    np.testing.assert_array_equal(p, [0.9, -1.9, 0.5, 2.9])     # sign(0) = 0: no move
    np.testing.assert_allclose(m, 0.01 * g, rtol=1e-15)         # m = (1 - beta2) g


def test_second_step_interpolates_with_beta1_not_beta2():
    # step 1 with g1 = 1: m = 0.01.  Step 2 with g2 = -0.05: c = 0.9*0.01 + 0.1*(-0.05) = 0.004
    # (> 0: the update still goes down although g2 < 0); m = 0.99*0.01 + 0.01*(-0.05) = 0.0094
    p, m = np.array([0.0]), np.zeros(1)
    fastopt.lion_step(p, np.array([1.0]), m, lr=0.5)
    fastopt.lion_step(p, np.array([-0.05]), m, lr=0.5)
    np.testing.assert_allclose(p, [-1.0], rtol=1e-15)
    np.testing.assert_allclose(m, [0.0094], rtol=1e-13)
    # a third gradient that flips c: c = 0.9*0.0094 + 0.1*(-1) < 0, so the update goes up
    fastopt.lion_step(p, np.array([-1.0]), m, lr=0.5)
    np.testing.assert_allclose(p, [-0.5], rtol=1e-15)


def test_weight_decay_is_decoupled():
    # W <- W (1 - lr wd) - lr sign(c): 2 * (1 - 0.1*0.5) - 0.1 = 1.8
    p, m = np.array([2.0]), np.zeros(1)
    fastopt.lion_step(p, np.array([5.0]), m, lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(p, [1.8], rtol=1e-15)
    np.testing.assert_allclose(m, [0.05], rtol=1e-14)           # the gradient is not decayed


def test_maximize_ascends():
    p, m = np.array([1.0]), np.zeros(1)
    fastopt.lion_step(p, np.array([2.0]), m, lr=0.25, maximize=True)
    assert p[0] == 1.25 and m[0] == pytest.approx(-0.02)


def test_nan_propagates_and_inf_gives_a_unit_step():
    p, m = np.array([1.0, 1.0, 1.0]), np.zeros(3)
    fastopt.lion_step(p, np.array([np.nan, np.inf, -np.inf]), m, lr=0.1)
    assert np.isnan(p[0]) and np.isnan(m[0])
    assert p[1] == 0.9 and p[2] == 1.1                          # sign(+-inf) = +-1
    assert m[1] == np.inf and m[2] == -np.inf


def test_bfloat16_first_step_lands_on_the_bfloat16_grid():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = ml_dtypes.bfloat16
    p = np.array([1.0, 1.0], dtype=bf)
    m = np.zeros(2, dtype=bf)
    # 1 - 2^-8 is a bfloat16 (spacing 2^-8 just below 1); 1 - 2^-10 rounds back to 1
    fastopt.lion_step(p, np.array([1.0, 0.0], dtype=bf), m, lr=2.0 ** -8)
    assert p.astype(np.float32).tolist() == [1.0 - 2.0 ** -8, 1.0]
    p2, m2 = np.array([1.0], dtype=bf), np.zeros(1, dtype=bf)
    fastopt.lion_step(p2, np.array([1.0], dtype=bf), m2, lr=2.0 ** -10)
    assert p2.astype(np.float32)[0] == 1.0                      # lost to nearest rounding
