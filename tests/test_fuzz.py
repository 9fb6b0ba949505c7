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


# ------------------------------------------------------------------------------------------------
# Single-array kernels: rmsprop_step, ewa_update, sgd_step.
# ------------------------------------------------------------------------------------------------

def _copies(xs):
    return [x.copy() if isinstance(x, np.ndarray) else x for x in xs]


THREADS = st.sampled_from([None, 1, 2, -1, 0, 2 ** 40])


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_rmsprop_step_fuzz(data):
    n = data.draw(st.sampled_from([0, 1, 9, 17]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, None]))
    p, g, sq = (data.draw(arrays(n, dtype)) for _ in range(3))
    grad_avg = data.draw(st.one_of(st.none(), arrays(n, dtype)))
    mbuf = data.draw(st.one_of(st.none(), arrays(n, dtype)))
    kw = dict(lr=data.draw(HYPER), beta=data.draw(HYPER), eps=data.draw(HYPER),
              eps_inside_sqrt=data.draw(FLAGS), weight_decay=data.draw(HYPER),
              centered=data.draw(FLAGS), momentum=data.draw(HYPER),
              maximize=data.draw(FLAGS), n_threads=data.draw(THREADS))
    ref = _copies([p, g, sq, grad_avg, mbuf])

    def expect():
        reference.rmsprop_step(*ref[:3], **{**kw, "grad_avg": ref[3], "momentum_buf": ref[4],
                                            "n_threads": None})
        out = [(p, ref[0]), (sq, ref[2])]
        for a, r in ((grad_avg, ref[3]), (mbuf, ref[4])):
            if isinstance(a, np.ndarray):
                out.append((a, r))
        return out

    _check_outcome(lambda: fastopt.rmsprop_step(p, g, sq, grad_avg=grad_avg, momentum_buf=mbuf,
                                                **kw),
                   [p, g, sq, grad_avg, mbuf], expect)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_sgd_step_and_ewa_update_fuzz(data):
    n = data.draw(st.sampled_from([0, 1, 8, 33]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, None]))
    p, g = (data.draw(arrays(n, dtype)) for _ in range(2))
    if isinstance(p, np.ndarray) and data.draw(st.booleans()):
        g = data.draw(st.sampled_from(["same", "view"]))
        g = p if g == "same" or p.ndim == 0 else p[::-1]   # aliasing the written array
    kw = dict(lr=data.draw(HYPER), weight_decay=data.draw(HYPER), maximize=data.draw(FLAGS),
              n_threads=data.draw(THREADS))
    ref = _copies([p, g])
    _check_outcome(lambda: fastopt.sgd_step(p, g, **kw), [p, g],
                   lambda: (reference.sgd_step(*ref, **{**kw, "n_threads": None}),
                            [(p, ref[0])])[1])
    avg, val = (data.draw(arrays(n, dtype)) for _ in range(2))
    kw = dict(beta=data.draw(HYPER), n_threads=data.draw(THREADS))
    ref = _copies([avg, val])
    _check_outcome(lambda: fastopt.ewa_update(avg, val, **kw), [avg, val],
                   lambda: (reference.ewa_update(*ref, beta=kw["beta"]), [(avg, ref[0])])[1])


# ------------------------------------------------------------------------------------------------
# The *_multi kernels, with lists, lengths, labels and overlapping views of one buffer.
# ------------------------------------------------------------------------------------------------

