"""pytest-benchmark suite: every implementation of every kernel, grouped by (kernel, dtype, size).

    python -m pytest bench --benchmark-enable -q
    python -m pytest bench --benchmark-enable --bench-sizes 14,20 --bench-dtypes float32 \
        --bench-kernels adam --benchmark-columns median,iqr,ops

Without ``--benchmark-enable`` (the project's pytest addopts disable benchmarks) each case runs
once, as a smoke test.  Implementations: ``fastopt`` (default threads), ``fastopt-1thread``,
``same-traffic`` (``same_traffic_step``, the memory-limit reference, default threads),
``numpy-course`` (``fastopt.reference``), ``numpy-inplace`` (ufuncs with ``out=``, no temporaries),
``torch-fused`` / ``torch-foreach`` (``torch.optim``, when torch is installed).
"""

import numpy as np

from fastopt.bench import cases


def test_kernel(benchmark, bench_spec, bench_group, bench_case, bench_fn):
    kernel, dtype, n, impl = bench_spec
    benchmark.group = bench_group
    benchmark.extra_info.update(kernel=kernel, dtype=dtype, n=n, implementation=impl,
                                bytes_moved=bench_case.nbytes_moved)
    benchmark(bench_fn)
    for a in bench_case.arrays:            # the update stayed finite however often it ran
        assert np.isfinite(a).all()


def test_inplace_twins_match_reference():
    """The NumPy baselines compute what fastopt.reference computes (not a benchmark)."""
    cases.check_twins(np.float64)
    cases.check_twins(np.float32)
