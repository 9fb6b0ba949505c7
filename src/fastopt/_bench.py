"""``python -m fastopt bench``: speed ratios of the kernels, measured side by side in one run.

For each kernel and size the implementations are timed round-robin (one sample of each in turn,
repeated), so slow drift on a shared machine hits them alike; the table reports medians and the
ratios between medians:

* ``fastopt``            the kernel at the default thread count (or ``--threads``), and at 1 thread;
* ``same-traffic ref``   ``fastopt.kernels.same_traffic_step``: reads and writes exactly the bytes
  the update must move, with trivial arithmetic, through the same driver.  ``of ref`` = ref time /
  kernel time at the same thread count: 1.00 means the kernel runs at the memory (or driver) limit;
* ``numpy course``       :mod:`fastopt.reference`, written the obvious way (allocates temporaries);
* ``numpy in-place``     careful NumPy: ufuncs with ``out=``, one preallocated scratch array, no
  temporaries (the ``_inplace_*`` functions below);
* ``torch <Opt> fused`` / ``foreach``  ``torch.optim`` on the same arrays (``torch.from_numpy``),
  when torch is importable, at the same thread counts.

After the kernel tables comes the training-loop section (``--suite kernels|training|all``), the
calls a training loop makes once per step or per epoch, each against the reference that moves the
same bytes and against NumPy and PyTorch:

* ``Adam.step`` on 200 arrays of 4096 float32 (one native call for all of them) vs one flat
  ``adam_step`` over the same 819,200 elements, a Python loop of 200 ``adam_step`` calls, and
  ``torch.optim.Adam`` (fused, foreach) on the same 200 tensors;
* ``clip_grad_norm`` on 2^24 float32 (one array, and 64 arrays of 2^18), every timed call clipping,
  vs ``global_norm`` (the norm pass alone), the same-traffic 1-read/1-write pass
  ``scale_multi(arrays, 1.0)``, NumPy (``np.linalg.norm`` + ``np.multiply(out=)``) and
  ``torch.nn.utils.clip_grad_norm_(foreach=True)``;
* one shuffled ``MiniBatches`` epoch of X float32 (60000, 784) with ``axis=0`` and of its transpose
  (784, 60000) with ``axis=1``, batches 64 and 256, vs NumPy fancy indexing with the same
  permutations, ``reuse_buffers=True``, and one plain ``X.copy()`` (the floor).

Those calls have no ``n_threads`` argument: every row pins fastopt's default thread count
(``set_num_threads``) and torch's before each sample; both are restored afterwards.

``--threshold`` measures instead where 2 threads start to beat 1 (the serial threshold).

The shared pieces (array cases, the implementations, the timing helper) are used by the
pytest-benchmark suite in ``bench/`` too.
"""

import contextlib
import gc
import itertools
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import _dispatch
from . import kernels as _fk
from . import reference as _ref
from ._config import (
    config_line,
    get_num_threads,
    get_serial_threshold,
    set_num_threads,
    set_serial_threshold,
)

# ------------------------------------------------------------------------------------------------
# Kernels: hyperparameters, arrays, byte counts
# ------------------------------------------------------------------------------------------------

LR = 1e-3
STEP = 10            # Adam's step counter: fixed, so every call does the same work
WD = 1e-2            # AdamW's decoupled weight decay


@dataclass(frozen=True)
class KernelInfo:
    name: str
    arrays: tuple        # array names, in the kernel's argument order (the 2nd is read-only)
    reads: int           # arrays read per element
    writes: int          # arrays written per element
    torch_name: str = None   # torch.optim class, or None

    @property
    def arrays_moved(self):
        return self.reads + self.writes


KERNELS = {
    "sgd": KernelInfo("sgd", ("param", "grad"), 2, 1, "SGD"),
    "momentum": KernelInfo("momentum", ("param", "grad", "velocity"), 3, 2, "SGD"),
    "rmsprop": KernelInfo("rmsprop", ("param", "grad", "sq_avg"), 3, 2, "RMSprop"),
    "adam": KernelInfo("adam", ("param", "grad", "m", "v"), 4, 3, "Adam"),
    "adamw": KernelInfo("adamw", ("param", "grad", "m", "v"), 4, 3, "AdamW"),
    "ewa": KernelInfo("ewa", ("avg", "value"), 2, 1, None),
}

DEFAULT_SIZES = (10, 14, 17, 20, 24)          # powers of two
QUICK_SIZES = (10, 14, 20)                    # --quick adds 2^24 for adam (out of cache)
THRESHOLD_KERNELS = ("adam", "sgd", "ewa")


class Case:
    """The arrays of one (kernel, size, dtype) benchmark, shared by every implementation (the
    same memory footprint and cache state for all), from NumPy's default allocation.

    The gradient (``value`` for EWA) is positive, so that the same-traffic reference's
    ``x += grad`` keeps Adam's ``v`` and RMSprop's ``sq_avg`` positive; every implementation stays
    finite and away from denormals however often it runs (the sign does not change the speed).
    """

    def __init__(self, kernel, n, dtype=np.float32, seed=0):
        self.info = KERNELS[kernel]
        self.kernel = kernel
        self.n = int(n)
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        arrs = []
        for name in self.info.arrays:
            a = rng.random(self.n, dtype=self.dtype)             # [0, 1)
            if name in ("grad", "value"):
                a *= 1e-3                                         # (0, 1e-3]
                a += 1e-4
            elif name in ("sq_avg", "v"):
                a *= 1e-6                                         # > 0
                a += 1e-8
            elif name in ("m", "velocity"):
                a *= 1e-3
            else:                                                 # param, avg
                a -= 0.5
            arrs.append(a)
        self.arrays = tuple(arrs)
        self.scratch = np.empty(self.n, dtype=self.dtype)

    @property
    def nbytes_moved(self):
        """Bytes the update must move: (reads + writes) x itemsize x n."""
        return self.info.arrays_moved * self.dtype.itemsize * self.n


# ---- careful in-place NumPy: ufuncs with out=, one preallocated scratch array, no temporaries ----

def _inplace_sgd(param, grad, s, *, lr=LR):
    np.multiply(grad, lr, out=s)
    np.subtract(param, s, out=param)


def _inplace_momentum(param, grad, velocity, s, *, lr=LR, beta=0.9):
    np.multiply(velocity, beta, out=velocity)
    np.multiply(grad, 1.0 - beta, out=s)
    np.add(velocity, s, out=velocity)
    np.multiply(velocity, lr, out=s)
    np.subtract(param, s, out=param)


def _inplace_rmsprop(param, grad, sq_avg, s, *, lr=LR, beta=0.9, eps=1e-8):
    np.multiply(sq_avg, beta, out=sq_avg)
    np.multiply(grad, grad, out=s)
    np.multiply(s, 1.0 - beta, out=s)
    np.add(sq_avg, s, out=sq_avg)
    np.sqrt(sq_avg, out=s)
    np.add(s, eps, out=s)
    np.divide(grad, s, out=s)
    np.multiply(s, lr, out=s)
    np.subtract(param, s, out=param)


