"""examples/data_parallel_numpy.py: 2 processes (gloo) with all-reduced gradients train exactly
as one process on the whole batches (1e-6 relative), and every process ends with the same
parameters."""

import importlib
import pathlib
import sys

import numpy as np

from conftest import require_torch

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "data_parallel_numpy.py"


def _load():
    # importable by name: the spawned processes import the example module to find its worker
    # (spawn passes them this sys.path)
    if str(EXAMPLE.parent) not in sys.path:
        sys.path.insert(0, str(EXAMPLE.parent))
    return importlib.import_module(EXAMPLE.stem)


def test_two_processes_equal_one(tmp_path):
    require_torch()
    ex = _load()
    ex.run(world=2, steps=30, out=str(tmp_path / "dp"))
    single, costs = ex.train(steps=30)
    ranks = [np.load(tmp_path / f"dp.{r}.npz") for r in range(2)]
    for k, v in single.items():
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k])     # the copies stay identical
        np.testing.assert_allclose(ranks[0][k], v, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ranks[0]["costs"], costs, rtol=1e-6)
    assert costs[-1] < 0.5 * costs[0]                                 # it trains
