"""Shared test helpers: the awkward-array generator, a uniform way to call every kernel
(fast, reference, per-ISA module, multi-array), comparison helpers, and fixtures that restore the
library's global settings (thread count, serial threshold).

The generator follows bottleneck's idea of one place that produces every array shape and layout a
fast kernel must survive: empty and tiny sizes, sizes around SIMD widths (8 float64 / 16 float32 per
512-bit register), sizes above the serial threshold, views that start at an odd element offset (so
the 64-byte peel and the thread split see every alignment), and multi-dimensional shapes.
"""

import contextlib
import itertools
import os
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

import fastopt
from fastopt import _config, _dispatch, _registry

FLOAT_DTYPES = (np.float32, np.float64)
SERIAL_THRESHOLD = fastopt.show_config(print_=False)["serial_threshold"]
OPENMP = fastopt.show_config(print_=False)["openmp"]

# Around SIMD widths: 8 float64 or 16 float32 lanes in a 512-bit register, 4/8 in 256-bit.
SMALL_SIZES = (0, 1, 7, 8, 9, 15, 16, 17, 1023)
# Above the serial threshold, so the threaded path runs (odd sizes, so the split is uneven).
BIG_SIZES = (SERIAL_THRESHOLD, SERIAL_THRESHOLD + 1, 2 * SERIAL_THRESHOLD + 7,
             3 * SERIAL_THRESHOLD + 13)
LAYOUTS = ("contiguous", "offset", "2d", "3d", "offset_2d")
KERNELS = tuple(r.name for r in _registry.RULES)


# ------------------------------------------------------------------------------------------------
# The awkward-array generator.
# ------------------------------------------------------------------------------------------------

def _smallest_divisor(n):
    for d in range(2, int(n ** 0.5) + 1):
        if n % d == 0:
            return d
    return 1