def _inplace_adam(param, grad, m, v, s, *, step=STEP, lr=LR, beta1=0.9, beta2=0.999, eps=1e-8,
                  weight_decay=0.0):
    bc1 = 1.0 - beta1 ** step                      # float64 scalars, once per call
    bc2 = 1.0 - beta2 ** step
    if weight_decay:
        np.multiply(param, 1.0 - lr * weight_decay, out=param)   # AdamW (decoupled)
    np.multiply(m, beta1, out=m)
    np.multiply(grad, 1.0 - beta1, out=s)
    np.add(m, s, out=m)
    np.multiply(v, beta2, out=v)
    np.multiply(grad, grad, out=s)
    np.multiply(s, 1.0 - beta2, out=s)
    np.add(v, s, out=v)
    np.multiply(v, 1.0 / bc2, out=s)               # v_hat
    np.sqrt(s, out=s)
    np.add(s, eps, out=s)
    np.divide(m, s, out=s)
    np.multiply(s, lr / bc1, out=s)
    np.subtract(param, s, out=param)


def _inplace_ewa(avg, value, s, *, beta=0.9):
    np.multiply(avg, beta, out=avg)
    np.multiply(value, 1.0 - beta, out=s)
    np.add(avg, s, out=avg)


# ---- the implementations of one case, as zero-argument callables ----

def fastopt_fn(case, n_threads):
    a = case.arrays
    if case.kernel == "sgd":
        p, g = a
        return lambda: _fk.sgd_step(p, g, lr=LR, n_threads=n_threads)
    if case.kernel == "momentum":
        p, g, b = a
        return lambda: _fk.momentum_step(p, g, b, lr=LR, beta=0.9, n_threads=n_threads)
    if case.kernel == "rmsprop":
        p, g, sq = a
        return lambda: _fk.rmsprop_step(p, g, sq, lr=LR, beta=0.9, eps=1e-8, n_threads=n_threads)
    if case.kernel == "adam":
        p, g, m, v = a
        return lambda: _fk.adam_step(p, g, m, v, step=STEP, lr=LR, n_threads=n_threads)
    if case.kernel == "adamw":
        p, g, m, v = a
        return lambda: _fk.adam_step(p, g, m, v, step=STEP, lr=LR, weight_decay=WD,
                                     decoupled_weight_decay=True, n_threads=n_threads)
    if case.kernel == "ewa":
        avg, val = a
        return lambda: _fk.ewa_update(avg, val, beta=0.9, n_threads=n_threads)
    raise ValueError(case.kernel)


def traffic_fn(case, n_threads):
    """same_traffic_step over the arrays the update writes, reading the read-only one."""
    written, value, *state = case.arrays
    st = _fk.same_traffic_step
    return lambda: st(written, value, *state, n_threads=n_threads)


def course_fn(case):
    a = case.arrays
    if case.kernel == "sgd":
        return lambda: _ref.sgd_step(*a, lr=LR)
    if case.kernel == "momentum":
        return lambda: _ref.momentum_step(*a, lr=LR, beta=0.9)
    if case.kernel == "rmsprop":
        return lambda: _ref.rmsprop_step(*a, lr=LR, beta=0.9, eps=1e-8)
    if case.kernel == "adam":
        return lambda: _ref.adam_step(*a, step=STEP, lr=LR)
    if case.kernel == "adamw":
        return lambda: _ref.adam_step(*a, step=STEP, lr=LR, weight_decay=WD,
                                      decoupled_weight_decay=True)
    if case.kernel == "ewa":
        return lambda: _ref.ewa_update(*a, beta=0.9)
    raise ValueError(case.kernel)


def inplace_fn(case):
    a, s = case.arrays, case.scratch
    if case.kernel == "adamw":
        return lambda: _inplace_adam(*a, s, weight_decay=WD)
    f = {"sgd": _inplace_sgd, "momentum": _inplace_momentum, "rmsprop": _inplace_rmsprop,
         "adam": _inplace_adam, "ewa": _inplace_ewa}[case.kernel]
    return lambda: f(*a, s)


def import_torch():
    """torch, or None when it is not importable (the torch rows are then left out)."""
    if os.environ.get("FASTOPT_BENCH_NO_TORCH"):
        return None
    try:
        import torch
    except Exception:
        return None
    return torch


def torch_variants(kernel):
    """The torch.optim variants benchmarked for `kernel`: [(label, mode)], mode 'fused'/'foreach'.
    torch.optim.RMSprop has no fused implementation (torch 2.x), so it gets foreach only."""
    info = KERNELS[kernel]
    if info.torch_name is None:
        return []
    modes = ("foreach",) if info.torch_name == "RMSprop" else ("fused", "foreach")
    return [(f"torch {info.torch_name} {mode}", mode) for mode in modes]


def torch_fn(case, mode, torch):
    """One torch.optim step on the case's param and grad (shared with NumPy, no copy); the
    optimizer keeps its own state tensors.  One warm-up step creates the state."""
    p, g = case.arrays[0], case.arrays[1]
    tp = torch.nn.Parameter(torch.from_numpy(p))
    tp.grad = torch.from_numpy(g)
    kw = {mode: True}
    k = case.kernel
    if k == "sgd":
        opt = torch.optim.SGD([tp], lr=LR, **kw)
    elif k == "momentum":
        opt = torch.optim.SGD([tp], lr=LR, momentum=0.9, dampening=0.9, **kw)
    elif k == "rmsprop":
        opt = torch.optim.RMSprop([tp], lr=LR, alpha=0.9, eps=1e-8, **kw)
    elif k == "adam":
        opt = torch.optim.Adam([tp], lr=LR, **kw)
    elif k == "adamw":
        opt = torch.optim.AdamW([tp], lr=LR, weight_decay=WD, **kw)
    else:
        raise ValueError(k)
    opt.step()
    return opt.step


def check_twins(dtype=np.float64, n=1001):
    """The in-place NumPy twins and fastopt agree with fastopt.reference (guards the baselines)."""
    rtol = 1e-10 if np.dtype(dtype) == np.float64 else 2e-4
    for kernel in KERNELS:
        cases = [Case(kernel, n, dtype, seed=1) for _ in range(3)]
        fns = [course_fn(cases[0]), inplace_fn(cases[1]), fastopt_fn(cases[2], 1)]
        for _ in range(3):
            for f in fns:
                f()
        for name, c in (("in-place NumPy", cases[1]), ("fastopt", cases[2])):
            for want, got in zip(cases[0].arrays, c.arrays):
                if not np.allclose(got, want, rtol=rtol, atol=rtol * 1e-2):
                    raise AssertionError(f"{kernel}: {name} differs from fastopt.reference")


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------

