"""The in-place kernels: parity with fastopt.reference (every element, every option combination,
float32 and float64, over 10 steps), awkward arrays, thread-count and ISA bitwise reproducibility,
multi-array kernels, and values derived by hand from the course's formulas."""

import numpy as np
import pytest

import fastopt
from fastopt import _dispatch, _registry, reference

from conftest import (
    BIG_SIZES,
    FLOAT_DTYPES,
    KERNELS,
    SMALL_SIZES,
    ArrayCase,
    array_names,
    assert_bitwise,
    assert_close,
    assert_dicts_bitwise,
    assert_dicts_close,
    call,
    call_multi,
    case_params,
    copy_arrays,
    grid_params,
    make_arrays,
    new_array,
    option_grid,
    set_input,
    some_params,
)


def all_on_params():
    """The last (every option on) combination of each kernel."""
    return [pytest.param(k, list(option_grid(k))[-1], id=k) for k in KERNELS]

STEPS = 10
LEVELS = _dispatch.available()


def _grads(rng, n, steps=STEPS):
    return [rng.standard_normal(n) for _ in range(steps)]


def _run(mod, kernel, opts, arrays, grads, *, n_threads=None, first_step=1):
    """Apply len(grads) steps of `kernel` from module `mod` to `arrays`, in place."""
    for t, g in enumerate(grads, start=first_step):
        set_input(arrays, kernel, opts, g)
        assert call(mod, kernel, arrays, opts, step=t, n_threads=n_threads) is None


def _parity(kernel, opts, case, rng, *, mod=fastopt, readonly_grad=False, steps=STEPS):
    """Run `steps` steps of the fast kernel and of the reference side by side, comparing every
    array after every step; return the fast arrays."""
    fast = make_arrays(kernel, opts, case, rng, readonly_grad=readonly_grad)
    ref = copy_arrays(fast)
    for t, g in enumerate(_grads(rng, case.n, steps), start=1):
        set_input([fast, ref], kernel, opts, g)
        grad_before = fast[array_names(kernel, opts)[1]].copy()
        assert call(mod, kernel, fast, opts, step=t) is None
        call(reference, kernel, ref, opts, step=t)
        assert_dicts_close(fast, ref, f"{kernel} {opts} step {t}")
        assert_bitwise(fast[array_names(kernel, opts)[1]], grad_before, "the input was written")
    return fast


# ------------------------------------------------------------------------------------------------
# 1. Parity with the reference, every option combination.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel, opts", grid_params())
def test_parity_every_option(kernel, opts, dtype, rng):
    _parity(kernel, opts, ArrayCase(1023, dtype, "offset"), rng)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel", KERNELS)
def test_parity_default_hyperparameters(kernel, dtype, rng):
    """The library defaults equal the reference's defaults (same signature, same meaning)."""
    opts = _registry.required_hypers(_registry.BY_NAME[kernel])
    _parity(kernel, opts, ArrayCase(257, dtype, "contiguous"), rng)


def test_option_grid_is_complete():
    """Guard against the grid silently shrinking: each option axis is really varied."""
    assert len(list(option_grid("sgd"))) == 16             # maximize, wd, decoupled, fully
    assert len(list(option_grid("momentum"))) == 48
    assert len(list(option_grid("rmsprop"))) == 64
    assert len(list(option_grid("adam"))) == 48            # ... amsgrad, 3 eps modes
    assert len(list(option_grid("radam"))) == 24


@pytest.mark.parametrize("kernel, axis, value", [
    ("sgd", "maximize", True), ("sgd", "weight_decay", 0.1),
    ("momentum", "maximize", True), ("momentum", "weight_decay", 0.1),
    ("momentum", "nesterov", True), ("momentum", "dampening", 0.0),
    ("momentum", "dampening", 0.3),
    ("rmsprop", "maximize", True), ("rmsprop", "weight_decay", 0.1),
    ("rmsprop", "centered", True), ("rmsprop", "momentum", 0.9),
    ("rmsprop", "eps_inside_sqrt", True),
    ("adam", "maximize", True), ("adam", "weight_decay", 0.1),
    ("adam", "amsgrad", True), ("adam", "eps_inside_sqrt", True),
])
def test_every_option_axis_is_visible_at_float32_tolerance(kernel, axis, value, rng):
    """The grid above can only catch a mixed-up option if flipping it changes the result by more
    than the float32 tolerance: check that for each axis (with the reference)."""
    base = next(iter(option_grid(kernel)))
    flipped = {**base, axis: value}
    if axis == "weight_decay" and kernel == "adam":
        flipped["decoupled_weight_decay"] = False
    case = ArrayCase(256, np.float32, "contiguous")
    start = make_arrays(kernel, flipped, case, rng)
    grads = _grads(rng, case.n)
    a, b = copy_arrays(start), copy_arrays(start)
    _run(reference, kernel, base, a, grads)
    _run(reference, kernel, flipped, b, grads)
    with pytest.raises(AssertionError):
        assert_close(a["param"], b["param"])


