"""``python -m fastopt bench --torch``: one AdamW step over whole models' parameters, fastopt.torch
against torch.optim and DeepSpeed, measured side by side in one run.

Models (:func:`models`; ``--smoke``: the same structure, tiny):

* ``gpt``: a GPT-style list of parameter shapes: a 50,257 x 256 embedding; 12 layers of qkv
  256 x 768, proj 256 x 256, MLP 256 x 1024 and 1024 x 256, all with biases, and 2 layernorms
  (weight and bias of 256); a final layernorm.  22,343,424 parameters in 147 tensors, in float32
  and in bfloat16;
* ``small``: 2,000 tensors of 4,096 float32 (8,192,000 parameters): the per-tensor costs.

Every optimizer of a table steps the same parameter tensors, whose gradients are set once to
fixed random tensors (never re-allocated): what is timed is ``opt.step()`` alone.  Every
optimizer is ``AdamW(lr=1e-3, weight_decay=0.01)``, otherwise at its defaults, and takes a few
steps (:data:`WARMUP`) before timing, which create its state.  The rows:

* ``fastopt AdamW``            :class:`fastopt.torch.AdamW` (bfloat16 parameters: float32 m and v);
* ``fastopt AdamW master``     bfloat16 only: ``master_weights=True`` (a float32 master copy);
* ``fastopt AdamW stochastic`` bfloat16 only: ``rounding="stochastic"``;
* ``fastopt AdamW bf16 m/v``   bfloat16 only: ``state_dtype=torch.bfloat16``, the storage of
  torch's bfloat16 rows (14 bytes per parameter);
* ``torch AdamW fused`` / ``foreach`` / ``for-loop``  ``torch.optim.AdamW`` with ``fused=True``,
  ``foreach=True`` and ``foreach=False`` (its state has the parameters' dtype);
* ``DeepSpeedCPUAdam``         ``deepspeed.ops.adam.DeepSpeedCPUAdam(adamw_mode=True)`` (float32
  m and v), where ``import deepspeed`` works and its ``cpu_adam`` op builds (the first use
  JIT-compiles it, minutes); otherwise one ``unavailable (<reason>)`` line per table;
* ``same-traffic ref``         the limit: one :func:`fastopt.kernels.same_traffic_step` call over
  flat NumPy arrays of the model's element count, in the storage dtypes of the rows' parameter,
  gradient, master copy and state (one ref per storage the table's rows use, e.g. ``(bf16 m/v)``
  for torch's bfloat16 rows): the bytes the step must move, at memory speed, with no per-tensor
  cost.  16-bit refs run on their own arrays, as in the mixed-precision section (their raw-bit
  adds would walk real values into subnormals).

Every row is timed at the default thread count (or ``--threads``) and at 1, the samples
round-robin over all rows of the table (one sample of each in turn, ``--repeat`` rounds: 9,
``--quick`` 5, ``--smoke`` 2), so slow drift on a shared machine hits them alike; before each
sample ``fastopt.set_num_threads`` and ``torch.set_num_threads`` (which DeepSpeed's OpenMP loop
follows) pin the row's count; both are restored afterwards.  The columns (medians; ratios at
the same thread count):

* ``B/el``: bytes the row's storage must move per parameter (param read and written, or only
  written with a master copy; gradient read; master, m and v read and written); ``GB/s``: those
  bytes x parameters / median time;
* ``of limit``: the row's GB/s / the GB/s of the ref of its storage; = ref time / row time where
  both move the same bytes (every row but ``master``: its ref also reads the bfloat16 param);
* ``fastopt x``: this time / ``fastopt AdamW``'s time; ``fused x``: this time / ``torch AdamW
  fused``'s time.

After the ``small`` table, the per-tensor overhead: (step time - its ref's time) / 2,000, in µs
per tensor, for fastopt, torch fused and DeepSpeed.  The printing is
:mod:`fastopt.bench.report` (``print_torch_*``).
"""

import ctypes
import gc
import sys
import time
from dataclasses import dataclass

import numpy as np

from .. import kernels as _fk
from .._config import config_line, get_num_threads
from . import report
from .cases import bench_dtype, bind, import_torch, start_array
from .timing import (
    Candidate,
    load_average,
    measure,
    pin_threads,
    threads_restored,
    warn_if_busy,
)

