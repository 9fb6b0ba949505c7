"""Fixtures of the pytest-benchmark suite (``python -m pytest bench --benchmark-enable``).

One benchmark group per (kernel, dtype, size), so the implementations sit side by side in
pytest-benchmark's table.  The cases and the implementations are the ones ``python -m fastopt
bench`` times (``fastopt.bench.cases``), so both report the same things.

Options: ``--bench-sizes 10,14,20`` (exponents of 2, or element counts > 64),
``--bench-dtypes float32,float64``, ``--bench-kernels sgd,momentum,rmsprop,adam,adamw,ewa``.
torch rows appear when torch is importable (set FASTOPT_BENCH_NO_TORCH=1 to leave them out); torch
runs on fastopt's default thread count.

The training-loop suite (``test_bench_training.py``) adds ``--bench-batch-sizes 64,256`` (the
mini-batch epoch) and ``--bench-rounds 5`` (rounds of its clipping and epoch benchmarks, which take
milliseconds to a second a call); its fixtures ``bench_threads`` and ``bench_torch`` are below.
"""

import functools

import numpy as np
import pytest

from fastopt.bench import cases
from fastopt.bench.cli import parse_sizes
from fastopt._config import get_num_threads

DEFAULT_SIZES = "10,14,20"
DEFAULT_DTYPES = "float32,float64"
DEFAULT_BATCH_SIZES = ",".join(str(b) for b in cases.EPOCH_BATCHES)
DEFAULT_ROUNDS = 5

# fastopt's default thread count, read before torch is imported (torch.set_num_threads changes
# the OpenMP default that n_threads=None follows; the fastopt rows pass it explicitly).
THREADS = get_num_threads()


def pytest_addoption(parser):
    group = parser.getgroup("fastopt-bench", "fastopt benchmark cases")
    group.addoption("--bench-sizes", default=DEFAULT_SIZES,
                    help=f"comma-separated exponents of 2 (or element counts > 40); "
                         f"default {DEFAULT_SIZES}")
    group.addoption("--bench-dtypes", default=DEFAULT_DTYPES,
                    help=f"comma-separated float32/float64; default {DEFAULT_DTYPES}")
    group.addoption("--bench-kernels", default=",".join(cases.KERNELS),
                    help=f"comma-separated, from {','.join(cases.KERNELS)}; default all")
    group.addoption("--bench-batch-sizes", default=DEFAULT_BATCH_SIZES,
                    help=f"training suite: batch sizes of the mini-batch epoch; "
                         f"default {DEFAULT_BATCH_SIZES}")
    group.addoption("--bench-rounds", type=int, default=DEFAULT_ROUNDS,
                    help=f"training suite: rounds of the clipping and epoch benchmarks "
                         f"(after one warm-up round); default {DEFAULT_ROUNDS}")


@functools.lru_cache(maxsize=1)
def _torch():
    torch = cases.import_torch()
    if torch is not None:
        torch.set_num_threads(THREADS)
    return torch


def implementations(kernel, torch_available):
    """Implementation ids for `kernel`, in table order."""
    impls = ["fastopt", "fastopt-1thread", "same-traffic", "numpy-course", "numpy-inplace"]
    if torch_available:
        impls += [f"torch-{mode}" for _, mode in cases.torch_variants(kernel)]
    return impls


@functools.lru_cache(maxsize=1)          # one case alive at a time: the tests run group by group
def make_case(kernel, dtype, n):
    return cases.Case(kernel, n, np.dtype(dtype))


def make_fn(case, impl):
    """The zero-argument callable that benchmarks `impl` on `case`."""
    if impl == "fastopt":
        return cases.fastopt_fn(case, THREADS)
    if impl == "fastopt-1thread":
        return cases.fastopt_fn(case, 1)
    if impl == "same-traffic":
        return cases.traffic_fn(case, THREADS)
    if impl == "numpy-course":
        return cases.course_fn(case)
    if impl == "numpy-inplace":
        return cases.inplace_fn(case)
    if impl.startswith("torch-"):
        return cases.torch_fn(case, impl[len("torch-"):], _torch())
    raise ValueError(impl)


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def pytest_generate_tests(metafunc):
    if "bench_spec" not in metafunc.fixturenames:
        return
    opt = metafunc.config.getoption
    kernels = _csv(opt("--bench-kernels"))
    bad = [k for k in kernels if k not in cases.KERNELS]
    if bad:
        raise pytest.UsageError(f"--bench-kernels: unknown {', '.join(bad)}")
    dtypes = _csv(opt("--bench-dtypes"))
    if any(d not in ("float32", "float64") for d in dtypes):
        raise pytest.UsageError("--bench-dtypes: float32 and/or float64")
    sizes = parse_sizes(opt("--bench-sizes"))
    has_torch = _torch() is not None
    specs, ids = [], []
    for kernel in kernels:
        for dtype in dtypes:
            for n in sizes:
                for impl in implementations(kernel, has_torch):
                    specs.append((kernel, dtype, n, impl))
                    ids.append(f"{kernel}-{dtype}-{cases.size_label(n)}-{impl}")
    metafunc.parametrize("bench_spec", specs, ids=ids)


@pytest.fixture
def bench_case(bench_spec):
    kernel, dtype, n, impl = bench_spec
    return make_case(kernel, dtype, n)


@pytest.fixture
def bench_fn(bench_spec, bench_case):
    return make_fn(bench_case, bench_spec[3])


@pytest.fixture
def bench_group(bench_spec):
    kernel, dtype, n, _ = bench_spec
    return f"{kernel} {dtype} n={cases.size_label(n)}"


@pytest.fixture(scope="session")
def bench_threads():
    """fastopt's default thread count, as read before torch was imported."""
    return THREADS


@pytest.fixture(scope="session")
def bench_torch():
    """torch (its thread count set to bench_threads), or None when it is not importable."""
    return _torch()
