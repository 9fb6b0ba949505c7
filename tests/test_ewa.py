"""Exponentially weighted averages: ewa_update, ewa (a whole series), debias."""

import inspect

import numpy as np
import pytest

import fastopt
from fastopt import reference

from conftest import (BIG_SIZES, FLOAT_DTYPES, Snapshot, assert_bitwise, assert_close,
                      num_threads)

DTYPE_IDS = lambda d: np.dtype(d).name  # noqa: E731


# ------------------------------------------------------------------------------------------------
# The course's worked numbers, beta = 0.98.
# ------------------------------------------------------------------------------------------------

THETA1, THETA2 = 10.0, 4.0


def test_course_v1_v2_via_ewa_update():
    v = np.zeros(1)
    fastopt.ewa_update(v, np.array([THETA1]), beta=0.98)
    assert v[0] == pytest.approx(0.02 * THETA1, rel=1e-14)
    fastopt.ewa_update(v, np.array([THETA2]), beta=0.98)
    assert v[0] == pytest.approx(0.0196 * THETA1 + 0.02 * THETA2, rel=1e-14)


def test_course_v1_v2_via_ewa_without_bias_correction():
    out = fastopt.ewa([THETA1, THETA2], beta=0.98, bias_correction=False)
    np.testing.assert_allclose(out, [0.02 * THETA1, 0.0196 * THETA1 + 0.02 * THETA2],
                               rtol=1e-14)


def test_course_debiased_v2_divides_by_0_0396():
    v2 = 0.0196 * THETA1 + 0.02 * THETA2
    expected = v2 / 0.0396
    np.testing.assert_allclose(fastopt.debias(np.array([v2]), beta=0.98, step=2), [expected],
                               rtol=1e-13)
    np.testing.assert_allclose(fastopt.ewa([THETA1, THETA2], beta=0.98)[1], expected, rtol=1e-13)
    # v1 debiased is theta1 itself
    np.testing.assert_allclose(fastopt.ewa([THETA1, THETA2], beta=0.98)[0], THETA1, rtol=1e-14)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.98, 0.999])
def test_debiased_ewa_of_a_constant_is_the_constant(beta, dtype):
    c = 3.25
    out = fastopt.ewa(np.full(200, c, dtype=dtype), beta=beta)
    assert out.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, c, rtol=rtol)


def test_ewa_without_correction_of_a_constant_approaches_it():
    """v_t = c (1 - beta^t) for a constant series."""
    t = np.arange(1, 51)
    out = fastopt.ewa(np.full(50, 2.0), beta=0.9, bias_correction=False)
    np.testing.assert_allclose(out, 2.0 * (1 - 0.9 ** t), rtol=1e-13)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("alpha", [0.02, 0.1, 0.5, 0.9, 1.0])
def test_ewa_equals_pandas_adjusted_ewm(alpha, dtype, rng):
    """pandas' Series.ewm(alpha, adjust=True).mean(): y_t = sum_i w_i x_{t-i} / sum_i w_i with
    w_i = (1 - alpha)^i, computed here directly from that definition."""
    x = rng.standard_normal(60).astype(dtype)
    beta = 1.0 - alpha
    expected = np.empty(60)
    for t in range(60):
        w = (1.0 - alpha) ** np.arange(t + 1)          # weight of x[t - i]
        expected[t] = np.sum(w * x[t::-1].astype(np.float64)) / np.sum(w)
    if beta >= 1.0:
        pytest.skip("alpha=0 is not a valid EWA")
    out = fastopt.ewa(x, beta=beta)
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-11, 1e-12)
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol)


def test_ewa_beta_zero_is_the_series_itself(rng):
    x = rng.standard_normal(30)
    np.testing.assert_array_equal(fastopt.ewa(x, beta=0.0), x)
    np.testing.assert_array_equal(fastopt.ewa(x, beta=0.0, bias_correction=False), x)


# ------------------------------------------------------------------------------------------------
# ewa vs reference.ewa.
# ------------------------------------------------------------------------------------------------

