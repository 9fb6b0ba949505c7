"""pytest-benchmark suite of the training-loop API: the cases of ``python -m fastopt bench --suite
training`` (``fastopt.bench.cases``), one group per case so the implementations sit side by side.

    python -m pytest bench/test_bench_training.py --benchmark-enable -q
    python -m pytest bench/test_bench_training.py --benchmark-enable --bench-batch-sizes 256 \
        --bench-rounds 3 --benchmark-columns median,iqr,ops

Groups (ids end in the thread count, ``-2thr``):

* ``training adam 200x4096 float32, <t> thread(s)``: ``Adam.step`` (one native call for the 200
  arrays), ``adam_step-flat`` (one call over the same 819,200 elements: the reference),
  ``adam_step-loop`` (200 calls), ``torch-fused`` / ``torch-foreach`` (``torch.optim.Adam`` on the
  same tensors);
* ``training clip <layout> float32`` (2^24 elements: one array, or 64 of 2^18):
  ``clip_grad_norm`` (every call clips), ``global_norm`` (the norm pass alone), ``scale_multi``
  (the same-traffic 1-read/1-write pass), ``numpy`` (``np.linalg.norm`` + ``np.multiply``),
  ``torch-foreach`` (``torch.nn.utils.clip_grad_norm_``);
* ``training epoch axis=<a> <shape> b=<b>``: one shuffled epoch, every batch dropped:
  ``MiniBatches`` (fresh batches), ``MiniBatches-reuse`` (``reuse_buffers=True``), ``numpy``
  (fancy indexing, the same permutations), ``copy`` (one ``A.copy()``: the floor).

These calls take no ``n_threads``: fastopt's default thread count and torch's are pinned for each
benchmark and restored after it.  The clipping and epoch benchmarks run ``--bench-rounds`` rounds
(default 5) after one warm-up round; the Adam ones are calibrated by pytest-benchmark.  Without
``--benchmark-enable`` each case runs once, as a smoke test.  The arrays of one case at a time are
alive (the epoch data, 376 MB, last), freed when the module ends.
"""

import gc

import numpy as np
import pytest

from fastopt.bench import cases, timing
from fastopt._config import get_num_threads

THREADS = get_num_threads()
_ALIVE = {}             # the one case whose arrays are alive: the tests run case by case


def _one_alive(key, make):
    if key not in _ALIVE:
        _ALIVE.clear()
        gc.collect()
        _ALIVE[key] = make()
    return _ALIVE[key]


@pytest.fixture(scope="module", autouse=True)
def _free_cases():
    yield
    _ALIVE.clear()
    gc.collect()


def _positive_ints(text, option):
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise pytest.UsageError(f"{option}: comma-separated integers >= 1, got {text!r}")
    return out


def pytest_generate_tests(metafunc):
    has_torch = cases.import_torch() is not None
    names = metafunc.fixturenames
    if "adam_spec" in names:
        specs = [(impl.id, t) for impl in cases.adam_impls(has_torch)
                 for t in timing.thread_counts(impl, THREADS)]
        metafunc.parametrize("adam_spec", specs, ids=[f"{i}-{t}thr" for i, t in specs])
    if "clip_spec" in names:
        specs = [(k, n, impl.id, t) for k, n in cases.CLIP_LAYOUTS
                 for impl in cases.clip_impls(has_torch)
                 for t in timing.thread_counts(impl, THREADS)]
        metafunc.parametrize("clip_spec", specs, ids=[
            f"{k}x{cases.size_label(n)}-{i}-{t}thr" for k, n, i, t in specs])
    if "epoch_spec" in names:
        batches = _positive_ints(metafunc.config.getoption("--bench-batch-sizes"),
                                 "--bench-batch-sizes")
        specs = [(axis, b, impl.id, t) for axis in (0, 1) for b in batches
                 for impl in cases.epoch_impls(axis)
                 for t in timing.thread_counts(impl, THREADS)]
        metafunc.parametrize("epoch_spec", specs, ids=[
            f"axis{a}-b{b}-{i}-{t}thr" for a, b, i, t in specs])


@pytest.fixture
def rounds(pytestconfig):
    r = pytestconfig.getoption("--bench-rounds")
    if r < 1:
        raise pytest.UsageError(f"--bench-rounds must be >= 1, got {r}")
    return r


def _run_pinned(threads, torch, run):
    with timing.threads_restored(torch):
        timing.pin_threads(threads, torch)
        run()


def test_adam_multi(benchmark, adam_spec, bench_torch):
    impl, t = adam_spec
    case = _one_alive("adam", cases.MultiAdamCase)
    benchmark.group = f"training adam {case.label} {case.dtype}, {t} thread(s)"
    benchmark.extra_info.update(case="adam", arrays=case.n_arrays, n=case.n, implementation=impl,
                                threads=t, bytes_moved=case.nbytes(impl))
    fn = case.fn(impl, t, bench_torch)
    _run_pinned(t, bench_torch, lambda: benchmark(fn))
    for p in case.params:                   # the update stayed finite however often it ran
        assert np.isfinite(p).all()


def test_clip(benchmark, clip_spec, bench_torch, rounds):
    k, n, impl, t = clip_spec
    case = _one_alive(("clip", k, n), lambda: cases.ClipCase(k, n))
    benchmark.group = f"training clip {case.label} {case.dtype}"
    benchmark.extra_info.update(case="clip", arrays=k, n=n, implementation=impl, threads=t,
                                bytes_moved=case.nbytes(impl))
    fn = case.fn(impl, t, bench_torch)
    _run_pinned(t, bench_torch, lambda: benchmark.pedantic(fn, setup=case.setup, rounds=rounds,
                                                           warmup_rounds=1))
    assert case.missed == 0, "a timed clipping call found nothing to clip"
    for a in case.arrays:
        assert np.isfinite(a).all() and a.min() > 0


def test_epoch(benchmark, epoch_spec, rounds):
    axis, b, impl, t = epoch_spec
    data = _one_alive("epoch", cases.EpochData)
    case = cases.EpochCase(data, axis, b)
    benchmark.group = f"training epoch axis={axis} {case.A.shape} b={b}"
    benchmark.extra_info.update(case="epoch", axis=axis, shape=list(case.A.shape), batch_size=b,
                                implementation=impl, threads=t, bytes_moved=case.nbytes(impl))
    fn = case.fn(impl, t)
    _run_pinned(t, None, lambda: benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1))


def test_training_baselines_match():
    """The NumPy baselines compute what fastopt does (not a benchmark)."""
    cases.check_training_baselines()
