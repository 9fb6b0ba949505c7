"""The demo's experiments: the course's moons comparison and a softmax MLP on 8x8 digits (and
``run_bf16``, the digits MLP in 16-bit storage, whose code is in ``lowp``).

Each experiment trains the same network from the same initialisation once per optimizer, with
the same epochs and the same mini-batch order, and returns ``{optimizer name: result}`` where a
result is a dict:

==================  ============================================================================
``train_acc``       accuracy on the training set after training (0..1)
``test_acc``        accuracy on the held-out test set
``final_cost``      cross-entropy on the whole training set after training
``seconds``         wall time of the training loop (batches, forward, backward, optimizer steps)
``steps``           optimizer steps taken;  ``steps_per_s`` = steps / seconds
``epochs``          epochs trained;  ``batch_size``;  ``steps_per_epoch``
``lr``              a short description of the learning rate (a number or the schedule)
``costs``           the raw cost of every mini-batch, in step order (float64 array)
``smoothed``        ``costs`` smoothed with the bias-corrected EWA ``fastopt.ewa``
``smoothing_beta``  the beta of that EWA (over ~1% of the run, at least a quarter epoch)
``lr_curve``        the learning rate used in each epoch (``opt.lr`` at the epoch's start)
``params``          the trained parameters (the course's dict ``W1``, ``b1``, ...)
==================  ============================================================================

Every parameter update is a fastopt optimizer's ``step``; the batches come from
``fastopt.MiniBatches``.  Runs are deterministic for a given seed (the data sets are fixed; the seed
picks the initialisation and the batch order).
"""

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import fastopt

from . import data, nn

__all__ = ["MOONS_EPOCHS", "DIGITS_EPOCHS", "run_moons", "run_digits", "run_bf16", "train",
           "describe", "moons_runs", "digits_runs"]

MOONS_EPOCHS = 1000
MOONS_LAYERS = [2, 5, 2, 1]            # the course's 3-layer network (ReLU, ReLU, sigmoid)
MOONS_LR = 0.005                        # one rate for GD, momentum and Adam, as the course does
MOONS_LR0_DECAY = 0.01                  # the decayed runs start at 2x that and end near lr / 2

DIGITS_EPOCHS = 100
DIGITS_LAYERS = [64, 64, 10]            # 8x8 pixels -> 64 ReLU units -> softmax over 10 digits
DIGITS_LR_GD = 0.1                      # one rate for every plain-gradient method
DIGITS_LR_ADAPTIVE = 0.001              # one rate for RMSprop and Adam (their usual default)
# The newer optimizers at their own usual rates: Lion 3-10x below Adam's (its paper), Adagrad
# and Schedule-Free AdamW at their libraries' defaults.
LION_LR_FACTOR = 1 / 5
ADAGRAD_LR = 0.01
SCHEDULE_FREE_LR = 0.0025
SGD_EPOCH_FRACTION = 0.1                # batch size 1 takes m steps per epoch: fewer epochs

BATCH = 64


@dataclass(frozen=True)
class Run:
    """One optimizer of an experiment: how to build it, and its batches and epochs."""
    name: str
    make_optimizer: Callable      # params -> fastopt.Optimizer
    lr: str                        # for the table
    batch_size: int = BATCH
    epoch_fraction: float = 1.0    # the run trains round(epochs * epoch_fraction) epochs


