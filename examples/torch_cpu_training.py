"""Train a small CNN on CPU with fastopt.torch.AdamW, a one-line switch from torch.optim.AdamW.

The data are scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), which ship inside
scikit-learn, so nothing is downloaded.  The last 20% of a fixed permutation is the test split.
The loop is an ordinary PyTorch loop: a cosine learning-rate schedule with linear warmup
(``torch.optim.lr_scheduler.LambdaLR``), the gradients' global norm clipped to 1 in the step
(``opt.step(max_norm=1.0)``, fused into the optimizer's read pass), a tqdm progress bar.  It
prints the train loss and test accuracy of every epoch, then the median ``opt.step()`` time of
fastopt.torch.AdamW against ``torch.optim.AdamW(fused=True)`` on the same model.

    python examples/torch_cpu_training.py                          # fp32, 10 epochs
    python examples/torch_cpu_training.py --precision bf16-master  # fp32 master weights
    python examples/torch_cpu_training.py --precision bf16-sr      # stochastic rounding
    python examples/torch_cpu_training.py --optimizer torch        # on torch.optim.AdamW

Precisions: ``fp32``; ``bf16-master``, a bfloat16 model whose optimizer keeps float32 master
weights (``master_weights=True``); ``bf16-sr``, a pure bfloat16 model whose updates are rounded
stochastically (``rounding="stochastic"``), so small updates are not all lost to rounding.  The
bfloat16 runs compute the loss in float32.

Needs torch (``pip install torch==2.13.0``) and the demo extra (scikit-learn, tqdm).
"""

import argparse
import copy
import math
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fastopt
import fastopt.torch

SPLIT_SEED = 0            # the train/test split is the same on every run (--seed changes the rest)
TEST_FRACTION = 0.2
PRECISIONS = ("fp32", "bf16-master", "bf16-sr")


def load_digits_tensors():
    """scikit-learn's digits as (X_train, y_train, X_test, y_test): X float32 of shape
    (n, 1, 8, 8) scaled to [0, 1], y int64 labels; the test split is the last 20% of a fixed
    permutation."""
    from sklearn.datasets import load_digits        # ships with scikit-learn: no download

    digits = load_digits()
    X = torch.from_numpy((digits.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(y)))
    n_train = len(y) - round(TEST_FRACTION * len(y))
    train, test = order[:n_train], order[n_train:]
    return X[train], y[train], X[test], y[test]


def make_model():
    """Two 3x3 convolutions, a 2x2 max pool and two linear layers (38,282 parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),                                     # 8x8 -> 4x4
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, 10))


def make_optimizer(name, params, precision, lr, weight_decay, seed):
    """AdamW from fastopt.torch (name "fastopt") or torch.optim (name "torch"); the bfloat16
    precisions are fastopt's options."""
    if name == "torch":
        if precision != "fp32":
            raise ValueError(f"--precision {precision} is a fastopt.torch option: use "
                             f"--optimizer fastopt")
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    extra = {"fp32": {},
             "bf16-master": {"master_weights": True},                 # fp32 copy in the optimizer
             "bf16-sr": {"rounding": "stochastic", "seed": seed}}[precision]
    return fastopt.torch.AdamW(params, lr=lr, weight_decay=weight_decay, **extra)


def warmup_cosine(total_steps, warmup_steps):
    """The lr factor at step s: linear warmup to 1 over `warmup_steps`, then a cosine to 0."""
    cosine_steps = max(1, total_steps - warmup_steps)

    def factor(s):
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        return 0.5 * (1.0 + math.cos(math.pi * (s - warmup_steps) / cosine_steps))
    return factor


def loss_of(model, X, y, dtype):
    logits = model(X.to(dtype))
    return F.cross_entropy(logits.float(), y)                  # the loss in float32


@torch.no_grad()
def accuracy(model, X, y, dtype):
    return (model(X.to(dtype)).argmax(dim=1) == y).float().mean().item()


def clipped_step(opt, params, max_norm):
    """One step with the gradients' global norm clipped to `max_norm` (None: no clipping)."""
    if isinstance(opt, fastopt.torch.AdamW):
        opt.step(max_norm=max_norm)                    # fused: the gradients are not rewritten
    else:
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        opt.step()


