"""Storage types below float32: float16 / bfloat16 parameters, gradients and state, master weights,
Kahan compensation, stochastic rounding and grad_scale.

The oracle is ``fastopt.reference.step_exact``, the bit-exact NumPy twin of one kernel call on any
storage types: every comparison here is BITWISE (``.view(np.uintN)``, NaN payloads and signed zeros
included), never a tolerance.  The conversions are also checked against independent converters
(NumPy's float16 casts and ml_dtypes' bfloat16 casts), and the master/Kahan/stochastic modes
against their defining properties (the float32 kernel, ``round_nearest(master)``, an unbiased mean),
so a bug shared by the kernels and the twin does not go unseen.

Sections:
  1. parity with the twin: every rule x every dtype pattern, every option combination, sizes
     around the 512-element blocks and above the thread threshold, every mode
  2. stochastic rounding: twin, threads, ISA levels, seeds, multi-array index offsets
  3. master weights
  4. unbiasedness (stochastic rounding and Kahan against the float32 sum)
  5. conversions: NaN, Inf, overflow, subnormals, ties, -0.0, every 16-bit pattern, ISA levels
  6. errors: unsupported combinations and bad keywords, nothing written
  7. grad_scale
"""

import itertools

import ml_dtypes
import numpy as np
import pytest

from fastopt import _dispatch, _registry, reference
from fastopt._dispatch import kernels as K

from conftest import SERIAL_THRESHOLD, Snapshot, num_threads, option_grid, opts_id

F64 = np.dtype(np.float64)
F32 = np.dtype(np.float32)
F16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)
SHORT = {F64: "f64", F32: "f32", F16: "f16", BF16: "bf16"}
UINT = {8: np.uint64, 4: np.uint32, 2: np.uint16}

RULES = tuple(r.name for r in _registry.RULES)                  # every rule of the registry
STEP_RULES = tuple(r.name for r in _registry.RULES if r.scaled)  # the ones a gradient drives
UNSTEPPED = tuple(r.name for r in _registry.RULES if not r.stepped)  # step= only for the hash
SCALED = {r.name: r.scaled for r in _registry.RULES}
LEVELS = _dispatch.available()
STEPS = 10
# One element, a SIMD tail, one block + 1, blocks plus an uneven tail (1500 = 2*512 + 476).
SIZES = (1, 7, 513, 1500)
# Above the serial threshold of every rule (the light ones thread from SERIAL_THRESHOLD, the heavy
# ones from a quarter of it): the threaded path runs, with an uneven split.
BIG = SERIAL_THRESHOLD + 1031


# ------------------------------------------------------------------------------------------------
# Helpers.
# ------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _quiet_numpy_casts():
    """The twin and the independent casts overflow (to Inf) and meet NaN on purpose here."""
    with np.errstate(all="ignore"):
        yield


def operands(rule, opts):
    """The operand names of one call, slot order (registry names: the twin's dict keys)."""
    return _registry.operands_in_use(_registry.BY_NAME[rule], opts)


def cast(x, dt):
    """float64 values -> storage type `dt` (16-bit: through float32, round to nearest even)."""
    dt = np.dtype(dt)
    if dt in (F64, F32):
        return np.asarray(x, dtype=dt).copy()
    return ml_dtypes_cast(np.asarray(x, dtype=F32), dt)


def ml_dtypes_cast(x32, dt):
    """float32 -> float16 / bfloat16 with NumPy / ml_dtypes (the independent converter)."""
    return np.asarray(x32, dtype=F32).astype(dt)


def placed(a, offset):
    """A copy of `a` in a fresh buffer, starting `offset` elements into it (alignment variety)."""
    buf = np.empty(a.size + offset, dtype=a.dtype)
    out = buf[offset:]
    out[...] = a
    return out


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view(UINT[a.dtype.itemsize])


def assert_same_bits(actual, desired, what=""):
    """Bitwise equality (NaN payloads, signed zeros), with the first differing elements shown."""
    assert actual.dtype == desired.dtype, (what, actual.dtype, desired.dtype)
    assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
    ba, bd = bits(actual).ravel(), bits(desired).ravel()
    bad = np.flatnonzero(ba != bd)
    if bad.size:
        i = bad[:6]
        raise AssertionError(
            f"{what}: {bad.size} of {ba.size} elements differ bitwise, first at {i.tolist()}: "
            f"{np.asarray(actual).ravel()[i].astype(F32)} ({[hex(v) for v in ba[i]]}) vs "
            f"{np.asarray(desired).ravel()[i].astype(F32)} ({[hex(v) for v in bd[i]]})")


INPUTS = ("grad", "value")


def assert_all_same(dicts_a, dicts_b, what="", *, inputs=True):
    """Every array of two operand dicts bitwise equal (the read-only input left out when
    inputs=False: two calls that scale it differently)."""
    assert dicts_a.keys() == dicts_b.keys()
    for k in dicts_a:
        if dicts_a[k] is not None and (inputs or k not in INPUTS):
            assert_same_bits(dicts_a[k], dicts_b[k], f"{what} [{k}]")


def kernel_call(mod, rule, a, opts, *, step, aux=None, mode="plain", **low):
    """One single-array call of `rule` from `mod` (the core or a _dispatch.load() level) on the
    arrays dict `a` (operand names), with master/compensation `aux` for `mode`.  The registry
    says which operands are positional and which are keywords (those an option needs)."""
    r = _registry.BY_NAME[rule]
    kw = dict(opts)
    kw.update(low)
    if not r.scaled:                      # not a gradient: no grad_scale, master or Kahan
        assert mode == "plain"
        kw.pop("grad_scale", None)
    if mode == "master":
        kw["master"] = aux
    elif mode == "kahan":
        kw["compensation"] = aux
    pos = [a[op.name] for op in r.operands if op.needs is None]
    kws = {op.name: a.get(op.name) for op in r.operands if op.needs is not None}
    return getattr(mod, r.twin)(*pos, step=step, **kws, **kw)


def multi_call(mod, rule, dicts, opts, *, step, auxs=None, mode="plain", **low):
    """The *_multi call of `rule` on a list of arrays dicts (one per array index)."""
    r = _registry.BY_NAME[rule]
    kw = dict(opts)
    kw.update(low)
    if not r.scaled:
        kw.pop("grad_scale", None)
    if mode == "master":
        kw["masters"] = auxs
    elif mode == "kahan":
        kw["compensations"] = auxs
    used = operands(rule, opts)

    def col(name):
        return [d[name] for d in dicts]

    pos = [col(op.name) for op in r.operands if op.needs is None]
    kws = {op.plural: (col(op.name) if op.name in used else None)
           for op in r.operands if op.needs is not None}
    return getattr(mod, r.twin + "_multi")(*pos, step=step, **kws, **kw)


def twin_call(rule, a, opts, *, step, aux=None, mode="plain", start=0, **low):
    kw = dict(opts)
    kw.update(low)
    if not _registry.BY_NAME[rule].scaled:
        kw.pop("grad_scale", None)
    return reference.step_exact(rule, a, master=aux if mode == "master" else None,
                                compensation=aux if mode == "kahan" else None, start=start,
                                step=step, **kw)


# Dtype patterns: (param, grad, state cycle); state slot j gets cycle[j % len(cycle)].  For each
# param type: every accepted grad type, every accepted state type for all the state slots, and
# mixed cases (e.g. m float32 and v bfloat16, and the reverse).
PATTERNS = (
    [(F64, F64, (F64,))]
    + [(F32, F32, c) for c in ((F32,), (BF16,), (F32, BF16), (BF16, F32))]
    + [(F16, g, c) for g in (F16, F32)
       for c in ((F32,), (BF16,), (F16,), (F32, BF16, F16), (F16, F32))]
    + [(BF16, g, c) for g in (BF16, F32) for c in ((F32,), (BF16,), (F32, BF16), (BF16, F32))]
)
LOWP_PATTERNS = [p for p in PATTERNS if p[0] in (F16, BF16)]