SHAPES_AXES = [((0,), 0), ((1,), 0), ((17,), 0), ((1023,), -1),
               ((6, 5), 0), ((6, 5), 1), ((6, 5), -1), ((6, 5), -2), ((1, 9), 0), ((9, 1), 1),
               ((4, 3, 5), 0), ((4, 3, 5), 1), ((4, 3, 5), 2), ((0, 4), 1), ((4, 0), 0),
               ((0, 4), 0), ((4, 0), 1)]


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, axis", SHAPES_AXES, ids=lambda v: str(v))
def test_ewa_matches_reference(shape, axis, dtype, bias_correction, rng):
    x = rng.standard_normal(shape).astype(dtype)
    x.flags.writeable = False
    snap = Snapshot(x)
    out = fastopt.ewa(x, beta=0.8, bias_correction=bias_correction, axis=axis)
    ref = reference.ewa(x, beta=0.8, bias_correction=bias_correction, axis=axis)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert_close(out, ref)
    snap.assert_unchanged()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("axis", [0, 1])
def test_ewa_axis_means_independent_series(axis, dtype, rng):
    """Each 1-D slice along `axis` is its own series."""
    x = rng.standard_normal((7, 4)).astype(dtype)
    out = fastopt.ewa(x, beta=0.6, axis=axis)
    for k in range(x.shape[1 - axis]):
        sl = (slice(None), k) if axis == 0 else (k, slice(None))
        np.testing.assert_array_equal(out[sl], fastopt.ewa(np.ascontiguousarray(x[sl]), beta=0.6))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", ["F", "strided", "reversed"])
def test_ewa_non_contiguous_input(layout, dtype, rng):
    base = rng.standard_normal((12, 10)).astype(dtype)
    x = {"F": np.asfortranarray(base), "strided": base[::2, ::3], "reversed": base[::-1]}[layout]
    for axis in (0, 1):
        assert_close(fastopt.ewa(x, beta=0.7, axis=axis), reference.ewa(x, beta=0.7, axis=axis))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, axis", [((BIG_SIZES[1],), 0), ((40, 2000), 0), ((2000, 40), 1),
                                         ((300, 200), 1), ((200, 300), 0)])
def test_ewa_large_threaded_matches_reference_and_is_thread_independent(shape, axis, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    out = fastopt.ewa(x, beta=0.9, axis=axis)
    assert_close(out, reference.ewa(x, beta=0.9, axis=axis))
    fastopt.set_num_threads(1)
    out1 = fastopt.ewa(x, beta=0.9, axis=axis)
    assert out.tobytes() == out1.tobytes()


def test_ewa_integer_and_bool_input_become_float64():
    out = fastopt.ewa(np.array([1, 2, 3], dtype=np.int32), beta=0.5)
    assert out.dtype == np.float64
    # v: 0.5, 1.25, 2.125; corrections 0.5, 0.75, 0.875
    np.testing.assert_allclose(out, [1.0, 1.25 / 0.75, 2.125 / 0.875], rtol=1e-15)
    assert_close(fastopt.ewa([1, 2, 3], beta=0.5), reference.ewa(np.array([1, 2, 3]), beta=0.5))
    assert fastopt.ewa(np.array([1, 2], dtype=np.uint8), beta=0.5).dtype == np.float64
    assert fastopt.ewa([True, False], beta=0.5).dtype == np.float64


def test_ewa_accepts_lists_and_keeps_float32(rng):
    assert fastopt.ewa([1.0, 2.0], beta=0.5).dtype == np.float64
    x = rng.standard_normal(10).astype(np.float32)
    assert fastopt.ewa(x, beta=0.5).dtype == np.float32


# ------------------------------------------------------------------------------------------------
# out=
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, axis", [((13,), 0), ((6, 5), 0), ((6, 5), 1), ((4, 3, 5), 1)])
def test_ewa_out(shape, axis, dtype, bias_correction, rng):
    x = rng.standard_normal(shape).astype(dtype)
    expected = reference.ewa(x, beta=0.75, axis=axis, bias_correction=bias_correction)
    out = np.full(shape, np.nan, dtype=dtype)
    res = fastopt.ewa(x, beta=0.75, axis=axis, bias_correction=bias_correction, out=out)
    assert res is out
    assert_close(out, expected)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, axis", [((13,), 0), ((6, 5), 0), ((6, 5), 1), ((4, 3, 5), 2),
                                         ((4, 3, 5), 0), ((BIG_SIZES[0] + 1,), 0),
                                         ((300, 200), 0)])
