"""Gradient clipping by global norm, the finiteness check, and skipped optimizer steps.

* ``clip_grad_norm`` returns the global L2 norm (== np.linalg.norm of the concatenation, 1e-12
  relative), scales in place by ``max_norm / (norm + eps)`` only when the norm exceeds max_norm,
  matches ``torch.nn.utils.clip_grad_norm_``, gives the same norm for 1 and 2 threads, and its
  error paths raise and change nothing;
* ``all_finite`` and ``opt.step(grads, skip_if_nonfinite=True)``: a NaN or Inf anywhere skips the
  step (nothing changes, False returned, ``skipped_steps`` counts).
"""


import numpy as np
import pytest
from conftest import num_threads, require_torch

import fastopt

SERIAL_THRESHOLD = fastopt.show_config(print_=False)["serial_threshold"]
SIZES = (0, 1, 7, 16, 17, 1023, 4099, SERIAL_THRESHOLD + 5, 3 * SERIAL_THRESHOLD + 13)


def mixed_arrays(rng, scale=1.0):
    out = []
    for i, n in enumerate(SIZES):
        dtype = np.float32 if i % 2 else np.float64
        shape = (n,) if i % 3 else ((n, 1) if n else (0, 2))
        out.append(np.asarray(scale * rng.standard_normal(shape), dtype=dtype))
    return out


def numpy_norm(arrays):
    return float(np.linalg.norm(np.concatenate([np.ravel(a).astype(np.float64)
                                                for a in arrays])))


# ------------------------------------------------------------------------------------------------
# The norm.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["list", "tuple", "dict", "course_dict"])
def test_norm_equals_numpy(form, rng):
    arrays = mixed_arrays(rng)
    expected = numpy_norm(arrays)
    saved = [a.copy() for a in arrays]
    if form == "list":
        grads = arrays
    elif form == "tuple":
        grads = tuple(arrays)
    elif form == "dict":
        grads = {f"g{i}": a for i, a in enumerate(arrays)}
    else:
        grads = {f"dW{i}": a for i, a in enumerate(arrays)}
    assert fastopt.global_norm(grads) == pytest.approx(expected, rel=1e-12)
    norm = fastopt.clip_grad_norm(grads, max_norm=10 * expected)     # no clipping
    assert isinstance(norm, float)
    assert norm == pytest.approx(expected, rel=1e-12)
    for a, s in zip(arrays, saved):
        assert a.tobytes() == s.tobytes(), "a gradient below max_norm was modified"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", SIZES)
def test_norm_of_single_array(n, dtype, rng):
    g = rng.standard_normal(n).astype(dtype)
    expected = float(np.linalg.norm(g.astype(np.float64)))
    assert fastopt.clip_grad_norm(g, max_norm=1e30) == pytest.approx(expected, rel=1e-12,
                                                                      abs=1e-300)


def test_norm_hand_value():
    g = {"dW1": np.array([3.0, 4.0]), "db1": np.array([[12.0]], np.float32)}
    assert fastopt.clip_grad_norm(g, max_norm=100.0) == 13.0
    assert fastopt.global_norm(g) == 13.0
    assert fastopt.clip_grad_norm([], max_norm=1.0) == 0.0


def test_norm_identical_for_1_and_2_threads(rng, serial_threshold):
    arrays = mixed_arrays(rng)
    with num_threads(1):
        n1 = fastopt.global_norm(arrays)
        c1 = [a.copy() for a in arrays]
        assert fastopt.clip_grad_norm(c1, max_norm=1.0) == n1
    with num_threads(2):
        n2 = fastopt.global_norm(arrays)
        c2 = [a.copy() for a in arrays]
        assert fastopt.clip_grad_norm(c2, max_norm=1.0) == n2
    assert n1 == n2                                        # bitwise, not approximately
    for a, b in zip(c1, c2):
        assert a.tobytes() == b.tobytes()
    serial_threshold(0)                                    # thread every call
    with num_threads(2):
        assert fastopt.global_norm(arrays) == n1


