"""EMA of parameters (Polyak averaging): the course's exponentially weighted average on weights.

``update()`` keeps ``avg = beta avg + (1 - beta) param`` from zero in one native call;
``averaged()`` returns bias-corrected copies (``avg / (1 - beta**t)``); ``copy_to`` writes them into
parameter arrays after checking keys, shapes and dtypes.
"""

import numpy as np
import pytest

import fastopt
import fastopt.ema as ema_module


def make_params(rng, dtype=np.float64):
    return {"W1": rng.standard_normal((5, 4)).astype(dtype),
            "b1": rng.standard_normal((5, 1)).astype(dtype),
            "W2": rng.standard_normal((1, 5)).astype(np.float32),
            "b2": rng.standard_normal((1, 1)).astype(dtype)}


def tol(dtype):
    return dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("as_list", [False, True])
@pytest.mark.parametrize("beta", [0.9, 0.5, 0.98])
def test_ema_follows_the_course_ewa(beta, as_list, rng):
    params = make_params(rng)
    if as_list:
        keys = list(params)
        params = [params[k] for k in keys]
        items = list(enumerate(params))
    else:
        items = list(params.items())
    opt = fastopt.SGD(params, lr=0.1)
    ema = fastopt.EMA(params, beta=beta)
    avg = {k: np.zeros_like(p) for k, p in items}                      # v_0 = 0
    for t in range(1, 21):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for _, p in items]
        opt.step(grads if as_list else {k: g for (k, _), g in zip(items, grads)})
        ema.update()
        assert ema.count == t
        averaged = ema.averaged()
        raw = ema.averages
        assert type(averaged) is type(params)
        for k, p in items:
            avg[k] = beta * avg[k] + (1 - beta) * p                     # hand-written EWA
            np.testing.assert_allclose(raw[k], avg[k], **tol(p.dtype))
            np.testing.assert_allclose(averaged[k], avg[k] / (1 - beta ** t), **tol(p.dtype))
            assert averaged[k].dtype == p.dtype and averaged[k].shape == p.shape


def test_worked_case_beta_0_98():
    # v_1 = 0.02 theta_1, v_2 = 0.0196 theta_1 + 0.02 theta_2, 1 - 0.98**2 = 0.0396
    w = {"theta": np.array([10.0, -5.0])}
    ema = fastopt.EMA(w, beta=0.98)
    ema.update()
    np.testing.assert_allclose(ema.averages["theta"], [0.2, -0.1], rtol=1e-14)
    np.testing.assert_allclose(ema.averaged()["theta"], [10.0, -5.0], rtol=1e-14)
    theta1 = w["theta"].copy()
    w["theta"][...] = [20.0, 7.0]
    ema.update()
    v2 = 0.0196 * theta1 + 0.02 * w["theta"]
    np.testing.assert_allclose(ema.averages["theta"], v2, rtol=1e-14)
    np.testing.assert_allclose(ema.averaged()["theta"], v2 / 0.0396, rtol=1e-13)


def test_default_beta_and_first_average_is_the_parameter(rng):
    params = make_params(rng)
    ema = fastopt.EMA(params)
    assert ema.beta == 0.999
    ema.update()
    for k, p in params.items():
        np.testing.assert_allclose(ema.averaged()[k], p, **tol(p.dtype))


def test_docstring_example():
    w = {"W1": np.array([1.0, 2.0])}
    ema = fastopt.EMA(w, beta=0.9)
    ema.update()
    w["W1"] += 1.0
    ema.update()
    np.testing.assert_allclose(ema.averaged()["W1"], [1.52631579, 2.52631579], rtol=1e-8)


def test_update_is_one_native_call(rng, monkeypatch):
    params = {f"p{i}": rng.standard_normal(i + 1) for i in range(50)}
    ema = fastopt.EMA(params, beta=0.9)
    calls = []
    real = ema_module._k

    class Counting:
        def __getattr__(self, name):
            attr = getattr(real, name)
            if not callable(attr):
                return attr

            def wrapper(*a, **kw):
                calls.append(name)
                return attr(*a, **kw)
            return wrapper

    monkeypatch.setattr(ema_module, "_k", Counting())
    ema.update()
    assert calls == ["ewa_update_multi"]


def test_update_equals_loop_of_ewa_update_bitwise(rng):
    params = {f"p{i}": rng.standard_normal((i % 7) + 1).astype(np.float32 if i % 2 else
                                                                np.float64)
              for i in range(40)}
    params["big"] = rng.standard_normal(100_003)
    ema = fastopt.EMA(params, beta=0.9)
    loop = {k: np.zeros_like(p) for k, p in params.items()}
    for _ in range(3):
        for p in params.values():
            p += 0.1
        ema.update()
        for k, p in params.items():
            fastopt.ewa_update(loop[k], p, beta=0.9)
    for k in params:
        assert ema.averages[k].tobytes() == loop[k].tobytes(), k


def test_ema_reads_params_only(rng):
    params = make_params(rng)
    saved = {k: a.tobytes() for k, a in params.items()}
    ema = fastopt.EMA(params, beta=0.9)
    for _ in range(3):
        ema.update()
    assert {k: a.tobytes() for k, a in params.items()} == saved


def test_averaged_returns_copies(rng):
    params = make_params(rng)
    ema = fastopt.EMA(params, beta=0.9)
    ema.update()
    first = ema.averaged()
    for k, a in first.items():
        assert not np.shares_memory(a, params[k])
        assert not np.shares_memory(a, ema.averages[k])
        a[...] = 1e9
    second = ema.averaged()
    for k, p in params.items():
        np.testing.assert_allclose(second[k], p, **tol(p.dtype))