def test_adam_decoupled_decay_visible_at_float32_tolerance(rng):
    case = ArrayCase(256, np.float32, "contiguous")
    opts = dict(lr=0.01, weight_decay=0.1)
    start = make_arrays("adam", opts, case, rng)
    grads = _grads(rng, case.n)
    a, b = copy_arrays(start), copy_arrays(start)
    _run(reference, "adam", opts, a, grads)
    _run(reference, "adam", {**opts, "decoupled_weight_decay": True}, b, grads)
    with pytest.raises(AssertionError):
        assert_close(a["param"], b["param"])


@pytest.mark.parametrize("kernel, opts", [
    ("momentum", dict(lr=0.05, beta=0.8, dampening=None)),
    ("momentum", dict(lr=0.05, beta=0.8, dampening=0.0)),
    ("momentum", dict(lr=0.05, beta=0.8, dampening=1.0)),
    ("momentum", dict(lr=0.05, beta=0.0)),
    ("rmsprop", dict(lr=0.01, beta=0.0)),
    ("rmsprop", dict(lr=0.01, eps=0.0)),
    ("adam", dict(lr=0.01, beta1=0.0, beta2=0.0)),
    ("adam", dict(lr=0.01, eps=0.0, amsgrad=True)),
    ("adam", dict(lr=0.0, weight_decay=0.5, decoupled_weight_decay=True)),
    ("ewa", dict(beta=0.0)),
    ("sgd", dict(lr=0.0)),
])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_parity_edge_hyperparameters(kernel, opts, dtype, rng):
    _parity(kernel, opts, ArrayCase(33, dtype, "offset"), rng)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_adam_late_steps(dtype, rng):
    """Steps in the thousands: bias corrections near 1, computed in float64."""
    case = ArrayCase(64, dtype, "contiguous")
    opts = dict(lr=1e-3, amsgrad=True)
    fast = make_arrays("adam", opts, case, rng)
    ref = copy_arrays(fast)
    for t in (1, 2, 3, 1000, 1001, 10 ** 6, 2 ** 40):
        set_input([fast, ref], "adam", opts, rng.standard_normal(case.n))
        fastopt.adam_step(fast["param"], fast["grad"], fast["m"], fast["v"], step=t,
                          v_max=fast["v_max"], **opts)
        reference.adam_step(ref["param"], ref["grad"], ref["m"], ref["v"], step=t,
                            v_max=ref["v_max"], **opts)
        assert_dicts_close(fast, ref, f"step {t}")


# ------------------------------------------------------------------------------------------------
# 2. Awkward arrays: sizes, offsets, shapes, read-only inputs.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", case_params(sizes=SMALL_SIZES))
@pytest.mark.parametrize("kernel, opts", some_params())
def test_awkward_arrays(kernel, opts, case, rng):
    """Every size around the SIMD widths, every layout, a read-only input."""
    fast = _parity(kernel, opts, case, rng, readonly_grad=True)
    for a in fast.values():
        assert a.shape == case.shape and a.dtype == case.dtype


@pytest.mark.parametrize("case", case_params(sizes=BIG_SIZES[1:2], layouts=("offset", "3d")))
@pytest.mark.parametrize("kernel, opts", some_params())
def test_awkward_arrays_above_threshold(kernel, opts, case, rng):
    _parity(kernel, opts, case, rng, readonly_grad=True, steps=3)


