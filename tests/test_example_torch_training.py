"""examples/torch_cpu_training.py: the default run (a CNN on the digits, 10 epochs) trains to a
sensible test accuracy and times both optimizers; with the same seed and batches,
fastopt.torch.AdamW ends with the parameters of torch.optim.AdamW (the one-line switch, clipping
included)."""

import importlib.util
import math
import pathlib

import numpy as np
import pytest

from conftest import require_torch, torch_tolerance

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "torch_cpu_training.py"
# One thread: as fast for this small model, and immune to the barrier waits of 2 OpenMP threads
# on a busy machine (measured 2 s against 15-50 s for the default run on 2 shared cores).
ONE = ["--threads", "1"]
TINY = ONE + ["--epochs", "2", "--limit", "256", "--timing-steps", "0", "--no-progress"]  # 8 steps


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """--threads sets torch's process-wide thread count: put it back (conftest restores
    fastopt's)."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _load():
    require_torch()
    pytest.importorskip("sklearn")                    # the digits ship inside scikit-learn
    spec = importlib.util.spec_from_file_location(EXAMPLE.stem, EXAMPLE)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    return ex


def test_default_run_trains_and_times_both_optimizers(capsys):
    ex = _load()
    pytest.importorskip("tqdm")
    r = ex.main(ONE + ["--timing-steps", "20"])        # the defaults, with the progress bar
    out = capsys.readouterr().out
    assert "epoch  10/10" in out and "fastopt.torch.AdamW" in out
    assert len(r["train_loss"]) == len(r["test_accuracy"]) == 10
    assert all(math.isfinite(x) for x in r["train_loss"] + r["step_losses"])
    assert r["train_loss"][-1] < 0.2 * r["train_loss"][0]
    assert r["final_accuracy"] >= 0.9                  # 98.9% measured; chance is 10%
    for p in r["model"].parameters():
        assert bool(p.isfinite().all())
    for name in ("fastopt", "torch_fused"):
        for kind in ("step", "clip_step"):
            t = r["step_time"][name][kind]
            assert math.isfinite(t) and t > 0, (name, kind, t)


def test_fastopt_adamw_equals_torch_adamw():
    ex = _load()
    # max_norm 0.2 is below some of these steps' gradient norms: clipped and unclipped steps
    runs = {o: ex.main(TINY + ["--optimizer", o, "--max-norm", "0.2"])
            for o in ("fastopt", "torch")}
    ours, theirs = runs["fastopt"], runs["torch"]
    assert ours["step_losses"][-1] < ours["step_losses"][0]
    np.testing.assert_allclose(ours["step_losses"], theirs["step_losses"], rtol=1e-5)
    for (name, p), (_, q) in zip(ours["model"].named_parameters(),
                                 theirs["model"].named_parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), err_msg=name,
                                   **torch_tolerance(np.float32))


@pytest.mark.parametrize("precision", ["bf16-master", "bf16-sr"])
def test_bf16_precisions_train(precision):
    ex = _load()
    import torch
    r = ex.main(ONE + ["--precision", precision, "--epochs", "4", "--limit", "512",
                       "--timing-steps", "5", "--no-progress"])              # 32 steps
    assert all(p.dtype == torch.bfloat16 for p in r["model"].parameters())
    assert all(math.isfinite(x) for x in r["train_loss"] + r["step_losses"])
    assert r["train_loss"][-1] < 0.85 * r["train_loss"][0]
    assert r["final_accuracy"] >= 0.4                  # chance is 10%
    for name in ("fastopt", "torch_fused"):
        for kind in ("step", "clip_step"):
            t = r["step_time"][name][kind]
            assert math.isfinite(t) and t > 0, (name, kind, t)


def test_bf16_stochastic_rounding_is_reproducible():
    ex = _load()
    import torch
    a, b = (ex.main(TINY + ["--precision", "bf16-sr"]) for _ in range(2))
    for p, q in zip(a["model"].parameters(), b["model"].parameters()):
        assert torch.equal(p, q)


def test_bf16_precisions_need_fastopt():
    ex = _load()
    with pytest.raises(ValueError, match="--optimizer fastopt"):
        ex.main(TINY + ["--precision", "bf16-master", "--optimizer", "torch"])