def effective(rule, opts, pattern):
    """The dtype of every operand of a call, by name."""
    pdt, gdt, cyc = pattern
    names = operands(rule, opts)
    out = {names[0]: pdt, names[1]: gdt}
    for j, nm in enumerate(names[2:]):
        out[nm] = cyc[j % len(cyc)]
    return out


def pattern_id(pattern):
    pdt, gdt, cyc = pattern
    return f"p={SHORT[pdt]}-g={SHORT[gdt]}-s={'+'.join(SHORT[c] for c in cyc)}"


def dtypes_id(dts):
    return ",".join(f"{k}={SHORT[v]}" for k, v in dts.items())


def make_arrays(rule, opts, pattern, n, rng, *, offset=0):
    """Random lead array, zero-started state (as an optimizer starts it), input set per step."""
    dts = effective(rule, opts, pattern)
    names = list(dts)
    a = {names[0]: placed(cast(rng.standard_normal(n), dts[names[0]]), offset),
         names[1]: placed(np.zeros(n, dts[names[1]]), offset)}
    for nm in names[2:]:
        a[nm] = placed(np.zeros(n, dts[nm]), offset)
    return a


def make_aux(mode, a, rng):
    """The master copy (float32, not equal to the param: the param's value must not be used) or
    the compensation (the param's dtype, zero at start)."""
    p = a[next(iter(a))]
    if mode == "master":
        m = p.astype(F32) + (rng.standard_normal(p.size) * 1e-3).astype(F32)
        return m.astype(F32)
    if mode == "kahan":
        return np.zeros(p.size, p.dtype)
    return None


def set_input(a, rule, opts, values):
    name = operands(rule, opts)[1]
    g = a[name]
    g.flags.writeable = True
    g[...] = cast(values, g.dtype)
    g.flags.writeable = False      # the kernels must accept (and not write) a read-only input


def copy_dict(a):
    out = {}
    for k, v in a.items():
        out[k] = None if v is None else v.copy()
    return out


def run_parity(rule, opts, pattern, n, rng, *, mode="plain", rounding="nearest", seed=0,
               grad_scale=1.0, mod=K, n_threads=None, offset=0, steps=STEPS, what=""):
    """`steps` steps of the kernel and of the twin side by side from the same arrays, bitwise
    equal after every step (every written array, the master or compensation; the input
    untouched)."""
    fast = make_arrays(rule, opts, pattern, n, rng, offset=offset)
    fast_aux = make_aux(mode, fast, rng)
    if fast_aux is not None:
        fast_aux = placed(fast_aux, offset)
    twin = copy_dict(fast)
    twin_aux = None if fast_aux is None else fast_aux.copy()
    low = dict(rounding=rounding, seed=seed)
    if SCALED[rule]:
        low["grad_scale"] = grad_scale
    if n_threads is not None:
        low_fast = dict(low, n_threads=n_threads)
    else:
        low_fast = low
    for t in range(1, steps + 1):
        g = rng.standard_normal(n)
        set_input(fast, rule, opts, g)
        set_input(twin, rule, opts, g)
        g_before = fast[operands(rule, opts)[1]].copy()
        assert kernel_call(mod, rule, fast, opts, step=t, aux=fast_aux, mode=mode,
                           **low_fast) is None
        twin_call(rule, twin, opts, step=t, aux=twin_aux, mode=mode, **low)
        msg = f"{what} {rule} {opts_id(opts)} n={n} {mode} {rounding} step {t}"
        assert_all_same(fast, twin, msg)
        if fast_aux is not None:
            assert_same_bits(fast_aux, twin_aux, msg + f" [{mode}]")
        assert_same_bits(fast[operands(rule, opts)[1]], g_before, msg + " (input written)")
    return fast, fast_aux


def all_on(rule):
    return list(option_grid(rule))[-1]


# ------------------------------------------------------------------------------------------------
# 1. Parity with the twin.
# ------------------------------------------------------------------------------------------------

def _pattern_params():
    """Every rule x every dtype pattern (deduplicated on the dtypes the operands really get),
    with the default options and with every option on (most state slots)."""
    out, seen = [], set()
    for rule in RULES:
        grid = list(option_grid(rule))
        for opts in ([grid[0], grid[-1]] if len(grid) > 1 else grid):
            for pat in PATTERNS:
                dts = effective(rule, opts, pat)
                key = (rule, opts_id(opts), tuple(dts.items()))
                if key in seen:
                    continue
                seen.add(key)
                out.append(pytest.param(rule, opts, pat,
                                        id=f"{rule}-{opts_id(opts) or 'default'}-"
                                           f"{dtypes_id(dts)}"))
    return out


@pytest.mark.parametrize("rule, opts, pattern", _pattern_params())
def test_parity_every_dtype_pattern(rule, opts, pattern, rng):
    for i, n in enumerate(SIZES):
        run_parity(rule, opts, pattern, n, rng, offset=i % 2)


def _option_params():
    """Every option combination of every rule, each with a dtype pattern, mode and rounding drawn
    with a fixed seed (the draws cycle so that every pattern is used)."""
    draw = np.random.default_rng(20240611)
    out = []
    for rule in RULES:
        grid = list(option_grid(rule))
        order = draw.permutation(len(LOWP_PATTERNS) + 2)
        for k, opts in enumerate(grid):
            j = int(order[k % len(order)])
            pat = (LOWP_PATTERNS + [PATTERNS[0], PATTERNS[2]])[j]
            modes = ["plain"] if not SCALED[rule] or pat[0] not in (F16, BF16) else \
                ["plain", "master", "kahan"]
            mode = modes[int(draw.integers(len(modes)))]
            rounding = "nearest" if mode == "kahan" else ("nearest", "stochastic")[k % 2]
            out.append(pytest.param(rule, opts, pat, mode, rounding,
                                    id=f"{rule}-{opts_id(opts) or 'default'}-{pattern_id(pat)}"
                                       f"-{mode}-{rounding}"))
    return out


@pytest.mark.parametrize("rule, opts, pattern, mode, rounding", _option_params())
def test_parity_every_option(rule, opts, pattern, mode, rounding, rng):
    for i, n in enumerate((7, 1500)):
        run_parity(rule, opts, pattern, n, rng, mode=mode, rounding=rounding, seed=12345,
                   offset=i)


def test_every_option_axis_and_pattern_is_covered():
    """The sampled grid above still covers every option value of every rule and every pattern."""
    params = [p.values for p in _option_params()]
    for rule in STEP_RULES:
        seen = {}
        for r, opts, *_ in params:
            if r == rule:
                for k, v in opts.items():
                    seen.setdefault(k, set()).add(v)
        for opts in option_grid(rule):
            for k, v in opts.items():
                assert v in seen[k], (rule, k, v)
    used = {p.values[2] for p in _option_params()}
    assert set(LOWP_PATTERNS) <= used
    assert len(params) == sum(len(list(option_grid(r))) for r in RULES)
    modes = {(p.values[3], p.values[4]) for p in _option_params()}
    assert modes >= {("plain", "nearest"), ("plain", "stochastic"), ("master", "nearest"),
                     ("master", "stochastic"), ("kahan", "nearest")}


def _mode_params():
    out = []
    for rule in STEP_RULES:
        for pat in LOWP_PATTERNS:
            for mode, rounding in (("master", "nearest"), ("master", "stochastic"),
                                   ("kahan", "nearest")):
                out.append(pytest.param(rule, pat, mode, rounding,
                                        id=f"{rule}-{pattern_id(pat)}-{mode}-{rounding}"))
    return out


@pytest.mark.parametrize("rule, pattern, mode, rounding", _mode_params())
def test_parity_master_and_kahan(rule, pattern, mode, rounding, rng):
    """Master weights and Kahan compensation, every rule, every 16-bit pattern, against the twin
    (options all on: the most state slots)."""
    for i, n in enumerate(SIZES[1:]):
        run_parity(rule, all_on(rule), pattern, n, rng, mode=mode, rounding=rounding,
                   seed=2 ** 40 + 3, offset=i % 2)


