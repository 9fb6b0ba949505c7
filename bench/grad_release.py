"""Gradient release per parameter, inside backward: ``fastopt.torch.step_in_backward`` against
torch's recipe (one ``torch.optim.AdamW(fused=True)`` per parameter, stepped from a
post-accumulate-grad hook, as in PyTorch's tutorial on fusing the step into backward).

The three backwards run interleaved on three copies of the same model, at 1 thread; each cost is
the median backward time less that of a backward whose hooks only free the gradient, divided by
the number of parameters.

    python bench/grad_release.py [n_params] [size]        (default 500 64)
"""

import statistics
import sys
import time

import torch

import fastopt
import fastopt.torch as ft


def main(n=500, size=64, rounds=45, warmup=5):
    torch.set_num_threads(1)
    fastopt.set_num_threads(1)
    x = torch.ones(size)

    def model():
        return [torch.zeros(size, requires_grad=True) for _ in range(n)]

    def loss(ps):
        return torch.stack([(p * x).sum() for p in ps]).sum()

    released, freed, recipe = model(), model(), model()
    ft.step_in_backward(ft.AdamW(released))

    def free(q):
        q.grad = None

    for p in freed:
        p.register_post_accumulate_grad_hook(free)
    per_param = {p: torch.optim.AdamW([p], fused=True) for p in recipe}

    def torch_step(q):
        per_param[q].step()
        per_param[q].zero_grad()

    for p in recipe:
        p.register_post_accumulate_grad_hook(torch_step)
    times = {"fastopt": [], "free": [], "torch": []}
    for _ in range(rounds):
        for name, ps in (("fastopt", released), ("free", freed), ("torch", recipe)):
            total = loss(ps)
            t0 = time.perf_counter()
            total.backward()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[warmup:]) for k, v in times.items()}
    per = {k: (med[k] - med["free"]) / n * 1e6 for k in ("fastopt", "torch")}
    print(f"{n} parameters of {size}, 1 thread: backward with freeing hooks "
          f"{med['free'] * 1e3:.2f} ms; per parameter: fastopt.torch.step_in_backward "
          f"{per['fastopt']:.1f} us, torch fused AdamW per parameter {per['torch']:.1f} us "
          f"({per['torch'] / per['fastopt']:.1f}x)")
    return per


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