def _overlapping(draw, dtype):
    """Two views of ONE buffer that share elements (buf[0:8] and buf[4:12]) or not."""
    buf = np.linspace(-1, 1, 16).astype(dtype)
    kind = draw(st.sampled_from(["partial", "same", "reversed", "strided", "disjoint"]))
    if kind == "partial":
        return buf, buf[0:8], buf[4:12]
    if kind == "same":
        return buf, buf[0:8], buf[0:8]
    if kind == "reversed":
        return buf, buf[0:8], buf[8:0:-1]
    if kind == "strided":
        return buf, buf[0:16:2], buf[1:9]
    return buf, buf[0:8], buf[8:16]


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_multi_kernels_fuzz(data):
    K = fastopt._dispatch.kernels
    kernel = data.draw(st.sampled_from(["adam", "momentum", "rmsprop", "ewa"]))
    nstate = {"adam": 3, "momentum": 1, "rmsprop": 2, "ewa": 0}[kernel]
    k = data.draw(st.integers(0, 3))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    n = data.draw(st.sampled_from([1, 8, 17]))
    nlists = 2 + nstate
    lists = [[data.draw(arrays(n, dtype)) for _ in range(k)] for _ in range(nlists)]
    for li in range(1, nlists):                   # a list of another length
        if data.draw(st.integers(0, 9)) == 0:
            lists[li] = lists[li] + [data.draw(arrays(n, dtype))]
    buf = None
    overlap = k and data.draw(st.booleans())
    if overlap:                                   # param and a state (or grad) share memory
        buf, a, b = _overlapping(data.draw, dtype)
        li = data.draw(st.integers(1, nlists - 1))
        for x in lists:
            if len(x):
                x[0] = np.zeros(8, dtype)
        lists[0][0] = a
        lists[li][0] = b
    labels = data.draw(st.sampled_from([None, "same", ["a"], "abc", ["x", "x", "y"], [1, 2, 3]]))
    if labels == "same":
        labels = [f"p{i}" for i in range(k)]
    flat = [x for lst in lists for x in lst] + ([buf] if buf is not None else [])
    ref = [_copies(lst) for lst in lists]
    hyper = dict(lr=data.draw(st.one_of(st.just(0.1), HYPER)))
    if kernel == "adam":
        use_vmax = data.draw(st.booleans())
        kw = dict(step=data.draw(STEPS), **hyper, beta1=0.8, beta2=data.draw(
            st.one_of(st.just(0.95), HYPER)), eps=1e-3, amsgrad=use_vmax,
                  v_maxs=lists[4] if use_vmax else None, labels=labels)
        call = lambda: K.adam_step_multi(lists[0], lists[1], lists[2], lists[3], **kw)  # noqa

        def expect():
            out = []
            for i in range(k):
                vm = ref[4][i] if use_vmax else None
                reference.adam_step(ref[0][i], ref[1][i], ref[2][i], ref[3][i],
                                    step=kw["step"], lr=kw["lr"], beta1=0.8, beta2=kw["beta2"],
                                    eps=1e-3, amsgrad=use_vmax, v_max=vm)
                out += [(lists[0][i], ref[0][i]), (lists[2][i], ref[2][i]),
                        (lists[3][i], ref[3][i])]
            return out
    elif kernel == "momentum":
        kw = dict(**hyper, beta=data.draw(st.one_of(st.just(0.9), HYPER)),
                  nesterov=data.draw(FLAGS), labels=labels)
        call = lambda: K.momentum_step_multi(lists[0], lists[1], lists[2], **kw)  # noqa

        def expect():
            out = []
            for i in range(k):
                reference.momentum_step(ref[0][i], ref[1][i], ref[2][i], lr=kw["lr"],
                                        beta=kw["beta"], nesterov=kw["nesterov"])
                out += [(lists[0][i], ref[0][i]), (lists[2][i], ref[2][i])]
            return out
    elif kernel == "rmsprop":
        centered = data.draw(st.booleans())
        kw = dict(**hyper, beta=0.85, eps=1e-3, centered=centered,
                  grad_avgs=lists[3] if centered else None, labels=labels)
        call = lambda: K.rmsprop_step_multi(lists[0], lists[1], lists[2], **kw)  # noqa

        def expect():
            out = []
            for i in range(k):
                ga = ref[3][i] if centered else None
                reference.rmsprop_step(ref[0][i], ref[1][i], ref[2][i], lr=kw["lr"], beta=0.85,
                                       eps=1e-3, centered=centered, grad_avg=ga)
                out += [(lists[0][i], ref[0][i]), (lists[2][i], ref[2][i])]
                if centered:
                    out.append((lists[3][i], ref[3][i]))
            return out
    else:
        kw = dict(beta=data.draw(st.one_of(st.just(0.7), HYPER)), labels=labels)
        call = lambda: K.ewa_update_multi(lists[0], lists[1], **kw)  # noqa

        def expect():
            for i in range(k):
                reference.ewa_update(ref[0][i], ref[1][i], beta=kw["beta"])
            return [(lists[0][i], ref[0][i]) for i in range(k)]
    snap = _snapshot(flat)
    try:
        call()
    except (TypeError, ValueError):
        _unchanged(snap)
        return
    # success: the overlapping views must not both have been arguments that are used
    if overlap:
        used = {"adam": lambda: 4 + use_vmax, "momentum": lambda: 3,
                "rmsprop": lambda: 3 + centered, "ewa": lambda: 2}[kernel]()
        assert li >= used or np.shares_memory(lists[0][0], lists[li][0]) is False, \
            f"overlapping views accepted ({kernel}, list {li})"
    for actual, desired in expect():
        tol = 1e-5 if actual.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(actual, desired, rtol=tol, atol=tol, equal_nan=True)