LR, WEIGHT_DECAY = 1e-3, 0.01
WARMUP = 3                        # steps before timing (--smoke: 1)
SEED = 0

GPT = dict(vocab=50257, d=256, layers=12, mlp=1024)
SMOKE_GPT = dict(vocab=96, d=8, layers=2, mlp=32)
SMALL = (2000, 4096)              # tensors, elements each
SMOKE_SMALL = (20, 64)

# (model, dtype) of each table, in order
TABLES = (("gpt", "float32"), ("gpt", "bfloat16"), ("small", "float32"))

NO_TORCH = "torch is not installed; pip install torch==2.13.0"


# ------------------------------------------------------------------------------------------------
# The models
# ------------------------------------------------------------------------------------------------

def gpt_shapes(vocab, d, layers, mlp):
    """The parameter shapes of a GPT-style model (no position embedding; biases everywhere)."""
    shapes = [(vocab, d)]                                   # token embedding
    for _ in range(layers):
        shapes += [(d,), (d,),                              # layernorm 1
                   (d, 3 * d), (3 * d,),                    # qkv
                   (d, d), (d,),                            # attention projection
                   (d,), (d,),                              # layernorm 2
                   (d, mlp), (mlp,),                        # MLP up
                   (mlp, d), (d,)]                          # MLP down
    return shapes + [(d,), (d,)]                            # final layernorm


@dataclass(frozen=True)
class Model:
    name: str
    title: str
    shapes: tuple

    @property
    def n_tensors(self):
        return len(self.shapes)

    @property
    def n_params(self):
        return sum(int(np.prod(s)) for s in self.shapes)


def models(smoke=False):
    """{name: Model}: ``gpt`` and ``small`` (``smoke``: tiny versions of both)."""
    g = SMOKE_GPT if smoke else GPT
    n_tensors, n = SMOKE_SMALL if smoke else SMALL
    return {
        "gpt": Model("gpt", f"GPT-style, {g['vocab']:,} x {g['d']} embedding, {g['layers']} "
                            f"layers (qkv, proj, MLP {g['d']} x {g['mlp']}, biases, layernorms)",
                     tuple(gpt_shapes(**g))),
        "small": Model("small", f"{n_tensors:,} tensors of {n:,}", ((n,),) * n_tensors),
    }


def make_params(model, dtype, torch, seed=SEED):
    """The model's parameters (uniform in [-0.5, 0.5)) in `dtype` (a torch dtype), each with a
    fixed random gradient (normal, std 1e-3) of its dtype."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in model.shapes:
        p = torch.nn.Parameter((torch.rand(shape, generator=gen) - 0.5).to(dtype))
        p.grad = (torch.randn(shape, generator=gen) * 1e-3).to(dtype)
        params.append(p)
    return params


# ------------------------------------------------------------------------------------------------
# Storage: the bytes a step must move, and its same-traffic ref
# ------------------------------------------------------------------------------------------------

_SHORT = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "float64": "f64"}
_ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}


@dataclass(frozen=True)
class Storage:
    """The dtypes (names) of a row's arrays: param, grad, m/v, and the master copy (or None)."""
    param: str
    grad: str
    state: str
    master: str = None

    def _size(self, name):
        return _ITEMSIZE[name]

    def step_bytes(self):
        """Bytes per parameter the step must move."""
        b = self._size(self.param) * (1 if self.master else 2) + self._size(self.grad)
        if self.master:
            b += 2 * self._size(self.master)
        return b + 4 * self._size(self.state)

    def ref_bytes(self):
        """Bytes per parameter same_traffic_step moves (it also reads a mastered param)."""
        return self.step_bytes() + (self._size(self.param) if self.master else 0)

    def describe(self):
        """``f32``, ``bf16``, ``f32+master``: the state (and master) dtype, for the tables."""
        s = _SHORT.get(self.state, self.state)
        return s + ("+master" if self.master else "")

    def ref_label(self):
        if self.param == self.state and not self.master:
            tag = "" if self.param == "float32" else f" ({_SHORT.get(self.state)} m/v)"
        elif self.master:
            tag = f" ({_SHORT.get(self.master)} master)"
        else:
            tag = f" ({_SHORT.get(self.state)} m/v)"
        return "same-traffic ref" + tag