def _big_params():
    pats = [(BF16, BF16, (BF16,)), (F16, F32, (F32, BF16, F16)), (F32, F32, (BF16, F32)),
            (F64, F64, (F64,))]
    out = []
    for rule in RULES:
        for pat in pats:
            out.append(pytest.param(rule, pat, id=f"{rule}-{pattern_id(pat)}"))
    return out


@pytest.mark.parametrize("rule, pattern", _big_params())
def test_parity_above_thread_threshold(rule, pattern, rng):
    """Above the serial threshold (threaded, uneven split), 3 threads, both roundings, and the
    master and Kahan modes."""
    opts = all_on(rule)
    run_parity(rule, opts, pattern, BIG, rng, n_threads=3, offset=1)
    run_parity(rule, opts, pattern, BIG, rng, n_threads=3, rounding="stochastic", seed=7,
               steps=3)
    if SCALED[rule] and pattern[0] in (F16, BF16):
        run_parity(rule, opts, pattern, BIG, rng, n_threads=3, mode="master",
                   rounding="stochastic", seed=8, steps=3)
        run_parity(rule, opts, pattern, BIG, rng, n_threads=2, mode="kahan", steps=3, offset=1)


def _level_params():
    out = []
    for level in LEVELS:
        for rule in RULES:
            out.append(pytest.param(level, rule, id=f"{level}-{rule}"))
    return out


@pytest.mark.parametrize("level, rule", _level_params())
def test_parity_at_every_isa_level(level, rule, rng):
    """Each ISA level's loops (the baseline's scalar conversions, AVX2's F16C ones) against the
    twin: every 16-bit pattern, every mode, both roundings."""
    mod = _dispatch.load(level)
    opts = all_on(rule)
    for k, pat in enumerate(PATTERNS):
        combos = [("plain", "nearest"), ("plain", "stochastic")]
        if SCALED[rule] and pat[0] in (F16, BF16):
            combos += [("master", "nearest"), ("master", "stochastic"), ("kahan", "nearest")]
        for mode, rounding in combos:
            run_parity(rule, opts, pat, (513, 1500)[k % 2], rng, mode=mode, rounding=rounding,
                       seed=k, mod=mod, offset=k % 2, steps=3)


@pytest.mark.parametrize("rule", RULES)
def test_stochastic_on_float32_and_float64_arrays_rounds_nothing(rule, rng):
    """With no 16-bit array written, rounding='stochastic' gives the nearest-rounding result."""
    opts = all_on(rule)
    for pat in (PATTERNS[0], PATTERNS[1]):
        a = make_arrays(rule, opts, pat, 600, rng)
        b = copy_dict(a)
        for t in range(1, 4):
            g = rng.standard_normal(600)
            set_input(a, rule, opts, g)
            set_input(b, rule, opts, g)
            kernel_call(K, rule, a, opts, step=t, rounding="stochastic", seed=99)
            kernel_call(K, rule, b, opts, step=t)
            assert_all_same(a, b, f"{pattern_id(pat)} step {t}")


def test_empty_arrays(rng):
    """Zero elements: nothing to do, no error, for every storage type and mode."""
    for rule in STEP_RULES:
        opts = all_on(rule)
        for pat in LOWP_PATTERNS[:3]:
            a = make_arrays(rule, opts, pat, 0, rng)
            for mode in ("plain", "master", "kahan"):
                kernel_call(K, rule, a, opts, step=1, mode=mode, aux=make_aux(mode, a, rng),
                            rounding="stochastic" if mode != "kahan" else "nearest")


# ------------------------------------------------------------------------------------------------
# 2. Stochastic rounding.
# ------------------------------------------------------------------------------------------------

def test_slot_keys_agree_with_the_core():
    for seed, step, slot in itertools.product((0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 64 - 1),
                                              (1, 2, 2 ** 32, 2 ** 53), range(7)):
        assert reference.slot_key(seed, step, slot) == K.slot_key(seed, step, slot)


@pytest.mark.parametrize("rule", RULES)
def test_stochastic_bitwise_across_threads_and_isa_levels(rule, rng, serial_threshold):
    """One result for n_threads 1, 2, 3 and every ISA level, equal to the twin; also with the
    serial threshold at 0 (so small arrays are split over threads too, at odd boundaries)."""
    opts = all_on(rule)
    pat = (BF16, F32, (BF16, F32)) if SCALED[rule] else (F16, F16, (F16,))
    for n, threshold in ((BIG, None), (1500, 0)):
        if threshold is not None:
            serial_threshold(threshold)
        start = make_arrays(rule, opts, pat, n, rng, offset=1)
        grads = [rng.standard_normal(n) for _ in range(3)]
        results = {}
        for level in LEVELS:
            mod = _dispatch.load(level)
            for nt in (1, 2, 3, "default 3"):
                a = copy_dict(start)
                with num_threads(3):      # the library default, used by the last run
                    for t, g in enumerate(grads, start=1):
                        set_input(a, rule, opts, g)
                        kernel_call(mod, rule, a, opts, step=t, rounding="stochastic", seed=31,
                                    **({} if isinstance(nt, str) else {"n_threads": nt}))
                results[(level, nt)] = a
        tw = copy_dict(start)
        for t, g in enumerate(grads, start=1):
            set_input(tw, rule, opts, g)
            twin_call(rule, tw, opts, step=t, rounding="stochastic", seed=31)
        for key, a in results.items():
            assert_all_same(a, tw, f"n={n} level/threads {key} vs twin")


@pytest.mark.parametrize("rule", RULES)
def test_stochastic_seed_and_step_select_the_stream(rule, rng):
    """Same (seed, step): same bits; another seed (low or high word) or step: other bits."""
    opts = all_on(rule)
    pat = (BF16, BF16, (BF16,))
    n = 2000
    start = make_arrays(rule, opts, pat, n, rng)
    g = rng.standard_normal(n)
    outs = {}
    for seed, step in ((0, 1), (0, 1), (1, 1), (2 ** 32, 1), (2 ** 63, 1), (2 ** 64 - 1, 1),
                       (0, 2), (0, 2 ** 32 + 1)):
        a = copy_dict(start)
        set_input(a, rule, opts, g)
        kernel_call(K, rule, a, opts, step=step, rounding="stochastic", seed=seed)
        tw = copy_dict(start)
        set_input(tw, rule, opts, g)
        twin_call(rule, tw, opts, step=step, rounding="stochastic", seed=seed)
        assert_all_same(a, tw, f"seed {seed} step {step}")
        outs.setdefault((seed, step), []).append(a)
    first, again = outs[(0, 1)]
    assert_all_same(first, again, "same seed and step")
    for key, (a,) in ((k, v) for k, v in outs.items() if k != (0, 1)):
        for nm in a:
            if a[nm] is None or nm == operands(rule, opts)[1]:
                continue
            differ = np.count_nonzero(bits(a[nm]) != bits(first[nm]))
            # about half of the elements that are not exactly representable round the other way
            assert differ > n // 10, (key, nm, differ)


def test_stochastic_state_slots_use_their_own_bits(rng):
    """Each written operand is rounded with its own stream: momentum with beta=0, dampening=0,
    lr=1 from param=0 gives velocity = g and param = -g, the same magnitude, rounded with slots 2
    and 0 (a sign-magnitude rounding with shared bits would give exactly opposite values)."""
    n = 4000
    g = rng.standard_normal(n).astype(F32)
    p = np.zeros(n, BF16)
    vel = np.full(n, -0.0, BF16)
    K.momentum_step(p, g, vel, lr=1.0, beta=0.0, dampening=0.0, step=1, rounding="stochastic",
                    seed=5)
    assert np.count_nonzero(bits(p) != (bits(vel) ^ np.uint16(0x8000))) > n // 10
    tw = {"param": np.zeros(n, BF16), "grad": g, "velocity": np.full(n, -0.0, BF16)}
    reference.step_exact("momentum", tw, lr=1.0, beta=0.0, dampening=0.0, step=1,
                         rounding="stochastic", seed=5)
    assert_same_bits(p, tw["param"], "param")
    assert_same_bits(vel, tw["velocity"], "velocity")