def compare_step_times(model, X, y, dtype, args, steps, warmup=10):
    """Median seconds of ``opt.step()`` and of a clipped step (max_norm 1), fastopt.torch.AdamW
    against torch.optim.AdamW(fused=True), each on its own copy of `model` holding the same
    gradients.  The two alternate step by step, so a busy machine slows both alike."""
    model.zero_grad()
    loss_of(model, X, y, dtype).backward()
    runs = {}
    for name in ("fastopt", "torch_fused"):
        m = copy.deepcopy(model)                       # copies the gradients too
        params = list(m.parameters())
        if name == "fastopt":
            opt = make_optimizer("fastopt", params, args.precision, args.lr,
                                 args.weight_decay, args.seed)
        else:
            opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay,
                                    fused=True)
        runs[name] = (opt, params, {"step": [], "clip_step": []})
    for i in range(warmup + steps):
        for name, (opt, params, times) in runs.items():
            for kind, max_norm in (("step", None), ("clip_step", 1.0)):
                t0 = time.perf_counter()
                clipped_step(opt, params, max_norm)
                dt = time.perf_counter() - t0
                if i >= warmup:
                    times[kind].append(dt)
    model.zero_grad()
    return {name: {k: statistics.median(v) for k, v in times.items()}
            for name, (_, _, times) in runs.items()}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32")
    ap.add_argument("--optimizer", choices=("fastopt", "torch"), default="fastopt",
                    help="fastopt.torch.AdamW (default) or torch.optim.AdamW, for comparison")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--warmup", type=float, default=0.1,
                    help="fraction of the steps spent warming up (default 0.1)")
    ap.add_argument("--max-norm", type=float, default=1.0,
                    help="clip the gradients' global norm to this (default 1)")
    ap.add_argument("--seed", type=int, default=0,
                    help="initialisation, batch order, stochastic rounding")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads of torch and fastopt (default: the libraries' own); this model "
                    "is small: 1 is about as fast, and unaffected by a busy machine")
    ap.add_argument("--limit", type=int, default=None,
                    help="train on the first N training images only (quick runs)")
    ap.add_argument("--timing-steps", type=int, default=200,
                    help="steps of each optimizer in the final timing (0: no timing)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def main(argv=None):
    """Train, print every epoch and the step times; return the results as a dict: per-epoch
    ``train_loss`` and ``test_accuracy``, per-step ``step_losses``, ``final_accuracy``,
    ``step_time`` (median seconds, None without timing) and the trained ``model``."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        fastopt.set_num_threads(args.threads)
    X_train, y_train, X_test, y_test = load_digits_tensors()
    if args.limit is not None:
        X_train, y_train = X_train[:args.limit], y_train[:args.limit]
    dtype = torch.float32 if args.precision == "fp32" else torch.bfloat16

    torch.manual_seed(args.seed)
    model = make_model().to(dtype)
    params = list(model.parameters())
    opt = make_optimizer(args.optimizer, params, args.precision, args.lr, args.weight_decay,
                         args.seed)
    steps_per_epoch = math.ceil(len(y_train) / args.batch_size)
    total = args.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, warmup_cosine(total, max(1, round(args.warmup * total))))
    batches = torch.Generator().manual_seed(args.seed)

    if args.no_progress:
        bar = None
    else:
        from tqdm import tqdm
        # disable=None: tqdm turns itself off when stderr is not a terminal
        bar = tqdm(total=total, unit="step", file=sys.stderr, leave=False, disable=None)
    say = print if bar is None else bar.write
    opt_name = ("fastopt.torch.AdamW" if args.optimizer == "fastopt" else "torch.optim.AdamW")
    say(f"{opt_name}, {args.precision}, {sum(p.numel() for p in params):,} parameters, "
        f"{len(y_train)} training and {len(y_test)} test images, {torch.get_num_threads()} "
        f"torch threads")

    train_loss, test_accuracy, step_losses = [], [], []
    t_start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=batches)
        total_loss = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            opt.zero_grad()
            loss = loss_of(model, X_train[idx], y_train[idx], dtype)
            loss.backward()
            clipped_step(opt, params, args.max_norm)
            sched.step()
            step_losses.append(loss.item())
            total_loss += loss.item() * len(idx)
            if bar is not None:
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        model.eval()
        train_loss.append(total_loss / len(y_train))
        test_accuracy.append(accuracy(model, X_test, y_test, dtype))
        say(f"epoch {epoch + 1:3d}/{args.epochs}  train loss {train_loss[-1]:.4f}  "
            f"test accuracy {test_accuracy[-1]:.2%}")
    if bar is not None:
        bar.close()
    print(f"trained in {time.perf_counter() - t_start:.1f} s: test accuracy "
          f"{test_accuracy[-1]:.2%}")

    step_time = None
    if args.timing_steps > 0:
        n = min(len(y_train), args.batch_size)
        step_time = compare_step_times(model, X_train[:n], y_train[:n], dtype, args,
                                       args.timing_steps)
        ours, fused = step_time["fastopt"], step_time["torch_fused"]
        print(f"median optimizer step over {args.timing_steps} steps "
              f"({len(params)} tensors, {args.precision}):")
        print(f"  {'':12s}{'fastopt.torch.AdamW':>21s}{'torch AdamW(fused=True)':>25s}"
              f"{'fastopt speed-up':>18s}")
        for kind, label in (("step", "step()"), ("clip_step", "clip + step")):
            print(f"  {label:12s}{ours[kind] * 1e6:18.1f} us{fused[kind] * 1e6:22.1f} us"
                  f"{fused[kind] / ours[kind]:17.2f}x")

    return {"precision": args.precision, "optimizer": args.optimizer,
            "train_loss": train_loss, "test_accuracy": test_accuracy,
            "step_losses": step_losses, "final_accuracy": test_accuracy[-1],
            "step_time": step_time, "model": model}


if __name__ == "__main__":
    main()