def _dtype_name(t):
    return str(t.dtype).replace("torch.", "")


def storage_of(opt, p):
    """The Storage of `opt`'s state for parameter `p` (after a step created it)."""
    state = opt.state[p]
    m = state.get("exp_avg")
    master = state.get("master_weight")
    return Storage(_dtype_name(p), _dtype_name(p.grad),
                   _dtype_name(m) if m is not None else _dtype_name(p),
                   _dtype_name(master) if master is not None else None)


def ref_fn(storage, n, threads, seed=SEED):
    """One same_traffic_step(param, grad, [master,] m, v) over flat arrays of `n` elements in
    `storage`'s dtypes (starting values as the kernel tables')."""
    rng = np.random.default_rng(seed)
    param = start_array("param", n, bench_dtype(storage.param), rng)
    grad = start_array("grad", n, bench_dtype(storage.grad), rng)
    extra = [param.astype(bench_dtype(storage.master))] if storage.master else []
    m = start_array("m", n, bench_dtype(storage.state), rng)
    v = start_array("v", n, bench_dtype(storage.state), rng)
    return bind(_fk.same_traffic_step, (param, grad, *extra, m, v), {"n_threads": threads})


# ------------------------------------------------------------------------------------------------
# The implementations
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Impl:
    id: str
    label: str
    make: object                  # (params, torch) -> optimizer
    lowp_only: bool = False


def _fastopt(**options):
    def make(params, torch):
        import fastopt.torch as fot
        kw = dict(options)
        if "state_dtype" in kw:                 # named, so that this module imports no torch
            kw["state_dtype"] = getattr(torch, kw["state_dtype"])
        return fot.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY, **kw)
    return make


def _torch_optim(**mode):
    def make(params, torch):
        return torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY, **mode)
    return make


def _flush_c_stdout():
    """DeepSpeed's C++ prints through C stdio: flush it so that it does not land inside a table."""
    try:
        ctypes.CDLL(None).fflush(None)
    except Exception:               # pragma: no cover - no libc symbols
        pass


def _deepspeed(params, torch):
    from deepspeed.ops.adam import DeepSpeedCPUAdam
    sys.stdout.flush()
    try:
        return DeepSpeedCPUAdam(params, lr=LR, weight_decay=WEIGHT_DECAY, adamw_mode=True)
    finally:
        _flush_c_stdout()


IMPLS = (
    Impl("fastopt", "fastopt AdamW", _fastopt()),
    Impl("fastopt-master", "fastopt AdamW master", _fastopt(master_weights=True), True),
    Impl("fastopt-stochastic", "fastopt AdamW stochastic", _fastopt(rounding="stochastic"), True),
    Impl("fastopt-bf16-state", "fastopt AdamW bf16 m/v", _fastopt(state_dtype="bfloat16"), True),
    Impl("torch-fused", "torch AdamW fused", _torch_optim(fused=True)),
    Impl("torch-foreach", "torch AdamW foreach", _torch_optim(foreach=True)),
    Impl("torch-forloop", "torch AdamW for-loop", _torch_optim(foreach=False)),
    Impl("deepspeed", "DeepSpeedCPUAdam", _deepspeed),
)


def _reason(exc):
    """One short line saying why an implementation cannot run (with the cause, if chained)."""
    parts = [f"{type(exc).__name__}: {exc}"]
    if exc.__cause__ is not None:
        parts.append(f"{type(exc.__cause__).__name__}: {exc.__cause__}")
    text = "; ".join(p.strip().splitlines()[0] if p.strip() else p for p in parts)
    return text if len(text) <= 160 else text[:157] + "..."


def probe_deepspeed(torch):
    """(version, None) when DeepSpeedCPUAdam imports, builds its op and steps; else (None,
    reason).  The first call of a machine JIT-compiles the cpu_adam op (minutes)."""
    try:
        import deepspeed
    except Exception as exc:
        return None, _reason(exc)
    print("(DeepSpeed: loading the cpu_adam op; its first use on a machine compiles it, "
          "minutes)", flush=True)
    try:
        p = torch.nn.Parameter(torch.zeros(8))
        p.grad = torch.ones(8)
        opt = _deepspeed([p], torch)
        opt.step()
        del opt
    except Exception as exc:
        return None, _reason(exc)
    return getattr(deepspeed, "__version__", "?"), None