def _multi_patterns():
    return [(BF16, F32, (BF16, F32)), (F16, F16, (F16, BF16)), (F32, F32, (BF16,)),
            (BF16, BF16, (BF16,))]


@pytest.mark.parametrize("rule, mode", [(r, m) for r in RULES for m in ("plain", "master", "kahan")
                                         if SCALED[r] or m == "plain"])
def test_multi_equals_single_twin_calls_with_offsets(rule, mode, rng, serial_threshold):
    """A multi-array call (arrays of mixed dtypes) equals the twin on each array with start= its
    offset in the concatenated index space; threads split across the arrays."""
    opts = all_on(rule)
    sizes = (7, 0, 513, 1500, 1)
    pats = [_multi_patterns()[k % 4] for k in range(len(sizes))]
    if mode != "plain":
        pats = [p if p[0] != F32 else (BF16, F32, (F32,)) for p in pats]
    rounding = "nearest" if mode == "kahan" else "stochastic"
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
    for threshold, nt in ((None, 1), (0, 3)):
        if threshold is not None:
            serial_threshold(threshold)
        fast = [make_arrays(rule, opts, p, n, rng, offset=k % 2)
                for k, (p, n) in enumerate(zip(pats, sizes))]
        auxs = None if mode == "plain" else [make_aux(mode, a, rng) for a in fast]
        twin = [copy_dict(a) for a in fast]
        taux = None if auxs is None else [x.copy() for x in auxs]
        for t in range(1, 4):
            for k, n in enumerate(sizes):
                g = rng.standard_normal(n)
                set_input(fast[k], rule, opts, g)
                set_input(twin[k], rule, opts, g)
            multi_call(K, rule, fast, opts, step=t, auxs=auxs, mode=mode, rounding=rounding,
                       seed=2 ** 33 + 1, n_threads=nt)
            for k in range(len(sizes)):
                twin_call(rule, twin[k], opts, step=t, aux=None if taux is None else taux[k],
                          mode=mode, start=starts[k], rounding=rounding, seed=2 ** 33 + 1)
                msg = f"array {k} (start {starts[k]}) step {t} threads {nt}"
                assert_all_same(fast[k], twin[k], msg)
                if auxs is not None:
                    assert_same_bits(auxs[k], taux[k], msg + f" [{mode}]")


def test_multi_index_offsets_matter(rng):
    """The second array of a multi call does not reuse the first array's random bits: its result
    differs from a single call on it (which starts at index 0)."""
    n = 3000
    x = rng.standard_normal(n).astype(F32)
    p1, p2 = np.zeros(n, BF16), np.zeros(n, BF16)
    q = np.zeros(n, BF16)
    K.sgd_step_multi([p1, p2], [x, x], lr=1.0, maximize=True, step=1, rounding="stochastic")
    K.sgd_step(q, x, lr=1.0, maximize=True, step=1, rounding="stochastic")
    assert_same_bits(p1, q, "first array")
    assert np.count_nonzero(bits(p2) != bits(q)) > n // 10


# ------------------------------------------------------------------------------------------------
# 3. Master weights.
# ------------------------------------------------------------------------------------------------

def _master_params():
    out = []
    for rule in STEP_RULES:
        for pdt in (F16, BF16):
            for gdt in (pdt, F32):
                for sdt in (F32, BF16):
                    for rounding in ("nearest", "stochastic"):
                        # stochastic: half of the (grad, state) pairs, both of each kept
                        if (gdt == F32) == (sdt == BF16) and rounding == "stochastic":
                            continue
                        out.append(pytest.param(
                            rule, pdt, gdt, sdt, rounding,
                            id=f"{rule}-p={SHORT[pdt]}-g={SHORT[gdt]}-s={SHORT[sdt]}-{rounding}"))
    return out


@pytest.mark.parametrize("rule, pdt, gdt, sdt, rounding", _master_params())
def test_master_trajectory_is_the_float32_kernel(rule, pdt, gdt, sdt, rounding, rng):
    """The master copy follows exactly the float32 kernel's trajectory on float32 arrays (same
    gradients converted exactly to float32, the same state storage), and the 16-bit param is the
    master rounded: round_nearest(master), or round_stochastic(master, slot 0's bits)."""
    opts = all_on(rule)
    n = 1500
    seed = 77
    names = operands(rule, opts)
    master = cast(rng.standard_normal(n), F32)
    param = master.astype(pdt)          # the usual start: the param is the master rounded
    st = {nm: np.zeros(n, sdt) for nm in names[2:]}
    ref = {"param": master.copy(), "grad": np.zeros(n, F32), **{k: v.copy() for k, v in st.items()}}
    low = {"param": param, "grad": np.zeros(n, gdt), **st}
    for t in range(1, STEPS + 1):
        g = cast(rng.standard_normal(n), gdt)
        low["grad"] = g
        ref["grad"] = g.astype(F32)     # exact: every float16/bfloat16 value is a float32
        kernel_call(K, rule, low, opts, step=t, mode="master", aux=master, rounding=rounding,
                    seed=seed)
        kernel_call(K, rule, ref, opts, step=t, rounding=rounding, seed=seed)
        assert_same_bits(master, ref["param"], f"master step {t}")
        for nm in names[2:]:
            assert_same_bits(low[nm], ref[nm], f"{nm} step {t}")
        if rounding == "nearest":
            want = reference.round_nearest(master, pdt)
            assert_same_bits(param, master.astype(pdt), f"param vs astype step {t}")
        else:
            want = reference.round_stochastic(master, pdt, reference.random_bits(seed, t, 0, n))
        assert_same_bits(param, want, f"param step {t}")


def test_master_stochastic_param_brackets_master(rng):
    """Stochastic master mode: the param is one of the two 16-bit neighbours of the master."""
    n = 5000
    for pdt in (F16, BF16):
        master = cast(rng.standard_normal(n), F32)
        param = np.zeros(n, pdt)
        K.sgd_step(param, cast(rng.standard_normal(n), F32), lr=0.01, master=master, step=3,
                   rounding="stochastic", seed=1)
        lo, hi = _neighbours(master, pdt)
        p = param.astype(F32)
        assert np.all((p == lo) | (p == hi))
        assert np.any(p != master.astype(pdt).astype(F32))     # not just nearest


# ------------------------------------------------------------------------------------------------
# 4. Unbiasedness: many updates smaller than half a 16-bit spacing.
# ------------------------------------------------------------------------------------------------

UNBIASED_STEPS = 10_000
UNBIASED_N = 1000
MEASURED = {}


@pytest.mark.parametrize("pdt, delta", [(BF16, 1.1e-3), (F16, 1.3e-4)],
                         ids=["bfloat16", "float16"])
