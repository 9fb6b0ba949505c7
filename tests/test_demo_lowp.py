"""The demo's bf16 experiment (``python -m fastopt demo --experiment bf16``, fastopt.demo.lowp).

A tiny setting (3 epochs of the digits MLP, about 0.2 s per call): the five runs, their dtypes,
finite and decreasing costs, the effect the experiment shows (float32 master weights end where
float32 ends, round-to-nearest bf16 ends clearly above and leaves more elements unchanged),
determinism, and the command line writing the table and the figure.  No timing assertions."""

import sys

import numpy as np
import pytest

from fastopt.__main__ import main
from fastopt.demo import experiments, lowp

pytest.importorskip("sklearn")                     # the digits ship inside scikit-learn
ml_dtypes = pytest.importorskip("ml_dtypes")

NAMES = ["float32", "bf16 nearest", "bf16 stochastic", "bf16 + Kahan", "bf16 + fp32 master"]
TINY_EPOCHS = 3
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny():
    return lowp.run_bf16(epochs=TINY_EPOCHS, seed=0)


def test_the_five_runs_train_the_same_network(tiny):
    assert list(tiny) == NAMES
    steps = TINY_EPOCHS * 22                       # 1,348 training images in batches of 64
    bf16 = np.dtype(ml_dtypes.bfloat16)
    shapes = {"W1": (64, 64), "b1": (64, 1), "W2": (10, 64), "b2": (10, 1)}
    for name, r in tiny.items():
        assert r["steps"] == r["costs"].size == r["step_seconds"].size == steps, name
        assert r["epochs"] == TINY_EPOCHS and r["steps_per_epoch"] == 22
        assert np.all(np.isfinite(r["costs"])) and np.isfinite(r["final_cost"]), name
        assert np.all(r["step_seconds"] > 0) and r["median_step_s"] > 0
        assert 0.0 <= r["unchanged"] <= 1.0
        assert {k: p.shape for k, p in r["params"].items()} == shapes
        want = np.dtype(np.float32) if name == "float32" else bf16
        assert all(p.dtype == want for p in r["params"].values()), name
        assert r["grad_dtype"] == str(want)
    # the bf16 runs start from the same (rounded) weights and see the same first batch
    first = {name: r["costs"][0] for name, r in tiny.items() if name != "float32"}
    assert len(set(first.values())) == 1, first
    assert abs(tiny["float32"]["costs"][0] - first["bf16 nearest"]) < 0.01


def test_float32_and_master_weights_decrease_the_cost(tiny):
    for name in ("float32", "bf16 + fp32 master"):
        r = tiny[name]
        assert r["final_cost"] < 0.8 * r["costs"][0], (name, r["final_cost"], r["costs"][0])


def test_master_weights_track_float32_and_nearest_rounding_falls_behind(tiny):
    """The experiment's point, on the tiny setting (measured on seeds 0-4 at 3 epochs: master
    within 0.0004 of float32, nearest 0.05-0.07 above it)."""
    f32 = tiny["float32"]["final_cost"]
    assert abs(tiny["bf16 + fp32 master"]["final_cost"] - f32) < 0.01
    assert tiny["bf16 nearest"]["final_cost"] > f32 + 0.02
    # round-to-nearest drops updates below half an ulp: many more elements stay unchanged
    assert tiny["bf16 nearest"]["unchanged"] > tiny["float32"]["unchanged"] + 0.2


def test_runs_are_deterministic_stochastic_rounding_included():
    a = lowp.run_bf16(epochs=1, seed=4)
    b = lowp.run_bf16(epochs=1, seed=4)
    for name in NAMES:
        np.testing.assert_array_equal(a[name]["costs"], b[name]["costs"])
        for k, p in a[name]["params"].items():
            assert p.tobytes() == b[name]["params"][k].tobytes(), (name, k)
    # the rounding seed is the demo's seed: another seed, other random bits
    other = lowp.lowp_runs(seed=5)[2]
    c = lowp.run_bf16(epochs=1, seed=4, runs=[other])
    assert not np.array_equal(c["bf16 stochastic"]["costs"], a["bf16 stochastic"]["costs"])


def test_cli_bf16_prints_the_table_and_writes_the_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    out = tmp_path / "bf16.png"
    assert main(["demo", "--experiment", "bf16", "--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in NAMES + ["step (median)", "final cost", "train acc", "bfloat16", "2 epochs",
                         f"wrote {out}"]:
        assert text in printed, text
    assert "moons" not in printed and "batch GD" not in printed
    raw = out.read_bytes()
    assert raw[:8] == PNG_SIGNATURE and raw[12:16] == b"IHDR"
    import matplotlib.image
    height, width = matplotlib.image.imread(str(out)).shape[:2]
    assert width > 800 and height > 300


def test_bf16_is_registered_and_needs_scikit_learn(monkeypatch):
    from fastopt.demo.cli import missing_dependencies
    run, epochs = experiments.EXPERIMENTS["bf16"]
    assert epochs == lowp.LOWP_EPOCHS
    line = experiments.describe("bf16", 7, 1)
    assert line.startswith("bf16:") and "7 epochs" in line and "seed 1" in line
    assert "scikit-learn" not in missing_dependencies(["bf16"], False)
    monkeypatch.setitem(sys.modules, "sklearn", None)      # makes the module unimportable
    assert "scikit-learn" in missing_dependencies(["bf16"], False)