def shape_for(n, layout):
    """A shape with n elements for `layout` (multi-dimensional layouts factor n)."""
    if layout in ("contiguous", "offset"):
        return (n,)
    if n == 0:
        return (0, 3) if layout in ("2d", "offset_2d") else (2, 0, 3)
    d = _smallest_divisor(n)
    if layout in ("2d", "offset_2d"):
        return (d, n // d) if d > 1 else (n, 1)
    rest = n // d if d > 1 else n
    e = _smallest_divisor(rest)
    return (d, e, rest // e) if e > 1 else (d, rest, 1) if d > 1 else (1, n, 1)


def new_array(shape, dtype, layout, values=None):
    """A fresh writable C-contiguous array of `shape` and `dtype` laid out as `layout`:
    'offset*' layouts are views starting one element into a larger buffer (np.empty(n+1)[1:])."""
    n = int(np.prod(shape, dtype=np.int64))
    if layout.startswith("offset"):
        a = np.empty(n + 1, dtype=dtype)[1:].reshape(shape)
    else:
        a = np.empty(shape, dtype=dtype)
    assert a.flags.c_contiguous and a.flags.writeable
    a[...] = 0 if values is None else np.asarray(values, dtype=np.float64).reshape(shape)
    return a


@dataclass(frozen=True)
class ArrayCase:
    """One size / dtype / layout combination; `new()` makes arrays of that layout."""
    n: int
    dtype: type
    layout: str
    shape: tuple = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "shape", shape_for(self.n, self.layout))

    def new(self, values=None):
        return new_array(self.shape, self.dtype, self.layout, values)

    @property
    def id(self):
        return f"{np.dtype(self.dtype).name}-n{self.n}-{self.layout}"


def array_cases(sizes=SMALL_SIZES, dtypes=FLOAT_DTYPES, layouts=LAYOUTS):
    """Every (size, dtype, layout) combination, as ArrayCase objects (bottleneck-style)."""
    for n, dt, lay in itertools.product(sizes, dtypes, layouts):
        yield ArrayCase(n, dt, lay)


def case_params(**kw):
    """array_cases() as pytest params with readable ids."""
    return [pytest.param(c, id=c.id) for c in array_cases(**kw)]


# ------------------------------------------------------------------------------------------------
# Kernels: option grids, state names, a uniform call, random inputs.
# ------------------------------------------------------------------------------------------------

# Hyperparameters away from the defaults (so a swapped or ignored argument changes the result),
# with eps large enough that inside/outside the square root differ visibly even in float32; and
# the option axes: both from the registry, so a new rule gets the generic tests for free.
BASE_HYPER = {r.name: dict(r.example) for r in _registry.RULES}


def option_grid(kernel):
    """Every option combination of `kernel` (dicts of keyword arguments, hyperparameters
    included)."""
    base = BASE_HYPER[kernel]
    axes = _registry.BY_NAME[kernel].axes
    keys = list(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        yield {**base, **dict(zip(keys, values))}


def opts_id(opts):
    return "-".join(f"{k}={v}" for k, v in opts.items() if k not in ("lr", "eps") and
                    not (k.startswith("beta")))


def grid_params(kernels=KERNELS):
    """(kernel, opts) pytest params for every option combination of every kernel."""
    return [pytest.param(k, o, id=f"{k}-{opts_id(o)}") for k in kernels for o in option_grid(k)]


def some_options(kernel):
    """A few representative option sets per kernel (default, all options on)."""
    grid = list(option_grid(kernel))
    return [grid[0], grid[-1]] if len(grid) > 1 else grid


def some_params(kernels=KERNELS):
    return [pytest.param(k, o, id=f"{k}-{opts_id(o)}") for k in kernels for o in
            some_options(k)]


def state_names(kernel, opts):
    """Names of the state arrays `kernel` needs with `opts`, in call order (the registry's)."""
    return _registry.operands_in_use(_registry.BY_NAME[kernel], opts)[2:]


def array_names(kernel, opts):
    """All array names of one call: the written lead array, the read input, then the states."""
    return _registry.operands_in_use(_registry.BY_NAME[kernel], opts)


def call(mod, kernel, arrays, opts, *, step=1, n_threads=None):
    """Call `kernel` of module `mod` (fastopt, fastopt.reference or a _dispatch.load() module)
    on `arrays` (a dict keyed by array_names) and return what the call returned.  The operands
    an option needs are keywords; the others positional (the registry's order)."""
    rule = _registry.BY_NAME[kernel]
    o = dict(opts)
    if n_threads is not None:
        o["n_threads"] = n_threads
    if rule.stepped:
        o["step"] = step
    pos = [arrays[op.name] for op in rule.operands if op.needs is None]
    kw = {op.name: arrays.get(op.name) for op in rule.operands if op.needs is not None}
    return getattr(mod, rule.twin)(*pos, **kw, **o)


def call_multi(mod, kernel, list_of_arrays, opts, *, step=1, n_threads=None):
    """The *_multi version of `kernel` on a list of array dicts (one dict per array index)."""
    rule = _registry.BY_NAME[kernel]
    o = dict(opts)
    if n_threads is not None:
        o["n_threads"] = n_threads
    if rule.stepped:
        o["step"] = step
    used = _registry.operands_in_use(rule, opts)

    def col(name):
        return [a[name] for a in list_of_arrays]

    pos = [col(op.name) for op in rule.operands if op.needs is None]
    kw = {op.plural: (col(op.name) if op.name in used else None)
          for op in rule.operands if op.needs is not None}
    return getattr(mod, rule.twin + "_multi")(*pos, **kw, **o)


def make_arrays(kernel, opts, case, rng, *, readonly_grad=False):
    """Fresh arrays for one call: random lead array, random input, zero-started states (as an
    optimizer starts them), all laid out as `case`."""
    names = array_names(kernel, opts)
    arrays = {names[0]: case.new(rng.standard_normal(case.n)),
              names[1]: case.new(rng.standard_normal(case.n))}
    for s in names[2:]:
        arrays[s] = case.new()
    if readonly_grad:
        arrays[names[1]].flags.writeable = False
    return arrays


def copy_arrays(arrays, layout="contiguous"):
    """Deep copies (keeping read-only flags), laid out as `layout`."""
    out = {}
    for k, a in arrays.items():
        b = new_array(a.shape, a.dtype, layout, a)
        b.flags.writeable = a.flags.writeable
        out[k] = b
    return out


def set_input(arrays, kernel, opts, values):
    """Overwrite the read input of every dict in `arrays` (a dict or list of dicts) in place."""
    name = array_names(kernel, opts)[1]
    for a in (arrays if isinstance(arrays, list) else [arrays]):
        g = a[name]
        w = g.flags.writeable
        g.flags.writeable = True
        g[...] = np.asarray(values, dtype=np.float64).reshape(g.shape)
        g.flags.writeable = w


# ------------------------------------------------------------------------------------------------
# Comparisons.
# ------------------------------------------------------------------------------------------------

def tolerances(dtype, desired=None):
    """(rtol, atol) for comparing against the reference: float64 rtol 1e-12, float32 rtol 1e-5,
    with an atol scaled to the magnitude of `desired` (for elements near zero after
    cancellation)."""
    scale = 1.0
    if desired is not None and np.size(desired):
        finite = np.abs(desired[np.isfinite(desired)])
        if finite.size:
            scale = max(float(finite.max()), 1e-30)
    if np.dtype(dtype) == np.float32:
        return 1e-5, 1e-6 * scale
    return 1e-12, 1e-14 * scale


def assert_close(actual, desired, err_msg=""):
    """Element-wise comparison with dtype-appropriate tolerances (never norms)."""
    assert actual.dtype == desired.dtype, (actual.dtype, desired.dtype)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    rtol, atol = tolerances(actual.dtype, desired)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, equal_nan=True,
                               err_msg=err_msg)


def assert_bitwise(actual, desired, err_msg=""):
    """The two arrays hold exactly the same bytes (NaN payloads and signed zeros included)."""
    assert actual.dtype == desired.dtype, (actual.dtype, desired.dtype, err_msg)
    assert actual.shape == desired.shape, (actual.shape, desired.shape, err_msg)
    if actual.tobytes() != desired.tobytes():
        a = np.ascontiguousarray(actual).ravel()
        d = np.ascontiguousarray(desired).ravel()
        bad = np.flatnonzero(np.any(a.view(np.uint8).reshape(a.size, -1)
                                    != d.view(np.uint8).reshape(d.size, -1), axis=1))
        raise AssertionError(f"{err_msg}: {bad.size} of {a.size} elements differ bitwise, "
                             f"first at {bad[:5].tolist()}: {a[bad[:5]]} vs {d[bad[:5]]}")


def assert_dicts_bitwise(actual, desired, err_msg=""):
    assert actual.keys() == desired.keys()
    for k in actual:
        assert_bitwise(actual[k], desired[k], f"{err_msg} [{k}]")


def assert_dicts_close(actual, desired, err_msg=""):
    assert actual.keys() == desired.keys()
    for k in actual:
        assert_close(actual[k], desired[k], f"{err_msg} [{k}]")


class Snapshot:
    """Bytes of every array at creation; `assert_unchanged()` checks none was written."""

    def __init__(self, *arrays):
        self.arrays = [a for a in arrays if isinstance(a, np.ndarray)]
        self.saved = [a.tobytes() for a in self.arrays]

    def assert_unchanged(self):
        for i, (a, s) in enumerate(zip(self.arrays, self.saved)):
            assert a.tobytes() == s, f"array #{i} (shape {a.shape}) was modified by a failing call"


# ------------------------------------------------------------------------------------------------
# Fixtures.
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def _all_modules():
    return [_dispatch.load(lv) for lv in _dispatch.available()]


@pytest.fixture(autouse=True)
def restore_library_settings():
    """Every test leaves the library's default thread count and serial threshold as it found
    them (they are module globals of each ISA build)."""
    mods = _all_modules()
    threads = [m._get_default_threads() for m in mods]
    thresholds = [m._get_serial_threshold() for m in mods]
    yield
    for m, t, s in zip(mods, threads, thresholds):
        m._set_default_threads(t)
        m._set_serial_threshold(s)


@pytest.fixture
def serial_threshold():
    """Set the serial threshold for this test (e.g. 0: thread even tiny arrays)."""
    return _config.set_serial_threshold


def require_torch():
    """torch, or a skip; a test failure (not a skip) when FASTOPT_REQUIRE_TORCH=1, so CI can never
    silently skip the PyTorch parity tests.  Call it at the top of each test that needs torch."""
    try:
        import torch
    except ImportError:
        if os.environ.get("FASTOPT_REQUIRE_TORCH") == "1":
            pytest.fail("FASTOPT_REQUIRE_TORCH=1 but torch is not importable", pytrace=False)
        pytest.skip("torch is not installed")
    return torch


def torch_tolerance(dtype):
    """The tolerances of every comparison with torch.optim."""
    if dtype == np.float64:
        return dict(rtol=1e-10, atol=1e-12)
    return dict(rtol=1e-5, atol=1e-6)


def torch_close(ours, theirs, dtype, what):
    """Our array equals torch's tensor to torch_tolerance, every element."""
    theirs = theirs.detach().numpy()
    assert theirs.dtype == ours.dtype
    np.testing.assert_allclose(ours, theirs, err_msg=what, **torch_tolerance(dtype))


def run_against_torch(th, opt_cls, torch_kw, our_step, state_map, dtype, rng, n=257, steps=10):
    """Run `steps` steps of torch optimizer `opt_cls(**torch_kw)` and of `our_step(t, p, g, st)`
    on the same start and gradients; compare param and every mapped state every step."""
    p0 = rng.standard_normal(n).astype(dtype)
    p = p0.copy()
    tp = th.tensor(p0.copy(), requires_grad=True)
    opt = opt_cls([tp], **torch_kw)
    state = {ours: np.zeros(n, dtype=dtype) for ours in state_map}
    for t in range(1, steps + 1):
        g = rng.standard_normal(n).astype(dtype)
        g.flags.writeable = False
        tp.grad = th.tensor(g.copy())
        opt.step()
        assert our_step(t, p, g, state) is None
        torch_close(p, tp, dtype, f"param, step {t}")
        for ours, theirs in state_map.items():
            torch_close(state[ours], opt.state[tp][theirs], dtype,
                        f"{ours} vs {theirs}, step {t}")
    return p


@contextlib.contextmanager
def num_threads(n):
    """Set the library's default thread count for the block, then restore the previous setting."""
    mods = _all_modules()
    saved = [m._get_default_threads() for m in mods]
    fastopt.set_num_threads(n)
    try:
        yield
    finally:
        for m, t in zip(mods, saved):
            m._set_default_threads(t)


@pytest.fixture(autouse=True, scope="session")
def _wide_cpu_cap():
    """Thread counts above the usable CPUs are clamped (fastopt's rule).  The tests lift the cap
    so that 3- and 16-thread splits are still exercised on a 2-CPU machine; tests of the clamp
    itself set the cap they need (see test_safety.py)."""
    from fastopt import _config
    saved = _config.usable_cpus()
    _config._set_cpu_cap(64)
    yield
    _config._set_cpu_cap(saved)


# Hypothesis profiles for tests/test_fuzz.py: "ci" (default; derandomized, so every run draws the
# same examples and CI is reproducible) and "long" for local bug hunting.
try:
    from hypothesis import settings as _hsettings
except ImportError:   # pragma: no cover - hypothesis is in the test extra
    pass
else:
    _hsettings.register_profile("ci", max_examples=150, derandomize=True, deadline=None,
                                database=None)
    _hsettings.register_profile("long", max_examples=5000, deadline=None)
    _hsettings.load_profile(os.environ.get("FASTOPT_HYPOTHESIS_PROFILE", "ci"))