@dataclass
class Candidate:
    """One implementation to time: `fn` is called with no arguments; `setup` (untimed) runs
    before each sample (torch's thread count)."""
    label: str
    threads: int
    fn: object
    setup: object = None
    kind: str = ""
    loops: int = 1
    samples: list = field(default_factory=list)
    nbytes: int = 0          # bytes the call must move (training rows: for GB/s)

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def spread(self):
        """Interquartile range of the samples / median (how noisy this row was)."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return (q3 - q1) / self.median


def _sample(fn, loops):
    it = itertools.repeat(None, loops)
    t0 = time.perf_counter()
    for _ in it:
        fn()
    return time.perf_counter() - t0


def calibrate(fn, min_time):
    """Inner loop count so one sample takes at least `min_time` seconds (also warms up)."""
    fn()
    loops = 1
    while True:
        dt = _sample(fn, loops)
        if dt >= min_time or loops >= 1 << 24:
            return loops
        loops = min(1 << 24, max(loops * 2, int(loops * 1.3 * min_time / max(dt, 1e-9))))


def measure(cands, repeat, min_time):
    """Round-robin: `repeat` rounds of one sample of each candidate; per-call medians (s)."""
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for c in cands:
            if c.setup:
                c.setup()
            c.loops = calibrate(c.fn, min_time)
            c.samples = []
        for _ in range(repeat):
            for c in cands:
                if c.setup:
                    c.setup()
                c.samples.append(_sample(c.fn, c.loops) / c.loops)
    finally:
        if gc_was:
            gc.enable()
    return [c.median for c in cands]


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------

def add_arguments(parser):
    parser.add_argument("--suite", default="all", choices=("kernels", "training", "all"),
                        help="the kernel tables, the training-loop section (Adam.step over 200 "
                             "arrays, clip_grad_norm, a MiniBatches epoch), or both (default)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer sizes and samples (< 30 s): 2^10, 2^14, 2^20, and 2^24 "
                             "for adam; the training section with fewer samples and the epoch "
                             "at batch 256 only")
    parser.add_argument("--sizes", default=None,
                        help="kernel tables: comma-separated sizes: exponents of 2 (20 means "
                             "2^20) or element counts (> 40); default 10,14,17,20,24 (--quick: "
                             "10,14,20, and 24 for adam)")
    parser.add_argument("--kernels", default=None,
                        help=f"kernel tables: comma-separated, from {','.join(KERNELS)} "
                             f"(default: all; --threshold: {','.join(THRESHOLD_KERNELS)})")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                        help="dtype of the kernel tables (the training section is float32)")
    parser.add_argument("--threads", type=int, default=None,
                        help="thread count of the multi-threaded rows (default: the library "
                             "default; --threshold: 2)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="samples per implementation; the median is reported "
                             "(default 9, --quick 5, --threshold 15; training: 9, --quick 7, "
                             "the epoch rows 7, --quick 3)")
    parser.add_argument("--no-torch", action="store_true", help="leave out the torch.optim rows")
    parser.add_argument("--threshold", action="store_true",
                        help="measure 1 vs 2 threads from 2^10 to 2^17 with the serial threshold "
                             "at 0, and print the crossover size (how the serial threshold is "
                             "chosen)")


def _parse_sizes(text):
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        k = int(tok)
        if k < 0:
            raise ValueError(f"size must be >= 0, got {k}")
        out.append(1 << k if k <= 40 else k)
    return out


def _parse_kernels(text, default):
    if text is None:
        return list(default)
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in KERNELS]
    if bad:
        raise ValueError(f"unknown kernel(s) {', '.join(bad)}; choose from {', '.join(KERNELS)}")
    return names


def _size_label(n):
    k = n.bit_length() - 1
    return f"2^{k}" if n == 1 << k else f"{n}"


def _fmt_us(s):
    return _fmt_value(s * 1e6)


def _fmt_value(x):
    if x < 10:
        return f"{x:.3f}"
    if x < 1000:
        return f"{x:.1f}"
    return f"{x:.0f}"


def _fmt_ratio(x, suffix=""):
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.2f}{suffix}" if x < 100 else f"{x:.0f}{suffix}"


def _torch_threads_setter(torch, n):
    # torch.set_num_threads also sets the OpenMP runtime's default count, which fastopt's
    # n_threads=None would follow: that is why every fastopt call here passes n_threads.
    def setup():
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return setup


def bench_case(case, threads, repeat, min_time, torch=None):
    """Time every implementation of one case, round-robin.  Returns the list of Candidates."""
    thread_counts = [threads] if threads == 1 else [threads, 1]
    cands = []
    for t in thread_counts:
        cands.append(Candidate("fastopt", t, fastopt_fn(case, t), kind="fastopt"))
    for t in thread_counts:
        cands.append(Candidate("same-traffic ref", t, traffic_fn(case, t), kind="ref"))
    cands.append(Candidate("numpy course", 1, course_fn(case), kind="course"))
    cands.append(Candidate("numpy in-place", 1, inplace_fn(case), kind="inplace"))
    if torch is not None:
        for label, mode in torch_variants(case.kernel):
            for t in thread_counts:
                try:
                    fn = torch_fn(case, mode, torch)
                except Exception as exc:            # e.g. a torch without fused CPU kernels
                    print(f"  ({label}: not available: {exc})")
                    break
                cands.append(Candidate(label, t, fn, setup=_torch_threads_setter(torch, t),
                                       kind="torch"))
    measure(cands, repeat, min_time)
    return cands


def _ratios(cands, c):
    by = {(x.kind, x.threads): x.median for x in cands}
    ref = by.get(("ref", c.threads))
    fo = by.get(("fastopt", c.threads))
    course = by.get(("course", 1))
    inpl = by.get(("inplace", 1))
    return {
        "of_ref": ref / c.median if ref else None,
        "vs_course": course / c.median if course else None,
        "vs_inplace": inpl / c.median if inpl else None,
        "fastopt_x": c.median / fo if fo else None,
    }


HEADER = (f"{'size':>6}  {'implementation':<22} {'thr':>3}  {'median µs':>10}  {'GB/s':>6}  "
          f"{'of ref':>6}  {'vs course':>9}  {'vs in-place':>11}  {'fastopt x':>9}  {'iqr':>4}")


def _print_case(case, cands):
    first = True
    for c in cands:
        r = _ratios(cands, c)
        gbs = case.nbytes_moved / c.median / 1e9
        size = _size_label(case.n) if first else ""
        first = False
        print(f"{size:>6}  {c.label:<22} {c.threads:>3}  {_fmt_us(c.median):>10}  {gbs:>6.1f}  "
              f"{_fmt_ratio(r['of_ref']):>6}  {_fmt_ratio(r['vs_course'], 'x'):>9}  "
              f"{_fmt_ratio(r['vs_inplace'], 'x'):>11}  {_fmt_ratio(r['fastopt_x'], 'x'):>9}  "
              f"{min(c.spread, 9.99) * 100:>3.0f}%")
    sys.stdout.flush()


def overhead(repeat=9, min_time=2e-2):
    """Per-call cost: one adam_step on 1-element float32 arrays vs one np.add(a, b, out=a)."""
    p, g, m, v = (np.ones(1, np.float32) for _ in range(4))
    g *= 1e-3
    a, b = np.ones(1, np.float32), np.full(1, 1e-3, np.float32)
    adam, add = _fk.adam_step, np.add
    cands = [Candidate("adam_step", 1, lambda: adam(p, g, m, v, step=STEP, lr=LR)),
             Candidate("np.add", 1, lambda: add(a, b, out=a)),
             Candidate("empty call", 1, lambda: None)]
    t_adam, t_add, t_empty = measure(cands, repeat, min_time)
    return t_adam, t_add, t_empty


def run(args):
    quick = getattr(args, "quick", False)
    suite = getattr(args, "suite", "all")
    with_kernels, with_training = suite in ("kernels", "all"), suite in ("training", "all")
    dtype = np.dtype(args.dtype)
    try:
        if args.threshold:
            kernels = _parse_kernels(args.kernels, THRESHOLD_KERNELS)
        else:
            kernels = _parse_kernels(args.kernels, KERNELS)
        sizes = _parse_sizes(args.sizes) if args.sizes else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return 2
    print(config_line())
    if args.threshold:
        return run_threshold(kernels, dtype, sizes, args.threads or 2, args.repeat or 15)

    threads = args.threads or get_num_threads()       # before torch can touch OpenMP's default
    torch = None if getattr(args, "no_torch", False) else import_torch()
    repeat = args.repeat or (5 if quick else 9)
    min_time = 1.5e-3 if quick else 1e-2
    if sizes is None:
        plan = {k: [1 << e for e in (QUICK_SIZES if quick else DEFAULT_SIZES)] for k in kernels}
        if quick and "adam" in plan:
            plan["adam"].append(1 << 24)
    else:
        plan = {k: list(sizes) for k in kernels}
    if with_kernels:
        check_twins()
    torch_threads0 = torch.get_num_threads() if torch is not None else None
    dtype_part = f"dtype {dtype}, " if with_kernels else ""
    torch_part = f"{torch.__version__}, same thread counts" if torch else "not used"
    print(f"{dtype_part}{threads} thread(s) (and 1), median of {repeat} round-robin samples; "
          f"torch {torch_part}; {os.cpu_count()} CPUs, {_load()}")
    if with_kernels:
        print("GB/s: bytes the update must move ((reads + writes) x itemsize x n) / median time.  "
              "of ref: same-traffic ref time / this time, same threads.\nvs course, vs in-place: "
              "speed-up of this row over the NumPy rows.  fastopt x: this time / fastopt's time "
              "at the same threads.  iqr: interquartile range of the samples / median.\nBelow "
              f"the serial threshold ({get_serial_threshold()} elements) fastopt and the ref run "
              "on one thread whatever 'thr' says.")
    _warn_if_busy(threads)
    results, training = {}, {}
    t_start = time.perf_counter()
    try:
        for kernel in (kernels if with_kernels else ()):
            info = KERNELS[kernel]
            print(f"\n{kernel}: {info.reads} reads + {info.writes} writes per element "
                  f"(same-traffic ref: same_traffic_step({', '.join(info.arrays)}))")
            print(HEADER)
            for n in plan[kernel]:
                case = Case(kernel, n, dtype)
                cands = bench_case(case, threads, repeat, min_time, torch)
                _print_case(case, cands)
                results[(kernel, n)] = cands
                del case, cands
        if with_kernels:
            t_adam, t_add, t_empty = overhead(repeat=repeat)
            print(f"\nper-call overhead (1-element float32, median of {repeat}): adam_step "
                  f"{t_adam * 1e9:.0f} ns, np.add(a, b, out=a) {t_add * 1e9:.0f} ns "
                  f"(ratio {t_adam / t_add:.2f}; a Python call of an empty lambda: "
                  f"{t_empty * 1e9:.0f} ns)")
        if with_training:
            training = run_training(threads, torch, quick, args.repeat, min_time)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads0)
    lines = _kernel_target_lines(results, threads, dtype, t_adam / t_add) if with_kernels else []
    if with_training:
        lines += _training_target_lines(training, threads)
    print("\ntargets:")
    print("\n".join(lines))
    print(f"\n(benchmark time {time.perf_counter() - t_start:.1f} s, {_load()})")
    return 0


def _warn_if_busy(threads):
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    cpus = os.cpu_count() or 1
    if threads > 1 and load > cpus - 0.5:
        print(f"warning: load average {load:.2f} on {cpus} CPUs: while other processes hold the "
              f"cores, every {threads}-thread region can wait a scheduler tick (ms); the 1-thread "
              f"rows are the reliable ones")


def _load():
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unknown"


def _get(results, kernel, n, kind, threads, label=None):
    for c in results.get((kernel, n), ()):
        if c.kind == kind and c.threads == threads and (label is None or c.label == label):
            return c.median
    return None


def _kernel_target_lines(results, threads, dtype, overhead_ratio):
    lines = []

    def line(ok, text):
        lines.append(f"  [{'ok' if ok else 'MISS'}] {text}")

    if dtype != np.float32:
        lines.append("  (the kernel targets are stated for float32; run with --dtype float32)")
    else:
        n = 1 << 24
        for k in ("adam", "rmsprop", "momentum", "ewa"):
            for t in sorted({1, threads}):
                fo, ref = _get(results, k, n, "fastopt", t), _get(results, k, n, "ref", t)
                if fo and ref:
                    line(ref / fo >= 0.95, f"{k} 2^24, {t} thread(s): {ref / fo:.2f} of the "
                                           f"same-traffic ref (target >= 0.95)")
        n = 1 << 14
        fo = _get(results, "adam", n, "fastopt", 1)
        tf = _get(results, "adam", n, "torch", 1, "torch Adam fused")
        if fo and tf:
            line(tf / fo >= 4, f"adam 2^14, 1 thread: {tf / fo:.1f}x faster than "
                               f"torch.optim.Adam(fused=True) (target >= 4x)")
        n = 1 << 20
        for t in sorted({threads, 1}, reverse=True):
            fo = _get(results, "adam", n, "fastopt", t)
            co, ip = _get(results, "adam", n, "course", 1), _get(results, "adam", n, "inplace", 1)
            if fo and co and ip:
                line(co / fo >= 8, f"adam 2^20, {t} thread(s): {co / fo:.1f}x faster than course "
                                   f"NumPy (target >= 8x)")
                line(ip / fo >= 5, f"adam 2^20, {t} thread(s): {ip / fo:.1f}x faster than "
                                   f"in-place NumPy (target >= 5x)")
    line(overhead_ratio <= 1.0, f"adam_step on 1 element costs {overhead_ratio:.2f} x one "
                                f"np.add(a, b, out=a) (target <= 1)")
    return lines


# ------------------------------------------------------------------------------------------------
# Training loop: one optimizer step over many arrays, gradient clipping, a mini-batch epoch
# ------------------------------------------------------------------------------------------------

MULTI_ARRAYS, MULTI_N = 200, 4096               # Adam.step over 200 arrays of 4096 float32
CLIP_LAYOUTS = ((1, 1 << 24), (64, 1 << 18))    # (arrays, elements each): 2^24 float32 in all
CLIP_SHRINK = 0.99                              # see ClipCase
EPOCH_SHAPE = (60000, 784)                      # (examples, features)
EPOCH_BATCHES = (64, 256)
QUICK_EPOCH_BATCHES = (256,)
EPOCH_REPEAT, QUICK_EPOCH_REPEAT = 7, 3         # samples of the epoch rows (100 ms - 1 s each)
SEED = 0


@dataclass(frozen=True)
class Impl:
    """One implementation of a training-loop case.  `id` names it in pytest, `label` in the
    table; `kind` is what the ratios look up ('fastopt': the call the case is about, 'ref': the
    reference it is compared with); `threads`: 'all' (the default count and 1), 'default', or
    '1' (the NumPy rows)."""
    id: str
    label: str
    kind: str
    threads: str = "all"
    torch: bool = False


def thread_counts(impl, threads):
    """The thread counts `impl` is timed at, given the default count `threads`."""
    if impl.threads == "1":
        return [1]
    if impl.threads == "default" or threads == 1:
        return [threads]
    return [threads, 1]


def pin_threads(n, torch=None):
    """Set fastopt's default thread count (the one Adam.step, clip_grad_norm and MiniBatches
    use: they take no n_threads) and torch's to `n`."""
    if _dispatch.kernels._get_default_threads() != n:
        set_num_threads(n)
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextlib.contextmanager
def threads_restored(torch=None):
    """On exit, restore fastopt's default thread count (or its following OpenMP) and torch's."""
    fo = _dispatch.kernels._get_default_threads()
    tt = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        set_num_threads(fo if fo > 0 else None)
        if torch is not None:
            torch.set_num_threads(tt)


