"""Data-parallel training of a NumPy network with fastopt, on torch.distributed (gloo, CPU).

Each process holds a full copy of the parameters and computes the gradients of its share of
every mini-batch; the gradients are averaged with ``all_reduce`` on ``torch.from_numpy`` views
(zero copy: the NumPy arrays themselves are summed in place), then every process takes the same
``fastopt.Adam`` step, so the copies stay identical.  fastopt does not reinvent the
communication: torch.distributed does it.

    python examples/data_parallel_numpy.py            # 2 processes on this machine

Needs torch (``pip install torch==2.13.0``).
"""

import argparse
import socket

import numpy as np


def init_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"W1": rng.standard_normal((16, 4)) * 0.5, "b1": np.zeros((16, 1)),
            "W2": rng.standard_normal((1, 16)) * 0.5, "b2": np.zeros((1, 1))}


def data(n=256, seed=1):
    """A smooth regression target (one example per column, the course's layout)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4, n))
    Y = np.sin(X[:1]) + 0.5 * X[1:2] * X[2:3]
    return X, Y


def cost_and_grads(p, X, Y, m_total):
    """Mean squared error over the whole batch (of m_total examples, this process holding the
    columns X), and its gradients: summing the processes' gradients gives the batch's."""
    Z1 = p["W1"] @ X + p["b1"]
    A1 = np.tanh(Z1)
    err = p["W2"] @ A1 + p["b2"] - Y
    dZ2 = 2.0 * err / m_total
    dZ1 = (p["W2"].T @ dZ2) * (1.0 - A1 ** 2)
    grads = {"dW2": dZ2 @ A1.T, "db2": dZ2.sum(axis=1, keepdims=True),
             "dW1": dZ1 @ X.T, "db1": dZ1.sum(axis=1, keepdims=True)}
    return float((err ** 2).sum() / m_total), grads


def train(rank=0, world=1, steps=100, batch=64, lr=1e-2, reduce=None):
    """Train for `steps` mini-batches; this process takes columns rank::world of each batch.
    `reduce(grads)` sums the gradients over the processes (None: one process)."""
    import fastopt
    params = init_params()
    X, Y = data()
    opt = fastopt.Adam(params, lr=lr)
    rng = np.random.default_rng(2)             # the same batches in every process
    costs = []
    for _ in range(steps):
        idx = rng.choice(X.shape[1], size=batch, replace=False)
        mine = idx[rank::world]
        cost, grads = cost_and_grads(params, X[:, mine], Y[:, mine], batch)
        if reduce is not None:
            cost = reduce(grads, cost)
        opt.step(grads)
        costs.append(cost)
    return params, costs


def _worker(rank, world, port, steps, out):
    import torch
    import torch.distributed as dist

    import fastopt
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    fastopt.set_num_threads(max(1, fastopt.get_num_threads() // world))   # share the cores

    def reduce(grads, cost):
        for g in grads.values():
            dist.all_reduce(torch.from_numpy(g))      # in place, in the NumPy array
        c = torch.tensor([cost], dtype=torch.float64)
        dist.all_reduce(c)
        return float(c[0])

    try:
        params, costs = train(rank, world, steps, reduce=reduce)
        if out is not None:
            np.savez(f"{out}.{rank}.npz", costs=np.array(costs), **params)
        if rank == 0:
            print(f"{world} processes, {steps} steps: cost {costs[0]:.4f} -> {costs[-1]:.4f}")
    finally:
        dist.destroy_process_group()


def run(world=2, steps=100, out=None):
    """Spawn `world` processes (gloo on 127.0.0.1) and train."""
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(world, port, steps, out), nprocs=world)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args()
    run(a.processes, a.steps)
