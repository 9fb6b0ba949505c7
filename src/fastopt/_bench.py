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

``--threshold`` measures instead where 2 threads start to beat 1 (the serial threshold).

The shared pieces (array cases, the implementations, the timing helper) are used by the
pytest-benchmark suite in ``bench/`` too.
"""

import gc
import itertools
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import kernels as _fk
from . import reference as _ref
from ._config import config_line, get_num_threads, get_serial_threshold, set_serial_threshold

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
    parser.add_argument("--quick", action="store_true",
                        help="fewer sizes and samples (< 30 s): 2^10, 2^14, 2^20, and 2^24 "
                             "for adam")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated sizes: exponents of 2 (20 means 2^20) or element "
                             "counts (> 40); default 10,14,17,20,24 (--quick: 10,14,20, and 24 "
                             "for adam)")
    parser.add_argument("--kernels", default=None,
                        help=f"comma-separated, from {','.join(KERNELS)} (default: all; "
                             f"--threshold: {','.join(THRESHOLD_KERNELS)})")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--threads", type=int, default=None,
                        help="thread count of the multi-threaded rows (default: the library "
                             "default; --threshold: 2)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="samples per implementation; the median is reported "
                             "(default 9, --quick 5, --threshold 15)")
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
    us = s * 1e6
    if us < 10:
        return f"{us:.3f}"
    if us < 1000:
        return f"{us:.1f}"
    return f"{us:.0f}"


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
    check_twins()
    torch_threads0 = torch.get_num_threads() if torch is not None else None
    print(f"dtype {dtype}, {threads} thread(s) (and 1), median of {repeat} round-robin samples; "
          f"torch {'%s, same thread counts' % torch.__version__ if torch else 'not used'}; "
          f"{os.cpu_count()} CPUs, {_load()}")
    print("GB/s: bytes the update must move ((reads + writes) x itemsize x n) / median time.  "
          "of ref: same-traffic ref time / this time, same threads.\nvs course, vs in-place: "
          "speed-up of this row over the NumPy rows.  fastopt x: this time / fastopt's time at "
          "the same threads.  iqr: interquartile range of the samples / median.\nBelow the "
          f"serial threshold ({get_serial_threshold()} elements) fastopt and the ref run on one "
          "thread whatever 'thr' says.")
    _warn_if_busy(threads)
    results = {}
    t_start = time.perf_counter()
    try:
        for kernel in kernels:
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
        t_adam, t_add, t_empty = overhead(repeat=repeat)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads0)
    print(f"\nper-call overhead (1-element float32, median of {repeat}): adam_step "
          f"{t_adam * 1e9:.0f} ns, np.add(a, b, out=a) {t_add * 1e9:.0f} ns "
          f"(ratio {t_adam / t_add:.2f}; a Python call of an empty lambda: {t_empty * 1e9:.0f} ns)")
    _print_targets(results, threads, dtype, t_adam / t_add)
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


def _print_targets(results, threads, dtype, overhead_ratio):
    print("\ntargets:")
    lines = []

    def line(ok, text):
        lines.append(f"  [{'ok' if ok else 'MISS'}] {text}")

    if dtype != np.float32:
        print("  (the targets are stated for float32; run with --dtype float32)")
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
    print("\n".join(lines))


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