def test_ewa_out_is_series_in_place(shape, axis, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    expected = reference.ewa(x, beta=0.75, axis=axis)
    res = fastopt.ewa(x, beta=0.75, axis=axis, out=x)
    assert res is x
    assert_close(x, expected)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("order", ["F", "strided", "reversed"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_ewa_out_with_any_layout(order, axis, dtype, rng):
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    if order == "F":
        out = np.empty((4, 3, 5), dtype=dtype, order="F")
    elif order == "strided":
        out = np.empty((8, 3, 10), dtype=dtype)[::2, :, ::2]
    else:
        out = np.empty((4, 3, 5), dtype=dtype)[::-1, :, ::-1]
    fastopt.ewa(x, beta=0.6, axis=axis, out=out)
    assert_close(out, reference.ewa(x, beta=0.6, axis=axis))


# ------------------------------------------------------------------------------------------------
# debias
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("step", [1, 2, 10, 1000])
def test_debias_matches_reference(step, dtype, rng):
    a = rng.standard_normal((5, 4)).astype(dtype)
    out = fastopt.debias(a, beta=0.9, step=step)
    assert out.dtype == dtype and out.shape == a.shape
    assert_close(out, reference.debias(a, beta=0.9, step=step))
    np.testing.assert_allclose(out, a.astype(np.float64) / (1 - 0.9 ** step),
                               rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_debias_of_ewa_updates_equals_ewa(rng):
    x = rng.standard_normal((8, 3))
    avg = np.zeros(3)
    full = fastopt.ewa(x, beta=0.85)
    for t in range(8):
        fastopt.ewa_update(avg, x[t], beta=0.85)
        np.testing.assert_allclose(fastopt.debias(avg, beta=0.85, step=t + 1), full[t],
                                   rtol=1e-13)


def test_debias_out_in_place_and_int_input():
    a = np.array([0.02, 0.04])
    res = fastopt.debias(a, beta=0.98, step=1, out=a)
    assert res is a
    np.testing.assert_allclose(a, [1.0, 2.0], rtol=1e-14)
    r = fastopt.debias(np.array([1, 2]), beta=0.5, step=1)
    assert r.dtype == np.float64
    np.testing.assert_allclose(r, [2.0, 4.0], rtol=1e-15)


def test_debias_float32_correction_computed_in_float64():
    """beta2 = 0.999 at step 1: 1 - beta**t in float32 would be 1.0000467e-3; the float64 value
    rounded once is 1e-3 to float32 precision."""
    a = np.array([1e-3], dtype=np.float32)
    np.testing.assert_allclose(fastopt.debias(a, beta=0.999, step=1), [1.0], rtol=2e-7)


# ------------------------------------------------------------------------------------------------
# Errors.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [1.0, -0.1, float("nan"), 1.5, float("inf")])
def test_ewa_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        fastopt.ewa([1.0, 2.0], beta=beta)
    with pytest.raises(ValueError, match="beta"):
        fastopt.debias(np.ones(2), beta=beta, step=1)


@pytest.mark.parametrize("beta", ["0.5", None, True])
def test_ewa_beta_wrong_type(beta):
    with pytest.raises(TypeError, match="beta"):
        fastopt.ewa([1.0, 2.0], beta=beta)


@pytest.mark.parametrize("shape, axis", [((5,), 1), ((5,), -2), ((3, 4), 2), ((3, 4), -3)])
def test_ewa_bad_axis(shape, axis):
    with pytest.raises(ValueError, match="axis"):
        fastopt.ewa(np.ones(shape), beta=0.5, axis=axis)


@pytest.mark.parametrize("axis", [1.0, "0", None, (0,)])
def test_ewa_axis_wrong_type(axis):
    with pytest.raises(TypeError, match="axis"):
        fastopt.ewa(np.ones((3, 4)), beta=0.5, axis=axis)


def test_ewa_zero_dim_input():
    with pytest.raises(ValueError, match="series"):
        fastopt.ewa(np.float64(3.0), beta=0.5)
    with pytest.raises(ValueError, match="series"):
        fastopt.ewa(3.0, beta=0.5)


@pytest.mark.parametrize("series", [np.array(["a", "b"]), np.array([1 + 1j, 2.0]),
                                    np.array([1.0, 2.0], dtype=np.longdouble),
                                    np.array([None, 1.0], dtype=object)])
def test_ewa_unsupported_input_dtype(series):
    with pytest.raises(TypeError, match="series"):
        fastopt.ewa(series, beta=0.5)


@pytest.mark.parametrize("out, exc", [
    (np.zeros(5, dtype=np.float32), TypeError),      # dtype
    (np.zeros(6), ValueError),                       # shape
    (np.zeros((5, 1)), ValueError),                  # shape
    ([0.0] * 5, TypeError),                          # not an ndarray
])
def test_ewa_bad_out(out, exc):
    x = np.arange(5.0)
    snap = Snapshot(x, out)
    with pytest.raises(exc, match="out"):
        fastopt.ewa(x, beta=0.5, out=out)
    snap.assert_unchanged()


def test_ewa_read_only_out():
    x = np.arange(5.0)
    out = np.zeros(5)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        fastopt.ewa(x, beta=0.5, out=out)


def test_ewa_out_overlapping_series_but_not_the_same():
    buf = np.arange(11.0)
    x, out = buf[:10], buf[1:11]
    snap = Snapshot(buf)
    with pytest.raises(ValueError, match="out"):
        fastopt.ewa(x, beta=0.5, out=out)
    snap.assert_unchanged()
    with pytest.raises(ValueError, match="out"):
        fastopt.ewa(buf[:10], beta=0.5, out=buf[::-1][1:])
    snap.assert_unchanged()


@pytest.mark.parametrize("step, exc", [(0, ValueError), (-3, ValueError), (1.0, TypeError),
                                       (True, TypeError), (None, TypeError)])
def test_debias_bad_step(step, exc):
    a = np.ones(3)
    with pytest.raises(exc, match="step"):
        fastopt.debias(a, beta=0.5, step=step)
    np.testing.assert_array_equal(a, 1.0)


@pytest.mark.parametrize("out, exc", [(np.zeros(3, dtype=np.float32), TypeError),
                                      (np.zeros(4), ValueError), ("x", TypeError)])
def test_debias_bad_out(out, exc):
    with pytest.raises(exc, match="out"):
        fastopt.debias(np.ones(3), beta=0.5, step=1, out=out)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_ewa_update_matches_reference_over_steps(dtype, rng):
    avg = np.zeros(100, dtype=dtype)
    ref = avg.copy()
    for _ in range(10):
        x = rng.standard_normal(100).astype(dtype)
        fastopt.ewa_update(avg, x, beta=0.93)
        reference.ewa_update(ref, x, beta=0.93)
        assert_close(avg, ref)


# ------------------------------------------------------------------------------------------------
# pandas' forms: adjust=True / adjust=False, ignore_na.
# ------------------------------------------------------------------------------------------------

NAN = np.nan
PANDAS_BETAS = [2.0 / 3.0, 0.5, 0.1, 0.9, 0.98]    # 2/3 is pandas' com=2.0 (alpha = 1/3)
RTOL = {np.float32: 1e-6, np.float64: 1e-12}

# pandas' own cases, from pandas-dev/pandas, pandas/tests/window/test_ewm.py,
# test_ewma_nan_handling_cases (GH 7603): (series, adjust, ignore_na, weights).  pandas writes the
# weights for com=2.0 with alpha spelled `1.0 / (1.0 + 2.0)`; here that spelling is `a`, so the same
# cases run for several beta = 1 - a.  The expected mean is the weighted mean of the observed values
# so far, forward filled: `(s.multiply(w).cumsum() / Series(w).cumsum()).ffill()`.
PANDAS_NAN_HANDLING_CASES = [
    ([NAN, 1.0, 101.0], True, False, lambda a: [NAN, (1.0 - a), 1.0]),
    ([NAN, 1.0, 101.0], True, True, lambda a: [NAN, (1.0 - a), 1.0]),
    ([NAN, 1.0, 101.0], False, False, lambda a: [NAN, (1.0 - a), a]),
    ([NAN, 1.0, 101.0], False, True, lambda a: [NAN, (1.0 - a), a]),
    ([1.0, NAN, 101.0], True, False, lambda a: [(1.0 - a) ** 2, NAN, 1.0]),
    ([1.0, NAN, 101.0], True, True, lambda a: [(1.0 - a), NAN, 1.0]),
    ([1.0, NAN, 101.0], False, False, lambda a: [(1.0 - a) ** 2, NAN, a]),
    ([1.0, NAN, 101.0], False, True, lambda a: [(1.0 - a), NAN, a]),
    ([NAN, 1.0, NAN, NAN, 101.0, NAN], True, False,
     lambda a: [NAN, (1.0 - a) ** 3, NAN, NAN, 1.0, NAN]),
    ([NAN, 1.0, NAN, NAN, 101.0, NAN], True, True,
     lambda a: [NAN, (1.0 - a), NAN, NAN, 1.0, NAN]),
    ([NAN, 1.0, NAN, NAN, 101.0, NAN], False, False,
     lambda a: [NAN, (1.0 - a) ** 3, NAN, NAN, a, NAN]),
    ([NAN, 1.0, NAN, NAN, 101.0, NAN], False, True,
     lambda a: [NAN, (1.0 - a), NAN, NAN, a, NAN]),
    ([1.0, NAN, 101.0, 50.0], True, False,
     lambda a: [(1.0 - a) ** 3, NAN, (1.0 - a), 1.0]),
    ([1.0, NAN, 101.0, 50.0], True, True,
     lambda a: [(1.0 - a) ** 2, NAN, (1.0 - a), 1.0]),
    ([1.0, NAN, 101.0, 50.0], False, False,
     lambda a: [(1.0 - a) ** 3, NAN, (1.0 - a) * a, a * ((1.0 - a) ** 2 + a)]),
    ([1.0, NAN, 101.0, 50.0], False, True,
     lambda a: [(1.0 - a) ** 2, NAN, (1.0 - a) * a, a]),
]


def _cumulative_weighted_mean_ffill(s, w):
    """pandas' expected value above, in NumPy: sums skip NaN, a NaN position repeats the last mean
    (leading NaNs stay NaN)."""
    s, w = np.asarray(s, dtype=np.float64), np.asarray(w, dtype=np.float64)
    seen = ~np.isnan(s)
    with np.errstate(invalid="ignore"):
        y = np.cumsum(np.where(seen, s * w, 0.0)) / np.cumsum(np.where(seen, w, 0.0))
    y[~seen] = np.nan
    for t in range(1, y.size):
        if np.isnan(y[t]):
            y[t] = y[t - 1]
    return y


@pytest.mark.parametrize("impl", [fastopt.ewa, reference.ewa], ids=["fastopt", "reference"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("beta", PANDAS_BETAS)
@pytest.mark.parametrize("series, adjust, ignore_na, weights", PANDAS_NAN_HANDLING_CASES)
def test_pandas_nan_handling_cases(series, adjust, ignore_na, weights, beta, dtype, impl):
    expected = _cumulative_weighted_mean_ffill(series, weights(1.0 - beta))
    x = np.array(series, dtype=dtype)
    out = impl(x, beta=beta, adjust=adjust, ignore_na=ignore_na)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=0, equal_nan=True)
    if not ignore_na:                       # ignore_na defaults to False, as in pandas
        np.testing.assert_array_equal(impl(x, beta=beta, adjust=adjust), out)


@pytest.mark.parametrize("impl", [fastopt.ewa, reference.ewa], ids=["fastopt", "reference"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("beta", PANDAS_BETAS + [5.0 / 6.0])
@pytest.mark.parametrize("adjust", [True, False])
@pytest.mark.parametrize("ignore_na", [False, True])
def test_pandas_nan_handling(ignore_na, adjust, beta, dtype, impl):
    """pandas' test_ewma_nan_handling (same file; com=5, i.e. beta = 5/6): a constant series with
    NaN gaps stays exactly that constant, leading NaNs stay NaN.  Exactly, not to rounding: like
    pandas, the mean is kept when the new value equals it."""
    x = np.array([1.0] + [NAN] * 5 + [1.0], dtype=dtype)
    np.testing.assert_array_equal(impl(x, beta=beta, adjust=adjust, ignore_na=ignore_na),
                                  np.ones(7, dtype=dtype))
    x = np.array([NAN] * 2 + [1.0] + [NAN] * 2 + [1.0], dtype=dtype)
    np.testing.assert_array_equal(impl(x, beta=beta, adjust=adjust, ignore_na=ignore_na),
                                  np.array([NAN] * 2 + [1.0] * 4, dtype=dtype))


@pytest.mark.parametrize("impl", [fastopt.ewa, reference.ewa], ids=["fastopt", "reference"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("ignore_na", [False, True])
@pytest.mark.parametrize("adjust, expected", [(True, [1.0, 1.6, 2.736842, 4.923077]),
                                              (False, [1.0, 1.333333, 2.222222, 4.148148])])
def test_pandas_ewma_cases(adjust, expected, ignore_na, dtype, impl):
    """pandas' test_ewma_cases (same file): [1, 2, 4, 8] with com=2.0 (beta = 2/3), printed by
    pandas to 7 significant digits."""
    out = impl(np.array([1.0, 2.0, 4.0, 8.0], dtype=dtype), beta=2.0 / 3.0, adjust=adjust,
               ignore_na=ignore_na)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("impl", [fastopt.ewa, reference.ewa], ids=["fastopt", "reference"])
@pytest.mark.parametrize("series, beta, adjust, ignore_na, expected", [
    # y_0 = x_0, y_1 = 0.5 * 1 + 0.5 * 2
    ([1.0, 2.0], 0.5, False, False, [1.0, 1.5]),
    ([1.0, 2.0, 4.0], 0.75, False, False, [1.0, 1.25, 1.9375]),
    # adjust=True: (0.5 * 1 + 2) / 1.5, (0.25 * 1 + 0.5 * 2 + 4) / 1.75
    ([1.0, 2.0, 4.0], 0.5, True, False, [1.0, 2.5 / 1.5, 5.25 / 1.75]),
    # a NaN gap: by position the weight of 1 is 0.25 at t=2; skipped, 0.5
    ([1.0, NAN, 3.0], 0.5, True, False, [1.0, 1.0, 3.25 / 1.25]),
    ([1.0, NAN, 3.0], 0.5, True, True, [1.0, 1.0, 3.5 / 1.5]),
    # adjust=False: (0.25 * 1 + 0.5 * 3) / (0.25 + 0.5); skipped: 0.5 * 1 + 0.5 * 3.  Every beta
    # alike, as pandas documents it (pandas 3.0 gives 4.0 for [1, nan, 5] at alpha = 0.5 only: its
    # com == 1 special case, pandas GH-66523)
    ([1.0, NAN, 3.0], 0.5, False, False, [1.0, 1.0, 1.75 / 0.75]),
    ([1.0, NAN, 3.0], 0.5, False, True, [1.0, 1.0, 2.0]),
    ([1.0, NAN, 5.0], 0.5, False, False, [1.0, 1.0, 2.75 / 0.75]),
    # leading NaNs give NaN, the first value starts the average
    ([NAN, NAN, 2.0, 4.0], 0.5, False, False, [NAN, NAN, 2.0, 3.0]),
    ([NAN, NAN, 2.0, 4.0], 0.5, True, False, [NAN, NAN, 2.0, 5.0 / 1.5]),
    # a trailing NaN repeats the last average; all NaN stays NaN
    ([2.0, 4.0, NAN, NAN], 0.5, True, False, [2.0, 5.0 / 1.5, 5.0 / 1.5, 5.0 / 1.5]),
    ([NAN, NAN], 0.5, True, False, [NAN, NAN]),
    # beta = 0: the series itself, NaNs filled forward
    ([3.0, NAN, -1.0], 0.0, True, False, [3.0, 3.0, -1.0]),
    ([3.0, NAN, -1.0], 0.0, False, True, [3.0, 3.0, -1.0]),
])
def test_pandas_forms_by_hand(series, beta, adjust, ignore_na, expected, impl):
    out = impl(np.array(series), beta=beta, adjust=adjust, ignore_na=ignore_na)
    np.testing.assert_allclose(out, expected, rtol=1e-15, equal_nan=True)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.999])
def test_adjust_true_without_nan_equals_the_default(beta, dtype, rng):
    """Without NaN pandas' adjust=True is the bias-corrected zero-started average."""
    x = rng.standard_normal((300, 3)).astype(dtype)
    assert_close(fastopt.ewa(x, beta=beta, adjust=True), fastopt.ewa(x, beta=beta))


@pytest.mark.parametrize("impl", [fastopt.ewa, reference.ewa], ids=["fastopt", "reference"])
def test_adjust_none_propagates_nan(impl):
    """The zero-started form has no NaN handling: a NaN makes every later value NaN."""
    out = impl(np.array([1.0, NAN, 2.0]), beta=0.5)
    np.testing.assert_array_equal(out, [1.0, NAN, NAN])
    out = impl(np.array([1.0, NAN, 2.0]), beta=0.5, bias_correction=False)
    np.testing.assert_array_equal(out, [0.5, NAN, NAN])


def test_adjust_accepts_numpy_bool(rng):
    x = rng.standard_normal(20)
    np.testing.assert_array_equal(fastopt.ewa(x, beta=0.5, adjust=np.True_),
                                  fastopt.ewa(x, beta=0.5, adjust=True))
    np.testing.assert_array_equal(fastopt.ewa(x, beta=0.5, adjust=np.False_, ignore_na=np.True_),
                                  fastopt.ewa(x, beta=0.5, adjust=False, ignore_na=True))


def test_ewa_and_reference_have_one_signature():
    assert inspect.signature(fastopt.ewa) == inspect.signature(reference.ewa)


def _series_with_nans(rng, shape, dtype, axis=0):
    """Normal values with about a third NaN, some leading-NaN and all-NaN series, and a few
    infinities (a +inf then -inf makes pandas' mean NaN, and the next value restarts it)."""
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.35] = np.nan
    if x.ndim > 1 and x.size:
        xs = np.moveaxis(x, axis, 0)        # a view, the steps first
        xs[:3, ..., 0] = np.nan             # a series that starts with NaNs
        if xs.shape[-1] > 1:
            xs[:, ..., -1] = np.nan         # a series of NaN only
    flat = x.reshape(-1)
    if flat.size > 20:
        flat[rng.choice(flat.size, 4, replace=False)] = [np.inf, -np.inf, np.inf, -np.inf]
    return x.astype(dtype)


@pytest.mark.parametrize("adjust, ignore_na", [(True, False), (True, True), (False, False),
                                               (False, True)])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, axis", SHAPES_AXES, ids=lambda v: str(v))
def test_pandas_forms_match_reference(shape, axis, dtype, adjust, ignore_na, rng):
    x = _series_with_nans(rng, shape, dtype, axis)
    x.flags.writeable = False
    snap = Snapshot(x)
    out = fastopt.ewa(x, beta=0.8, adjust=adjust, ignore_na=ignore_na, axis=axis)
    ref = reference.ewa(x, beta=0.8, adjust=adjust, ignore_na=ignore_na, axis=axis)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert_close(out, ref)
    snap.assert_unchanged()


@pytest.mark.parametrize("adjust, ignore_na", [(True, False), (False, True)])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", ["F", "strided", "reversed"])
def test_pandas_forms_non_contiguous_input_and_out(layout, dtype, adjust, ignore_na, rng):
    base = _series_with_nans(rng, (12, 10), dtype)
    x = {"F": np.asfortranarray(base), "strided": base[::2, ::3], "reversed": base[::-1]}[layout]
    for axis in (0, 1):
        expected = reference.ewa(x, beta=0.7, adjust=adjust, ignore_na=ignore_na, axis=axis)
        assert_close(fastopt.ewa(x, beta=0.7, adjust=adjust, ignore_na=ignore_na, axis=axis),
                     expected)
        out = np.full((x.shape[0] * 2, x.shape[1]), -7.0, dtype=dtype)[::2]
        res = fastopt.ewa(x, beta=0.7, adjust=adjust, ignore_na=ignore_na, axis=axis, out=out)
        assert res is out
        assert_close(out, expected)
        inplace = x.copy(order="K")
        fastopt.ewa(inplace, beta=0.7, adjust=adjust, ignore_na=ignore_na, axis=axis,
                    out=inplace)
        assert_close(inplace, expected)


@pytest.mark.parametrize("adjust, ignore_na", [(True, False), (False, True), (False, False)])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, axis", [((BIG_SIZES[1],), 0), ((40, 2000), 0), ((2000, 40), 1),
                                         ((300, 200), 1), ((200, 300), 0), ((7, 30, 200), 1)])
def test_pandas_forms_thread_counts_bitwise_equal(shape, axis, dtype, adjust, ignore_na, rng):
    x = _series_with_nans(rng, shape, dtype, axis)
    kw = dict(beta=0.9, adjust=adjust, ignore_na=ignore_na, axis=axis)
    with num_threads(1):
        one = fastopt.ewa(x, **kw)
    for n in (2, 3):
        with num_threads(n):
            assert_bitwise(fastopt.ewa(x, **kw), one, f"{n} threads")
    assert_close(one, reference.ewa(x, **kw))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_pandas_forms_threaded_small_arrays_bitwise_equal(dtype, serial_threshold, rng):
    """With the serial threshold at 0 even small arrays are split over threads."""
    serial_threshold(0)
    x = _series_with_nans(rng, (9, 5), dtype)
    for axis in (0, 1):
        with num_threads(1):
            one = fastopt.ewa(x, beta=0.6, adjust=True, axis=axis)
        with num_threads(2):
            assert_bitwise(fastopt.ewa(x, beta=0.6, adjust=True, axis=axis), one, f"axis {axis}")


@pytest.mark.parametrize("kw, exc, name", [
    (dict(adjust="yes"), TypeError, "adjust"),
    (dict(adjust=1), TypeError, "adjust"),
    (dict(adjust=0), TypeError, "adjust"),
    (dict(adjust=1.0), TypeError, "adjust"),
    (dict(adjust=[True]), TypeError, "adjust"),
    (dict(adjust=True, ignore_na=None), TypeError, "ignore_na"),
    (dict(adjust=True, ignore_na=1), TypeError, "ignore_na"),
    (dict(adjust=False, ignore_na="no"), TypeError, "ignore_na"),
    (dict(ignore_na=0), TypeError, "ignore_na"),
    (dict(adjust=True, bias_correction=False), ValueError, "bias_correction"),
    (dict(adjust=False, bias_correction=False), ValueError, "bias_correction"),
    (dict(adjust=None, ignore_na=True), ValueError, "ignore_na"),
    (dict(ignore_na=True, bias_correction=False), ValueError, "ignore_na"),
])
def test_pandas_form_argument_errors(kw, exc, name):
    x = np.array([1.0, NAN, 3.0, 4.0])
    out = np.full(4, -1.0)
    snap = Snapshot(x, out)
    with pytest.raises(exc, match=name):
        fastopt.ewa(x, beta=0.5, out=out, **kw)
    snap.assert_unchanged()
    with pytest.raises(exc, match=name):
        fastopt.ewa(x, beta=0.5, out=x, **kw)         # in place: the series is untouched too
    snap.assert_unchanged()
