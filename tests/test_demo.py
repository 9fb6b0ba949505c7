"""The demo (``python -m fastopt demo``) and examples/train_mlp.py.

Back-propagation against finite differences, the data generator, the command line with tiny
epochs (table, PNG, missing-dependency exit code), the experiments at their default settings
(the accuracies the demo promises), determinism, and the example as a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastopt
from fastopt.__main__ import main
from fastopt.demo import data, experiments, nn

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------
# The network: back-propagation is the derivative of the cost
# ------------------------------------------------------------------------------------------------

def numerical_grads(params, X, Y, h=1e-6):
    """Central differences of nn.cost with respect to every parameter element."""
    grads = {}
    for name, p in params.items():
        g = np.empty_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            plus = nn.cost(nn.forward(params, X)[1], Y)
            p[i] = old - h
            minus = nn.cost(nn.forward(params, X)[1], Y)
            p[i] = old
            g[i] = (plus - minus) / (2 * h)
        grads["d" + name] = g
    return grads


@pytest.mark.parametrize("layers, n_classes", [([3, 4, 3, 1], 1), ([4, 6, 5, 3], 3),
                                               ([2, 5, 2, 1], 1)])
def test_backprop_matches_finite_differences(layers, n_classes):
    rng = np.random.default_rng(sum(layers))
    m = 9
    X = rng.standard_normal((layers[0], m))
    if n_classes == 1:
        Y = (rng.random((1, m)) > 0.5).astype(float)
    else:
        Y = data.one_hot(rng.integers(0, n_classes, m), n_classes)
    params = nn.init_params(layers, seed=5)
    for k in params:                                   # non-zero biases: every term is tested
        if k.startswith("b"):
            params[k] += rng.uniform(-0.3, 0.3, params[k].shape)
    cost, grads = nn.cost_and_grads(params, X, Y)
    expected = numerical_grads(params, X, Y)
    assert sorted(grads) == sorted(expected)
    for k in expected:
        assert grads[k].shape == expected[k].shape and grads[k].flags.c_contiguous
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-5, atol=1e-8, err_msg=k)
    assert np.isfinite(cost) and cost > 0


def test_cost_matches_the_course_formula_and_survives_saturation():
    Z = np.array([[-3.0, 0.5, 2.0]])
    Y = np.array([[0.0, 1.0, 1.0]])
    A = 1 / (1 + np.exp(-Z))
    course = -np.mean(Y * np.log(A) + (1 - Y) * np.log(1 - A))
    assert nn.cost([None, (A, Z)], Y) == pytest.approx(course, rel=1e-12)
    huge = np.array([[800.0, -800.0]])                 # probabilities round to exactly 1 and 0
    assert nn.cost([None, (None, huge)], np.array([[1.0, 0.0]])) == pytest.approx(0.0, abs=1e-12)
    assert nn.cost([None, (None, huge)], np.array([[0.0, 1.0]])) == pytest.approx(800.0)


def test_make_moons_is_deterministic_balanced_and_interleaved():
    X, Y = data.make_moons(301, noise=0.0, seed=1)
    assert X.shape == (2, 301) and Y.shape == (1, 301)
    assert X.flags.c_contiguous and Y.flags.c_contiguous
    assert int(Y.sum()) == 151                                      # 150 upper, 151 lower
    upper, lower = X[:, Y[0] == 0], X[:, Y[0] == 1]
    np.testing.assert_allclose(np.hypot(*upper), 1.0)               # radius 1 around (0, 0)
    np.testing.assert_allclose(np.hypot(lower[0] - 1, lower[1] - 0.5), 1.0)
    assert upper[1].min() >= -1e-12 and lower[1].max() <= 0.5 + 1e-12
    X2, Y2 = data.make_moons(301, noise=0.0, seed=1)
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(data.make_moons(50, seed=1)[0], data.make_moons(50, seed=2)[0])


# ------------------------------------------------------------------------------------------------
# The experiments
# ------------------------------------------------------------------------------------------------

def test_experiment_results_are_deterministic_and_fair():
    a = experiments.run_moons(epochs=3, seed=1)
    b = experiments.run_moons(epochs=3, seed=1)
    c = experiments.run_moons(epochs=3, seed=2)
    assert list(a) == ["mini-batch GD", "momentum", "Adam", "Adam + 1/t decay",
                       "Adam + staircase decay", "Lion", "Adagrad", "Schedule-Free AdamW"]
    for name, r in a.items():
        np.testing.assert_array_equal(r["costs"], b[name]["costs"])
        for k in r["params"]:
            np.testing.assert_array_equal(r["params"][k], b[name]["params"][k])
        assert not np.array_equal(r["costs"], c[name]["costs"])
        # same network, initialisation and first batch for every optimizer
        assert r["costs"][0] == a["Adam"]["costs"][0]
        assert r["steps"] == r["costs"].size == 3 * 5 and r["epochs"] == 3
        np.testing.assert_array_equal(r["smoothed"],
                                      fastopt.ewa(r["costs"], beta=r["smoothing_beta"]))
        assert r["lr_curve"].shape == (3,)
    assert a["Adam + staircase decay"]["lr_curve"].tolist() == [0.01, 0.005, 0.01 / 3]
    np.testing.assert_allclose(a["Adam + 1/t decay"]["lr_curve"], [0.01, 0.005, 0.01 / 3])
    assert np.ptp(a["Adam"]["lr_curve"]) == 0


def test_schedule_free_is_evaluated_at_the_average(monkeypatch):
    # the accuracies of the Schedule-Free run are those of x (eval()), not of y
    switched = []
    real_eval = fastopt.ScheduleFreeAdamW.eval

    def spy(self):
        switched.append(self.step_count)
        real_eval(self)
    monkeypatch.setattr(fastopt.ScheduleFreeAdamW, "eval", spy)
    r = experiments.run_moons(epochs=2, seed=0)
    assert switched == [r["Schedule-Free AdamW"]["steps"]]


def test_default_experiments_reach_the_promised_accuracies():
    """The demo's claims at its default settings (about 5-10 s on a 2-core machine)."""
    moons = experiments.run_moons()
    adam, gd = moons["Adam"]["train_acc"], moons["mini-batch GD"]["train_acc"]
    assert moons["Adam"]["epochs"] == moons["mini-batch GD"]["epochs"] == experiments.MOONS_EPOCHS
    assert adam >= 0.90, moons["Adam"]
    assert gd <= adam - 0.05, (gd, adam)                   # clearly lower in the same epochs
    for name in ("Adam + 1/t decay", "Adam + staircase decay"):
        assert moons[name]["train_acc"] >= 0.90
    pytest.importorskip("sklearn")
    digits = experiments.run_digits()
    assert digits["Adam"]["test_acc"] >= 0.95, digits["Adam"]
    assert digits["Adam"]["epochs"] == experiments.DIGITS_EPOCHS
    assert digits["SGD (batch 1)"]["steps"] == 1348 * digits["SGD (batch 1)"]["epochs"]
    assert digits["batch GD"]["steps"] == experiments.DIGITS_EPOCHS
    # what the README says the newer optimizers' curves show
    for name in ("Lion", "Schedule-Free AdamW"):
        assert digits[name]["test_acc"] >= 0.97, (name, digits[name]["test_acc"])
        assert moons[name]["train_acc"] >= 0.93, (name, moons[name]["train_acc"])
    # Adagrad's step shrinks as its sum of squares grows: behind Adam on both
    assert digits["Adagrad"]["final_cost"] > 2 * digits["Adam"]["final_cost"]
    assert moons["Adagrad"]["train_acc"] <= moons["Adam"]["train_acc"] - 0.05


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------