def test_stochastic_and_kahan_track_the_float32_sum(pdt, delta):
    """param = 1, 10,000 sgd steps of +delta with delta below half the spacing at 1 (bfloat16:
    2**-8; float16: 2**-11): round to nearest never moves; stochastic rounding (its mean over
    the elements) and Kahan compensation track the float32 sum within 1%."""
    n, steps = UNBIASED_N, UNBIASED_STEPS
    spacing = 2.0 ** -10 if pdt == F16 else 2.0 ** -7      # of the 16-bit values above 1.0
    assert delta < spacing / 2
    g = np.full(n, -delta, dtype=F32)            # param - lr*g = param + delta
    near = np.ones(n, pdt)
    sto = np.ones(n, pdt)
    kah = np.ones(n, pdt)
    comp = np.zeros(n, pdt)
    f32 = np.ones(n, F32)
    for t in range(1, steps + 1):
        K.sgd_step(near, g, lr=1.0, step=t)
        K.sgd_step(sto, g, lr=1.0, step=t, rounding="stochastic", seed=2024)
        K.sgd_step(kah, g, lr=1.0, compensation=comp)
        K.sgd_step(f32, g, lr=1.0)
    target = float(f32[0])
    assert np.all(f32 == f32[0])
    exact = 1.0 + steps * float(np.float32(delta))
    assert abs(target - exact) / exact < 1e-3
    assert np.all(near.astype(F32) == 1.0), "round to nearest must stay stuck at 1.0"
    sto_err = abs(float(sto.astype(np.float64).mean()) - target) / target
    kah_vals = kah.astype(np.float64) + comp.astype(np.float64)
    kah_err = abs(float(kah.astype(np.float64).mean()) - target) / target
    kah_err_with_c = abs(float(kah_vals.mean()) - target) / target
    MEASURED[pdt.name] = dict(target=target, exact=exact, stochastic_rel_err=sto_err,
                              kahan_rel_err=kah_err, kahan_with_comp_rel_err=kah_err_with_c,
                              stochastic_spread=float(sto.astype(np.float64).std()))
    print(f"\n{pdt.name}: float32 sum {target:.6f} (exact {exact:.6f}); stochastic mean rel err "
          f"{sto_err:.2e} (spread {MEASURED[pdt.name]['stochastic_spread']:.3f}); Kahan rel err "
          f"{kah_err:.2e} (p + c: {kah_err_with_c:.2e})")
    assert sto_err < 0.01
    assert kah_err < 0.01
    assert np.all(np.isfinite(sto.astype(F32)))
    # stochastic rounding is unbiased per element too, not only on average: no element stuck
    assert float(sto.astype(F32).min()) > 1.0


# ------------------------------------------------------------------------------------------------
# 5. Conversions.
# ------------------------------------------------------------------------------------------------

def _neighbours(x32, dt):
    """The largest value of `dt` <= x and the smallest >= x, as float32 (finite x)."""
    x32 = np.asarray(x32, F32)
    rn = x32.astype(dt)
    up = np.nextafter(rn, np.array(np.inf, dt))
    down = np.nextafter(rn, np.array(-np.inf, dt))
    r = rn.astype(F32)
    lo = np.where(r > x32, down.astype(F32), r)
    hi = np.where(r < x32, up.astype(F32), r)
    return lo, hi


def _special_f32():
    """float32 values at every edge of the 16-bit conversions (both signs)."""
    v = [0.0, 1.0, 1.5, np.inf, 65504.0, 65519.0, 65520.0, 65536.0, 1e5, 3.0e38,
         float(np.finfo(F32).max), 3.3895313892515355e38, 3.3961775292304e38, 3.39e38,
         2.0 ** -14, 2.0 ** -15, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -25 * 1.0000001,
         2.0 ** -26, 5.96e-8, 6.0e-8, 1.0e-7, 6.1e-5, 6.097e-5, 2.0 ** -126, 2.0 ** -127,
         1e-39, 1e-40, 1e-45, 2.0 ** -149, 2.0 ** -133 * 3, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,
         1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -9, 1.0 + 2.0 ** -12, 2.0 ** 15,
         0.1, 1.0 / 3.0, 1e-3, 12345.678,
         # float16 subnormal ties (both parities) and the tie at the normal boundary
         5 * 2.0 ** -25, 7 * 2.0 ** -25, 2.0 ** -15 + 2.0 ** -25, 2.0 ** -14 - 2.0 ** -25,
         # bfloat16 (float32) subnormal ties
         2.0 ** -134, 3 * 2.0 ** -134, 5 * 2.0 ** -134, 2.0 ** -126 - 2.0 ** -134]
    x = np.array(v, dtype=np.float64).astype(F32)
    x = np.concatenate([x, -x])
    raw = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7FC0FFFF,
                    0x7FFFE000, 0x7F802000, 0x7F80FFFF, 0xFF801234, 0x00000001, 0x807FFFFF,
                    0x00008000, 0x00018000, 0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,
                    0x477FEFFF, 0x477FF000, 0x7F7F8000, 0x7F7F7FFF, 0xFF7F8000, 0x33000000,
                    0x33000001, 0x387FC000, 0x387FE000, 0x38800000, 0x80000000],
                   dtype=np.uint32).view(F32)
    return np.concatenate([x, raw])


def _conversion_inputs(rng):
    """The special values, ties and random bit patterns (every exponent), tiled over more than one
    512-element block so that the SIMD bodies, the 8-element F16C groups and the tails all see
    them (shifted by one between copies)."""
    s = _special_f32()
    rand = rng.integers(0, 2 ** 32, 3000, dtype=np.uint64).astype(np.uint32).view(F32)
    parts = [s, rand, np.roll(s, 1)[1:], s, rand[:5]]
    return np.ascontiguousarray(np.concatenate(parts), dtype=F32)


def _check_against_casts(got16, x32, dt, what):
    """Non-NaN: the bits of NumPy's / ml_dtypes' round-to-nearest-even cast; NaN stays NaN (with
    its sign)."""
    want = ml_dtypes_cast(x32, dt)
    nan = np.isnan(x32)
    assert np.all(np.isnan(got16.astype(F32)[nan])), f"{what}: NaN did not stay NaN"
    assert np.all(np.signbit(got16[nan].astype(F32)) == np.signbit(x32[nan])), \
        f"{what}: NaN sign lost"
    assert_same_bits(got16[~nan], want[~nan], f"{what} vs {dt.name} cast")


def test_beta_zero_ewa_is_an_exact_copy():
    """The identity the conversion tests rely on: with beta = 0 the formula
    avg <- b1*avg + (1 - b1)*x has b1 = 0 and 1 - b1 = 1 exactly, so from avg = -0.0 the result
    is x itself: -0*0 + 1*x = x for every x, +0 and -0 included (and NaN stays NaN)."""
    s, _ = reference._scalars("ewa", {"beta": 0.0})
    assert s["b1"] == 0.0 and s["omb1"] == 1.0
    x = _special_f32()
    avg = np.full(x.size, -0.0, F32)
    K.ewa_update(avg, x, beta=0.0)
    nan = np.isnan(x)
    assert_same_bits(avg[~nan], x[~nan], "float32 ewa beta=0")
    assert np.all(np.isnan(avg[nan]))


@pytest.mark.parametrize("dt", [F16, BF16], ids=["float16", "bfloat16"])
def test_store_rounds_to_nearest_even(dt, rng):
    """float32 -> 16-bit stores (ewa_update with beta=0 writes x rounded): NaN, +/-Inf, overflow,
    subnormals of both formats, ties to even, -0.0, and random bit patterns: equal to the NumPy /
    ml_dtypes cast for every non-NaN, NaN stays NaN; equal to the twin bitwise (NaN payloads);
    and the same bits at every ISA level."""
    x = _conversion_inputs(rng)
    per_level = {}
    for level in LEVELS:
        mod = _dispatch.load(level)
        avg = np.full(x.size, -0.0, dt)
        mod.ewa_update(avg, x, beta=0.0)
        _check_against_casts(avg, x, dt, f"{level}")
        assert_same_bits(avg, reference.round_nearest(x, dt), f"{level} vs twin")
        per_level[level] = avg
        # from a float32 input through an sgd step too: p = -0 - 1*(-x) = x
        p = np.full(x.size, -0.0, dt)
        mod.sgd_step(p, x, lr=1.0, maximize=True)
        _check_against_casts(p, x, dt, f"{level} sgd")
    for level, a in per_level.items():
        assert_same_bits(a, per_level[LEVELS[0]], f"{level} vs {LEVELS[0]}")


