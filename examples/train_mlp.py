"""A custom training loop on fastopt's public API.

A small MLP learns the two moons with Adam and an inverse-time learning-rate decay; each step
clips the gradients' global norm, and an EMA of the weights is kept for evaluation.  Halfway
through, the run is checkpointed (the optimizer with ``fastopt.save_state``, the weights with
``np.savez``), everything is rebuilt from scratch as a new process would, the checkpoint is
loaded (``fastopt.load_state``) and training continues.  The resumed run must end with exactly
the weights of a run that never stopped.

Run:  python examples/train_mlp.py        (a second or two; exit code 1 if resuming diverged)
"""

import os
import tempfile

import numpy as np

import fastopt
from fastopt.demo import nn                       # forward / backward in NumPy
from fastopt.demo.data import make_moons          # two noisy half circles, one example per column

LAYERS = [2, 16, 16, 1]
EPOCHS = 60
SEED = 0


def make_optimizer(params):
    # lr = 0.01 / (1 + epoch / 20): the optimizer counts epochs, and the count is checkpointed
    schedule = fastopt.inverse_time_decay(0.01, decay_rate=1.0, time_interval=20)
    return fastopt.Adam(params, lr=schedule)


def train(params, opt, X, Y, epochs, ema=None):
    """Train `epochs` more epochs, continuing from ``opt.epoch``; returns the last batch's cost."""
    for _ in range(epochs):
        # The batch order depends only on (SEED, epoch), so a resumed run sees the same batches.
        batches = fastopt.MiniBatches(X, Y, batch_size=64, axis=1, seed=(SEED, opt.epoch))
        for X_b, Y_b in batches:
            cost, grads = nn.cost_and_grads(params, X_b, Y_b)
            fastopt.clip_grad_norm(grads, max_norm=5.0)     # in place, one native pass
            opt.step(grads)                                  # every array, one native call
            if ema is not None:
                ema.update()
        opt.end_epoch()
    return cost


def accuracies(params, train_set, test_set):
    return (f"train {100 * nn.accuracy(params, *train_set):.1f}%, "
            f"test {100 * nn.accuracy(params, *test_set):.1f}%")


def main():
    train_set = X, Y = make_moons(1000, noise=0.2, seed=3)
    test_set = make_moons(1000, noise=0.2, seed=4)

    # 1. A run that never stops, for comparison.
    reference = nn.init_params(LAYERS, seed=SEED)
    train(reference, make_optimizer(reference), X, Y, EPOCHS)

    # 2. The same run, stopped halfway ...
    params = nn.init_params(LAYERS, seed=SEED)
    opt = make_optimizer(params)
    cost = train(params, opt, X, Y, EPOCHS // 2)
    print(f"epoch {opt.epoch:3d}: cost {cost:.4f}, {accuracies(params, train_set, test_set)}")
    with tempfile.TemporaryDirectory() as tmp:
        opt_path, params_path = os.path.join(tmp, "adam.npz"), os.path.join(tmp, "params.npz")
        fastopt.save_state(opt_path, opt)             # moments, step and epoch counts
        np.savez(params_path, **params)
        del params, opt

        # ... and resumed: fresh arrays and a fresh optimizer, then the checkpoint.
        with np.load(params_path) as saved:
            params = {name: saved[name] for name in saved.files}
        opt = make_optimizer(params)
        fastopt.load_state(opt_path, opt)
    print(f"resumed at epoch {opt.epoch}, step {opt.step_count}, learning rate {opt.lr:.4g}")

    ema = fastopt.EMA(params, beta=0.99)               # average the weights of the second half
    cost = train(params, opt, X, Y, EPOCHS - EPOCHS // 2, ema=ema)
    print(f"epoch {opt.epoch:3d}: cost {cost:.4f}, {accuracies(params, train_set, test_set)}")
    print(f"EMA of the weights: {accuracies(ema.averaged(), train_set, test_set)}")

    same = all(np.array_equal(params[k], reference[k]) for k in reference)
    print("resumed run equals the run that never stopped:", "yes" if same else "NO")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