def adam_impls(torch_available=False, n_arrays=MULTI_ARRAYS, n=MULTI_N):
    """The rows of MultiAdamCase (module-level, so pytest lists them without the arrays)."""
    out = [Impl("Adam.step", "fastopt Adam.step", "fastopt"),
           Impl("adam_step-flat", f"adam_step, flat {n_arrays * n:,}", "ref"),
           Impl("adam_step-loop", f"{n_arrays} x adam_step (loop)", "loop")]
    if torch_available:
        out += [Impl("torch-fused", "torch Adam fused", "torch-fused", torch=True),
                Impl("torch-foreach", "torch Adam foreach", "torch-foreach", torch=True)]
    return out


def clip_impls(torch_available=False):
    """The rows of ClipCase."""
    out = [Impl("clip_grad_norm", "fastopt clip_grad_norm", "fastopt"),
           Impl("global_norm", "fastopt global_norm", "norm"),
           Impl("scale_multi", "same-traffic ref (x *= 1)", "ref"),
           Impl("numpy", "numpy linalg.norm + multiply", "numpy", "1")]
    if torch_available:
        out.append(Impl("torch-foreach", "torch clip_grad_norm_ foreach", "torch", torch=True))
    return out


def epoch_impls(axis):
    """The rows of EpochCase."""
    idx = "A[idx]" if axis == 0 else "contiguous A[:, idx]"
    return [Impl("MiniBatches", "fastopt MiniBatches", "fastopt"),
            Impl("MiniBatches-reuse", "fastopt reuse_buffers=True", "reuse", "default"),
            Impl("numpy", f"numpy {idx}", "numpy", "1"),
            Impl("copy", "A.copy() (floor)", "ref", "1")]