# ------------------------------------------------------------------------------------------------
# The clipping.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [1e-6, 0.0, 0.5])
def test_clip_scales_in_place_when_above(eps, rng):
    arrays = mixed_arrays(rng)
    saved = [a.copy() for a in arrays]
    ptrs = [a.ctypes.data for a in arrays]
    norm = numpy_norm(arrays)
    max_norm = norm / 4
    kwargs = {} if eps == 1e-6 else {"eps": eps}
    returned = fastopt.clip_grad_norm(arrays, max_norm, **kwargs)
    assert returned == pytest.approx(norm, rel=1e-12)     # the norm before clipping
    coef = max_norm / (returned + eps)
    for a, s, p in zip(arrays, saved, ptrs):
        assert a.ctypes.data == p                          # in place
        rtol = 1e-15 if a.dtype == np.float64 else 2e-7
        np.testing.assert_allclose(a, s * a.dtype.type(coef), rtol=rtol, atol=0)
    assert numpy_norm(arrays) == pytest.approx(max_norm * norm / (norm + eps), rel=1e-6)
    assert numpy_norm(arrays) <= max_norm * (1 + 1e-6)


def test_clip_hand_values():
    g = {"dW1": np.array([3.0, 4.0])}
    assert fastopt.clip_grad_norm(g, max_norm=1.0, eps=0.0) == 5.0
    np.testing.assert_allclose(g["dW1"], [0.6, 0.8], rtol=1e-15)
    g = np.array([3.0, 4.0])
    assert fastopt.clip_grad_norm(g, 1.0) == 5.0            # a single array, in place
    np.testing.assert_allclose(g, np.array([3.0, 4.0]) / (5 + 1e-6), rtol=1e-15)
    g = [np.array([3.0, 4.0], np.float32)]
    fastopt.clip_grad_norm(g, 2.5, eps=0.0)
    np.testing.assert_array_equal(g[0], np.array([1.5, 2.0], np.float32))
    assert g[0].dtype == np.float32


@pytest.mark.parametrize("max_norm_factor", [1.5, 10.0])
def test_no_change_when_below(max_norm_factor, rng):
    grads = {f"dW{i}": a for i, a in enumerate(mixed_arrays(rng))}
    saved = {k: a.tobytes() for k, a in grads.items()}
    norm = numpy_norm(list(grads.values()))
    fastopt.clip_grad_norm(grads, max_norm=max_norm_factor * norm)
    assert {k: a.tobytes() for k, a in grads.items()} == saved


def test_max_norm_zero_zeroes_gradients(rng):
    g = [rng.standard_normal(10)]
    fastopt.clip_grad_norm(g, 0.0)
    np.testing.assert_array_equal(g[0], 0.0)


def test_nonfinite_norm_leaves_gradients_unchanged():
    # documented: "A NaN or Inf norm leaves the gradients unchanged (see
    # Optimizer.step(..., skip_if_nonfinite=True))"
    for bad in (np.nan, np.inf):
        g = [np.array([1.0, bad, 2.0]), np.array([3.0, 4.0], np.float32)]
        saved = [a.tobytes() for a in g]
        norm = fastopt.clip_grad_norm(g, max_norm=1.0)
        assert not np.isfinite(norm)
        assert [a.tobytes() for a in g] == saved, f"clip_grad_norm changed gradients ({bad})"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("factor", [0.3, 3.0])
def test_clip_equals_torch(dtype, factor, rng):
    torch = require_torch()
    arrays = [a.astype(dtype) for a in mixed_arrays(rng)]
    norm = numpy_norm(arrays)
    max_norm = factor * norm
    tensors = []
    for a in arrays:
        t = torch.nn.Parameter(torch.zeros(a.shape, dtype=torch.from_numpy(a).dtype))
        t.grad = torch.from_numpy(a.copy())
        tensors.append(t)
    t_norm = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm))
    f_norm = fastopt.clip_grad_norm(arrays, max_norm)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    assert f_norm == pytest.approx(t_norm, rel=rtol)
    for a, t in zip(arrays, tensors):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=10 * rtol if dtype == np.float32
                                   else 1e-14, atol=1e-30)