@pytest.mark.parametrize("kernel, opts", some_params())
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_shape_is_treated_flat(kernel, opts, dtype, rng):
    """A (3, 5, 7) call equals the same call on the (105,) arrays, bitwise."""
    nd = make_arrays(kernel, opts, ArrayCase(105, dtype, "3d"), rng)
    assert nd[array_names(kernel, opts)[0]].shape == (3, 5, 7)
    flat = {k: a.reshape(-1).copy() for k, a in nd.items()}
    grads = _grads(rng, 105, 3)
    _run(fastopt, kernel, opts, nd, grads)
    _run(fastopt, kernel, opts, flat, grads)
    assert_dicts_bitwise({k: a.reshape(-1) for k, a in nd.items()}, flat)


@pytest.mark.parametrize("n", [17, 1023, BIG_SIZES[1]])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel, opts", some_params())
def test_alignment_does_not_change_results(kernel, opts, dtype, n, rng):
    """The same data at every element offset within a 64-byte line (the scalar peel takes a
    different number of elements each time) gives bitwise the same result."""
    per_line = 64 // np.dtype(dtype).itemsize
    base = make_arrays(kernel, opts, ArrayCase(n, dtype, "contiguous"), rng)
    grads = _grads(rng, n, 2)
    offsets = range(per_line) if n < BIG_SIZES[0] else (0, 1, per_line // 2 + 1, per_line - 1)
    results = []
    for off in offsets:
        arrays = {}
        for k, a in base.items():
            buf = np.empty(n + per_line, dtype=dtype)
            arrays[k] = buf[off:off + n]
            arrays[k][...] = a
        _run(fastopt, kernel, opts, arrays, grads)
        results.append(arrays)
    for off, r in zip(offsets[1:], results[1:]):
        assert_dicts_bitwise(r, results[0], f"offset {off}")


@pytest.mark.parametrize("kernel, opts", some_params())
def test_readonly_input_accepted_and_not_written(kernel, opts, rng):
    arrays = make_arrays(kernel, opts, ArrayCase(40, np.float64, "contiguous"), rng,
                         readonly_grad=True)
    name = array_names(kernel, opts)[1]
    before = arrays[name].copy()
    assert call(fastopt, kernel, arrays, opts) is None
    assert not arrays[name].flags.writeable
    assert_bitwise(arrays[name], before)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_grad_may_be_a_readonly_slice_of_a_larger_buffer(dtype, rng):
    """A read-only slice of a larger buffer (not owning its memory) works as grad."""
    buf = rng.standard_normal(50).astype(dtype)
    g = buf[3:23]
    g.flags.writeable = False
    p = rng.standard_normal(20).astype(dtype)
    expected = p.copy()
    reference.sgd_step(expected, g, lr=0.1)
    fastopt.sgd_step(p, g, lr=0.1)
    assert_close(p, expected)


def test_scalar_hyperparameters_accept_numpy_and_int_types(rng):
    p = rng.standard_normal(10)
    g = rng.standard_normal(10)
    m, v = np.zeros(10), np.zeros(10)
    pr, mr, vr = p.copy(), m.copy(), v.copy()
    fastopt.adam_step(p, g, m, v, step=np.int64(3), lr=np.float32(0.5), beta1=np.float64(0.5),
                      beta2=0, eps=1)
    reference.adam_step(pr, g, mr, vr, step=3, lr=float(np.float32(0.5)), beta1=0.5, beta2=0.0,
                        eps=1.0)
    assert_close(p, pr)
    assert_close(m, mr)
    assert_close(v, vr)


def test_public_api_is_the_dispatched_build():
    mod = _dispatch.kernels
    for name in ("sgd_step", "momentum_step", "rmsprop_step", "adam_step", "ewa_update"):
        assert getattr(fastopt, name) is getattr(mod, name)
        assert name in fastopt.__all__
        assert getattr(fastopt, name).__doc__
    assert _dispatch.ISA in LEVELS
    assert "baseline" in LEVELS


# ------------------------------------------------------------------------------------------------
# 3. Threads and ISA builds: bitwise reproducibility.
# ------------------------------------------------------------------------------------------------

THREAD_COUNTS = (1, 2, None, 3)


@pytest.mark.parametrize("layout", ["contiguous", "offset"])
@pytest.mark.parametrize("n", [BIG_SIZES[1], BIG_SIZES[3]])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel, opts", some_params())
def test_thread_counts_bitwise_equal(kernel, opts, dtype, n, layout, rng):
    case = ArrayCase(n, dtype, layout)
    start = make_arrays(kernel, opts, case, rng)
    grads = _grads(rng, n, 2)
    results = {}
    for nt in THREAD_COUNTS:
        arrays = copy_arrays(start, layout)
        _run(fastopt, kernel, opts, arrays, grads, n_threads=nt)
        results[nt] = arrays
    for nt in THREAD_COUNTS[1:]:
        assert_dicts_bitwise(results[nt], results[1], f"n_threads={nt} vs 1")


@pytest.mark.parametrize("case", case_params(sizes=SMALL_SIZES, layouts=("contiguous", "offset")))
@pytest.mark.parametrize("kernel, opts", all_on_params())
def test_thread_split_of_small_arrays_bitwise(kernel, opts, case, rng, serial_threshold):
    """With the serial threshold at 0 even a 7-element array is split over threads: every split
    (on 64-byte lines, possibly empty pieces) gives bitwise the serial result."""
    serial_threshold(0)
    start = make_arrays(kernel, opts, case, rng)
    grads = _grads(rng, case.n, 1)
    results = {}
    for nt in (1, 2, 3, 16):                   # 16: more threads than 64-byte lines
        arrays = copy_arrays(start, case.layout)
        _run(fastopt, kernel, opts, arrays, grads, n_threads=nt)
        results[nt] = arrays
    for nt in results:
        assert_dicts_bitwise(results[nt], results[1], f"n_threads={nt} vs 1")


def test_serial_threshold_setting_round_trips(serial_threshold):
    from fastopt import _config
    serial_threshold(123)
    assert _config.get_serial_threshold() == 123
    assert fastopt.show_config(print_=False)["serial_threshold"] == 123
    with pytest.raises(ValueError):
        serial_threshold(-1)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel, opts", grid_params())
def test_isa_levels_bitwise_equal_and_match_reference(kernel, opts, dtype, rng):
    case = ArrayCase(1023, dtype, "offset")
    start = make_arrays(kernel, opts, case, rng)
    grads = _grads(rng, case.n)
    ref = copy_arrays(start)
    _run(reference, kernel, opts, ref, grads)
    results = {}
    for level in LEVELS:
        arrays = copy_arrays(start, "offset")
        _run(_dispatch.load(level), kernel, opts, arrays, grads)
        assert_dicts_close(arrays, ref, f"ISA {level}")
        results[level] = arrays
    for level in LEVELS[1:]:
        assert_dicts_bitwise(results[level], results[LEVELS[0]], f"ISA {level} vs {LEVELS[0]}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel, opts", some_params())
def test_isa_levels_bitwise_equal_above_threshold(kernel, opts, dtype, rng):
    case = ArrayCase(BIG_SIZES[2], dtype, "offset")
    start = make_arrays(kernel, opts, case, rng)
    grads = _grads(rng, case.n, 2)
    results = {}
    for level in LEVELS:
        for nt in (1, 2):
            arrays = copy_arrays(start, "offset")
            _run(_dispatch.load(level), kernel, opts, arrays, grads, n_threads=nt)
            results[level, nt] = arrays
    first = results[LEVELS[0], 1]
    for key, r in results.items():
        assert_dicts_bitwise(r, first, f"{key} vs {(LEVELS[0], 1)}")


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_module_has_the_full_api(level):
    mod = _dispatch.load(level)
    for name in ("sgd_step", "momentum_step", "rmsprop_step", "adam_step", "ewa_update",
                 "sgd_step_multi", "momentum_step_multi", "rmsprop_step_multi",
                 "adam_step_multi", "ewa_update_multi", "same_traffic_step"):
        assert callable(getattr(mod, name)), name


def test_load_unknown_level_raises():
    with pytest.raises(ValueError, match="sse9"):
        _dispatch.load("sse9")


# ------------------------------------------------------------------------------------------------
# Multi-array kernels equal per-array single calls, bitwise.
# ------------------------------------------------------------------------------------------------

MULTI_SIZES = (0, 1, 17, 1023, 5, 8, BIG_SIZES[0] + 3, 9)


def _multi_setup(kernel, opts, rng, sizes=MULTI_SIZES, mixed=True):
    arrays = []
    for i, n in enumerate(sizes):
        dtype = (np.float32, np.float64)[i % 2] if mixed else np.float64
        layout = ("contiguous", "offset", "2d", "offset_2d")[i % 4]
        arrays.append(make_arrays(kernel, opts, ArrayCase(n, dtype, layout), rng))
    return arrays


def _multi_vs_single(mod, kernel, opts, rng, *, sizes=MULTI_SIZES, mixed=True, n_threads=None,
                     steps=2):
    multi = _multi_setup(kernel, opts, rng, sizes, mixed)
    single = [copy_arrays(a) for a in multi]
    for t in range(1, steps + 1):
        for a, s in zip(multi, single):
            g = rng.standard_normal(a[array_names(kernel, opts)[0]].size)
            set_input([a, s], kernel, opts, g)
        assert call_multi(mod, kernel, multi, opts, step=t, n_threads=n_threads) is None
        for s in single:
            call(mod, kernel, s, opts, step=t, n_threads=1)
        for i, (a, s) in enumerate(zip(multi, single)):
            assert_dicts_bitwise(a, s, f"array {i} step {t}")
    return multi, single


@pytest.mark.parametrize("kernel, opts", grid_params())
def test_multi_equals_single_calls(kernel, opts, rng):
    _multi_vs_single(_dispatch.kernels, kernel, opts, rng)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kernel, opts", some_params())
def test_multi_equals_single_calls_every_level(kernel, opts, level, rng):
    _multi_vs_single(_dispatch.load(level), kernel, opts, rng)


@pytest.mark.parametrize("n_threads", [1, 2, 3, None])
@pytest.mark.parametrize("kernel, opts", some_params())
def test_multi_thread_split_across_arrays(kernel, opts, n_threads, rng, serial_threshold):
    """Threads split the concatenated element range; pieces start and end inside arrays."""
    serial_threshold(0)
    _multi_vs_single(_dispatch.kernels, kernel, opts, rng, sizes=(3, 0, 40, 7, 100, 1, 65),
                     n_threads=n_threads)


@pytest.mark.parametrize("kernel, opts", some_params())
def test_multi_many_small_arrays_above_threshold(kernel, opts, rng):
    """Many small arrays whose total is above the threshold: the threaded path over segments."""
    sizes = tuple(int(x) for x in rng.integers(0, 700, size=150))
    assert sum(sizes) > BIG_SIZES[0]
    _multi_vs_single(_dispatch.kernels, kernel, opts, rng, sizes=sizes, n_threads=2, steps=2)


@pytest.mark.parametrize("kernel, opts", some_params())
def test_multi_matches_reference(kernel, opts, rng):
    """One more multi step, checked against the reference directly (not via single calls)."""
    multi, _ = _multi_vs_single(_dispatch.kernels, kernel, opts, rng, sizes=(5, 31), steps=1)
    before = [copy_arrays(a) for a in multi]
    for a in before:
        call(reference, kernel, a, opts, step=2)
    call_multi(_dispatch.kernels, kernel, multi, opts, step=2)
    for a, r in zip(multi, before):
        assert_dicts_close(a, r)


@pytest.mark.parametrize("kernel, opts", some_params())
def test_multi_empty_list_is_a_no_op(kernel, opts):
    assert call_multi(_dispatch.kernels, kernel, [], opts) is None


def test_multi_shared_readonly_grad_is_allowed(rng):
    """Two updates may read the same gradient (only written buffers must be disjoint)."""
    g = rng.standard_normal(64)
    g.flags.writeable = False
    p1, p2 = rng.standard_normal(64), rng.standard_normal(64)
    e1, e2 = p1.copy(), p2.copy()
    _dispatch.kernels.sgd_step_multi([p1, p2], [g, g], lr=0.1)
    fastopt.sgd_step(e1, g, lr=0.1)
    fastopt.sgd_step(e2, g, lr=0.1)
    assert_bitwise(p1, e1)
    assert_bitwise(p2, e2)


@pytest.mark.parametrize("n_state", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [0, 9, BIG_SIZES[1]])
def test_same_traffic_step(n_state, dtype, n, rng):
    """The benchmark reference kernel: x += value on the written array and every state array."""
    mod = _dispatch.kernels
    written = [new_array((n,), dtype, "offset", rng.standard_normal(n)) for _ in
               range(1 + n_state)]
    value = rng.standard_normal(n).astype(dtype)
    value.flags.writeable = False
    expected = [w + value for w in written]
    assert mod.same_traffic_step(written[0], value, *written[1:], n_threads=2) is None
    for w, e in zip(written, expected):
        assert_bitwise(w, e)


# ------------------------------------------------------------------------------------------------
# 4. Values derived by hand from the course's formulas.
# ------------------------------------------------------------------------------------------------

def test_sgd_moves_against_the_gradient():
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([2.0, -1.0, 0.0])
    fastopt.sgd_step(p, g, lr=0.1)
    # W - lr dW = [1 - 0.2, -2 + 0.1, 0.5]
    np.testing.assert_allclose(p, [0.8, -1.9, 0.5], rtol=1e-15)


def test_sgd_maximize_moves_along_the_gradient():
    p = np.array([1.0, -2.0])
    g = np.array([2.0, -1.0])
    fastopt.sgd_step(p, g, lr=0.1, maximize=True)
    np.testing.assert_allclose(p, [1.2, -2.1], rtol=1e-15)


def test_sgd_l2_weight_decay_adds_lambda_w_to_the_gradient():
    p = np.array([2.0, -4.0])
    g = np.array([1.0, 1.0])
    fastopt.sgd_step(p, g, lr=0.5, weight_decay=0.1)
    # g + 0.1 W = [1.2, 0.6]; W - 0.5 g = [2 - 0.6, -4 - 0.3]
    np.testing.assert_allclose(p, [1.4, -4.3], rtol=1e-15)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_sgd_float32_stays_float32(dtype):
    p = np.array([1.0], dtype=dtype)
    fastopt.sgd_step(p, np.array([1.0], dtype=dtype), lr=0.25)
    assert p.dtype == dtype
    assert p[0] == 0.75


def test_momentum_course_form_two_steps():
    """v = 0.9 v + 0.1 dW; W -= lr v  (dampening=None means dampening=beta)."""
    p = np.array([1.0, 1.0])
    v = np.zeros(2)
    g1, g2 = np.array([1.0, -2.0]), np.array([3.0, 0.0])
    fastopt.momentum_step(p, g1, v, lr=0.5)
    v1 = np.array([0.1, -0.2])                   # 0.1 * g1
    np.testing.assert_allclose(v, v1, rtol=1e-15)
    np.testing.assert_allclose(p, [1 - 0.05, 1 + 0.1], rtol=1e-15)
    fastopt.momentum_step(p, g2, v, lr=0.5)
    v2 = np.array([0.09 + 0.3, -0.18 + 0.0])     # 0.9 v1 + 0.1 g2
    np.testing.assert_allclose(v, v2, rtol=1e-15)
    np.testing.assert_allclose(p, [0.95 - 0.5 * 0.39, 1.1 + 0.5 * 0.18], rtol=1e-15)


def test_momentum_heavy_ball_and_nesterov_by_hand():
    # dampening=0: v = beta v + g
    p, v = np.array([1.0]), np.array([2.0])
    fastopt.momentum_step(p, np.array([1.0]), v, lr=0.1, beta=0.5, dampening=0.0)
    assert v[0] == pytest.approx(0.5 * 2 + 1)            # 2.0
    assert p[0] == pytest.approx(1 - 0.1 * 2.0)          # 0.8
    # dampening=0.3: v = beta v + 0.7 g
    p, v = np.array([1.0]), np.array([2.0])
    fastopt.momentum_step(p, np.array([1.0]), v, lr=0.1, beta=0.5, dampening=0.3)
    assert v[0] == pytest.approx(1.0 + 0.7)
    assert p[0] == pytest.approx(1 - 0.17)
    # nesterov: W -= lr (g + beta v_new)
    p, v = np.array([1.0]), np.array([2.0])
    fastopt.momentum_step(p, np.array([1.0]), v, lr=0.1, beta=0.5, dampening=0.0, nesterov=True)
    assert v[0] == pytest.approx(2.0)
    assert p[0] == pytest.approx(1 - 0.1 * (1.0 + 0.5 * 2.0))   # 0.8


def test_momentum_maximize_and_weight_decay_by_hand():
    p, v = np.array([2.0]), np.array([0.0])
    # g = -grad + wd * W = -1 + 0.5*2 = 0 -> nothing moves
    fastopt.momentum_step(p, np.array([1.0]), v, lr=0.1, weight_decay=0.5, maximize=True)
    assert v[0] == 0.0 and p[0] == 2.0
    p, v = np.array([2.0]), np.array([0.0])
    fastopt.momentum_step(p, np.array([1.0]), v, lr=0.1, beta=0.5, maximize=True)
    assert v[0] == pytest.approx(-0.5)           # 0.5 * (-1)
    assert p[0] == pytest.approx(2.05)


def test_rmsprop_first_step_by_hand():
    """S = (1 - beta) g^2; W -= lr g / (sqrt(S) + eps)."""
    beta, lr, eps = 0.9, 0.01, 1e-8
    g = np.array([0.5, -2.0, 3.0])
    p = np.array([1.0, 1.0, 1.0])
    s = np.zeros(3)
    fastopt.rmsprop_step(p, g, s, lr=lr, beta=beta, eps=eps)
    S = np.array([0.1 * 0.25, 0.1 * 4.0, 0.1 * 9.0])
    np.testing.assert_allclose(s, S, rtol=1e-15)
    step = lr * np.array([0.5, -2.0, 3.0]) / (np.sqrt(S) + eps)
    np.testing.assert_allclose(p, 1.0 - step, rtol=1e-15)
    # for |g| >> eps the first step is lr * sign(g) / sqrt(1 - beta)
    np.testing.assert_allclose(1.0 - p, lr * np.sign(g) / np.sqrt(0.1), rtol=1e-7)


def test_rmsprop_eps_inside_sqrt_by_hand():
    g, p, s = np.array([2.0]), np.array([0.0]), np.array([0.0])
    fastopt.rmsprop_step(p, g, s, lr=1.0, beta=0.75, eps=0.5, eps_inside_sqrt=True)
    # S = 0.25 * 4 = 1; W = 0 - 2 / sqrt(1 + 0.5)
    assert s[0] == 1.0
    assert p[0] == pytest.approx(-2.0 / np.sqrt(1.5), rel=1e-15)
    p, s = np.array([0.0]), np.array([0.0])
    fastopt.rmsprop_step(p, g, s, lr=1.0, beta=0.75, eps=0.5)
    assert p[0] == pytest.approx(-2.0 / 1.5, rel=1e-15)      # 2 / (sqrt(1) + 0.5)


def test_rmsprop_centered_and_momentum_by_hand():
    g, p = np.array([2.0]), np.array([0.0])
    s, ga, buf = np.array([0.0]), np.array([0.0]), np.array([1.0])
    fastopt.rmsprop_step(p, g, s, lr=0.1, beta=0.75, eps=0.0, centered=True, grad_avg=ga,
                         momentum=0.5, momentum_buf=buf)
    # S = 0.25*4 = 1; grad_avg = 0.25*2 = 0.5; denom = sqrt(1 - 0.25) = sqrt(0.75)
    # buf = 0.5*1 + 2/sqrt(0.75); W = 0 - 0.1 * buf
    assert s[0] == 1.0 and ga[0] == 0.5
    assert buf[0] == pytest.approx(0.5 + 2 / np.sqrt(0.75), rel=1e-15)
    assert p[0] == pytest.approx(-0.1 * (0.5 + 2 / np.sqrt(0.75)), rel=1e-15)


def test_adam_first_step_is_lr_times_sign():
    """m_hat = g and v_hat = g^2 on step 1, so the move is lr g / (|g| + eps) ~ lr sign(g)."""
    lr, eps = 0.001, 1e-8
    g = np.array([0.5, -3.0, 100.0, -1e-3])
    p = np.zeros(4)
    m, v = np.zeros(4), np.zeros(4)
    fastopt.adam_step(p, g, m, v, step=1, lr=lr, eps=eps)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(v, 0.001 * g ** 2, rtol=1e-12)
    np.testing.assert_allclose(p, -lr * g / (np.abs(g) + eps), rtol=1e-10)
    np.testing.assert_allclose(p, -lr * np.sign(g), rtol=1e-5)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_adam_first_step_lr_sign_float32_too(dtype):
    g = np.array([0.5, -3.0, 7.0], dtype=dtype)
    p = np.ones(3, dtype=dtype)
    m, v = np.zeros(3, dtype=dtype), np.zeros(3, dtype=dtype)
    fastopt.adam_step(p, g, m, v, step=1, lr=0.01)
    np.testing.assert_allclose(p, 1 - 0.01 * np.sign(g), rtol=1e-5)


def test_adam_second_step_bias_correction_by_hand():
    b1, b2, lr = 0.9, 0.999, 0.1
    g1, g2 = 1.0, 3.0
    p, m, v = np.array([0.0]), np.array([0.0]), np.array([0.0])
    fastopt.adam_step(p, np.array([g1]), m, v, step=1, lr=lr, eps=0.0)
    fastopt.adam_step(p, np.array([g2]), m, v, step=2, lr=lr, eps=0.0)
    m2 = 0.9 * 0.1 * g1 + 0.1 * g2                   # 0.39
    v2 = 0.999 * 0.001 * g1 ** 2 + 0.001 * g2 ** 2   # 0.009999
    assert m[0] == pytest.approx(m2, rel=1e-15)
    assert v[0] == pytest.approx(v2, rel=1e-14)
    p1 = -lr * 1.0                                   # first step: lr * sign(g1)
    p2 = p1 - lr * (m2 / (1 - b1 ** 2)) / np.sqrt(v2 / (1 - b2 ** 2))
    assert p[0] == pytest.approx(p2, rel=1e-13)


def test_adam_eps_inside_and_outside_by_hand():
    g = np.array([2.0])
    for inside, expected in ((False, -0.5 * 2 / (2 + 0.25)), (True, -0.5 * 2 / np.sqrt(4.25))):
        p, m, v = np.array([0.0]), np.array([0.0]), np.array([0.0])
        fastopt.adam_step(p, g, m, v, step=1, lr=0.5, eps=0.25, eps_inside_sqrt=inside)
        assert p[0] == pytest.approx(expected, rel=1e-14), inside


def test_adamw_decoupled_decay_multiplies_param():
    """grad 0, m = v = 0: only the decay acts, param *= 1 - lr wd."""
    lr, wd = 0.1, 0.25
    p = np.array([1.0, -2.0, 4.0])
    g = np.zeros(3)
    m, v = np.zeros(3), np.zeros(3)
    fastopt.adam_step(p, g, m, v, step=1, lr=lr, weight_decay=wd, decoupled_weight_decay=True)
    np.testing.assert_allclose(p, np.array([1.0, -2.0, 4.0]) * (1 - 0.025), rtol=1e-15)
    assert not m.any() and not v.any()


def test_adam_l2_weight_decay_is_added_to_the_gradient():
    """Coupled decay with grad 0: g = wd W, so the first step is still lr * sign(W)."""
    p = np.array([1.0, -2.0])
    m, v = np.zeros(2), np.zeros(2)
    fastopt.adam_step(p, np.zeros(2), m, v, step=1, lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(m, 0.1 * 0.5 * np.array([1.0, -2.0]), rtol=1e-15)
    np.testing.assert_allclose(p, [1.0 - 0.1, -2.0 + 0.1], rtol=1e-7)


def test_adam_maximize_flips_the_direction():
    p, m, v = np.array([0.0, 0.0]), np.zeros(2), np.zeros(2)
    fastopt.adam_step(p, np.array([2.0, -5.0]), m, v, step=1, lr=0.01, maximize=True)
    np.testing.assert_allclose(p, [0.01, -0.01], rtol=1e-6)


def test_adam_amsgrad_keeps_the_largest_v():
    b2 = 0.5
    p, m, v, vmax = np.array([0.0]), np.array([0.0]), np.array([0.0]), np.array([0.0])
    opts = dict(lr=0.1, beta1=0.0, beta2=b2, eps=0.0, amsgrad=True)
    fastopt.adam_step(p, np.array([4.0]), m, v, step=1, v_max=vmax, **opts)
    assert v[0] == 8.0 and vmax[0] == 8.0         # 0.5 * 16
    assert p[0] == pytest.approx(-0.1)            # 0.1 * 4 / sqrt(8 / 0.5) = 0.1
    fastopt.adam_step(p, np.array([1.0]), m, v, step=2, v_max=vmax, **opts)
    assert v[0] == 4.5 and vmax[0] == 8.0         # 0.5*8 + 0.5*1, max stays 8
    # beta1 = 0: m_hat = g = 1;  v_hat = vmax / (1 - 0.25) = 32/3
    assert p[0] == pytest.approx(-0.1 - 0.1 / np.sqrt(8.0 / 0.75), rel=1e-14)


def test_ewa_update_by_hand():
    avg = np.array([1.0, 2.0])
    fastopt.ewa_update(avg, np.array([3.0, 0.0]), beta=0.75)
    np.testing.assert_allclose(avg, [0.75 + 0.75, 1.5], rtol=1e-15)