def test_averaged_before_update_raises(rng):
    ema = fastopt.EMA(make_params(rng), beta=0.9)
    with pytest.raises(ValueError, match=r"update\(\) has not been called"):
        ema.averaged()


# ------------------------------------------------------------------------------------------------
# copy_to.
# ------------------------------------------------------------------------------------------------

def trained_ema(rng, steps=5):
    params = make_params(rng)
    ema = fastopt.EMA(params, beta=0.8)
    opt = fastopt.Adam(params, lr=0.05)
    for _ in range(steps):
        opt.step({f"d{k}": rng.standard_normal(a.shape).astype(a.dtype)
                  for k, a in params.items()})
        ema.update()
    return params, ema


def test_copy_to_writes_the_averages(rng):
    params, ema = trained_ema(rng)
    saved = {k: a.copy() for k, a in params.items()}
    target = {k: np.zeros_like(params[k]) for k in reversed(list(params))}   # another key order
    ptrs = {k: a.ctypes.data for k, a in target.items()}
    ema.copy_to(target)
    expected = ema.averaged()
    for k in params:
        assert target[k].ctypes.data == ptrs[k]
        np.testing.assert_array_equal(target[k], expected[k])
        np.testing.assert_array_equal(params[k], saved[k])            # tracked params untouched
    # default: into the tracked parameters themselves
    ema.copy_to()
    for k in params:
        np.testing.assert_array_equal(params[k], expected[k])


def test_copy_to_list_params(rng):
    params = [rng.standard_normal(3), rng.standard_normal((2, 2)).astype(np.float32)]
    ema = fastopt.EMA(params, beta=0.5)
    ema.update()
    target = [np.zeros(3), np.zeros((2, 2), np.float32)]
    ema.copy_to(target)
    for t, p in zip(target, params):
        np.testing.assert_allclose(t, p, **tol(p.dtype))


def _missing(t):
    t.pop("b2")


def _extra(t):
    t["W9"] = np.zeros(3)


def _shape(t):
    t["b2"] = np.zeros((1, 2))


def _dtype(t):
    t["b2"] = np.zeros((1, 1), np.float32)


def _dtype_f32_param(t):
    t["W2"] = np.zeros((1, 5))


def _readonly(t):
    t["b2"].flags.writeable = False


def _int(t):
    t["b2"] = np.zeros((1, 1), np.int64)


@pytest.mark.parametrize("mutate", [_missing, _extra, _shape, _dtype, _dtype_f32_param, _readonly,
                                    _int])
def test_copy_to_validates_before_writing(mutate, rng):
    _, ema = trained_ema(rng)
    target = {k: np.full(a.shape, 7.0, a.dtype) for k, a in ema.averages.items()}
    mutate(target)
    saved = {k: a.tobytes() for k, a in target.items()}
    with pytest.raises((ValueError, TypeError)):
        ema.copy_to(target)
    assert {k: a.tobytes() for k, a in target.items()} == saved


@pytest.mark.parametrize("target", [
    pytest.param(lambda: [np.zeros(3)], id="list_for_dict"),
    pytest.param(lambda: np.zeros(3), id="array"),
    pytest.param(lambda: {}, id="empty"),
])
def test_copy_to_rejects_other_containers(target, rng):
    _, ema = trained_ema(rng)
    with pytest.raises((ValueError, TypeError)):
        ema.copy_to(target())


def test_copy_to_list_wrong_length_or_shape(rng):
    params = [rng.standard_normal(3), rng.standard_normal(4)]
    ema = fastopt.EMA(params, beta=0.5)
    ema.update()
    for target in ([np.zeros(3)], [np.zeros(3), np.zeros(4), np.zeros(5)],
                   [np.full(3, 7.0), np.full(5, 7.0)]):
        saved = [a.tobytes() for a in target]
        with pytest.raises(ValueError):
            ema.copy_to(target)
        assert [a.tobytes() for a in target] == saved


def test_copy_to_before_update_raises_and_writes_nothing(rng):
    params = make_params(rng)
    ema = fastopt.EMA(params, beta=0.9)
    target = {k: np.full(a.shape, 3.0, a.dtype) for k, a in params.items()}
    saved = {k: a.tobytes() for k, a in target.items()}
    with pytest.raises(ValueError):
        ema.copy_to(target)
    assert {k: a.tobytes() for k, a in target.items()} == saved
    psaved = {k: a.tobytes() for k, a in params.items()}
    with pytest.raises(ValueError):
        ema.copy_to()
    assert {k: a.tobytes() for k, a in params.items()} == psaved


# ------------------------------------------------------------------------------------------------
# Constructor validation.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta, exc, pattern", [
    (1.0, ValueError, r"beta must be in \[0, 1\)"),
    (-0.1, ValueError, r"beta must be in \[0, 1\)"),
    (float("nan"), ValueError, r"beta"),
    ("0.9", TypeError, r"beta must be a real number"),
    (True, TypeError, r"beta"),
])
def test_bad_beta(beta, exc, pattern, rng):
    with pytest.raises(exc, match=pattern):
        fastopt.EMA(make_params(rng), beta=beta)


@pytest.mark.parametrize("params, exc", [
    (np.ones(3), TypeError),
    ({}, ValueError),
    ([np.ones(3, np.int64)], TypeError),
    ([np.ones((3, 4))[:, ::2]], ValueError),
])
def test_bad_params(params, exc):
    with pytest.raises(exc):
        fastopt.EMA(params)


def test_beta_is_keyword_only(rng):
    with pytest.raises(TypeError):
        fastopt.EMA(make_params(rng), 0.9)
