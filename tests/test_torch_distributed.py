"""fastopt.torch under torch.distributed (gloo, CPU): ZeroRedundancyOptimizer with
optimizer_class=fastopt.torch.AdamW inside DistributedDataParallel, 2 processes spawned on this
machine, against the same run with torch.optim.AdamW."""

import socket

import numpy as np
import pytest

from conftest import require_torch

STEPS = 20
WORLD = 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, which, bucket, out):
    import torch
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    import fastopt.torch as ft
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                    torch.nn.Linear(16, 3))
        ddp = DDP(model)
        cls = ft.AdamW if which == "fastopt" else torch.optim.AdamW
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=cls, lr=1e-2,
                                      weight_decay=0.05, parameters_as_bucket_view=bucket)
        threads = opt.optim._threads() if which == "fastopt" else None
        g = torch.Generator().manual_seed(1)
        half = 8 // world
        for _ in range(STEPS):
            x, y = torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)
            opt.zero_grad()
            lo, hi = rank * half, (rank + 1) * half          # each rank: half of every batch
            ((ddp(x[lo:hi]) - y[lo:hi]) ** 2).mean().backward()
            opt.step()
        mine = {id(p) for grp in opt.optim.param_groups for p in grp["params"]}
        own = {"n_state": len(opt.optim.state), "n_shard": len(mine),
               "only_own": all(id(p) in mine for p in opt.optim.state),
               "n_total": len(list(model.parameters())), "threads": threads}
        opt.consolidate_state_dict(to=0)
        result = {"rank": rank, **own}
        if rank == 0:
            result["params"] = [p.detach().clone() for p in model.parameters()]
            result["state_dict"] = opt.state_dict()
        torch.save(result, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _run(torch, tmp_path, which, bucket):
    import torch.multiprocessing as mp
    out = str(tmp_path / f"{which}-{bucket}")
    mp.spawn(_worker, args=(WORLD, _free_port(), which, bucket, out), nprocs=WORLD)
    return [torch.load(f"{out}.{r}", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("bucket", [False, True], ids=["plain", "bucket_view"])
def test_zero_redundancy_with_fastopt_adamw(bucket, tmp_path):
    torch = require_torch()
    import fastopt.torch as ft
    from fastopt import get_num_threads
    ours = _run(torch, tmp_path, "fastopt", bucket)
    theirs = _run(torch, tmp_path, "torch", bucket)
    # the same parameters as torch.optim.AdamW under ZeRO (1e-6 relative)
    for a, b in zip(theirs[0]["params"], ours[0]["params"]):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)
    # each rank holds state for its own shard only, and the shards cover every parameter
    for r in ours:
        assert r["only_own"] and r["n_state"] == r["n_shard"] < r["n_total"]
        assert r["threads"] == max(1, get_num_threads() // WORLD)   # cores / world_size
    assert sum(r["n_shard"] for r in ours) == ours[0]["n_total"]
    # the consolidated state dict loads into a single-process fastopt.torch.AdamW and continues
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        for p, q in zip(model.parameters(), ours[0]["params"]):
            p.copy_(q)
    opt = ft.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    opt.load_state_dict(ours[0]["state_dict"])
    assert all(float(opt.state[p]["step"]) == STEPS for p in model.parameters())
    ref = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    ref.load_state_dict(model.state_dict())
    topt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.05)
    topt.load_state_dict(theirs[0]["state_dict"])
    x, y = torch.randn(8, 6), torch.randn(8, 3)
    for m, o in ((model, opt), (ref, topt)):
        o.zero_grad()
        ((m(x) - y) ** 2).mean().backward()
        o.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-6,
                                   atol=1e-7)


def test_threads_rule_is_overridable():
    torch = require_torch()
    import fastopt.torch as ft
    opt = ft.AdamW([torch.zeros(3, requires_grad=True)])
    assert opt._threads() is None              # no process group: the library default
    opt.n_threads = 1
    assert opt._threads() == 1
