"""Configuration: show_config, the CLI, thread counts (set/get, OpenMP, threadpoolctl) and the
FASTOPT_ISA override."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import _config
from fastopt import _dispatch

OPENMP = fastopt.show_config(print_=False)["openmp"]
CPU_COUNT = os.cpu_count() or 1
KEYS = {"version", "isa_available", "isa_built", "isa_in_use", "openmp", "num_threads",
        "serial_threshold", "compiler_flags", "numpy_version"}
needs_openmp = pytest.mark.skipif(not OPENMP, reason="built without OpenMP")


def _python(code, **env):
    """Run `code` in a fresh interpreter with env overrides (None removes a variable)."""
    e = dict(os.environ)
    for k, v in env.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          timeout=120)


# ------------------------------------------------------------------------------------------------
# show_config and the CLI.
# ------------------------------------------------------------------------------------------------

def test_show_config_returns_the_dict_and_prints_one_line(capsys):
    cfg = fastopt.show_config()
    out = capsys.readouterr().out
    assert KEYS <= set(cfg)
    assert out.endswith("\n") and out.count("\n") == 1 and out.strip()
    assert cfg["version"] in out and cfg["isa_in_use"] in out


def test_show_config_print_false_prints_nothing(capsys):
    cfg = fastopt.show_config(print_=False)
    assert capsys.readouterr().out == ""
    assert KEYS <= set(cfg)


def test_show_config_values_are_consistent():
    cfg = fastopt.show_config(print_=False)
    assert cfg["version"] == fastopt.__version__
    assert cfg["isa_available"] == _dispatch.available()
    assert "baseline" in cfg["isa_available"]
    assert set(cfg["isa_available"]) <= set(cfg["isa_built"])
    assert cfg["isa_in_use"] == _dispatch.ISA
    if not os.environ.get("FASTOPT_ISA"):
        assert cfg["isa_in_use"] == cfg["isa_available"][-1]      # the best level by default
    assert cfg["isa_in_use"] in cfg["isa_available"]
    assert isinstance(cfg["openmp"], bool)
    assert cfg["num_threads"] == fastopt.get_num_threads()
    assert isinstance(cfg["serial_threshold"], int) and cfg["serial_threshold"] > 0
    assert cfg["numpy_version"] == np.__version__
    assert isinstance(cfg["compiler_flags"], str)
    assert "-ffast-math" not in cfg["compiler_flags"]
    assert "-march=native" not in cfg["compiler_flags"]
    if cfg["openmp"]:
        assert "openmp" in cfg["compiler_flags"]
    json.dumps(cfg)      # plain data, printable by a tool


def test_cli_info_prints_the_version():
    r = subprocess.run([sys.executable, "-m", "fastopt", "info"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert fastopt.__version__ in r.stdout
    assert "ISA" in r.stdout


# ------------------------------------------------------------------------------------------------
# Thread counts.
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def default_threads():
    """The thread count with no library default set (what OpenMP would use)."""
    fastopt.set_num_threads(None)
    return fastopt.get_num_threads()


@needs_openmp
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_set_get_round_trip(n):
    fastopt.set_num_threads(n)
    assert fastopt.get_num_threads() == n
    assert fastopt.show_config(print_=False)["num_threads"] == n
    for level in _dispatch.available():                 # every ISA build follows the setting
        assert _dispatch.load(level).resolve_n_threads(None) == n


def test_set_num_threads_none_resets(default_threads):
    fastopt.set_num_threads(1)
    assert fastopt.get_num_threads() == 1
    fastopt.set_num_threads(None)
    assert fastopt.get_num_threads() == default_threads


@needs_openmp
def test_default_follows_openmp(default_threads):
    """With no library default, a kernel uses what OpenMP would: OMP_NUM_THREADS."""
    r = _python("import fastopt; print(fastopt.get_num_threads())")
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == default_threads >= 1
    r = _python("import fastopt; print(fastopt.get_num_threads())", OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    # above the usable CPUs, OpenMP's default is capped (no oversubscription)
    r = _python("import fastopt; print(fastopt.get_num_threads(), fastopt._config.usable_cpus())",
                OMP_NUM_THREADS="64")
    assert r.returncode == 0, r.stderr
    got, cap = map(int, r.stdout.split())
    assert got == min(64, cap) and cap >= 1


@needs_openmp
@pytest.mark.parametrize("cap", [1, 2, 5])
@pytest.mark.parametrize("n, expected", [(-1, lambda c: c), (-2, lambda c: max(c - 1, 1)),
                                         (-100, lambda c: 1), (3, lambda c: min(3, c)),
                                         (2 ** 70, lambda c: c)])
def test_counts_are_capped_by_the_usable_cpus(n, expected, cap):
    """Negative counts count back from the CPU cap; positive ones above it are clamped."""
    saved = _config.usable_cpus()
    _config._set_cpu_cap(cap)
    try:
        fastopt.set_num_threads(n)
        assert fastopt.get_num_threads() == expected(cap)
    finally:
        fastopt.set_num_threads(None)
        _config._set_cpu_cap(saved)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (1.5, TypeError), ("2", TypeError),
                                      (True, TypeError)])
def test_set_num_threads_rejects(bad, exc):
    before = fastopt.get_num_threads()
    with pytest.raises(exc, match="n_threads"):
        fastopt.set_num_threads(bad)
    assert fastopt.get_num_threads() == before


def test_fixture_restores_threads_between_tests_part1():
    fastopt.set_num_threads(1)


def test_fixture_restores_threads_between_tests_part2():
    """Runs after part1 (file order): the autouse fixture put the default back."""
    for level in _dispatch.available():
        assert _dispatch.load(level)._get_default_threads() == 0


@needs_openmp
def test_threadpoolctl_limits_openmp(default_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastopt.get_num_threads() == 1
        assert fastopt.show_config(print_=False)["num_threads"] == 1
        # results inside the limit are the same as outside (bitwise)
        p = np.linspace(-1, 1, 3 * fastopt.show_config(print_=False)["serial_threshold"])
        g = np.cos(p)
        q = p.copy()
        fastopt.sgd_step(p, g, lr=0.1)
    fastopt.sgd_step(q, g, lr=0.1, n_threads=2)
    assert p.tobytes() == q.tobytes()
    assert fastopt.get_num_threads() == default_threads


@needs_openmp
def test_explicit_library_setting_wins_over_threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fastopt.set_num_threads(2)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastopt.get_num_threads() == 2


def test_fastopt_expect_openmp():
    """CI sets FASTOPT_EXPECT_OPENMP=1 where the build must have OpenMP: never silently serial."""
    if os.environ.get("FASTOPT_EXPECT_OPENMP") != "1":
        pytest.skip("FASTOPT_EXPECT_OPENMP is not set to 1")
    assert fastopt.show_config(print_=False)["openmp"] is True, \
        "fastopt was built without OpenMP but FASTOPT_EXPECT_OPENMP=1"


def test_without_openmp_everything_is_one_thread():
    if OPENMP:
        pytest.skip("built with OpenMP")
    fastopt.set_num_threads(4)
    assert fastopt.get_num_threads() == 1


# ------------------------------------------------------------------------------------------------
# FASTOPT_ISA.
# ------------------------------------------------------------------------------------------------

ISA_CODE = ("import warnings; warnings.simplefilter('always')\n"
            "import fastopt, json; print(json.dumps(fastopt.show_config(print_=False)))")


@pytest.mark.parametrize("level", _dispatch.available())
def test_fastopt_isa_forces_a_level(level):
    r = _python(ISA_CODE, FASTOPT_ISA=level)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["isa_in_use"] == level
    assert "RuntimeWarning" not in r.stderr


def test_fastopt_isa_baseline():
    r = _python(ISA_CODE, FASTOPT_ISA="baseline")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["isa_in_use"] == "baseline"


def test_fastopt_isa_is_case_and_space_insensitive():
    r = _python(ISA_CODE, FASTOPT_ISA="  BaseLine ")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["isa_in_use"] == "baseline"


@pytest.mark.parametrize("value", ["sse9", "avx1024", "native"])
def test_unknown_fastopt_isa_warns_and_falls_back(value):
    r = _python(ISA_CODE, FASTOPT_ISA=value)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" in r.stderr and value in r.stderr and "FASTOPT_ISA" in r.stderr
    assert json.loads(r.stdout)["isa_in_use"] == _dispatch.available()[-1]


def test_no_fastopt_isa_picks_the_best_level():
    r = _python(ISA_CODE, FASTOPT_ISA=None)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["isa_in_use"] == _dispatch.available()[-1]
    assert "RuntimeWarning" not in r.stderr