def moons_runs(epochs):
    """The moons experiment's optimizers (the decay intervals are a quarter of the run)."""
    T = max(1, epochs // 4)
    lr = MOONS_LR
    return [
        Run("mini-batch GD", lambda p: fastopt.SGD(p, lr), f"{lr:g}"),
        Run("momentum", lambda p: fastopt.Momentum(p, lr, beta=0.9), f"{lr:g}, beta 0.9"),
        Run("Adam", lambda p: fastopt.Adam(p, lr), f"{lr:g}"),
        Run("Adam + 1/t decay",
            lambda p: fastopt.Adam(p, fastopt.inverse_time_decay(MOONS_LR0_DECAY, 1.0,
                                                                 time_interval=T)),
            f"{MOONS_LR0_DECAY:g} / (1 + epoch/{T})"),
        Run("Adam + staircase decay",
            lambda p: fastopt.Adam(p, fastopt.inverse_time_decay(MOONS_LR0_DECAY, 1.0,
                                                                 time_interval=T,
                                                                 staircase=True)),
            f"{MOONS_LR0_DECAY:g} / (1 + floor(epoch/{T}))"),
        *newer_runs(lr),
    ]


def newer_runs(adam_lr):
    """Lion, Adagrad and Schedule-Free AdamW (the comparison's newer optimizers)."""
    lion = adam_lr * LION_LR_FACTOR
    return [
        Run("Lion", lambda p: fastopt.Lion(p, lion), f"{lion:g}"),
        Run("Adagrad", lambda p: fastopt.Adagrad(p, ADAGRAD_LR), f"{ADAGRAD_LR:g}"),
        Run("Schedule-Free AdamW", lambda p: fastopt.ScheduleFreeAdamW(p, SCHEDULE_FREE_LR),
            f"{SCHEDULE_FREE_LR:g}"),
    ]


def digits_runs(m_train):
    """The digits experiment's optimizers (batch GD takes the whole training set per step)."""
    gd, ad = DIGITS_LR_GD, DIGITS_LR_ADAPTIVE
    return [
        Run("batch GD", lambda p: fastopt.SGD(p, gd), f"{gd:g}", batch_size=m_train),
        Run("SGD (batch 1)", lambda p: fastopt.SGD(p, gd), f"{gd:g}", batch_size=1,
            epoch_fraction=SGD_EPOCH_FRACTION),
        Run("mini-batch GD", lambda p: fastopt.SGD(p, gd), f"{gd:g}"),
        Run("momentum", lambda p: fastopt.Momentum(p, gd, beta=0.9), f"{gd:g}, beta 0.9"),
        Run("RMSprop", lambda p: fastopt.RMSprop(p, ad, beta=0.9), f"{ad:g}, beta 0.9"),
        Run("Adam", lambda p: fastopt.Adam(p, ad), f"{ad:g}"),
        *newer_runs(ad),
    ]


@contextlib.contextmanager
def _one_thread():
    """Run NumPy's matrix products and fastopt's kernels on one thread.

    Every array here is tiny.  A threaded BLAS spends more time waking and synchronising threads
    than multiplying (measured on a busy 2-core machine: a (32, 1348) @ (1348, 64) product took
    0.15 ms on one thread and 60 ms on two).  fastopt already runs arrays below its serial
    threshold on one thread; the one call above it, the digits' per-epoch batch gather (86,000
    elements), measured 0.12 ms serial and a median 9 ms on two threads on that busy machine (an
    OpenMP region waits for a descheduled thread).  threadpoolctl (it comes with scikit-learn)
    limits both; without it the thread settings stay as they are.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1):
        yield


def _progress_bar(total, desc, progress):
    if not progress:
        return contextlib.nullcontext(None)
    from tqdm import tqdm
    # disable=None: tqdm turns itself off when stderr is not a terminal
    return tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, leave=False,
                disable=None, dynamic_ncols=True)


def train(params, optimizer, X, Y, *, batch_size, epochs, seed, progress=False, desc=""):
    """Train `params` in place with `optimizer` on (X, Y) (one example per column).

    Returns ``(costs, lr_curve, seconds)``: the cost of every mini-batch, the learning rate of
    every epoch, and the wall time of the loop.
    """
    batches = fastopt.MiniBatches(X, Y, batch_size=batch_size, axis=1, seed=seed)
    costs = np.empty(epochs * len(batches))
    lr_curve = np.empty(epochs)
    step = 0
    with _progress_bar(epochs, desc, progress) as bar:
        start = time.perf_counter()
        for epoch in range(epochs):
            lr_curve[epoch] = optimizer.lr
            for X_b, Y_b in batches:
                costs[step], grads = nn.cost_and_grads(params, X_b, Y_b)
                optimizer.step(grads)               # the only place the parameters change
                step += 1
            optimizer.end_epoch()
            if bar is not None:
                bar.update()
        seconds = time.perf_counter() - start
    return costs, lr_curve, seconds


def _smoothing_beta(steps, steps_per_epoch):
    """The beta of an EWA over about 1% of the run, and at least a quarter of an epoch (batch-1
    costs are far noisier than batch-64 ones): beta = 1 - 1/window (0: no smoothing)."""
    window = max(1.0, steps / 100.0, steps_per_epoch / 4.0)
    return 1.0 - 1.0 / window


def run_experiment(runs, layers, train_set, test_set, *, epochs, seed, progress, label):
    """Train every run from the same initialisation; return ``{name: result}`` (module doc)."""
    X, Y = train_set
    X_test, Y_test = test_set
    init = nn.init_params(layers, seed)
    results = {}
    with _one_thread():
        for run in runs:
            run_epochs = max(1, round(epochs * run.epoch_fraction))
            params = {k: v.copy() for k, v in init.items()}
            optimizer = run.make_optimizer(params)
            costs, lr_curve, seconds = train(params, optimizer, X, Y,
                                             batch_size=run.batch_size, epochs=run_epochs,
                                             seed=seed, progress=progress,
                                             desc=f"{label}: {run.name}")
            if hasattr(optimizer, "eval"):
                optimizer.eval()           # Schedule-Free: evaluate at the averaged iterate x
            _, cache = nn.forward(params, X)
            beta = _smoothing_beta(costs.size, costs.size // run_epochs)
            results[run.name] = {
                "train_acc": nn.accuracy(params, X, Y),
                "test_acc": nn.accuracy(params, X_test, Y_test),
                "final_cost": nn.cost(cache, Y),
                "seconds": seconds,
                "steps": optimizer.step_count,
                "steps_per_s": optimizer.step_count / seconds if seconds > 0 else float("inf"),
                "epochs": run_epochs,
                "batch_size": min(run.batch_size, X.shape[1]),
                "steps_per_epoch": costs.size // run_epochs,
                "lr": run.lr,
                "costs": costs,
                "smoothed": fastopt.ewa(costs, beta=beta),       # bias-corrected
                "smoothing_beta": beta,
                "lr_curve": lr_curve,
                "params": params,
            }
    return results


def moons_data():
    """The moons training set (300 examples, as the course) and a 1,000-example test set."""
    return (data.make_moons(300, noise=0.2, seed=data.MOONS_SEED),
            data.make_moons(1000, noise=0.2, seed=data.MOONS_TEST_SEED))


def run_moons(epochs=None, seed=0, progress=False):
    """The course's experiment: the [2, 5, 2, 1] network on two moons, five optimizers.

    Mini-batch GD, momentum and Adam share one learning rate (as in the course, where Adam wins
    by adapting its step per parameter); the two decayed Adam runs start at a higher rate and
    decay it with ``fastopt.inverse_time_decay`` (continuous, and the assignment's staircase).
    """
    epochs = MOONS_EPOCHS if epochs is None else epochs
    train_set, test_set = moons_data()
    return run_experiment(moons_runs(epochs), MOONS_LAYERS, train_set, test_set, epochs=epochs,
                          seed=seed, progress=progress, label="moons")


def run_digits(epochs=None, seed=0, progress=False):
    """Softmax MLP [64, 64, 10] on scikit-learn's 8x8 digits (1,348 train / 449 test images).

    Batch GD (one step per epoch), SGD (batch 1, a tenth of the epochs), mini-batch GD and
    momentum share one learning rate; RMSprop and Adam share their usual 0.001.
    """
    epochs = DIGITS_EPOCHS if epochs is None else epochs
    X, Y, X_test, Y_test = data.load_digits_split()
    return run_experiment(digits_runs(X.shape[1]), DIGITS_LAYERS, (X, Y), (X_test, Y_test),
                          epochs=epochs, seed=seed, progress=progress, label="digits")


def describe(name, epochs, seed):
    """A one-line description of experiment `name` ("moons", "digits" or "bf16") for the CLI."""
    if name == "bf16":
        from .lowp import describe as describe_bf16
        return describe_bf16(epochs, seed)
    if name == "moons":
        return (f"moons: 300 training / 1,000 test examples (two noisy half circles), network "
                f"{MOONS_LAYERS} (ReLU, ReLU, sigmoid), mini-batches of {BATCH}, {epochs} "
                f"epochs, seed {seed}")
    sgd_epochs = max(1, round(epochs * SGD_EPOCH_FRACTION))
    return (f"digits: scikit-learn's 8x8 digits, 1,348 training / 449 test images, network "
            f"{DIGITS_LAYERS} (ReLU, softmax), {epochs} epochs (SGD with batch 1: {sgd_epochs}), "
            f"seed {seed}")


def run_bf16(epochs=None, seed=0, progress=False):
    """The digits network trained with Adam in float32 and in four bfloat16 storage schemes
    (``fastopt.demo.lowp``, imported on first use: it builds on this module)."""
    from .lowp import run_bf16 as run
    return run(epochs=epochs, seed=seed, progress=progress)


# name -> (the function, its default epochs), for the command line
EXPERIMENTS = {"moons": (run_moons, MOONS_EPOCHS), "digits": (run_digits, DIGITS_EPOCHS),
               "bf16": (run_bf16, DIGITS_EPOCHS)}