# ------------------------------------------------------------------------------------------------
# EMA.
# ------------------------------------------------------------------------------------------------

def _params_container(draw, arrs):
    kind = draw(st.sampled_from(["dict", "list", "tuple", "array", "empty", "badkey"]))
    if kind == "dict":
        return {f"W{i}": a for i, a in enumerate(arrs)}
    if kind == "list":
        return list(arrs)
    if kind == "tuple":
        return tuple(arrs)
    if kind == "array":
        return arrs[0] if arrs else None
    if kind == "badkey":
        return {i: a for i, a in enumerate(arrs)}
    return {}


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_ema_fuzz(data):
    arrs = [data.draw(arrays(data.draw(st.sampled_from([1, 6])))) for _ in
            range(data.draw(st.integers(0, 2)))]
    params = _params_container(data.draw, arrs)
    beta = data.draw(st.one_of(st.just(0.9), HYPER))
    snap = _snapshot(arrs)
    try:
        ema = fastopt.EMA(params, beta=beta)
    except (TypeError, ValueError):
        _unchanged(snap)
        return
    _unchanged(snap)
    live = [a for a in arrs if isinstance(a, np.ndarray)]
    refs = [np.zeros(a.shape, np.float64) for a in live]
    count = 0
    for _ in range(data.draw(st.integers(0, 2))):
        snap = _snapshot(arrs + _raw(ema))
        pin = _snapshot(arrs)
        try:
            ema.update()
        except (TypeError, ValueError):
            _unchanged(snap)
            assert ema.count == count
            continue
        _unchanged(pin)                             # the parameters are only read
        count += 1
        for r, a in zip(refs, live):
            reference.ewa_update(r, a.astype(np.float64), beta=ema.beta)
        assert ema.count == count
    if count:
        got = ema.averaged()
        vals = list(got.values()) if isinstance(got, dict) else list(got)
        for v, r, a in zip(vals, refs, live):
            tol = 1e-5 if a.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(v, reference.debias(r, beta=ema.beta, step=count)
                                       .astype(v.dtype), rtol=tol, atol=tol, equal_nan=True)
    else:
        with pytest.raises(ValueError):
            ema.averaged()
    # copy_to a drawn destination
    dst_arrs = [data.draw(arrays(a.size if isinstance(a, np.ndarray) else 6)) for a in arrs]
    dst = data.draw(st.sampled_from([None, "like", "other"]))
    if dst == "like":
        dst = type(params)(zip(params, dst_arrs)) if isinstance(params, dict) else (
            list(dst_arrs) if isinstance(params, (list, tuple)) else
            (dst_arrs[0] if dst_arrs else None))
    elif dst == "other":
        dst = _params_container(data.draw, dst_arrs)
    objs = arrs + dst_arrs + list(_raw(ema))
    snap = _snapshot(objs)
    try:
        ema.copy_to(dst)
    except (TypeError, ValueError):
        _unchanged(snap)
        return
    assert count, "copy_to succeeded without any update"


