"""The examples in the docstrings run and print what they say (doctest)."""

import doctest
import importlib

import pytest

MODULES = ["fastopt.kernels", "fastopt.clip", "fastopt.ema", "fastopt.batching",
           "fastopt.schedules", "fastopt.optimizers"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    if name != "fastopt.optimizers":
        assert result.attempted > 0, f"{name} has no examples to run"