# ------------------------------------------------------------------------------------------------
# One table
# ------------------------------------------------------------------------------------------------

def run_table(model, dtype, threads, torch, repeat, min_time, warmup, unavailable=None):
    """Time every implementation (and the refs) on `model`'s parameters in `dtype` (a name),
    round-robin; print the table.  Returns [(Candidate, Storage)] (medians only, the tensors
    freed).  `unavailable`: {impl id: reason} to list instead of timing."""
    unavailable = dict(unavailable or {})
    counts = [threads] if threads == 1 else [threads, 1]
    params = make_params(model, getattr(torch, dtype), torch)
    n = model.n_params
    built, missing = [], []
    for impl in IMPLS:
        if impl.lowp_only and dtype == "float32":
            continue
        if impl.id in unavailable:
            missing.append((impl.label, unavailable[impl.id]))
            continue
        try:
            opt = impl.make(params, torch)
            for _ in range(warmup):
                opt.step()
        except Exception as exc:      # e.g. a torch without fused CPU AdamW for this dtype
            missing.append((impl.label, _reason(exc)))
            continue
        built.append((impl, opt, storage_of(opt, params[0])))
    stores = list(dict.fromkeys(s for _, _, s in built))
    rows = []
    for t in counts:
        setup = _pinner(t, torch)
        for impl, opt, st in built:
            rows.append((Candidate(impl.label, t, opt.step, setup=setup, kind=impl.id,
                                   nbytes=st.step_bytes() * n), st))
        for st in stores:
            try:
                fn = ref_fn(st, n, t)
            except (TypeError, ValueError) as exc:          # e.g. bfloat16 without ml_dtypes
                if t == counts[0]:
                    missing.append((st.ref_label(), _reason(exc)))
                continue
            rows.append((Candidate(st.ref_label(), t, fn, setup=setup, kind="ref",
                                   nbytes=st.ref_bytes() * n), st))
    report.print_torch_heading(model, dtype)
    measure([c for c, _ in rows], repeat, min_time)
    for c, _ in rows:                   # the results outlive the tensors the callables hold
        c.fn = c.setup = None
    del built, params
    gc.collect()
    report.print_torch_table(rows, missing, n)
    return rows


def _pinner(t, torch):
    return lambda: pin_threads(t, torch)


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------

def run_torch(args):
    """``python -m fastopt bench --torch`` with the parsed `args`; returns the exit code."""
    if getattr(args, "no_torch", False):
        print("error: --torch and --no-torch exclude each other", file=sys.stderr)
        return 2
    smoke, quick = getattr(args, "smoke", False), getattr(args, "quick", False)
    threads = args.threads or get_num_threads()      # before torch can touch OpenMP's default
    torch = import_torch()
    if torch is None:
        print(NO_TORCH, file=sys.stderr)
        return 2
    repeat = args.repeat or (2 if smoke else 5 if quick else 9)
    min_time = 1e-4 if smoke else 5e-3 if quick else 1e-2
    warmup = 1 if smoke else WARMUP
    print(config_line())
    if smoke:
        print("--smoke: tiny models and few samples, to check that the harness runs; the "
              "numbers mean nothing")
    t_start = time.perf_counter()
    results = {}
    with threads_restored(torch):
        ds_version, ds_reason = probe_deepspeed(torch)
        unavailable = {"deepspeed": ds_reason} if ds_reason else {}
        report.print_torch_settings(threads, repeat, torch, ds_version, ds_reason, warmup)
        warn_if_busy(threads)
        report.print_torch_legend()
        all_models = models(smoke)
        for name, dtype in TABLES:
            results[(name, dtype)] = run_table(all_models[name], dtype, threads, torch, repeat,
                                               min_time, warmup, unavailable)
        report.print_per_tensor(all_models["small"], results[("small", "float32")])
    print(f"\n(benchmark time {time.perf_counter() - t_start:.1f} s, "
          f"{load_average()})")
    return 0