# ------------------------------------------------------------------------------------------------
# Errors: raise and change nothing.
# ------------------------------------------------------------------------------------------------

def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("max_norm, kw, exc, pattern", [
    (-1.0, {}, ValueError, r"max_norm must be a finite number >= 0"),
    (float("nan"), {}, ValueError, r"max_norm"),
    (float("inf"), {}, ValueError, r"max_norm"),
    ("1.0", {}, TypeError, r"max_norm must be a real number"),
    (None, {}, TypeError, r"max_norm"),
    (1e-3, {"eps": -1e-6}, ValueError, r"eps must be a finite number >= 0"),
])
def test_bad_scalars_raise_and_change_nothing(max_norm, kw, exc, pattern, rng):
    grads = mixed_arrays(rng, scale=10.0)
    saved = [a.tobytes() for a in grads]
    with pytest.raises(exc, match=pattern):
        fastopt.clip_grad_norm(grads, max_norm, **kw)
    assert [a.tobytes() for a in grads] == saved


@pytest.mark.parametrize("last, exc, pattern", [
    pytest.param(lambda a: _readonly(a), ValueError, r"read-only", id="read_only"),
    pytest.param(lambda a: a.astype(np.int64), TypeError, r"float32, float64, float16 or bfloat16",
                 id="int64"),
    pytest.param(lambda a: a.astype(np.int32), TypeError, r"float32, float64, float16 or bfloat16",
                 id="int32"),
    pytest.param(lambda a: a.astype(np.longdouble), TypeError, r"float16 or bfloat16",
                 id="longdouble"),
    pytest.param(lambda a: a.tolist(), TypeError, r"numpy.ndarray", id="python_list"),
    pytest.param(lambda a: 3.0, TypeError, r"numpy.ndarray", id="float"),
    pytest.param(lambda a: None, TypeError, r"numpy.ndarray", id="none"),
    pytest.param(lambda a: np.repeat(a, 2)[::2], ValueError, r"contiguous", id="strided"),
])
def test_bad_arrays_raise_and_change_nothing(last, exc, pattern, rng):
    good = mixed_arrays(rng, scale=10.0)
    saved = [a.tobytes() for a in good]
    grads = {f"dW{i}": a for i, a in enumerate(good)}
    grads["dW_last"] = last(rng.standard_normal(9) * 10)
    with pytest.raises(exc, match=pattern):
        fastopt.clip_grad_norm(grads, max_norm=1e-3)
    assert [a.tobytes() for a in good] == saved


@pytest.mark.parametrize("bad", [3.0, "grads", None, {1, 2}, np.float64(2.0)])
def test_non_container_raises(bad):
    with pytest.raises(TypeError, match="grads must be an array, a dict of arrays or a list"):
        fastopt.clip_grad_norm(bad, 1.0)


def test_read_only_is_fine_for_global_norm_and_all_finite(rng):
    g = _readonly(rng.standard_normal(50))
    assert fastopt.global_norm([g]) == pytest.approx(np.linalg.norm(g), rel=1e-12)
    assert fastopt.all_finite([g]) is True