@pytest.mark.parametrize("dt", [F16, BF16], ids=["float16", "bfloat16"])
def test_every_16bit_value_loads_exactly_and_round_trips(dt):
    """Loads: every one of the 65,536 bit patterns, loaded as a gradient into a float32 velocity
    (momentum with beta=0, dampening=0 from v = -0.0: v = -0 + 1*g = g), equals NumPy's /
    ml_dtypes' widening (NaN stays NaN with its sign); stored back (ewa beta=0 on the 16-bit avg)
    every non-NaN pattern comes back unchanged.  Same bits at every ISA level."""
    raw = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
    x16 = raw.view(dt)
    want = x16.astype(F32)
    nan = np.isnan(want)
    per_level = {}
    for level in LEVELS:
        mod = _dispatch.load(level)
        vel = np.full(raw.size, -0.0, F32)
        param = np.zeros(raw.size, dt)
        mod.momentum_step(param, x16, vel, lr=0.0, beta=0.0, dampening=0.0)
        assert_same_bits(vel[~nan], want[~nan], f"{level} load")
        assert np.all(np.isnan(vel[nan]))
        assert np.all(np.signbit(vel[nan]) == np.signbit(want[nan]))
        avg = np.full(raw.size, -0.0, dt)
        mod.ewa_update(avg, x16, beta=0.0)
        assert_same_bits(avg[~nan], x16[~nan], f"{level} load-store round trip")
        assert np.all(np.isnan(avg[nan].astype(F32)))
        per_level[level] = (vel, avg)
    for level, (vel, avg) in per_level.items():
        assert_same_bits(vel, per_level[LEVELS[0]][0], f"{level} load vs {LEVELS[0]}")
        assert_same_bits(avg, per_level[LEVELS[0]][1], f"{level} round trip vs {LEVELS[0]}")


@pytest.mark.parametrize("dt", [F16, BF16], ids=["float16", "bfloat16"])
def test_ties_between_every_pair_of_neighbours_round_to_even(dt):
    """The exact midpoint between every two adjacent finite positive 16-bit values (float32 holds
    it exactly) rounds to the one with an even last bit, like the NumPy / ml_dtypes casts; one
    float32 ulp either side rounds to the nearer one."""
    raw = np.arange(0, 0x7C00 if dt == F16 else 0x7F80, dtype=np.uint16)
    lo = raw[:-1].view(dt).astype(np.float64)
    hi = raw[1:].view(dt).astype(np.float64)
    mid = ((lo + hi) / 2).astype(F32)
    assert np.all(mid.astype(np.float64) == (lo + hi) / 2)       # exact in float32
    for x in (mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf))):
        for level in LEVELS:
            for sign in (1, -1):
                v = (sign * x).astype(F32)
                avg = np.full(v.size, -0.0, dt)
                _dispatch.load(level).ewa_update(avg, v, beta=0.0)
                _check_against_casts(avg, v, dt, f"{level} sign {sign}")
    # the midpoints themselves: the even neighbour
    avg = np.full(mid.size, -0.0, dt)
    K.ewa_update(avg, mid, beta=0.0)
    even = np.where(raw[:-1] % 2 == 0, raw[:-1], raw[1:])
    assert_same_bits(bits(avg), even, "ties to even")


@pytest.mark.parametrize("dt", [F16, BF16], ids=["float16", "bfloat16"])
def test_stochastic_store_of_special_values(dt, rng):
    """Stochastic stores of the special values: NaN stays NaN, +/-Inf stay, representable values
    (+/-0, subnormals, the maximum) stay exactly, every other value lands on one of its two
    neighbours (the overflowing ones on the largest finite value or Inf); equal to the twin and
    across ISA levels, bitwise."""
    x = _conversion_inputs(rng)
    per_level = {}
    for level in LEVELS:
        for step in (1, 2):
            avg = np.full(x.size, -0.0, dt)
            _dispatch.load(level).ewa_update(avg, x, beta=0.0, step=step, rounding="stochastic",
                                             seed=3)
            want = reference.round_stochastic(x, dt, reference.random_bits(3, step, 0, x.size))
            assert_same_bits(avg, want, f"{level} step {step} vs twin")
            per_level[(level, step)] = avg
            r = avg.astype(F32)
            nan = np.isnan(x)
            assert np.all(np.isnan(r[nan]))
            fin = ~nan & np.isfinite(x)
            lo, hi = _neighbours(x[fin], dt)
            rf = r[fin]
            ok = (rf == lo) | (rf == hi)
            assert np.all(ok), (x[fin][~ok][:5], rf[~ok][:5], lo[~ok][:5], hi[~ok][:5])
            exact = x[fin] == x[fin].astype(dt).astype(F32)
            assert_same_bits(avg[fin][exact], x[fin][exact].astype(dt), "representable values")
            inf = np.isinf(x)
            assert_same_bits(avg[inf], x[inf].astype(dt), "infinities")
    for key, a in per_level.items():
        assert_same_bits(a, per_level[(LEVELS[0], key[1])], f"{key} vs {LEVELS[0]}")


@pytest.mark.parametrize("dt", [F16, BF16], ids=["float16", "bfloat16"])
def test_stochastic_store_is_unbiased_for_one_value(dt):
    """One value between two neighbours, stored stochastically over many elements: the fraction
    rounded up equals its position between them (the subnormal range of float16 included)."""
    n = 200_000
    cases = [1.0 + 0.3 * 2.0 ** -7, -(3.0 + 0.71 * 2.0 ** -6)]
    if dt == F16:
        cases += [1.0 + 0.3 * 2.0 ** -10, 0.37 * 2.0 ** -24, 5.25 * 2.0 ** -24]
    else:
        cases += [float(np.float32(2.0 ** -130 * 1.37))]
    for v in cases:
        x = np.full(n, v, F32)
        avg = np.full(n, -0.0, dt)
        K.ewa_update(avg, x, beta=0.0, step=1, rounding="stochastic", seed=11)
        lo, hi = _neighbours(x[:1], dt)
        r = avg.astype(np.float64)
        assert set(np.unique(r)) <= {float(lo[0]), float(hi[0])}
        mean = r.mean()
        assert abs(mean - float(x[0])) < 4 * (float(hi[0]) - float(lo[0])) / np.sqrt(n), v


# ------------------------------------------------------------------------------------------------
# 6. Errors: raised before anything is written, naming the operand.
# ------------------------------------------------------------------------------------------------

ALL_TYPES = (F64, F32, F16, BF16)


def accepted(pdt, slot, t):
    """Storage type rule (the documented table)."""
    if pdt == F64 or t == F64:
        return pdt == t
    if slot == 1:
        return t == pdt or t == F32
    if pdt == F32:
        return t in (F32, BF16)
    return t in (F32, BF16, pdt)


def _valid_pattern(pdt):
    return {F64: (F64, F64, (F64,)), F32: (F32, F32, (F32,)), F16: (F16, F16, (F16,)),
            BF16: (BF16, BF16, (BF16,))}[pdt]


def _filled(rule, opts, pdt, n, rng):
    a = make_arrays(rule, opts, _valid_pattern(pdt), n, rng)
    for k, v in a.items():
        v[...] = cast(np.abs(rng.standard_normal(n)) + 0.5, v.dtype)
    return a


def _bad_dtype_params():
    out = []
    for rule in RULES:
        opts = all_on(rule)
        names = operands(rule, opts)
        for pdt in ALL_TYPES:
            for slot in range(1, len(names)):
                for t in ALL_TYPES:
                    if not accepted(pdt, slot, t):
                        out.append(pytest.param(rule, pdt, slot, t,
                                                id=f"{rule}-{SHORT[pdt]}-{names[slot]}="
                                                   f"{SHORT[t]}"))
    return out


