"""Property-based fuzzing of the public entry points (hypothesis).

The invariant for every call: either it succeeds and matches ``fastopt.reference`` within float
tolerance, or it raises TypeError / ValueError and every array is bytewise unchanged.  Never a
crash, a hang, or another exception type.

Profiles (registered in conftest.py): ``ci`` (the default: derandomized, a bounded number of
examples, the whole file in well under 2 minutes) and ``long`` for local runs::

    python -m pytest tests/test_fuzz.py --hypothesis-profile=long
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastopt
from fastopt import reference

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.bool_, np.complex64, object]


@st.composite
def arrays(draw, n=None, dtype=None):
    """An array of one of many kinds: dtypes, sizes, 0-d, offsets, strides, Fortran order,
    read-only, or not an array at all."""
    kind = draw(st.sampled_from(["plain", "plain", "plain", "offset", "strided", "reversed",
                                 "fortran", "readonly", "zero_d", "list", "none", "scalar"]))
    dt = dtype if dtype is not None else draw(st.sampled_from(DTYPES))
    size = n if n is not None else draw(st.sampled_from([0, 1, 7, 16, 17, 1023]))
    values = np.linspace(-2, 2, max(size, 1) * 2 + 3)
    if kind == "list":
        return [float(v) for v in values[:size]]
    if kind == "none":
        return None
    if kind == "scalar":
        return draw(st.sampled_from([1.0, np.float64(1.0), 3]))
    if kind == "zero_d":
        return np.array(values[0]).astype(dt)
    if kind == "fortran":
        rows = 2 if size % 2 == 0 and size else 1
        return np.asfortranarray(values[:size].reshape(rows, -1).astype(dt)) if size else \
            np.zeros((0, 2), dt, order="F")
    if kind == "offset":
        return values[1:size + 1].astype(dt)[:]  # a fresh array; then take an odd-offset view
    if kind == "strided":
        return values[:2 * size].astype(dt)[::2]
    if kind == "reversed":
        return values[:size].astype(dt)[::-1]
    a = values[:size].astype(dt)
    if kind == "readonly":
        a.flags.writeable = False
    return a


def _snapshot(objs):
    return [(o, o.tobytes()) for o in objs if isinstance(o, np.ndarray) and o.dtype != object]


def _unchanged(snap):
    for o, b in snap:
        assert o.tobytes() == b, "an array was modified by a call that raised"


HYPER = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                  st.sampled_from([0, 1, -1, 10 ** 400, True, np.bool_(False), 1j,
                                   np.complex64(1), "0.1", None, np.float32(0.5), 2 ** 70]))
STEPS = st.sampled_from([0, -1, 1, 2, 2 ** 63, 2 ** 53, True, np.int64(3), 2.0, None, "1"])
FLAGS = st.sampled_from([False, True, np.bool_(True), "no", 0, 1, None])


def _check_outcome(call, objs, expect):
    """Run `call`; on success compare with `expect()` (a list of (actual, desired)) else check
    that the exception is TypeError/ValueError and nothing changed."""
    snap = _snapshot(objs)
    try:
        call()
    except (TypeError, ValueError):
        _unchanged(snap)
        return False
    for actual, desired in expect():
        tol = 1e-5 if actual.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(actual, desired, rtol=tol, atol=tol, equal_nan=True)
    return True


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_adam_step_fuzz(data):
    n = data.draw(st.sampled_from([0, 1, 9, 17]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, None]))
    p, g, m, v = (data.draw(arrays(n, dtype)) for _ in range(4))
    amsgrad = data.draw(FLAGS)
    v_max = data.draw(st.one_of(st.none(), arrays(n, dtype)))
    kw = dict(step=data.draw(STEPS), lr=data.draw(HYPER), beta1=data.draw(HYPER),
              eps=data.draw(HYPER), amsgrad=amsgrad, v_max=v_max,
              maximize=data.draw(FLAGS), n_threads=data.draw(st.sampled_from([None, 1, 2, -1,
                                                                              0, 2 ** 40])))
    ref = [x.copy() if isinstance(x, np.ndarray) else x for x in (p, g, m, v, v_max)]
    _check_outcome(
        lambda: fastopt.adam_step(p, g, m, v, **kw), [p, g, m, v, v_max],
        lambda: (reference.adam_step(*ref[:4], **{**kw, "v_max": ref[4], "n_threads": None}),
                 [(p, ref[0]), (m, ref[2]), (v, ref[3])])[1])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_sgd_and_momentum_fuzz(data):
    n = data.draw(st.sampled_from([0, 1, 8, 33]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, None]))
    p, g, vel = (data.draw(arrays(n, dtype)) for _ in range(3))
    kw = dict(lr=data.draw(HYPER), beta=data.draw(HYPER), nesterov=data.draw(FLAGS),
              weight_decay=data.draw(HYPER))
    ref = [x.copy() if isinstance(x, np.ndarray) else x for x in (p, g, vel)]
    _check_outcome(lambda: fastopt.momentum_step(p, g, vel, **kw), [p, g, vel],
                   lambda: (reference.momentum_step(*ref, **kw), [(p, ref[0]), (vel, ref[2])])[1])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_multi_fuzz(data):
    k = data.draw(st.integers(0, 3))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    params = [data.draw(arrays(5, dtype)) for _ in range(k)]
    grads = [data.draw(arrays(5, dtype)) for _ in range(data.draw(st.sampled_from([k, k + 1])))]
    if k and data.draw(st.booleans()):
        grads[0] = params[0]                       # aliasing a written array
    labels = data.draw(st.sampled_from([None, ["a"], ["a", "b", "c"], "abc"]))
    ref = [x.copy() if isinstance(x, np.ndarray) else x for x in params]
    refg = [x.copy() if isinstance(x, np.ndarray) else x for x in grads]
    _check_outcome(
        lambda: fastopt.kernels._k.sgd_step_multi(params, grads, lr=0.1, labels=labels),
        params + grads,
        lambda: [(a, r - 0.1 * gg) for a, r, gg in zip(params, ref, refg)])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_ewa_and_debias_fuzz(data):
    x = data.draw(arrays())
    beta = data.draw(HYPER)
    axis = data.draw(st.sampled_from([0, -1, 1, 5, True, 0.0]))
    use_out = data.draw(st.booleans())
    out = None
    if use_out and isinstance(x, np.ndarray):
        out = data.draw(st.sampled_from(["same", "fresh", "field"]))
        if out == "same":
            out = x
        elif out == "fresh":
            out = np.empty_like(x)
        else:
            s = np.zeros(x.shape, [("f", x.dtype if x.dtype != object else "f8"), ("g", "<i4")])
            out = s["f"]
    objs = [x, out]
    xin = x.astype(float) if (isinstance(x, np.ndarray)
                              and x.dtype in (np.float32, np.float64)) else None
    _check_outcome(lambda: fastopt.ewa(x, beta=beta, axis=axis, out=out), objs,
                   lambda: [])
    if (xin is not None and xin.ndim >= 1 and isinstance(beta, float) and 0 <= beta < 1
            and axis == 0 and out is None and xin.size):
        got = fastopt.ewa(x, beta=beta)
        tol = 1e-4 if x.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(got, reference.ewa(xin, beta=beta), rtol=tol, atol=tol)
    _check_outcome(lambda: fastopt.debias(x, beta=beta, step=data.draw(STEPS)), objs, lambda: [])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_optimizer_classes_fuzz(data):
    cls = data.draw(st.sampled_from([fastopt.SGD, fastopt.Momentum, fastopt.RMSprop,
                                     fastopt.Adam, fastopt.AdamW]))
    params = data.draw(st.sampled_from(["dict", "list", "array", "empty", "tuple"]))
    W = data.draw(arrays(6))
    if params == "dict":
        params = {"W": W}
    elif params == "list":
        params = [W]
    elif params == "tuple":
        params = (W,)
    elif params == "array":
        params = W
    else:
        params = {}
    kw = {"lr": data.draw(st.one_of(HYPER, st.just(lambda t: 0.1), st.just(lambda: 0.1)))}
    snap = _snapshot([W])
    try:
        opt = cls(params, **kw)
    except (TypeError, ValueError):
        _unchanged(snap)
        return
    g = data.draw(arrays(6))
    grads = {"dW": g} if isinstance(params, dict) else [g]
    try:
        opt.step(grads, skip_if_nonfinite=data.draw(FLAGS))
    except (TypeError, ValueError):
        _unchanged(snap)
        assert opt.step_count == 0


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_clip_and_minibatches_fuzz(data):
    g = data.draw(arrays())
    snap = _snapshot([g])
    try:
        fastopt.clip_grad_norm([g], max_norm=data.draw(HYPER))
    except (TypeError, ValueError):
        _unchanged(snap)
    X = data.draw(arrays())
    try:
        batches = list(fastopt.MiniBatches(X, batch_size=data.draw(st.sampled_from(
            [1, 3, 0, -1, True, 2.0, 10 ** 30])), axis=data.draw(st.sampled_from([0, -1, 1, 3])),
            seed=0))
    except (TypeError, ValueError):
        return
    total = sum(b.shape[0] if X.ndim == 1 else 0 for b in batches)
    if X.ndim == 1:
        assert total == X.shape[0]
