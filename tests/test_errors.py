"""Every error path raises TypeError or ValueError naming the argument, before any array is
written; NaN and Inf in the input propagate through the formula without an error."""

import re
import warnings

import numpy as np
import pytest

import fastopt
from fastopt import _dispatch, _registry, reference

from conftest import (
    BIG_SIZES,
    FLOAT_DTYPES,
    KERNELS,
    ArrayCase,
    Snapshot,
    array_names,
    assert_close,
    call,
    call_multi,
    copy_arrays,
    make_arrays,
)

N = 8
# Options that make every kernel take all of its state arrays.
# (From the registry: the example hyperparameters with every operand-bringing option on.)
FULL_OPTS = {r.name: _registry.with_all_operands(r) for r in _registry.RULES}


def multi_fn(kernel):
    return getattr(MULTI, _registry.BY_NAME[kernel].twin + "_multi")


def optional_kw(kernel, cols):
    """The multi-array keywords of the operands an option needs (plural names)."""
    return {op.plural: cols[op.name] for op in _registry.BY_NAME[kernel].operands
            if op.needs is not None}
MULTI = _dispatch.kernels


def plural(name):
    """The multi-array keyword for `name`: param -> params, velocity -> velocities."""
    return name[:-1] + "ies" if name.endswith("y") else name + "s"


def names_re(*names):
    """A regex matching any of `names` as a whole word (names may contain [ ])."""
    return "|".join(rf"(?<![\w\[]){re.escape(n)}(?![\w])" for n in names)


def expect_error(exc, names, fn, arrays):
    """fn() raises `exc` whose message names one of `names`, and no array in `arrays` changed."""
    snap = Snapshot(*arrays)
    with pytest.raises(exc, match=names_re(*names)):
        fn()
    snap.assert_unchanged()


def _arrays(kernel, rng, n=N, dtype=np.float64):
    opts = FULL_OPTS[kernel]
    arrays = make_arrays(kernel, opts, ArrayCase(n, dtype, "contiguous"), rng)
    for k in array_names(kernel, opts)[2:]:
        arrays[k][...] = np.abs(rng.standard_normal(n))   # non-zero state, so writes show
    return opts, arrays


def _pos_params(kernel_list=KERNELS, skip_input=False):
    out = []
    for k in kernel_list:
        for i, name in enumerate(array_names(k, FULL_OPTS[k])):
            if skip_input and i == 1:
                continue
            out.append(pytest.param(k, name, id=f"{k}-{name}"))
    return out


def _run_bad(kernel, rng, name, bad, exc, named=None):
    opts, arrays = _arrays(kernel, rng)
    keep = list(arrays.values())
    arrays[name] = bad
    expect_error(exc, named or [name], lambda: call(fastopt, kernel, arrays, opts, step=1),
                 keep + [bad])


# ------------------------------------------------------------------------------------------------
# Array errors, every kernel, every array position.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel, name", _pos_params())
def test_non_contiguous(kernel, name, rng):
    bad = rng.standard_normal(2 * N)[::2]
    assert not bad.flags.c_contiguous
    _run_bad(kernel, rng, name, bad, ValueError)