def _positive_grad(rng, n, dtype):
    g = rng.random(n, dtype=dtype)                # (0, 1e-3] + 1e-4, as Case's gradients
    g *= 1e-3
    g += 1e-4
    return g


class MultiAdamCase:
    """One Adam step over `n_arrays` parameter arrays of `n` elements (NumPy's default
    allocation), the arrays shared by every row:

    * ``fastopt.Adam(params).step(grads)``: one native call for all the arrays;
    * the reference, one flat ``adam_step`` over the same total (a :class:`Case` of its own);
    * a Python loop of per-array ``adam_step`` calls (on the optimizer's state arrays);
    * ``torch.optim.Adam`` fused / foreach on ``torch.from_numpy`` views of the same parameters
      and gradients (grads set once; one optimizer per mode, shared by the thread counts).

    The step counter grows from call to call; the work does not depend on it.
    """

    name = "adam"
    setup = None

    def __init__(self, n_arrays=MULTI_ARRAYS, n=MULTI_N, dtype=np.float32, seed=SEED):
        from .optimizers import Adam
        rng = np.random.default_rng(seed)
        self.n_arrays, self.n, self.dtype = n_arrays, n, np.dtype(dtype)
        self.params = [rng.random(n, dtype=self.dtype) - 0.5 for _ in range(n_arrays)]
        self.grads = [_positive_grad(rng, n, self.dtype) for _ in range(n_arrays)]
        self.opt = Adam(self.params, lr=LR)
        self.flat = Case("adam", n_arrays * n, self.dtype, seed=seed + 1)
        self.label = f"{n_arrays}x{n}"
        self._tparams = None
        self._torch_opts = {}

    @property
    def n_total(self):
        return self.n_arrays * self.n

    def impls(self, torch_available=False):
        return adam_impls(torch_available, self.n_arrays, self.n)

    def nbytes(self, impl_id):
        return KERNELS["adam"].arrays_moved * self.dtype.itemsize * self.n_total

    def fn(self, impl_id, threads, torch=None):
        if impl_id == "Adam.step":
            opt, grads = self.opt, self.grads
            return lambda: opt.step(grads)
        if impl_id == "adam_step-flat":
            return fastopt_fn(self.flat, threads)
        if impl_id == "adam_step-loop":
            st = [self.opt.state[k] for k in range(self.n_arrays)]
            quads = [(p, g, s["m"], s["v"]) for p, g, s in zip(self.params, self.grads, st)]
            adam = _fk.adam_step

            def loop():
                for p, g, m, v in quads:
                    adam(p, g, m, v, step=STEP, lr=LR, n_threads=threads)
            return loop
        if impl_id.startswith("torch-"):
            return self._torch_opt(impl_id[len("torch-"):], torch).step
        raise ValueError(impl_id)

    def _torch_opt(self, mode, torch):
        if mode not in self._torch_opts:
            if self._tparams is None:
                self._tparams = []
                for p, g in zip(self.params, self.grads):
                    tp = torch.nn.Parameter(torch.from_numpy(p))
                    tp.grad = torch.from_numpy(g)
                    self._tparams.append(tp)
            opt = torch.optim.Adam(self._tparams, lr=LR, **{mode: True})
            opt.step()                                  # creates the state
            self._torch_opts[mode] = opt
        return self._torch_opts[mode]