@pytest.mark.parametrize("rule, pdt, slot, t", _bad_dtype_params())
def test_unsupported_dtype_combination(rule, pdt, slot, t, rng):
    """Every operand x every storage type the param's type does not accept: TypeError naming the
    operand and the param, nothing written (single and multi-array calls; in the multi call the
    bad array is the second one, after a valid first one)."""
    opts = all_on(rule)
    names = operands(rule, opts)
    a = _filled(rule, opts, pdt, 40, rng)
    a[names[slot]] = cast(np.abs(rng.standard_normal(40)) + 0.5, t)
    snap = Snapshot(*a.values())
    with pytest.raises(TypeError) as ei:
        kernel_call(K, rule, a, opts, step=3)
    msg = str(ei.value)
    assert names[slot] in msg and names[0] in msg and SHORT[t].replace("f", "float") in msg, msg
    snap.assert_unchanged()
    # the same mistake at index 1 of a multi call: nothing written at index 0 either
    first = _filled(rule, opts, pdt, 33, rng)
    snap = Snapshot(*first.values(), *a.values())
    with pytest.raises(TypeError, match=rf"{names[slot]}\[1\]"):
        multi_call(K, rule, [first, a], opts, step=3)
    snap.assert_unchanged()


@pytest.mark.parametrize("rule", RULES)
def test_every_accepted_dtype_combination_runs(rule, rng):
    """The positive side of the table: every accepted combination is accepted (one state slot
    varied at a time, for every slot)."""
    opts = all_on(rule)
    names = operands(rule, opts)
    for pdt in ALL_TYPES:
        for slot in range(1, len(names)):
            for t in ALL_TYPES:
                if accepted(pdt, slot, t):
                    a = _filled(rule, opts, pdt, 5, rng)
                    a[names[slot]] = cast(np.ones(5), t)
                    kernel_call(K, rule, a, opts, step=1)


def _lowp_arrays(rule, rng, pdt=BF16, n=40):
    return _filled(rule, all_on(rule), pdt, n, rng)


def _expect(exc, words, rule, a, opts, **kw):
    snap = Snapshot(*a.values(), *[v for v in kw.values() if isinstance(v, np.ndarray)])
    with pytest.raises(exc) as ei:
        kernel_call(K, rule, a, opts, **kw)
    for w in words:
        assert w in str(ei.value), (w, str(ei.value))
    snap.assert_unchanged()
    return ei


@pytest.mark.parametrize("bad, exc", [("up", ValueError), ("Nearest", ValueError),
                                      ("", ValueError), (1, TypeError), (None, TypeError),
                                      (b"nearest", TypeError)])
@pytest.mark.parametrize("rule", RULES)
def test_bad_rounding(rule, bad, exc, rng):
    _expect(exc, ["rounding"], rule, _lowp_arrays(rule, rng), all_on(rule), step=2,
            rounding=bad)


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (2 ** 64, ValueError), (1.5, TypeError),
                                      (True, TypeError), ("1", TypeError), (None, TypeError)])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("rule", RULES)
def test_bad_seed(rule, rounding, bad, exc, rng):
    """The seed is checked whatever the rounding (float32 and 16-bit arrays)."""
    for pdt in (BF16, F32):
        _expect(exc, ["seed"], rule, _lowp_arrays(rule, rng, pdt), all_on(rule), step=2,
                rounding=rounding, seed=bad)


@pytest.mark.parametrize("rule", RULES)
def test_extreme_seeds_accepted(rule, rng):
    for seed in (0, 2 ** 64 - 1, np.uint64(2 ** 64 - 1), np.int64(5)):
        a = _lowp_arrays(rule, rng)
        tw = copy_dict(a)
        kernel_call(K, rule, a, all_on(rule), step=2, rounding="stochastic", seed=seed)
        twin_call(rule, tw, all_on(rule), step=2, rounding="stochastic", seed=int(seed))
        assert_all_same(a, tw, f"seed {seed}")


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (-1e-300, ValueError),
                                      (float("nan"), ValueError), (float("inf"), ValueError),
                                      (-float("inf"), ValueError), ("x", TypeError),
                                      (True, TypeError), (1j, TypeError),
                                      (np.ones(2), TypeError)])
@pytest.mark.parametrize("rule", STEP_RULES)
def test_bad_grad_scale(rule, bad, exc, rng):
    for pdt in (BF16, F32, F64):
        _expect(exc, ["grad_scale"], rule, _lowp_arrays(rule, rng, pdt), all_on(rule), step=2,
                grad_scale=bad)


@pytest.mark.parametrize("rule", UNSTEPPED)
def test_stochastic_needs_step(rule, rng):
    for pdt in (BF16, F16, F32):
        a = _lowp_arrays(rule, rng, pdt)
        _expect(ValueError, ["step"], rule, a, all_on(rule), step=None, rounding="stochastic")
    first, second = _lowp_arrays(rule, rng), _lowp_arrays(rule, rng)
    snap = Snapshot(*first.values(), *second.values())
    with pytest.raises(ValueError, match="step"):
        multi_call(K, rule, [first, second], all_on(rule), step=None, rounding="stochastic")
    snap.assert_unchanged()


@pytest.mark.parametrize("rule", UNSTEPPED)
def test_bad_step_with_stochastic_rounding(rule, rng):
    for bad, exc in ((0, ValueError), (-3, ValueError), (2 ** 53 + 1, ValueError),
                     (1.0, TypeError), (True, TypeError), ("1", TypeError)):
        _expect(exc, ["step"], rule, _lowp_arrays(rule, rng), all_on(rule), step=bad,
                rounding="stochastic")


@pytest.mark.parametrize("rule", STEP_RULES)
def test_master_errors(rule, rng):
    opts = all_on(rule)
    # a float32 or float64 param has no master
    for pdt in (F32, F64):
        a = _lowp_arrays(rule, rng, pdt)
        _expect(TypeError, ["master", "param", SHORT[pdt].replace("f", "float")], rule, a, opts,
                step=2, mode="master", aux=np.ones(40, F32))
    # the master is float32
    for mdt in (F16, BF16, F64):
        a = _lowp_arrays(rule, rng, F16)
        _expect(TypeError, ["master", "float32"], rule, a, opts, step=2, mode="master",
                aux=np.ones(40, mdt))
    a = _lowp_arrays(rule, rng)
    _expect(TypeError, ["master"], rule, a, opts, step=2, mode="master", aux=[1.0] * 40)
    _expect(ValueError, ["master", "shape"], rule, a, opts, step=2, mode="master",
            aux=np.ones(41, F32))
    ro = np.ones(40, F32)
    ro.flags.writeable = False
    _expect(ValueError, ["master", "read-only"], rule, a, opts, step=2, mode="master", aux=ro)
    _expect(ValueError, ["master", "contiguous"], rule, a, opts, step=2, mode="master",
            aux=np.ones(80, F32)[::2])
    # master overlapping another operand's memory
    buf = np.zeros(200, F32)
    a2 = _lowp_arrays(rule, rng, BF16)
    names = operands(rule, opts)
    if len(names) > 2:
        a2[names[2]] = buf[:40]
        _expect(ValueError, ["master", "overlap"], rule, a2, opts, step=2, mode="master",
                aux=buf[20:60])
    # master and compensation together
    a = _lowp_arrays(rule, rng)
    kw = dict(opts)
    snap = Snapshot(*a.values())
    m, c = np.ones(40, F32), np.zeros(40, BF16)
    with pytest.raises(ValueError, match="master"):
        kernel_call(K, rule, a, dict(kw, compensation=c), step=2, mode="master", aux=m)
    snap.assert_unchanged()
    assert np.all(m == 1) and np.all(bits(c) == 0)


@pytest.mark.parametrize("rule", STEP_RULES)
def test_compensation_errors(rule, rng):
    opts = all_on(rule)
    for pdt in (F32, F64):
        a = _lowp_arrays(rule, rng, pdt)
        _expect(TypeError, ["compensation", "param"], rule, a, opts, step=2, mode="kahan",
                aux=np.zeros(40, BF16))
    for pdt, cdt in ((BF16, F16), (BF16, F32), (F16, BF16), (F16, F32), (F16, F64)):
        a = _lowp_arrays(rule, rng, pdt)
        _expect(TypeError, ["compensation", SHORT[cdt].replace("f", "float")], rule, a, opts,
                step=2, mode="kahan", aux=np.zeros(40, cdt))
    a = _lowp_arrays(rule, rng)
    _expect(ValueError, ["compensation", "shape"], rule, a, opts, step=2, mode="kahan",
            aux=np.zeros(39, BF16))
    # Kahan needs the param rounded to nearest
    _expect(ValueError, ["compensation", "stochastic"], rule, a, opts, step=2, mode="kahan",
            aux=np.zeros(40, BF16), rounding="stochastic")


