"""The demo's bf16 experiment: the digits MLP trained with Adam in 16-bit storage.

The same network as the digits experiment ([64, 64, 10], ReLU, softmax), the same
initialisation, learning rate (Adam, 0.001), mini-batches of 64 and batch order, trained five
times:

=======================  =====================================================================
``float32``              float32 parameters, gradients and state (the baseline)
``bf16 nearest``         bfloat16 parameters and Adam state, round to nearest even
``bf16 stochastic``      the same, every 16-bit write rounded stochastically (seeded)
``bf16 + Kahan``         bfloat16 parameters and state, nearest, plus a bfloat16 compensation
                         buffer that keeps what rounding the parameter lost
``bf16 + fp32 master``   bfloat16 parameters and state, plus a float32 master copy of every
                         parameter that the update goes into (the parameter receives it rounded)
=======================  =====================================================================

The four bf16 runs differ only in how the parameter update is rounded and accumulated: all of
them keep Adam's m and v in bfloat16 (``state_dtype="bfloat16"``) and receive bfloat16
gradients.  The forward and backward passes compute in float32 from the parameters as stored
(``W.astype(np.float32)``); the gradients are rounded to bfloat16 before the step, as a bf16
network's backward pass would deliver them.  At this learning rate an Adam update (at most
about ``lr``) is near or below half a bfloat16 ulp of a typical weight (|W| ~ 0.15: ulp 2**-10),
so round-to-nearest drops many updates; ``unchanged`` in the results measures how many.

Each result has the keys of the other experiments' results that the figure uses (``costs``,
``smoothed``, ``final_cost``, ``train_acc``, ``test_acc``, ``epochs``, ``batch_size``,
``steps_per_epoch``, ``steps``, ``params``) and:

==================  ============================================================================
``storage``         a short description of the storage types (for the table)
``grad_dtype``      the dtype of the gradients given to ``step``
``step_seconds``    the wall time of every ``opt.step`` call (float64 array, seconds)
``median_step_s``   its median
``unchanged``       the fraction of parameter elements that a step left unchanged, averaged over
                    the steps (the parameters the network reads: the bf16 arrays)
``seconds``         wall time of the whole training loop
==================  ============================================================================
"""

import time
from dataclasses import dataclass

import numpy as np

import fastopt

from . import data, nn
from .experiments import (BATCH, DIGITS_EPOCHS, DIGITS_LAYERS, DIGITS_LR_ADAPTIVE, _one_thread,
                          _progress_bar, _smoothing_beta)

__all__ = ["LOWP_EPOCHS", "LOWP_LR", "lowp_runs", "run_bf16", "describe", "format_table"]

LOWP_EPOCHS = DIGITS_EPOCHS            # as the digits experiment: 100 epochs of 22 steps
LOWP_LR = DIGITS_LR_ADAPTIVE           # Adam's usual 0.001, as the digits experiment's Adam
LOWP_STATE = "bfloat16"                # Adam's m and v in every bf16 run


def _bf16():
    import ml_dtypes                 # a dependency of fastopt: NumPy's bfloat16 dtype
    return np.dtype(ml_dtypes.bfloat16)


@dataclass(frozen=True)
class LowpRun:
    """One run: the parameter dtype and the optimizer's storage options."""
    name: str
    storage: str                   # for the table
    bf16: bool                     # bfloat16 parameters and gradients (else float32)
    options: tuple = ()            # keyword arguments of fastopt.Adam beyond lr


def lowp_runs(seed=0):
    """The five runs of the experiment (the stochastic run's random bits come from `seed`)."""
    st = ("state_dtype", LOWP_STATE)
    return [
        LowpRun("float32", "params, state fp32", False),
        LowpRun("bf16 nearest", "params, state bf16", True, (st,)),
        LowpRun("bf16 stochastic", "params, state bf16, SR", True,
                (st, ("rounding", "stochastic"), ("seed", seed))),
        LowpRun("bf16 + Kahan", "+ bf16 compensation", True, (st, ("kahan", True))),
        LowpRun("bf16 + fp32 master", "+ fp32 master", True, (st, ("master_weights", True))),
    ]


def _as32(params):
    """The parameters as the network computes with them: float32 (a copy of bf16 arrays)."""
    return {k: v if v.dtype == np.float32 else v.astype(np.float32) for k, v in params.items()}


def _cost_and_accuracy(params, X, Y):
    p32 = _as32(params)
    _, cache = nn.forward(p32, X)
    return float(nn.cost(cache, Y)), nn.accuracy(p32, X, Y)