def numpy_clip(arrays, max_norm, eps=1e-6):
    """Clipping the plain NumPy way: ``np.linalg.norm`` of each array, combined, then
    ``np.multiply(g, c, out=g)``.  Returns the norm before clipping."""
    norm = math.sqrt(sum(float(np.linalg.norm(a)) ** 2 for a in arrays))
    if norm > max_norm:
        c = max_norm / (norm + eps)
        for a in arrays:
            np.multiply(a, c, out=a)
    return norm


class ClipCase:
    """Clipping by global norm of `n_arrays` gradient arrays of `n` elements.

    Clipping scales the arrays in place, so a fixed max_norm would clip once and never again.
    Every clipping row (fastopt, NumPy, torch) takes its max_norm from one shared sequence that
    falls by 1% a call: the norm a call finds is what the previous clipping call left (its
    max_norm, times norm / (norm + eps)), so every call clips and the timed work is the same
    each time.  The values shrink by 1% a call; before a sample (untimed: `setup`) they are
    scaled back up by a power of two (exact) once they have lost a factor 64, so the norm stays
    within 64x of its start (~1.4 for 2^24 elements), far above eps (the factor would then
    shrink them faster than 1% a call) and float32's subnormals.  `missed` counts the
    fastopt/NumPy calls that found nothing to clip (it must stay 0; torch always scales).
    """

    name = "clip"

    def __init__(self, n_arrays, n, dtype=np.float32, seed=SEED):
        from .clip import global_norm
        rng = np.random.default_rng(seed)
        self.n_arrays, self.n, self.dtype = n_arrays, n, np.dtype(dtype)
        self.arrays = [_positive_grad(rng, n, self.dtype) for _ in range(n_arrays)]
        self.label = f"{n_arrays}x{_size_label(n)}"
        self.max_norm = self._start = global_norm(self.arrays)
        self.missed = 0
        self._tparams = None

    def next_max_norm(self):
        self.max_norm *= CLIP_SHRINK
        return self.max_norm

    def setup(self):
        if self.max_norm < self._start / 64:
            k = 2.0 ** round(math.log2(self._start / self.max_norm))
            for a in self.arrays:
                a *= k
            self.max_norm *= k

    def impls(self, torch_available=False):
        return clip_impls(torch_available)

    def nbytes(self, impl_id):
        """Array passes: the norm reads once; clipping then reads and writes (3 in all)."""
        passes = {"global_norm": 1, "scale_multi": 2}.get(impl_id, 3)
        return passes * self.n_arrays * self.n * self.dtype.itemsize

    def fn(self, impl_id, threads, torch=None):
        from .clip import clip_grad_norm, global_norm
        arrays, case, nxt = self.arrays, self, self.next_max_norm
        if impl_id == "clip_grad_norm":
            def clip():
                mn = nxt()
                if clip_grad_norm(arrays, mn) <= mn:
                    case.missed += 1
            return clip
        if impl_id == "global_norm":
            return lambda: global_norm(arrays)
        if impl_id == "scale_multi":
            scale = _dispatch.kernels.scale_multi
            return lambda: scale(arrays, 1.0, n_threads=threads)
        if impl_id == "numpy":
            def clip_numpy():
                mn = nxt()
                if numpy_clip(arrays, mn) <= mn:
                    case.missed += 1
            return clip_numpy
        if impl_id == "torch-foreach":
            if self._tparams is None:             # .grad views the arrays; the (untouched,
                self._tparams = []                # never paged-in) parameters are placeholders
                for a in arrays:
                    tg = torch.from_numpy(a)
                    tp = torch.nn.Parameter(torch.empty(tg.shape, dtype=tg.dtype))
                    tp.grad = tg
                    self._tparams.append(tp)
            params, clip_ = self._tparams, torch.nn.utils.clip_grad_norm_
            return lambda: clip_(params, nxt(), foreach=True)
        raise ValueError(impl_id)


class EpochData:
    """The examples of the epoch benchmark, allocated once: X float32 (60000, 784), examples
    along axis 0, and its transpose (784, 60000) C-contiguous, examples along axis 1 (the
    course's layout).  188 MB each: drop the object to free them."""

    def __init__(self, shape=EPOCH_SHAPE, seed=SEED):
        self.X = np.random.default_rng(seed).random(shape, dtype=np.float32)
        self.XT = np.ascontiguousarray(self.X.T)


def numpy_epoch(A, axis, batch_size, rng):
    """One shuffled epoch the plain NumPy way: a permutation, then fancy indexing per batch
    (``A[idx]``, or ``np.ascontiguousarray(A[:, idx])`` for examples along axis 1)."""
    m = A.shape[axis]
    perm = rng.permutation(m)
    for k in range(0, m, batch_size):
        idx = perm[k:k + batch_size]
        yield A[idx] if axis == 0 else np.ascontiguousarray(A[:, idx])


class EpochCase:
    """One shuffled epoch of mini-batches along `axis` (0: data.X, 1: data.XT), each batch
    consumed and dropped (``for xb in mb: pass``): fastopt.MiniBatches (fresh batch arrays, and
    reuse_buffers=True), NumPy fancy indexing (permutations from a Generator seeded like
    MiniBatches', so the same batches), and one ``X.copy()``, the floor (fresh memory, like the
    batches).  Every row moves at least 2 x X.nbytes (read X, write the batches)."""

    name = "epoch"
    setup = None

    def __init__(self, data, axis, batch_size):
        self.A = data.X if axis == 0 else data.XT
        self.axis, self.batch_size = axis, batch_size
        self.label = f"b={batch_size}"

    def impls(self, torch_available=False):
        return epoch_impls(self.axis)

    def nbytes(self, impl_id):
        return 2 * self.A.nbytes

    def fn(self, impl_id, threads, torch=None):
        from .batching import MiniBatches
        A, axis, b = self.A, self.axis, self.batch_size
        if impl_id in ("MiniBatches", "MiniBatches-reuse"):
            mb = MiniBatches(A, batch_size=b, axis=axis, seed=SEED,
                             reuse_buffers=impl_id == "MiniBatches-reuse")

            def epoch():
                for xb in mb:
                    pass
            return epoch
        if impl_id == "numpy":
            rng = np.random.default_rng(SEED)

            def epoch_numpy():
                for xb in numpy_epoch(A, axis, b, rng):
                    pass
            return epoch_numpy
        if impl_id == "copy":
            return A.copy
        raise ValueError(impl_id)