@pytest.mark.parametrize("rule", STEP_RULES)
def test_multi_mode_errors(rule, rng):
    """masters/compensations in the multi calls: the same checks, naming the index."""
    opts = all_on(rule)
    first, second = _lowp_arrays(rule, rng), _lowp_arrays(rule, rng)
    snap = Snapshot(*first.values(), *second.values())
    good_m = [np.ones(40, F32), np.ones(40, F32)]
    with pytest.raises(TypeError, match=r"master\[1\]"):
        multi_call(K, rule, [first, second], opts, step=2, mode="master",
                   auxs=[good_m[0], np.ones(40, BF16)])
    with pytest.raises(ValueError, match="master"):
        multi_call(K, rule, [first, second], dict(opts, compensations=[np.zeros(40, BF16)] * 2),
                   step=2, mode="master", auxs=good_m)
    with pytest.raises(TypeError, match=r"compensation\[1\]"):
        multi_call(K, rule, [first, second], opts, step=2, mode="kahan",
                   auxs=[np.zeros(40, BF16), np.zeros(40, F16)])
    with pytest.raises(ValueError, match="stochastic"):
        multi_call(K, rule, [first, second], opts, step=2, mode="kahan", rounding="stochastic",
                   auxs=[np.zeros(40, BF16), np.zeros(40, BF16)])
    with pytest.raises(ValueError, match="master"):
        multi_call(K, rule, [first, second], opts, step=2, mode="master", auxs=good_m[:1])
    snap.assert_unchanged()
    assert all(np.all(m == 1) for m in good_m)


# ------------------------------------------------------------------------------------------------
# 7. grad_scale.
# ------------------------------------------------------------------------------------------------

SCALES = (0.0, 0.37, 2.0 ** -10, 3.0, 65536.0, 1e-30)


def _scale_opts(rule):
    grid = list(option_grid(rule))
    return [grid[0], grid[-1], dict(grid[0], maximize=True), dict(grid[-1], maximize=False)]


@pytest.mark.parametrize("dt", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("rule", STEP_RULES)
def test_grad_scale_equals_scaling_the_gradient_first(rule, dt, rng):
    """float32 / float64 arrays: grad_scale=s equals stepping with g * dtype(s) and grad_scale=1,
    bitwise, maximize on and off, over 10 steps (and in a multi call)."""
    n = 1500
    for opts in _scale_opts(rule):
        for s in SCALES:
            pat = (dt, dt, (dt,))
            a = make_arrays(rule, opts, pat, n, rng, offset=1)
            b = copy_dict(a)
            c = [copy_dict(a), make_arrays(rule, opts, pat, 7, rng)]
            d = [copy_dict(c[0]), copy_dict(c[1])]
            for t in range(1, STEPS + 1):
                g = cast(rng.standard_normal(n), dt)
                g7 = cast(rng.standard_normal(7), dt)
                set_input(a, rule, opts, g)
                set_input(b, rule, opts, g * dt.type(s))
                set_input(c[0], rule, opts, g)
                set_input(c[1], rule, opts, g7)
                set_input(d[0], rule, opts, g * dt.type(s))
                set_input(d[1], rule, opts, g7 * dt.type(s))
                kernel_call(K, rule, a, opts, step=t, grad_scale=s)
                kernel_call(K, rule, b, opts, step=t)
                assert_all_same(a, b, f"{opts_id(opts)} s={s} step {t}", inputs=False)
                multi_call(K, rule, c, opts, step=t, grad_scale=s)
                multi_call(K, rule, d, opts, step=t)
                for k in range(2):
                    assert_all_same(c[k], d[k], f"multi {k} {opts_id(opts)} s={s} step {t}",
                                    inputs=False)
                assert_all_same(c[0], a, f"multi vs single {opts_id(opts)} s={s} step {t}")


def test_grad_scale_one_and_none_are_the_default(rng):
    a = make_arrays("adam", all_on("adam"), LOWP_PATTERNS[0], 100, rng)
    b, c = copy_dict(a), copy_dict(a)
    g = rng.standard_normal(100)
    for x in (a, b, c):
        set_input(x, "adam", all_on("adam"), g)
    kernel_call(K, "adam", a, all_on("adam"), step=1)
    kernel_call(K, "adam", b, all_on("adam"), step=1, grad_scale=1.0)
    kernel_call(K, "adam", c, all_on("adam"), step=1, grad_scale=None)
    assert_all_same(a, b)
    assert_all_same(a, c)


def _scale_lowp_params():
    out = []
    pats = [(BF16, BF16, (BF16,)), (F16, F16, (F32, F16)), (BF16, F32, (F32,)),
            (F16, F32, (BF16,))]
    for rule in STEP_RULES:
        for k, pat in enumerate(pats):
            out.append(pytest.param(rule, pat, id=f"{rule}-{pattern_id(pat)}"))
    return out


@pytest.mark.parametrize("rule, pattern", _scale_lowp_params())
def test_grad_scale_with_16bit_storage_matches_the_twin(rule, pattern, rng):
    """16-bit gradients (and 16-bit params with float32 gradients): the scale is applied in
    float32 after the load, as the twin; maximize on and off, every mode."""
    for k, opts in enumerate(_scale_opts(rule)):
        for s in (0.0, 0.37, 2.0 ** -13, 1024.0):
            mode = ("plain", "master", "kahan")[k % 3]
            rounding = "stochastic" if (k + int(s)) % 2 and mode != "kahan" else "nearest"
            run_parity(rule, opts, pattern, 520, rng, mode=mode, rounding=rounding,
                       grad_scale=s, seed=4, steps=4)


def test_grad_scale_is_not_applied_to_a_16bit_gradient_before_the_load(rng):
    """The product g*s is formed in float32: a bfloat16 gradient times 1/3 differs from the
    product rounded to bfloat16 first (so a kernel that scaled in 16 bits would fail here)."""
    n = 2000
    g = cast(rng.standard_normal(n), BF16)
    p = np.zeros(n, F32)
    m = np.full(n, -0.0, F32)
    p16 = np.zeros(n, BF16)
    # a float32 param cannot take a bfloat16 grad: a bfloat16 param with a float32 master can
    K.momentum_step(p16, g, m, lr=1.0, beta=0.0, dampening=0.0, master=p, grad_scale=1 / 3)
    want = g.astype(F32) * np.float32(1 / 3)
    assert_same_bits(m, want, "velocity = g * s in float32")
    assert np.any(bits(m) != bits((g.astype(F32) * np.float32(1 / 3)).astype(BF16).astype(F32)))


@pytest.mark.parametrize("base", [2 ** 32 - 300, 2 ** 33 - 7, 3 * 2 ** 32])
def test_stochastic_bits_across_the_2_32_index_boundary(base, rng):
    """Blocks cut where the element index crosses a multiple of 2^32 (the hash's high word
    changes there): with the index offset by `base` (a test hook), a call of 1000 elements
    straddles it, and the bits still equal the twin's for indices base .. base + 999."""
    n = 1000
    p = (rng.standard_normal(n) * 3).astype(F32).astype(BF16)
    g = rng.standard_normal(n).astype(F32).astype(BF16)
    twin = {"param": p.copy(), "grad": g.copy()}
    K._set_index_base(base)
    try:
        K.sgd_step(p, g, lr=1e-3, step=5, seed=11, rounding="stochastic")
    finally:
        K._set_index_base(0)
    reference.step_exact("sgd", twin, lr=1e-3, step=5, seed=11, rounding="stochastic",
                         start=base)
    assert_same_bits(p, twin["param"], "param")