def _raw(ema):
    av = ema.averages
    return list(av.values()) if isinstance(av, dict) else list(av)


# ------------------------------------------------------------------------------------------------
# The course functions (KeyError for a missing key is their documented contract).
# ------------------------------------------------------------------------------------------------

def _course_dict(draw, names, prefix, shapes):
    d = {}
    for k, shp in zip(names, shapes):
        kind = draw(st.sampled_from(["ok", "ok", "ok", "missing", "shape", "dtype", "f32",
                                     "fortran", "readonly", "list", "none"]))
        base = np.linspace(-1, 1, int(np.prod(shp))).reshape(shp)
        if kind == "missing":
            continue
        if kind == "shape":
            a = np.zeros((shp[0] + 1, shp[1]))
        elif kind == "dtype":
            a = base.astype(draw(st.sampled_from([np.int64, np.complex64, object, np.bool_])))
        elif kind == "f32":
            a = base.astype(np.float32)
        elif kind == "fortran":
            a = np.asfortranarray(base)
        elif kind == "readonly":
            a = base.copy()
            a.flags.writeable = False
        elif kind == "list":
            a = base.tolist()
        elif kind == "none":
            a = None
        else:
            a = base.copy()
        d[prefix + k] = a
    if draw(st.integers(0, 9)) == 0:
        d[prefix + "extra"] = np.zeros(3)
    return d


def _course_check(call, objs, expect):
    snap = _snapshot(objs)
    try:
        call()
    except (TypeError, ValueError, KeyError):
        _unchanged(snap)
        return False
    for actual, desired in expect():
        np.testing.assert_allclose(actual, desired, rtol=1e-5 if actual.dtype == np.float32
                                   else 1e-12, atol=1e-6, equal_nan=True)
    return True


def _course_names(params):
    # the layer names a well-formed dict holds (odd dicts are refused: see the regression test)
    L = len(params) // 2
    return [f"{c}{i}" for i in range(1, L + 1) for c in "Wb"]


# fuzz finding (fixed): the layer count was len(parameters) // 2, so {'b1': b} was a silent 0-layer
# no-op and {'W1', 'b1', 'W2'} silently skipped W2.
@pytest.mark.parametrize("params", [{"b1": np.zeros((3, 1))},
                                    {"W1": np.zeros((3, 2)), "b1": np.zeros((3, 1)),
                                     "W2": np.zeros((3, 2))}], ids=["only_b1", "odd_W2"])