def check_training_baselines():
    """The NumPy rows compute what fastopt does: the epoch baseline yields MiniBatches' batches
    (the same permutations), and the clipping baseline clips like clip_grad_norm."""
    from .batching import MiniBatches
    from .clip import clip_grad_norm
    rng = np.random.default_rng(1)
    X = rng.random((103, 5), dtype=np.float32)
    for axis, A in ((0, X), (1, np.ascontiguousarray(X.T))):
        mb = MiniBatches(A, batch_size=16, axis=axis, seed=SEED)
        r = np.random.default_rng(SEED)
        for _ in range(2):
            got, want = list(mb), list(numpy_epoch(A, axis, 16, r))
            if len(got) != len(want) or any(not np.array_equal(g, w) for g, w in zip(got, want)):
                raise AssertionError(f"epoch axis={axis}: the NumPy baseline's batches differ "
                                     f"from MiniBatches'")
    a = [_positive_grad(rng, n, np.float32) for n in (1000, 17)]
    b = [x.copy() for x in a]
    n1, n2 = clip_grad_norm(a, 0.01), numpy_clip(b, 0.01)
    if not (math.isclose(n1, n2, rel_tol=1e-5)
            and all(np.allclose(x, y, rtol=1e-5) for x, y in zip(a, b))):
        raise AssertionError("the NumPy clipping baseline differs from clip_grad_norm")


def training_candidates(case, threads, torch=None):
    """Candidates for every implementation of `case` at its thread counts; each sample is
    preceded (untimed) by pinning the thread counts and by the case's own setup."""
    cands = []
    for impl in case.impls(torch is not None):
        for t in thread_counts(impl, threads):
            try:
                fn = case.fn(impl.id, t, torch)
            except Exception as exc:               # e.g. a torch without fused CPU Adam
                print(f"  ({impl.label}: not available: {exc})")
                break

            def setup(t=t, case_setup=case.setup):
                pin_threads(t, torch)
                if case_setup:
                    case_setup()
            cands.append(Candidate(impl.label, t, fn, setup=setup, kind=impl.kind,
                                   nbytes=case.nbytes(impl.id)))
    return cands


def _time_training_case(case, threads, torch, repeat, min_time, unit):
    cands = training_candidates(case, threads, torch)
    measure(cands, repeat, min_time)
    for c in cands:                    # the results outlive the arrays the callables hold
        c.fn = c.setup = None
    _print_training_case(case, cands, unit)
    return cands


def _training_ratios(cands, c):
    """(this / ref, this / fastopt), each at the same thread count, else at the other one."""
    by = {(x.kind, x.threads): x.median for x in cands}

    def at(kind):
        if (kind, c.threads) in by:
            return by[(kind, c.threads)]
        return next((v for (k, _), v in by.items() if k == kind), None)
    ref, fo = at("ref"), at("fastopt")
    return (c.median / ref if ref else None), (c.median / fo if fo else None)


def _training_header(unit):
    return (f"{'case':>9}  {'implementation':<30} {'thr':>3}  {'median ' + unit:>10}  "
            f"{'GB/s':>6}  {'x ref':>6}  {'fastopt x':>9}  {'iqr':>4}")


def _print_training_case(case, cands, unit):
    scale = 1e3 if unit == "ms" else 1e6
    first = True
    for c in cands:
        x_ref, x_fo = _training_ratios(cands, c)
        label = case.label if first else ""
        first = False
        print(f"{label:>9}  {c.label:<30} {c.threads:>3}  {_fmt_value(c.median * scale):>10}  "
              f"{c.nbytes / c.median / 1e9:>6.1f}  {_fmt_ratio(x_ref):>6}  "
              f"{_fmt_ratio(x_fo, 'x'):>9}  {min(c.spread, 9.99) * 100:>3.0f}%")
    sys.stdout.flush()


def run_training(threads, torch=None, quick=False, repeat=None, min_time=1e-2):
    """The training-loop section: prints its tables; returns {key: [Candidate]} (medians only,
    the arrays freed) for the targets.  `repeat` (None: 9, --quick 7; the epoch rows 7 and 3).
    A sample lasts at least 5 ms: a single 2-thread call of a few ms is at the mercy of one
    scheduler tick on a busy machine."""
    rep = repeat or (7 if quick else 9)
    min_time = max(min_time, 5e-3)
    rep_epoch = repeat or (QUICK_EPOCH_REPEAT if quick else EPOCH_REPEAT)
    batches = QUICK_EPOCH_BATCHES if quick else EPOCH_BATCHES
    check_training_baselines()
    results = {}
    print(f"\ntraining loop: float32, {threads} thread(s) (and 1), pinned before every sample "
          f"with fastopt.set_num_threads (and torch.set_num_threads), restored afterwards.\n"
          f"x ref: this time / the reference's time (same threads, else the reference's only "
          f"count).  fastopt x: this time / the first fastopt row's time, same threads.\n"
          f"GB/s: bytes the call must move / median time.  iqr: interquartile range of the "
          f"samples / median.  The NumPy rows run on NumPy's own threads (thr 1).")
    with threads_restored(torch):
        case = MultiAdamCase()
        print(f"\nadam: one step over {case.n_arrays} arrays of {case.n} float32 "
              f"({case.n_total:,} elements; {case.nbytes(None) / 1e6:.1f} MB moved); "
              f"ref: one flat adam_step over the same total; median of {rep}")
        print(_training_header("µs"))
        results[("adam", case.label)] = _time_training_case(case, threads, torch, rep, min_time,
                                                            "µs")
        del case
        print(f"\nclip: clip_grad_norm on 2^24 float32, every timed call clipping (2 passes: "
              f"norm, then scale in place); global_norm: the norm pass alone; ref: "
              f"scale_multi(arrays, 1.0), one 1-read/1-write pass over the same arrays; "
              f"median of {rep}")
        print(_training_header("ms"))
        for n_arrays, n in CLIP_LAYOUTS:
            case = ClipCase(n_arrays, n)
            results[("clip", case.label)] = _time_training_case(case, threads, torch, rep,
                                                                min_time, "ms")
            if case.missed:
                print(f"  warning: {case.missed} timed clipping call(s) found nothing to clip")
            del case
        data = EpochData()
        try:
            for axis in (0, 1):
                A = data.X if axis == 0 else data.XT
                print(f"\nepoch: one shuffled epoch of MiniBatches(A, axis={axis}), A float32 "
                      f"{A.shape} ({A.nbytes / 1e6:.0f} MB), every batch dropped; ref: one "
                      f"A.copy(); median of {rep_epoch}")
                print(_training_header("ms"))
                for b in batches:
                    case = EpochCase(data, axis, b)
                    results[("epoch", axis, b)] = _time_training_case(case, threads, torch,
                                                                      rep_epoch, min_time, "ms")
                    del case
                cutoff = 32768                                # gather_rows' serial cut-off
                serial = [b for b in batches if b * A[0].nbytes < cutoff]
                if axis == 0 and threads > 1 and serial:
                    print(f"  (batches of {', '.join(map(str, serial))} rows x {A[0].nbytes} B "
                          f"are below gather_rows' serial cut-off, {cutoff} B a batch: their "
                          f"MiniBatches rows run on one thread whatever 'thr' says)")
        finally:
            del data
            gc.collect()
    return results