# ------------------------------------------------------------------------------------------------
# all_finite.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_all_finite_detects_nonfinite_anywhere(bad, where, dtype, rng):
    arrays = [a.astype(dtype) for a in mixed_arrays(rng)]
    assert fastopt.all_finite(arrays) is True
    if where == "first":
        arrays[1].flat[0] = bad
    elif where == "middle":
        arrays[5].flat[arrays[5].size // 2] = bad
    else:
        arrays[-1].flat[-1] = bad
    saved = [a.tobytes() for a in arrays]
    assert fastopt.all_finite(arrays) is False
    assert fastopt.all_finite({f"dW{i}": a for i, a in enumerate(arrays)}) is False
    assert fastopt.all_finite(tuple(arrays)) is False
    assert [a.tobytes() for a in arrays] == saved


def test_all_finite_single_array_and_empty():
    assert fastopt.all_finite(np.ones(3)) is True
    assert fastopt.all_finite(np.array([1.0, np.nan])) is False
    assert fastopt.all_finite(np.array([np.inf], np.float32)) is False
    assert fastopt.all_finite([]) is True
    assert fastopt.all_finite([np.zeros(0)]) is True
    # the largest finite values are finite
    assert fastopt.all_finite([np.array([np.finfo(np.float64).max]),
                               np.array([np.finfo(np.float32).max], np.float32)]) is True


# ------------------------------------------------------------------------------------------------
# opt.step(..., skip_if_nonfinite=True).
# ------------------------------------------------------------------------------------------------

CLASS_CASES = [
    pytest.param(fastopt.SGD, dict(lr=0.1), id="SGD"),
    pytest.param(fastopt.SGD, dict(lr=0.1, momentum=0.9, dampening=0.5), id="SGD-momentum"),
    pytest.param(fastopt.Momentum, dict(lr=0.1), id="Momentum"),
    pytest.param(fastopt.RMSprop, dict(lr=0.1, centered=True, momentum=0.5), id="RMSprop"),
    pytest.param(fastopt.Adam, dict(lr=0.1, amsgrad=True), id="Adam"),
    pytest.param(fastopt.AdamW, dict(lr=0.1), id="AdamW"),
]


def course_params(rng):
    return {"W1": rng.standard_normal((5, 4)), "b1": rng.standard_normal((5, 1)),
            "W2": rng.standard_normal((3, 5)).astype(np.float32),
            "b2": rng.standard_normal((SERIAL_THRESHOLD + 3, 1))}


def course_grads(params, rng):
    return {f"d{k}": rng.standard_normal(a.shape).astype(a.dtype) for k, a in params.items()}


def opt_snapshot(opt):
    p = [a.tobytes() for a in opt.params.values()]
    s = [a.tobytes() for k in opt.state for _, a in sorted(opt.state[k].items())]
    return p, s, opt.step_count


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("cls, kw", CLASS_CASES)
def test_step_skips_nonfinite_gradients(cls, kw, bad, rng):
    params = course_params(rng)
    opt = cls(params, **kw)
    assert opt.step(course_grads(params, rng), skip_if_nonfinite=True) is True
    assert (opt.step_count, opt.skipped_steps) == (1, 0)
    for key in ("dW1", "db2"):
        grads = course_grads(params, rng)
        grads[key].flat[-1] = bad
        before = opt_snapshot(opt)
        assert opt.step(grads, skip_if_nonfinite=True) is False
        assert opt_snapshot(opt) == before
    assert (opt.step_count, opt.skipped_steps) == (1, 2)
    assert opt.step(course_grads(params, rng), skip_if_nonfinite=True) is True
    assert (opt.step_count, opt.skipped_steps) == (2, 2)
    assert all(np.isfinite(a).all() for a in params.values())


def test_skipped_steps_do_not_count_as_steps(rng):
    # a skipped first step leaves SGD's first-step rule and Adam's bias correction for the next
    for cls, kw in [(fastopt.SGD, dict(lr=0.1, momentum=0.9, dampening=0.5)),
                    (fastopt.Adam, dict(lr=0.1))]:
        params = course_params(rng)
        twin = {k: a.copy() for k, a in params.items()}
        opt, ref = cls(params, **kw), cls(twin, **kw)
        bad = course_grads(params, rng)
        bad["dW1"][0, 0] = np.nan
        assert opt.step(bad, skip_if_nonfinite=True) is False
        for _ in range(2):
            g = course_grads(params, rng)
            opt.step(g, skip_if_nonfinite=True)
            ref.step(g)
        for k in params:
            assert params[k].tobytes() == twin[k].tobytes()


def test_step_without_skip_propagates_nan(rng):
    params = {"W": np.ones(4)}
    opt = fastopt.SGD(params, lr=0.1)
    assert opt.step({"dW": np.array([1.0, np.nan, 1.0, 1.0])}) is True
    assert np.isnan(params["W"][1]) and opt.step_count == 1 and opt.skipped_steps == 0