def test_course_odd_parameters_dict_regression(params):
    grads = {"d" + k: np.ones_like(a) for k, a in params.items()}
    before = {k: a.copy() for k, a in params.items()}
    with pytest.raises(KeyError, match="parameters has no"):
        fastopt.course.update_parameters_with_gd(params, grads, 0.1)
    for k in params:                            # refused before anything was written
        np.testing.assert_array_equal(params[k], before[k])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_course_updates_fuzz(data):
    C = fastopt.course
    L = data.draw(st.integers(1, 2))
    names = [f"{c}{i}" for i in range(1, L + 1) for c in "Wb"]
    shapes = [(3, 2) if n[0] == "W" else (3, 1) for n in names]
    params = _course_dict(data.draw, names, "", shapes)
    if data.draw(st.integers(0, 9)) == 0:
        params = data.draw(st.sampled_from([[], None, {"X1": np.zeros(2)}, {}]))
    grads = _course_dict(data.draw, names, "d", shapes)
    v = _course_dict(data.draw, names, "d", shapes)
    s = _course_dict(data.draw, names, "d", shapes)
    if data.draw(st.integers(0, 9)) == 0:
        s = v                                       # the same dict twice
    if isinstance(params, dict) and params and data.draw(st.integers(0, 4)) == 0:
        k = next(iter(params))
        if isinstance(params[k], np.ndarray):
            grads["d" + k] = params[k]              # a gradient aliasing its parameter
    lr = data.draw(st.one_of(st.just(0.01), HYPER))
    vals = lambda d: [x for x in d.values()] if isinstance(d, dict) else []  # noqa
    objs = vals(params) + vals(grads) + vals(v) + vals(s)
    which = data.draw(st.sampled_from(["gd", "momentum", "adam"]))
    ref = {k: x.copy() if isinstance(x, np.ndarray) else x
           for k, x in (params.items() if isinstance(params, dict) else [])}
    # the course functions read array_like gradients (a list is read through np.asarray)
    rg = {k: np.array(x) if x is not None else x for k, x in grads.items()}
    rv = {k: x.copy() if isinstance(x, np.ndarray) else x for k, x in v.items()}
    rs = {k: x.copy() if isinstance(x, np.ndarray) else x for k, x in s.items()}
    if which == "gd":
        def expect():
            out = []
            for k in _course_names(params):
                reference.sgd_step(ref[k], rg["d" + k], lr=lr)
                out.append((params[k], ref[k]))
            return out
        _course_check(lambda: C.update_parameters_with_gd(params, grads, lr), objs, expect)
    elif which == "momentum":
        beta = data.draw(st.one_of(st.just(0.9), HYPER))

        def expect():
            out = []
            for k in _course_names(params):
                reference.momentum_step(ref[k], rg["d" + k], rv["d" + k], lr=lr, beta=beta)
                out += [(params[k], ref[k]), (v["d" + k], rv["d" + k])]
            return out
        _course_check(lambda: C.update_parameters_with_momentum(params, grads, v, beta, lr),
                      objs, expect)
    else:
        t = data.draw(STEPS)
        eps = data.draw(st.one_of(st.just(1e-8), HYPER))

        def expect():
            out = []
            for k in _course_names(params):
                reference.adam_step(ref[k], rg["d" + k], rv["d" + k], rs["d" + k], step=t,
                                    lr=lr, eps=eps)
                out += [(params[k], ref[k]), (v["d" + k], rv["d" + k]),
                        (s["d" + k], rs["d" + k])]
            return out
        _course_check(lambda: C.update_parameters_with_adam(params, grads, v, s, t, lr,
                                                            epsilon=eps), objs, expect)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_course_batches_and_schedules_fuzz(data):
    C = fastopt.course
    m = data.draw(st.sampled_from([0, 1, 5, 64, 65]))
    X = data.draw(st.sampled_from(["ok", "1d", "f32", "fortran", "list", "int"]))
    base = np.arange(3 * m, dtype=np.float64).reshape(3, m)
    X = {"ok": base, "1d": base.ravel(), "f32": base.astype(np.float32),
         "fortran": np.asfortranarray(base), "list": base.tolist(),
         "int": base.astype(np.int64)}[X]
    Y = data.draw(st.sampled_from(["ok", "flat", "short", "2row", "none"]))
    yb = (np.arange(m) % 2).reshape(1, m).astype(np.float64)
    Y = {"ok": yb, "flat": yb.ravel(), "short": yb[:, :max(m - 1, 0)], "2row": np.vstack([yb, yb]),
         "none": None}[Y]
    size = data.draw(st.sampled_from([1, 2, 64, 0, -1, True, 2.0, 10 ** 30, None]))
    snap = _snapshot([X, Y])
    try:
        batches = C.random_mini_batches(X, Y, size, seed=data.draw(st.sampled_from([0, 1, -1])))
    except (TypeError, ValueError):
        _unchanged(snap)
    else:
        _unchanged(snap)
        assert sum(bx.shape[1] for bx, _ in batches) == X.shape[1]
        assert not batches or sorted(np.concatenate([bx[0] for bx, _ in batches]).tolist()) == \
            sorted(np.asarray(X)[0].tolist())
    lr0 = data.draw(st.one_of(st.just(0.2), HYPER))
    epoch = data.draw(st.one_of(STEPS, st.integers(0, 5000)))
    rate = data.draw(st.one_of(st.just(1.0), HYPER))
    interval = data.draw(st.sampled_from([1, 1000, 0, -1, 2.0, None, True]))
    try:
        got = C.update_lr(lr0, epoch, rate)
    except (TypeError, ValueError):
        pass
    else:
        assert got == pytest.approx(float(lr0) / (1 + float(rate) * int(epoch)), rel=1e-12,
                                    nan_ok=True)
    try:
        got = C.schedule_lr_decay(lr0, epoch, rate, interval)
    except (TypeError, ValueError):
        pass
    else:
        assert got == pytest.approx(
            float(lr0) / (1 + float(rate) * (int(epoch) // int(interval))), rel=1e-12,
            nan_ok=True)


# ------------------------------------------------------------------------------------------------
# load_state on mutated checkpoints.
# ------------------------------------------------------------------------------------------------

import io            # noqa: E402
import os            # noqa: E402
import tempfile      # noqa: E402
import zipfile       # noqa: E402

from numpy.lib import format as _npformat   # noqa: E402

_OPT_KINDS = {
    "SGD": lambda p: fastopt.SGD(p, lr=0.1),
    "Momentum": lambda p: fastopt.Momentum(p, lr=0.1),
    "RMSprop": lambda p: fastopt.RMSprop(p, lr=0.01, centered=True, momentum=0.9),
    "Adam": lambda p: fastopt.Adam(p, lr=0.01, amsgrad=True),
    "AdamW": lambda p: fastopt.AdamW(p, lr=0.01),
}


def _fresh_params():
    return {"W": np.linspace(-1, 1, 6).reshape(2, 3), "b": np.zeros(3, np.float32)}


def _state_bytes(opt):
    return {k: {s: (a.shape, a.dtype, a.tobytes()) for s, a in slots.items()}
            for k, slots in opt.state.items()}


def _rewrite(blob, members):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return out.getvalue()


def _members(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return [(i.filename, zf.read(i.filename)) for i in zf.infolist()]


def _npy_with_header(data, shape, dtype, fortran):
    """`data` (a .npy member) with its header replaced (the payload kept)."""
    f = io.BytesIO(data)
    version = _npformat.read_magic(f)
    if version == (1, 0):
        _npformat.read_array_header_1_0(f)
    else:
        _npformat.read_array_header_2_0(f)
    payload = data[f.tell():]
    out = io.BytesIO()
    _npformat.write_array_header_2_0(out, {"descr": _npformat.dtype_to_descr(np.dtype(dtype)),
                                           "fortran_order": fortran, "shape": shape})
    return out.getvalue() + payload


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_load_state_mutated_fuzz(data):
    kind = data.draw(st.sampled_from(sorted(_OPT_KINDS)))
    src = _OPT_KINDS[kind](_fresh_params())
    src.step({"dW": np.full((2, 3), 0.5), "db": np.arange(3, dtype=np.float32)})
    src.step({"dW": np.full((2, 3), -0.25), "db": np.ones(3, np.float32)})
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ckpt.npz")
        fastopt.save_state(path, src)
        with open(path, "rb") as f:
            blob = f.read()
        mutation = data.draw(st.sampled_from(["none", "truncate", "flip", "swap", "header",
                                              "extra", "drop", "rename"]))
        members = _members(blob)
        names = [n for n, _ in members]
        if mutation == "truncate":
            blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
        elif mutation == "flip":
            i = data.draw(st.integers(0, len(blob) - 1))
            blob = blob[:i] + bytes([blob[i] ^ data.draw(st.integers(1, 255))]) + blob[i + 1:]
        elif mutation == "swap":
            i = data.draw(st.integers(0, len(members) - 1))
            j = data.draw(st.integers(0, len(members) - 1))
            contents = [c for _, c in members]
            contents[i], contents[j] = contents[j], contents[i]
            blob = _rewrite(blob, list(zip(names, contents)))
        elif mutation == "header":
            i = data.draw(st.integers(0, len(members) - 1))
            shape = data.draw(st.sampled_from([(), (3,), (2, 3), (3, 2), (6,), (0,), (2, 3, 1),
                                               (10 ** 12,), (2 ** 62, 4)]))
            dtype = data.draw(st.sampled_from(["<f8", "<f4", ">f8", "<i8", "|b1", "<c16",
                                               "<U8", "|O", "|S4", "<f2"]))
            fortran = data.draw(st.booleans())
            mem = list(members)
            mem[i] = (names[i], _npy_with_header(members[i][1], shape, dtype, fortran))
            blob = _rewrite(blob, mem)
        elif mutation == "extra":
            extra = data.draw(st.sampled_from(["extra.npy", "state/9/m.npy", "../evil.npy",
                                               names[0]]))
            buf = io.BytesIO()
            np.save(buf, np.zeros(3))
            blob = _rewrite(blob, members + [(extra, buf.getvalue())])
        elif mutation == "drop":
            i = data.draw(st.integers(0, len(members) - 1))
            blob = _rewrite(blob, members[:i] + members[i + 1:])
        elif mutation == "rename":
            i = data.draw(st.integers(0, len(members) - 1))
            mem = list(members)
            mem[i] = (names[i][:-4] + "x.npy", members[i][1])
            blob = _rewrite(blob, mem)
        with open(path, "wb") as f:
            f.write(blob)
        dst = _OPT_KINDS[kind](_fresh_params())
        params_before = {k: a.tobytes() for k, a in dst._params.like(dst._params.arrays).items()}
        before, count = _state_bytes(dst), dst.step_count
        try:
            fastopt.load_state(path, dst)
        except ValueError:
            assert _state_bytes(dst) == before, "state changed by a failed load"
            assert dst.step_count == count
            return
        # success: only if the content is still valid, and then exactly the file's content
        with np.load(path, allow_pickle=False) as z:
            keys = [str(k) for k in z["keys"]]
            for i, k in enumerate(keys):
                for slot, a in dst.state[k].items():
                    want = z[f"state/{i}/{slot}"]
                    assert a.shape == want.shape and a.dtype == want.dtype, (mutation, k, slot)
                    assert a.tobytes() == want.tobytes(), f"{mutation}: {k}/{slot} not the file's"
            assert dst.step_count == int(z["step_count"])
        if mutation in ("none", "extra", "drop", "rename"):
            assert mutation == "none", f"{mutation}: a wrong member list was accepted"
            assert _state_bytes(dst) == _state_bytes(src)
        assert {k: a.tobytes() for k, a in dst._params.like(dst._params.arrays).items()} == \
            params_before


# ------------------------------------------------------------------------------------------------
# memmaps, Fortran-order and negative-stride parameters: refused, or updated in place (never
# written through a copy).
# ------------------------------------------------------------------------------------------------

def _layout_param(draw, d, dtype, values):
    kind = draw(st.sampled_from(["memmap", "memmap_ro", "memmap_view", "fortran", "reversed",
                                 "reversed_2d", "strided", "transposed"]))
    n = values.size
    if kind.startswith("memmap"):
        # a distinct file each time (two mappings of ONE file alias at different addresses,
        # which no overlap check can see)
        fd, path = tempfile.mkstemp(dir=d, suffix=".dat")
        os.close(fd)
        mm = np.memmap(path, dtype=dtype, mode="w+", shape=(n + 2,))
        mm[:] = np.concatenate([[7.0], values, [7.0]]).astype(dtype)
        mm.flush()
        if kind == "memmap_ro":
            del mm
            return kind, np.memmap(path, dtype=dtype, mode="r", shape=(n + 2,))[1:n + 1], path
        if kind == "memmap_view":
            return kind, mm[1:n + 1], path
        del mm
        return kind, np.memmap(path, dtype=dtype, mode="r+", shape=(n,), offset=0), path
    base = values.astype(dtype)
    if kind == "fortran":
        return kind, np.asfortranarray(base.reshape(2, -1)), None
    if kind == "reversed":
        return kind, base.copy()[::-1], None
    if kind == "reversed_2d":
        return kind, base.reshape(2, -1).copy()[::-1, ::-1], None
    if kind == "strided":
        a = np.zeros(2 * n, dtype)
        a[::2] = base
        return kind, a[::2], None
    return kind, base.reshape(2, -1).copy().T, None


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_memmap_and_layouts_fuzz(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    values = np.linspace(-1, 1, 8)
    kernel = data.draw(st.sampled_from(["sgd", "momentum", "rmsprop", "adam", "ewa", "opt"]))
    with tempfile.TemporaryDirectory() as d:
        kind, p, path = _layout_param(data.draw, d, dtype, values)
        shape = p.shape
        g = (np.arange(p.size, dtype=dtype).reshape(shape) - 3) / 4
        if data.draw(st.booleans()):               # a state in the odd layout too
            _, s0, _ = _layout_param(data.draw, d, dtype, np.zeros(8))
            s0 = s0 if s0.shape == shape else np.zeros(shape, dtype)
        else:
            s0 = np.zeros(shape, dtype)
        s1 = np.zeros(shape, dtype)
        ref = [np.array(x, copy=True) for x in (p, g, s0, s1)]
        file_before = open(path, "rb").read() if path else None
        objs = [p, g, s0, s1]
        if kernel == "sgd":
            call = lambda: fastopt.sgd_step(p, g, lr=0.1)   # noqa
            expect = lambda: (reference.sgd_step(ref[0], ref[1], lr=0.1), [(p, ref[0])])[1]  # noqa
        elif kernel == "momentum":
            call = lambda: fastopt.momentum_step(p, g, s0, lr=0.1)  # noqa
            expect = lambda: (reference.momentum_step(ref[0], ref[1], ref[2], lr=0.1),  # noqa
                              [(p, ref[0]), (s0, ref[2])])[1]
        elif kernel == "rmsprop":
            call = lambda: fastopt.rmsprop_step(p, g, s0, lr=0.01, centered=True,  # noqa
                                                grad_avg=s1)
            expect = lambda: (reference.rmsprop_step(ref[0], ref[1], ref[2], lr=0.01,  # noqa
                                                     centered=True, grad_avg=ref[3]),
                              [(p, ref[0]), (s0, ref[2]), (s1, ref[3])])[1]
        elif kernel == "adam":
            call = lambda: fastopt.adam_step(p, g, s0, s1, step=1, lr=0.01)  # noqa
            expect = lambda: (reference.adam_step(ref[0], ref[1], ref[2], ref[3], step=1,  # noqa
                                                  lr=0.01),
                              [(p, ref[0]), (s0, ref[2]), (s1, ref[3])])[1]
        elif kernel == "ewa":
            call = lambda: fastopt.ewa_update(p, g, beta=0.7)  # noqa
            expect = lambda: (reference.ewa_update(ref[0], ref[1], beta=0.7),  # noqa
                              [(p, ref[0])])[1]
        else:
            holder = {}

            def call():
                opt = fastopt.SGD({"W": p}, lr=0.1)
                holder["opt"] = opt
                opt.step({"dW": g})
            expect = lambda: (reference.sgd_step(ref[0], ref[1], lr=0.1), [(p, ref[0])])[1]  # noqa
        ok = _check_outcome(call, objs, expect)
        if path:
            if isinstance(p, np.memmap) and p.flags.writeable:
                p.flush()
            after = open(path, "rb").read()
            if not ok:
                assert after == file_before, "a refused call changed the mapped file"
            else:                                  # the update reached the file itself
                full = np.frombuffer(after, dtype=dtype)
                off = 1 if kind == "memmap_view" else 0
                np.testing.assert_array_equal(full[off:off + p.size], np.asarray(p).ravel())
        del p