NOISY_IQR = 0.3          # a target line whose rows' iqr exceeds this says so


def _tcand(results, key, kind, threads):
    for c in results.get(key, ()):
        if c.kind == kind and c.threads == threads:
            return c
    return None


def _training_target_lines(results, threads):
    lines = []

    def line(ok, text, *cands):
        noisy = [f"{min(c.spread, 9.99) * 100:.0f}% on {c.label} ({c.threads} thr)"
                 for c in cands if c.spread > NOISY_IQR]
        note = f"  (noisy, iqr {'; '.join(noisy)})" if noisy else ""
        lines.append(f"  [{'ok' if ok else 'MISS'}] {text}{note}")

    def info(text):
        lines.append(f"  [info] {text}")

    ts = sorted({threads, 1}, reverse=True)
    for key in [k for k in results if k[0] == "adam"]:
        for t in ts:
            fo, ref = _tcand(results, key, "fastopt", t), _tcand(results, key, "ref", t)
            tf = _tcand(results, key, "torch-fused", t)
            what = f"Adam.step {key[1]} float32, {t} thread(s)"
            if fo and ref:
                r = fo.median / ref.median
                line(r <= 1.3, f"{what}: {r:.2f}x one flat adam_step over "
                               f"{MULTI_ARRAYS * MULTI_N:,} elements (target <= 1.3x)", fo, ref)
            if fo and tf:
                r = tf.median / fo.median
                line(r >= 5, f"{what}: {r:.1f}x faster than torch.optim.Adam(fused=True) on the "
                             f"same tensors (target >= 5x)", fo, tf)
    for key in [k for k in results if k[0] == "clip"]:
        for t in ts:
            fo, ref = _tcand(results, key, "fastopt", t), _tcand(results, key, "ref", t)
            norm = _tcand(results, key, "norm", t)
            what = f"clip_grad_norm {key[1]} float32, {t} thread(s)"
            if fo and ref:
                r = fo.median / ref.median
                line(r <= 1.2, f"{what}: {r:.2f}x the same-traffic 1-read/1-write pass "
                               f"(target <= 1.2x)", fo, ref)
            if fo and norm and ref:
                info(f"global_norm {key[1]}, {t} thread(s): {norm.median / ref.median:.2f}x "
                     f"that pass; clipping = {fo.median / (norm.median + ref.median):.2f}x "
                     f"(norm pass + that pass)")
    for key in [k for k in results if k[0] == "epoch"]:
        _, axis, b = key
        goal = 2 if axis == 0 else 4
        nump = _tcand(results, key, "numpy", 1)
        for t in ts:
            fo = _tcand(results, key, "fastopt", t)
            if fo and nump:
                r = nump.median / fo.median
                line(r >= goal, f"epoch axis={axis}, batch {b}, {t} thread(s): {r:.1f}x faster "
                                f"than NumPy fancy indexing (target >= {goal}x)", fo, nump)
    return lines


# ------------------------------------------------------------------------------------------------
# --threshold: where do 2 threads start to win?
# ------------------------------------------------------------------------------------------------

def _threshold_sizes():
    """2^10 .. 2^17 in steps of sqrt(2), rounded to whole 64-byte lines of float64."""
    out = []
    for i in range(0, 15):
        n = int(round(2 ** (10 + i / 2) / 8)) * 8
        out.append(n)
    return out


def crossover(sizes, t1, t2):
    """Smallest size from which the multi-threaded time is below the 1-thread time at that size
    and every larger one; None when it never wins at the largest size."""
    cross = None
    for n, a, b in sorted(zip(sizes, t1, t2), reverse=True):
        if b < a:
            cross = n
        else:
            break
    return cross


def run_threshold(kernels, dtype, sizes, threads, repeat):
    if sizes is None:
        sizes = _threshold_sizes()
    sizes = sorted(sizes)
    if (os.cpu_count() or 1) < threads:
        print(f"warning: {os.cpu_count()} CPU(s) for {threads} threads: the crossover is "
              "meaningless", file=sys.stderr)
    old = get_serial_threshold()
    _warn_if_busy(threads)
    print(f"serial threshold set to 0 for the measurement (was {old}); dtype {dtype}; "
          f"1 vs {threads} threads; median of {repeat} round-robin samples; {_load()}")
    found = {}
    set_serial_threshold(0)
    try:
        for kernel in kernels:
            print(f"\n{kernel}")
            head = f"{threads} thr µs"
            print(f"{'n':>8}  {'1 thr µs':>9}  {head:>9}  {'1/' + str(threads):>6}")
            t1s, t2s = [], []
            for n in sizes:
                case = Case(kernel, n, dtype)
                cands = [Candidate("1", 1, fastopt_fn(case, 1)),
                         Candidate(str(threads), threads, fastopt_fn(case, threads))]
                a, b = measure(cands, repeat, 5e-3)
                t1s.append(a)
                t2s.append(b)
                mark = "  <- wins" if b < a else ""
                print(f"{n:>8}  {a * 1e6:>9.2f}  {b * 1e6:>9.2f}  {a / b:>6.2f}{mark}")
                sys.stdout.flush()
            cross = crossover(sizes, t1s, t2s)
            found[kernel] = cross
            if cross is None:
                print(f"crossover: {threads} threads do not win up to {sizes[-1]}")
            elif cross == sizes[0]:
                print(f"crossover: <= {cross} ({threads} threads win at every size measured)")
            else:
                print(f"crossover: {cross} elements ({cross * dtype.itemsize // 1024} KiB per "
                      f"array)")
    finally:
        set_serial_threshold(old)
    assert get_serial_threshold() == old
    known = [c for c in found.values() if c is not None]
    print()
    for k, c in found.items():
        print(f"  {k:<9} crossover {c if c is not None else '> ' + str(sizes[-1])}")
    if known and len(known) == len(found):
        print(f"suggested serial threshold (largest crossover, so no kernel loses with threads): "
              f"{max(known)} elements; current: {old}")
    else:
        print(f"no crossover for every kernel in range; current serial threshold: {old}")
    print(f"(serial threshold restored to {get_serial_threshold()})")
    return 0