def test_cli_tiny_run_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    out = tmp_path / "demo.png"
    assert main(["demo", "--epochs", "2", "--seed", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("mini-batch GD", "Adam + staircase decay", "batch GD", "SGD (batch 1)",
                 "RMSprop", "final cost", "steps/s", "bf16 nearest", "bf16 + fp32 master",
                 "step (median)", f"wrote {out}"):
        assert name in printed
    raw = out.read_bytes()
    assert raw[:8] == PNG_SIGNATURE and raw[12:16] == b"IHDR"
    width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    assert width > 800 and height > 600
    import matplotlib.image
    assert matplotlib.image.imread(str(out)).shape[:2] == (height, width)


def test_cli_in_a_subprocess_without_plot(tmp_path):
    pytest.importorskip("tqdm")
    proc = subprocess.run([sys.executable, "-m", "fastopt", "demo", "--experiment", "moons",
                           "--epochs", "1", "--no-plot"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Adam + 1/t decay" in proc.stdout and "total wall time" in proc.stdout
    assert not list(tmp_path.iterdir())                    # --no-plot writes nothing


@pytest.mark.parametrize("module", ["matplotlib", "sklearn", "tqdm"])
def test_cli_missing_dependency_says_what_to_install(module, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)         # makes the module unimportable
    assert main(["demo", "--epochs", "1", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "fastopt[demo]"' in err
    assert "pip install matplotlib scikit-learn tqdm" in err
    assert {"sklearn": "scikit-learn"}.get(module, module) in err.split("Install")[0]
    assert not (tmp_path / "x.png").exists()


def test_no_plot_does_not_need_matplotlib(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["demo", "--experiment", "moons", "--epochs", "1", "--no-plot"]) == 0
    assert "Adam" in capsys.readouterr().out


@pytest.fixture
def no_training(monkeypatch):
    """Any experiment started fails the test: the --out check must come before training."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")

    def refuse(**kwargs):
        raise AssertionError("training started before the output path was checked")
    for name, (_, epochs) in list(experiments.EXPERIMENTS.items()):
        monkeypatch.setitem(experiments.EXPERIMENTS, name, (refuse, epochs))


def bad_outs(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return {"missing directory": (str(tmp_path / "no" / "such" / "x.png"), "does not exist"),
            "parent is a file": (str(a_file / "x.png"), "is not a directory"),
            "a directory": (str(tmp_path), "is a directory"),
            "unknown format": (str(tmp_path / "x.notaformat"), "cannot write .notaformat")}


@pytest.mark.parametrize("case", ["missing directory", "parent is a file", "a directory",
                                  "unknown format"])
def test_cli_bad_out_fails_before_training(case, no_training, tmp_path, capsys):
    out, why = bad_outs(tmp_path)[case]
    assert main(["demo", "--out", out]) == 2               # the full default run: must be instant
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("python -m fastopt demo: error: argument --out:") and why in err
    assert out in err and "Traceback" not in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write to read-only directories")
def test_cli_read_only_out_directory(no_training, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["demo", "--out", str(ro / "x.png")]) == 2
    finally:
        ro.chmod(0o700)
    assert "is not writable" in capsys.readouterr().err


def test_cli_bad_out_in_a_subprocess(tmp_path):
    """The reported case: `--out /nonexistent/dir/x.png` trained everything, then a traceback."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    out = str(tmp_path / "nonexistent" / "dir" / "x.png")
    proc = subprocess.run([sys.executable, "-m", "fastopt", "demo", "--out", out], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""                               # nothing was trained or printed
    assert proc.stderr.strip().splitlines() == [
        f"python -m fastopt demo: error: argument --out: cannot write the figure to {out!r}: "
        f"the directory {str(tmp_path / 'nonexistent' / 'dir')!r} does not exist"]


def test_cli_no_plot_ignores_out(no_training, tmp_path, capsys, monkeypatch):
    """--no-plot writes nothing, so a bad --out is no error (the run goes on to train)."""
    from fastopt.demo import cli
    ran = []

    def fake(**kwargs):
        ran.append(kwargs)
        return {}
    monkeypatch.setitem(experiments.EXPERIMENTS, "moons", (fake, 1))
    monkeypatch.setattr(cli, "format_table", lambda results: "table")
    assert main(["demo", "--experiment", "moons", "--no-plot",
                 "--out", str(tmp_path / "no" / "x.png")]) == 0
    assert len(ran) == 1


def test_check_output_path_accepts_good_paths(tmp_path):
    from fastopt.demo.cli import check_output_path
    pytest.importorskip("matplotlib")
    assert check_output_path(str(tmp_path / "fig.png")) is None
    assert check_output_path(str(tmp_path / "fig.PDF")) is None
    (tmp_path / "old.png").write_bytes(b"")
    assert check_output_path(str(tmp_path / "old.png")) is None          # overwritten
    assert check_output_path(str(tmp_path / "no_extension")) is None     # matplotlib's default


def test_cli_rejects_bad_options():
    with pytest.raises(SystemExit):
        main(["demo", "--epochs", "0"])
    with pytest.raises(SystemExit):
        main(["demo", "--experiment", "mnist"])


def test_info_subcommand_still_works(capsys):
    assert main(["info"]) == 0
    assert "fastopt" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# examples/train_mlp.py
# ------------------------------------------------------------------------------------------------

def test_train_mlp_example_runs_and_resumes_exactly():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "train_mlp.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "resumed at epoch 30" in out
    assert "resumed run equals the run that never stopped: yes" in out
    final = [line for line in out.splitlines() if line.startswith("epoch  60")]
    assert final, out
    train_acc = float(final[0].split("train ")[1].split("%")[0])
    assert train_acc >= 90.0
    assert "EMA of the weights: train" in out