def train_lowp(params, optimizer, X, Y, *, epochs, seed, grad_dtype, progress=False, desc=""):
    """Train `params` (float32 or bf16, in place) on (X, Y) with `optimizer`.

    Forward and backward in float32; the gradients are cast to `grad_dtype` before the step.
    Returns ``(costs, step_seconds, unchanged, seconds)``: the cost of every mini-batch, the wall
    time of every ``optimizer.step`` call, the fraction of parameter elements each step left
    unchanged, and the wall time of the loop.
    """
    batches = fastopt.MiniBatches(X, Y, batch_size=BATCH, axis=1, seed=seed)
    n = epochs * len(batches)
    costs, step_seconds, unchanged = np.empty(n), np.empty(n), np.empty(n)
    size = sum(p.size for p in params.values())
    step = 0
    with _progress_bar(epochs, desc, progress) as bar:
        start = time.perf_counter()
        for _ in range(epochs):
            for X_b, Y_b in batches:
                cost, grads = nn.cost_and_grads(_as32(params), X_b, Y_b)
                grads = {k: g.astype(grad_dtype, copy=False) for k, g in grads.items()}
                before = {k: p.copy() for k, p in params.items()}
                t0 = time.perf_counter()
                optimizer.step(grads)               # the only place the parameters change
                step_seconds[step] = time.perf_counter() - t0
                costs[step] = cost
                unchanged[step] = sum(int(np.count_nonzero(params[k] == before[k]))
                                      for k in params) / size
                step += 1
            optimizer.end_epoch()
            if bar is not None:
                bar.update()
        seconds = time.perf_counter() - start
    return costs, step_seconds, unchanged, seconds


def run_bf16(epochs=None, seed=0, progress=False, runs=None):
    """The bf16 experiment: ``{run name: result}`` for the five runs of ``lowp_runs(seed)``
    (or `runs`), all from the same initialisation and batch order (module doc)."""
    bf16 = _bf16()
    epochs = LOWP_EPOCHS if epochs is None else epochs
    X, Y, X_test, Y_test = (a.astype(np.float32) for a in data.load_digits_split())
    init = nn.init_params(DIGITS_LAYERS, seed)                     # float64
    results = {}
    with _one_thread():
        for run in (lowp_runs(seed) if runs is None else runs):
            dtype = bf16 if run.bf16 else np.dtype(np.float32)
            params = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in init.items()}
            optimizer = fastopt.Adam(params, LOWP_LR, **dict(run.options))
            costs, step_seconds, unchanged, seconds = train_lowp(
                params, optimizer, X, Y, epochs=epochs, seed=seed, grad_dtype=dtype,
                progress=progress, desc=f"bf16: {run.name}")
            final_cost, train_acc = _cost_and_accuracy(params, X, Y)
            steps_per_epoch = costs.size // epochs
            beta = _smoothing_beta(costs.size, steps_per_epoch)
            results[run.name] = {
                "storage": run.storage,
                "grad_dtype": str(dtype),
                "final_cost": final_cost,
                "train_acc": train_acc,
                "test_acc": _cost_and_accuracy(params, X_test, Y_test)[1],
                "step_seconds": step_seconds,
                "median_step_s": float(np.median(step_seconds)),
                "unchanged": float(unchanged.mean()),
                "seconds": seconds,
                "steps": optimizer.step_count,
                "epochs": epochs,
                "batch_size": BATCH,
                "steps_per_epoch": steps_per_epoch,
                "lr": f"{LOWP_LR:g}",
                "costs": costs,
                "smoothed": fastopt.ewa(costs, beta=beta),
                "smoothing_beta": beta,
                "params": params,
            }
    return results


def describe(epochs, seed):
    """A one-line description of the experiment for the command line."""
    return (f"bf16: the digits network {DIGITS_LAYERS} with Adam (lr {LOWP_LR:g}, batch "
            f"{BATCH}) in float32 and in bfloat16 storage (bf16 grads; forward and backward in "
            f"float32), {epochs} epochs, seed {seed}")


def format_table(results):
    """The bf16 experiment's results as a text table."""
    head = (f"{'run':<20} {'storage':<24} {'grads':<8} {'steps':>6} {'final cost':>10} "
            f"{'train acc':>9} {'test acc':>8} {'step (median)':>13} {'unchanged':>9}")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(f"{name:<20} {r['storage']:<24} {r['grad_dtype']:<8} {r['steps']:>6} "
                     f"{r['final_cost']:>10.4f} {100 * r['train_acc']:>8.1f}% "
                     f"{100 * r['test_acc']:>7.1f}% {1e6 * r['median_step_s']:>10.1f} us "
                     f"{100 * r['unchanged']:>8.1f}%")
    return "\n".join(lines)