@pytest.mark.parametrize("kernel, name", _pos_params())
def test_non_contiguous_2d(kernel, name, rng):
    bad = np.asfortranarray(rng.standard_normal((2, N // 2)))
    opts, arrays = _arrays(kernel, rng)
    arrays = {k: a.reshape(2, N // 2) for k, a in arrays.items()}
    keep = list(arrays.values())
    arrays[name] = bad
    expect_error(ValueError, [name], lambda: call(fastopt, kernel, arrays, opts), keep + [bad])


@pytest.mark.parametrize("kernel, name", _pos_params(skip_input=True))
def test_read_only_written_array(kernel, name, rng):
    bad = rng.standard_normal(N)
    bad.flags.writeable = False
    _run_bad(kernel, rng, name, bad, ValueError)


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.int32, np.complex128, np.bool_,
                                   np.longdouble, object])
@pytest.mark.parametrize("kernel, name", _pos_params())
def test_unsupported_dtype(kernel, name, dtype, rng):
    bad = np.ones(N, dtype=dtype)
    _run_bad(kernel, rng, name, bad, TypeError)


@pytest.mark.parametrize("kernel, name", _pos_params())
def test_mixed_float_dtypes(kernel, name, rng):
    """One float32 array among float64 ones (for the lead array, the others are the odd ones
    out: the message names the pair)."""
    bad = rng.standard_normal(N).astype(np.float32)
    lead = array_names(kernel, FULL_OPTS[kernel])[0]
    others = [n for n in array_names(kernel, FULL_OPTS[kernel]) if n != lead]
    _run_bad(kernel, rng, name, bad, TypeError, named=[name] if name != lead else others)


@pytest.mark.parametrize("bad", [pytest.param(lambda: [0.0] * N, id="list"),
                                 pytest.param(lambda: tuple([0.0] * N), id="tuple"),
                                 pytest.param(lambda: None, id="None"),
                                 pytest.param(lambda: 1.0, id="float"),
                                 pytest.param(lambda: np.float64(1.0), id="numpy-scalar"),
                                 pytest.param(lambda: memoryview(np.zeros(N)), id="memoryview")])
@pytest.mark.parametrize("kernel, name", _pos_params())
def test_not_an_ndarray(kernel, name, bad, rng):
    value = bad()
    optional = name in ("grad_avg", "momentum_buf", "v_max")
    # None for a state the option needs is reported as that option's missing array
    _run_bad(kernel, rng, name, value, ValueError if value is None and optional else TypeError)


@pytest.mark.parametrize("shape", [(N + 1,), (N - 1,), (0,), (2, N // 2), (N, 1), (1, N)])
@pytest.mark.parametrize("kernel, name", _pos_params())
def test_shape_mismatch(kernel, name, shape, rng):
    bad = rng.standard_normal(shape)
    lead = array_names(kernel, FULL_OPTS[kernel])[0]
    others = [n for n in array_names(kernel, FULL_OPTS[kernel]) if n != lead]
    _run_bad(kernel, rng, name, bad, ValueError, named=[name] if name != lead else others)


@pytest.mark.parametrize("kernel, name", _pos_params())
def test_non_native_byte_order(kernel, name, rng):
    bad = rng.standard_normal(N).astype(np.dtype(np.float64).newbyteorder())
    lead = array_names(kernel, FULL_OPTS[kernel])[0]
    others = [n for n in array_names(kernel, FULL_OPTS[kernel]) if n != lead]
    # a swapped dtype differs from the native one: either message is fine, as long as it names
    _run_bad(kernel, rng, name, bad, TypeError, named=[name] + (others if name == lead else []))


@pytest.mark.parametrize("kernel, name", _pos_params())
def test_unaligned(kernel, name, rng):
    raw = np.zeros(N * 8 + 1, dtype=np.uint8)
    bad = raw[1:].view(np.float64)
    if bad.flags.aligned:
        pytest.skip("could not make an unaligned array")
    _run_bad(kernel, rng, name, bad, ValueError)


def _overlap_pairs():
    out = []
    for k in KERNELS:
        names = array_names(k, FULL_OPTS[k])
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                out.append(pytest.param(k, names[i], names[j], id=f"{k}-{names[i]}-{names[j]}"))
    return out


@pytest.mark.parametrize("kernel, a, b", _overlap_pairs())
def test_same_array_twice(kernel, a, b, rng):
    opts, arrays = _arrays(kernel, rng)
    keep = list(arrays.values())
    arrays[b] = arrays[a]
    expect_error(ValueError, [a, b], lambda: call(fastopt, kernel, arrays, opts), keep)


@pytest.mark.parametrize("shift", [1, N - 1, 0])
@pytest.mark.parametrize("kernel, a, b", _overlap_pairs())
def test_overlapping_slices(kernel, a, b, shift, rng):
    """Two views of one buffer that overlap (shift 0: the same memory, different objects)."""
    opts, arrays = _arrays(kernel, rng)
    buf = rng.standard_normal(N + shift)
    arrays[a], arrays[b] = buf[:N], buf[shift:shift + N]
    keep = list(arrays.values()) + [buf]
    expect_error(ValueError, [a, b], lambda: call(fastopt, kernel, arrays, opts), keep)


@pytest.mark.parametrize("kernel", KERNELS)
def test_adjacent_slices_of_one_buffer_are_fine(kernel, rng):
    """Disjoint views of one buffer do not overlap: no error, and the result is the reference."""
    opts = FULL_OPTS[kernel]
    names = array_names(kernel, opts)
    buf = np.zeros(N * len(names) + 1)[1:]
    arrays = {name: buf[i * N:(i + 1) * N] for i, name in enumerate(names)}
    arrays[names[0]][...] = rng.standard_normal(N)
    arrays[names[1]][...] = rng.standard_normal(N)
    ref = copy_arrays(arrays)
    call(fastopt, kernel, arrays, opts)
    call(reference, kernel, ref, opts)
    for k in names:
        assert_close(arrays[k], ref[k])


@pytest.mark.parametrize("kernel", KERNELS)
def test_overlap_check_ignores_empty_arrays(kernel, rng):
    """Zero-size arrays hold no memory: two empty views of one buffer are not an overlap."""
    opts = FULL_OPTS[kernel]
    buf = np.zeros(4)
    arrays = {name: buf[1:1] for name in array_names(kernel, opts)}
    assert call(fastopt, kernel, arrays, opts) is None


# ------------------------------------------------------------------------------------------------
# Hyperparameter errors.
# ------------------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD_NONNEG = [(-0.1, ValueError), (NAN, ValueError), (INF, ValueError), (-INF, ValueError),
              ("0.1", TypeError), (None, TypeError), (True, TypeError), (1 + 2j, TypeError),
              (np.array([0.1, 0.2]), TypeError)]
BAD_BETA = [(1.0, ValueError), (-0.1, ValueError), (NAN, ValueError), (1.5, ValueError),
            (INF, ValueError), (-1e-300, ValueError), (np.nextafter(1.0, 2.0), ValueError),
            ("0.9", TypeError), (None, TypeError), (False, TypeError)]
BAD_STEP = [(0, ValueError), (-1, ValueError), (-(2 ** 40), ValueError), (1.0, TypeError),
            (True, TypeError), (False, TypeError), ("1", TypeError), (None, TypeError),
            (np.float64(2.0), TypeError), (1.5, TypeError)]
BAD_THREADS = [(0, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError),
               (2.0, TypeError)]


def _hyper_cases():
    out = []
    for k in KERNELS:
        r = _registry.BY_NAME[k]
        kinds = {hp.name: hp.kind for hp in r.hypers if hp.kind != "bool"}
        keys = list(kinds) + (["step"] if r.stepped else []) + ["n_threads"]
        for key in keys:
            if kinds.get(key) == "beta":
                bad = BAD_BETA
            elif key == "step":
                bad = BAD_STEP
            elif key == "n_threads":
                bad = BAD_THREADS
            elif kinds.get(key) == "unit_or_none":
                bad = [(-0.1, ValueError), (1.1, ValueError), (NAN, ValueError),
                       ("0", TypeError), (True, TypeError)]
            elif kinds.get(key) == "unit":
                bad = [(-0.1, ValueError), (1.1, ValueError), (NAN, ValueError),
                       ("0", TypeError), (True, TypeError), (None, TypeError)]
            elif kinds.get(key) == "eps_mode":
                bad = [("Torch", ValueError), ("", ValueError), ("outside", ValueError),
                       (None, TypeError), (True, TypeError), (0, TypeError),
                       (b"torch", TypeError)]
            else:
                bad = BAD_NONNEG
            for value, exc in bad:
                out.append(pytest.param(k, key, value, exc, id=f"{k}-{key}={value!r}"))
    return out


@pytest.mark.parametrize("kernel, key, value, exc", _hyper_cases())
def test_bad_hyperparameter(kernel, key, value, exc, rng):
    opts, arrays = _arrays(kernel, rng)
    o = dict(opts)
    step = 1
    if key == "step":
        step = value
    else:
        o[key] = value
    for op in _registry.BY_NAME[kernel].operands:
        if op.needs and _registry.option(_registry.BY_NAME[kernel], op.needs).keyword == key:
            arrays.pop(op.name)   # only the keyword is wrong, not its operand's presence
    expect_error(exc, [key], lambda: call(fastopt, kernel, arrays, o, step=step),
                 list(arrays.values()))


OPTIONAL_STATES = tuple(op.name for r in _registry.RULES for op in r.operands
                        if op.needs is not None)


@pytest.mark.parametrize("kernel", KERNELS)
def test_unknown_keyword_and_positional_hyperparameters_rejected(kernel, rng):
    opts, arrays = _arrays(kernel, rng)
    snap = Snapshot(*arrays.values())
    with pytest.raises(TypeError):
        call(fastopt, kernel, arrays, {**opts, "learning_rate": 0.1})
    positional = [arrays[n] for n in array_names(kernel, opts) if n not in OPTIONAL_STATES]
    fn = getattr(fastopt, _registry.BY_NAME[kernel].twin)
    with pytest.raises(TypeError):          # hyperparameters are keyword-only
        fn(*positional, 0.1)
    snap.assert_unchanged()


def test_adam_requires_step(rng):
    opts, a = _arrays("adam", rng)
    with pytest.raises(TypeError, match="step"):
        fastopt.adam_step(a["param"], a["grad"], a["m"], a["v"], lr=0.1)


def test_momentum_requires_lr(rng):
    _, a = _arrays("momentum", rng)
    with pytest.raises(TypeError, match="lr"):
        fastopt.momentum_step(a["param"], a["grad"], a["velocity"])


# ------------------------------------------------------------------------------------------------
# Optional state arrays: present exactly when the option needs them.
# ------------------------------------------------------------------------------------------------

def test_amsgrad_needs_v_max(rng):
    _, a = _arrays("adam", rng)
    expect_error(ValueError, ["v_max"],
                 lambda: fastopt.adam_step(a["param"], a["grad"], a["m"], a["v"], step=1,
                                           amsgrad=True), list(a.values()))


def test_v_max_without_amsgrad(rng):
    _, a = _arrays("adam", rng)
    expect_error(ValueError, ["v_max"],
                 lambda: fastopt.adam_step(a["param"], a["grad"], a["m"], a["v"], step=1,
                                           v_max=a["v_max"]), list(a.values()))


def test_centered_needs_grad_avg(rng):
    _, a = _arrays("rmsprop", rng)
    expect_error(ValueError, ["grad_avg"],
                 lambda: fastopt.rmsprop_step(a["param"], a["grad"], a["sq_avg"], lr=0.1,
                                              centered=True), list(a.values()))


def test_grad_avg_without_centered(rng):
    _, a = _arrays("rmsprop", rng)
    expect_error(ValueError, ["grad_avg"],
                 lambda: fastopt.rmsprop_step(a["param"], a["grad"], a["sq_avg"], lr=0.1,
                                              grad_avg=a["grad_avg"]), list(a.values()))


def test_momentum_needs_momentum_buf(rng):
    _, a = _arrays("rmsprop", rng)
    expect_error(ValueError, ["momentum_buf"],
                 lambda: fastopt.rmsprop_step(a["param"], a["grad"], a["sq_avg"], lr=0.1,
                                              momentum=0.5), list(a.values()))


def test_momentum_buf_without_momentum(rng):
    _, a = _arrays("rmsprop", rng)
    expect_error(ValueError, ["momentum_buf"],
                 lambda: fastopt.rmsprop_step(a["param"], a["grad"], a["sq_avg"], lr=0.1,
                                              momentum_buf=a["momentum_buf"]), list(a.values()))


@pytest.mark.parametrize("kernel", KERNELS)
def test_array_errors_checked_before_any_write_even_for_later_arrays(kernel, rng):
    """The last array is the bad one: the earlier (valid, written) arrays must still be intact."""
    opts, arrays = _arrays(kernel, rng)
    last = array_names(kernel, opts)[-1]
    bad = rng.standard_normal(2 * N)[::2]
    keep = list(arrays.values())
    arrays[last] = bad
    expect_error(ValueError, [last], lambda: call(fastopt, kernel, arrays, opts), keep + [bad])


@pytest.mark.parametrize("kernel", KERNELS)
def test_bad_threads_checked_before_any_write_above_threshold(kernel, rng):
    opts, arrays = _arrays(kernel, rng, n=BIG_SIZES[1])
    expect_error(ValueError, ["n_threads"],
                 lambda: call(fastopt, kernel, arrays, opts, n_threads=0), list(arrays.values()))


# ------------------------------------------------------------------------------------------------
# Multi-array kernels.
# ------------------------------------------------------------------------------------------------

def _multi_arrays(kernel, rng, sizes=(N, N + 3, 5)):
    opts = FULL_OPTS[kernel]
    lst = []
    for n in sizes:
        lst.append(_arrays(kernel, rng, n=n)[1])
    return opts, lst


def _all(lst):
    return [a for d in lst for a in d.values() if isinstance(a, np.ndarray)]


def _multi_call(kernel, lst, opts, **kw):
    return lambda: call_multi(MULTI, kernel, lst, opts, **kw)


@pytest.mark.parametrize("kernel, name", _pos_params())
def test_multi_length_mismatch(kernel, name, rng):
    opts, lst = _multi_arrays(kernel, rng)
    names = array_names(kernel, opts)
    cols = {n: [d[n] for d in lst] for n in names}
    cols[name] = cols[name][:-1]
    multi = multi_fn(kernel)
    args = [cols[n] for n in names if n not in OPTIONAL_STATES]
    kw = dict(opts, step=1, **optional_kw(kernel, cols))
    lead = names[0]
    expect_error(ValueError, [plural(name)] + ([plural(n) for n in names[1:]] if name == lead
                                               else []),
                 lambda: multi(*args, **kw), _all(lst))


@pytest.mark.parametrize("kernel, name", _pos_params())
def test_multi_bad_array_at_a_later_index(kernel, name, rng):
    """A non-contiguous array at index 1: error names it as name[1]; index 0 is untouched."""
    opts, lst = _multi_arrays(kernel, rng)
    keep = _all(lst)
    bad = rng.standard_normal(2 * lst[1][name].size)[::2]
    lst[1][name] = bad
    expect_error(ValueError, [f"{name}[1]"], _multi_call(kernel, lst, opts, step=1),
                 keep + [bad])


@pytest.mark.parametrize("kernel, name", _pos_params(skip_input=True))
def test_multi_read_only_state(kernel, name, rng):
    opts, lst = _multi_arrays(kernel, rng)
    lst[2][name].flags.writeable = False
    expect_error(ValueError, [f"{name}[2]"], _multi_call(kernel, lst, opts), _all(lst))


@pytest.mark.parametrize("kernel, name", _pos_params())
def test_multi_mixed_dtype_within_one_update(kernel, name, rng):
    opts, lst = _multi_arrays(kernel, rng)
    names = array_names(kernel, opts)
    keep = _all(lst)
    bad = lst[1][name].astype(np.float32)
    lst[1][name] = bad
    named = [f"{name}[1]"] if name != names[0] else [f"{n}[1]" for n in names[1:]]
    expect_error(TypeError, named, _multi_call(kernel, lst, opts), keep + [bad])


@pytest.mark.parametrize("kernel, name", _pos_params())
def test_multi_shape_mismatch_within_one_update(kernel, name, rng):
    opts, lst = _multi_arrays(kernel, rng)
    names = array_names(kernel, opts)
    keep = _all(lst)
    bad = rng.standard_normal(lst[1][name].size + 1)
    lst[1][name] = bad
    named = [f"{name}[1]"] if name != names[0] else [f"{n}[1]" for n in names[1:]]
    expect_error(ValueError, named, _multi_call(kernel, lst, opts), keep + [bad])


@pytest.mark.parametrize("kernel, name", [
    p for p in _pos_params() if p.values[1] not in ("grad_avg", "momentum_buf", "v_max")])
def test_multi_none_in_a_required_list(kernel, name, rng):
    opts, lst = _multi_arrays(kernel, rng)
    keep = _all(lst)
    lst[1][name] = None
    expect_error(TypeError, [f"{name}[1]"], _multi_call(kernel, lst, opts), keep)


@pytest.mark.parametrize("kernel, name, opt", [
    ("rmsprop", "grad_avg", "centered=True"),
    ("rmsprop", "momentum_buf", "momentum=0.9"),
    ("adam", "v_max", "amsgrad=True"),
])
def test_multi_none_item_in_a_list_the_option_needs(kernel, name, opt, rng):
    """centered/momentum/amsgrad with a list holding None at one index must raise, not treat
    that array's state as absent (the kernel would then write the state into param)."""
    opts, lst = _multi_arrays(kernel, rng)
    keep = _all(lst)
    lst[0][name] = None
    expect_error((TypeError, ValueError), [f"{name}[0]", plural(name)],
                 _multi_call(kernel, lst, opts), keep)


@pytest.mark.parametrize("kernel, name", _pos_params())
def test_multi_list_argument_of_wrong_type(kernel, name, rng):
    opts, lst = _multi_arrays(kernel, rng)
    names = array_names(kernel, opts)
    cols = {n: [d[n] for d in lst] for n in names}
    cols[name] = cols[name][0]          # an array, not a list of arrays
    multi = multi_fn(kernel)
    args = [cols[n] for n in names if n not in OPTIONAL_STATES]
    kw = dict(opts, step=1, **optional_kw(kernel, cols))
    expect_error(TypeError, [plural(name)], lambda: multi(*args, **kw), _all(lst))


def _multi_overlap_cases():
    out = []
    for k in KERNELS:
        names = array_names(k, FULL_OPTS[k])
        written = [n for i, n in enumerate(names) if i != 1]
        for a in names:
            for b in written:
                out.append(pytest.param(k, a, b, id=f"{k}-{a}[0]-{b}[2]"))
    return out


@pytest.mark.parametrize("kernel, a, b", _multi_overlap_cases())
def test_multi_overlap_across_arrays(kernel, a, b, rng):
    """a[0] and b[2] share memory (b is written): an error naming both, nothing written."""
    opts, lst = _multi_arrays(kernel, rng, sizes=(N, 3, N))
    keep = _all(lst)
    lst[2][b] = lst[0][a]
    expect_error(ValueError, [f"{a}[0]", f"{b}[2]"], _multi_call(kernel, lst, opts), keep)


@pytest.mark.parametrize("kernel, a, b", _multi_overlap_cases())
def test_multi_partial_overlap_across_arrays(kernel, a, b, rng):
    opts, lst = _multi_arrays(kernel, rng, sizes=(N, 3, N))
    buf = rng.standard_normal(2 * N)
    keep = _all(lst) + [buf]
    lst[0][a] = buf[:N]
    lst[2][b] = buf[N - 1:2 * N - 1]
    expect_error(ValueError, [f"{a}[0]", f"{b}[2]"], _multi_call(kernel, lst, opts), keep)


@pytest.mark.parametrize("kernel", KERNELS)
def test_multi_overlap_within_one_update(kernel, rng):
    opts, lst = _multi_arrays(kernel, rng)
    names = array_names(kernel, opts)
    keep = _all(lst)
    lst[1][names[-1]] = lst[1][names[0]]
    expect_error(ValueError, [f"{names[0]}[1]", f"{names[-1]}[1]"],
                 _multi_call(kernel, lst, opts), keep)


@pytest.mark.parametrize("kernel", KERNELS)
def test_multi_overlap_found_among_many_arrays(kernel, rng):
    """The sweep over sorted intervals finds a clash between the first and the last of 40."""
    opts, lst = _multi_arrays(kernel, rng, sizes=(N,) * 40)
    name = array_names(kernel, opts)[0]
    keep = _all(lst)
    lst[39][name] = lst[0][name]
    expect_error(ValueError, [f"{name}[0]", f"{name}[39]"], _multi_call(kernel, lst, opts), keep)


MULTI_HYPER = [(k, "lr", -0.1, ValueError) for k in KERNELS if k != "ewa"] + [
    ("momentum", "beta", 1.0, ValueError), ("rmsprop", "beta", NAN, ValueError),
    ("rmsprop", "eps", -1e-8, ValueError), ("adam", "beta1", -0.1, ValueError),
    ("adam", "beta2", 1.0, ValueError), ("adam", "step", 0, ValueError),
    ("adam", "step", 1.0, TypeError), ("adam", "step", True, TypeError),
    ("ewa", "beta", 1.0, ValueError), ("momentum", "dampening", 1.5, ValueError),
    ("sgd", "weight_decay", -1.0, ValueError),
] + [(k, "n_threads", 0, ValueError) for k in KERNELS] + [
    (k, "n_threads", 1.5, TypeError) for k in KERNELS]


@pytest.mark.parametrize("kernel, key, value, exc", MULTI_HYPER)
def test_multi_bad_hyperparameter(kernel, key, value, exc, rng):
    opts, lst = _multi_arrays(kernel, rng)
    o = dict(opts)
    step = 1
    kw = {}
    if key == "step":
        step = value
    elif key == "n_threads":
        kw["n_threads"] = value
    else:
        o[key] = value
    expect_error(exc, [key], _multi_call(kernel, lst, o, step=step, **kw), _all(lst))


@pytest.mark.parametrize("kernel, missing", [
    pytest.param(r.name, op.plural, id=f"{r.name}-{op.plural}")
    for r in _registry.RULES for op in r.operands if op.needs is not None])
def test_multi_missing_optional_list(kernel, missing, rng):
    opts, lst = _multi_arrays(kernel, rng)
    names = array_names(kernel, opts)
    cols = {n: [d[n] for d in lst] for n in names}
    kw = dict(opts, step=1, **optional_kw(kernel, cols))
    kw[missing] = None
    args = [cols[n] for n in names if n not in OPTIONAL_STATES]
    expect_error(ValueError, [missing], lambda: multi_fn(kernel)(*args, **kw), _all(lst))


# ------------------------------------------------------------------------------------------------
# NaN and Inf in the input propagate, without errors or warnings.
# ------------------------------------------------------------------------------------------------

# Which arrays get the non-finite value at that element, by the formulas.
NAN_TARGETS = {
    "sgd": ["param"],
    "momentum": ["param", "velocity"],
    "rmsprop": ["param", "sq_avg", "grad_avg", "momentum_buf"],
    "adam": ["param", "m", "v", "v_max"],
    "ewa": ["avg"],
}


@pytest.mark.parametrize("n", [9, 1023, BIG_SIZES[1]])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kernel", KERNELS)
def test_nan_and_inf_propagate(kernel, dtype, n, rng):
    opts = FULL_OPTS[kernel]
    names = array_names(kernel, opts)
    arrays = make_arrays(kernel, opts, ArrayCase(n, dtype, "offset"), rng)
    g = arrays[names[1]]
    bad = {3: np.nan, 5: np.inf, 6: -np.inf, n - 1: np.nan}
    for i, x in bad.items():
        g[i] = x
    g.flags.writeable = False
    ref = copy_arrays(arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            assert call(fastopt, kernel, arrays, opts, step=1, n_threads=2) is None
    with np.errstate(all="ignore"):
        call(reference, kernel, ref, opts, step=1)
    for k in names:
        assert_close(arrays[k], ref[k], f"{k}")        # NaN/Inf at the same places
    nonfinite = sorted(bad)
    mask = np.zeros(n, bool)
    mask[nonfinite] = True
    written = [x for i, x in enumerate(names) if i != 1]
    # Every rule: NaN reaches each written array (and the places match the twin's, above).
    # Inf too, for the rules whose formulas carry it everywhere (Lion's sign() does not).
    for k in NAN_TARGETS.get(kernel, written):
        a = arrays[k].reshape(-1)
        assert np.isnan(a[3]) and np.isnan(a[n - 1]), f"NaN did not reach {k}"
        if kernel in NAN_TARGETS:
            assert not np.isfinite(a[5]) and not np.isfinite(a[6]), f"Inf did not reach {k}"
        assert np.isfinite(a[~mask]).all(), f"non-finite values leaked into other elements of {k}"
    if kernel == "sgd":
        assert arrays["param"][5] == -np.inf and arrays["param"][6] == np.inf
    if kernel == "momentum":
        assert arrays["velocity"][5] == np.inf and arrays["velocity"][6] == -np.inf


def test_nan_in_state_keeps_propagating_through_later_steps(rng):
    p, m, v, vmax = rng.standard_normal(4), np.zeros(4), np.zeros(4), np.zeros(4)
    g = rng.standard_normal(4)
    g[1] = np.nan
    fastopt.adam_step(p, g, m, v, step=1, v_max=vmax, amsgrad=True)
    g[1] = 0.5
    fastopt.adam_step(p, g, m, v, step=2, v_max=vmax, amsgrad=True)
    for a in (p, m, v, vmax):
        assert np.isnan(a[1])
        assert np.isfinite(np.delete(a, 1)).all()
