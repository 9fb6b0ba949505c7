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
  temporaries (the ``_inplace_*`` functions of :mod:`fastopt.bench.cases`);
* ``torch <Opt> fused`` / ``foreach``  ``torch.optim`` on the same arrays (``torch.from_numpy``),
  when torch is importable, at the same thread counts.

``--dtype float32,bfloat16,...`` (float32, float64, float16, bfloat16) runs every kernel table once
per dtype, every array of the update in that dtype.  The 16-bit tables (float32 compute) have the
same-traffic ref of the same arrays (it adds 1 to the raw bits of each written array, on copies of
them), ``fastopt float32``: the float32 kernel on float32 arrays (``vs fp32`` = its time / this
row's time), and torch.optim on bfloat16/float16 tensors viewing the same memory; no NumPy rows
(NumPy has no bfloat16 arithmetic; its float16 is not the same update).

After the kernel tables comes the training-loop section (``--suite kernels|training|mixed|all``),
the calls a training loop makes once per step or per epoch, each against the reference that moves
the same bytes and against NumPy and PyTorch:

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

Then the mixed-precision section (:data:`fastopt.bench.cases.MIXED`): Adam at 2^20 and 2^24
(``--quick``: 2^24) with pure bfloat16 storage (also against float32 Adam and torch's fused Adam on
the bf16 tensors), a float32 master (``master=``), float32 param with bfloat16 m and v, stochastic
rounding, Kahan ``compensation=``, and clipping folded into the step (``norm_and_finite_multi``
then ``adam_step_multi(grad_scale=coef)`` against the step plus one read pass), each against its
same-traffic reference, at the default thread count and 1.

``--threshold`` measures instead where 2 threads start to beat 1 (the serial threshold).

``--torch`` times instead one ``AdamW`` step over whole models' parameters (a GPT-style model in
float32 and bfloat16, 2,000 small tensors): ``fastopt.torch.AdamW`` against ``torch.optim.AdamW``
(fused, foreach, for-loop), DeepSpeed's ``DeepSpeedCPUAdam`` where it builds, and the
same-traffic limit; its rows and ratios are described in :mod:`fastopt.bench.torch_models`.

This module parses the options and runs the measurements; the cases are
:mod:`fastopt.bench.cases`, the timing :mod:`fastopt.bench.timing`, every printed table
:mod:`fastopt.bench.report`.
"""

import argparse
import gc
import os
import sys
import time

import numpy as np

from .. import kernels as _fk
from .._config import (
    config_line,
    get_num_threads,
    get_serial_threshold,
    set_serial_threshold,
)
from . import report
from .cases import (
    BENCH_DTYPES,
    CLIP_LAYOUTS,
    DEFAULT_SIZES,
    EPOCH_BATCHES,
    EPOCH_REPEAT,
    EPOCH_SHAPE,
    KERNELS,
    LOWP_DTYPES,
    LR,
    MIXED,
    MIXED_SIZES,
    MULTI_ARRAYS,
    MULTI_N,
    QUICK_EPOCH_BATCHES,
    QUICK_EPOCH_REPEAT,
    QUICK_MIXED_SIZES,
    QUICK_SIZES,
    SMOKE_CLIP_LAYOUTS,
    SMOKE_EPOCH_BATCHES,
    SMOKE_EPOCH_SHAPE,
    SMOKE_MIXED_SIZES,
    SMOKE_MULTI,
    SMOKE_SIZES,
    SMOKE_THRESHOLD_SIZES,
    STEP,
    THRESHOLD_KERNELS,
    Case,
    ClipCase,
    EpochCase,
    EpochData,
    MixedCase,
    MultiAdamCase,
    bench_dtype,
    check_mixed,
    check_training_baselines,
    check_twins,
    course_fn,
    fastopt_fn,
    import_torch,
    inplace_fn,
    threshold_sizes,
    torch_fn,
    torch_variants,
    traffic_fn,
)
from .timing import (
    Candidate,
    measure,
    pin_threads,
    thread_counts,
    threads_restored,
    torch_threads_setter,
    warn_if_busy,
)

# ------------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------------

def add_arguments(parser):
    parser.add_argument("--suite", default="all",
                        choices=("kernels", "training", "mixed", "all"),
                        help="the kernel tables, the training-loop section (Adam.step over 200 "
                             "arrays, clip_grad_norm, a MiniBatches epoch), the mixed-precision "
                             "section (bf16 Adam, master copies, bf16 state, stochastic "
                             "rounding, Kahan, clip + step), or all of them (default)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer sizes and samples: 2^10, 2^14, 2^20, and 2^24 "
                             "for adam; the training section with fewer samples and the epoch "
                             "at batch 256 only; the mixed section at 2^24 only")
    parser.add_argument("--smoke", action="store_true",
                        help="check that the harness runs, in seconds; the numbers mean "
                             "nothing: every section on tiny arrays (2^10 elements unless "
                             "--sizes; Adam.step over 8 x 256, clipping 2^14, an epoch of "
                             "(1024, 16), the mixed cases at 2^10; --threshold: 2^10 and 2^11), "
                             "3 samples of 0.1 ms "
                             "(unless --repeat); overrides --quick")
    parser.add_argument("--sizes", default=None,
                        help="kernel tables and mixed section: comma-separated sizes: "
                             "exponents of 2 (20 means 2^20) or element counts (> 40); default "
                             "10,14,17,20,24 (--quick: 10,14,20, and 24 for adam), mixed 20,24 "
                             "(--quick: 24)")
    parser.add_argument("--kernels", default=None,
                        help=f"kernel tables: comma-separated, from {','.join(KERNELS)} "
                             f"(default: all; --threshold: {','.join(THRESHOLD_KERNELS)})")
    parser.add_argument("--dtype", default="float32", type=_dtype_list, metavar="DTYPES",
                        help="comma-separated dtypes of the kernel tables, from "
                             f"{','.join(BENCH_DTYPES)}: each table once per dtype, every array "
                             "in that dtype (default float32; the training section is float32, "
                             "the mixed section has its own)")
    parser.add_argument("--threads", type=int, default=None,
                        help="thread count of the multi-threaded rows (default: the library "
                             "default; --threshold: 2)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="samples per implementation; the median is reported "
                             "(default 9, --quick 5, --threshold 15; training: 9, --quick 7, "
                             "the epoch rows 7, --quick 3)")
    parser.add_argument("--no-torch", action="store_true", help="leave out the torch.optim rows")
    parser.add_argument("--torch", action="store_true",
                        help="instead: one AdamW step over a GPT-style model (float32, "
                             "bfloat16) and over 2,000 tensors of 4,096: fastopt.torch.AdamW "
                             "vs torch.optim.AdamW fused/foreach/for-loop, DeepSpeedCPUAdam and "
                             "the same-traffic limit, with the per-tensor overhead (--quick: 5 "
                             "samples; --smoke: tiny models, 2 samples)")
    parser.add_argument("--threshold", action="store_true",
                        help="measure 1 vs 2 threads from 2^10 to 2^17 with the serial threshold "
                             "at 0, and print the crossover size (how the serial threshold is "
                             "chosen)")


def parse_dtypes(text):
    """``"float32,bfloat16"`` -> [dtype('float32'), bfloat16] (in order, once each); ValueError
    for an unknown name or an empty list."""
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if tok:
            dt = bench_dtype(tok)
            if dt not in out:
                out.append(dt)
    if not out:
        raise ValueError(f"no dtype given; choose from {','.join(BENCH_DTYPES)}")
    return out


def _dtype_list(text):
    """argparse type of --dtype: a usage error (exit 2) for a bad list."""
    try:
        return parse_dtypes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_sizes(text):
    """``"10,14,5000"`` -> [1024, 16384, 5000]: exponents of 2 up to 40, else element counts."""
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


# ------------------------------------------------------------------------------------------------
# The kernel tables
# ------------------------------------------------------------------------------------------------

def bench_case(case, threads, repeat, min_time, torch=None):
    """Time every implementation of one case, round-robin.  Returns the list of Candidates.

    A 16-bit case has no NumPy rows; instead the float32 kernel on float32 arrays of the same
    values (``fastopt float32``, kind 'fp32') is timed with it, the baseline of ``vs fp32``."""
    counts = [threads] if threads == 1 else [threads, 1]
    nb = case.nbytes_moved
    cands = []
    for t in counts:
        cands.append(Candidate("fastopt", t, fastopt_fn(case, t), kind="fastopt", nbytes=nb))
    for t in counts:
        cands.append(Candidate("same-traffic ref", t, traffic_fn(case, t), kind="ref",
                               nbytes=nb))
    if case.lowp:
        base = Case(case.kernel, case.n, np.float32, seed=case.seed)
        for t in counts:
            cands.append(Candidate("fastopt float32", t, fastopt_fn(base, t), kind="fp32",
                                   nbytes=base.nbytes_moved))
    else:
        cands.append(Candidate("numpy course", 1, course_fn(case), kind="course", nbytes=nb))
        if case.info.inplace is not None:
            cands.append(Candidate("numpy in-place", 1, inplace_fn(case), kind="inplace",
                                   nbytes=nb))
    if torch is not None:
        for label, mode in torch_variants(case.kernel):
            for t in counts:
                try:
                    fn = torch_fn(case, mode, torch)
                except Exception as exc:            # e.g. a torch without fused CPU kernels
                    print(f"  ({label}: not available: {exc})")
                    break
                cands.append(Candidate(label, t, fn, setup=torch_threads_setter(torch, t),
                                       kind="torch", nbytes=nb))
    measure(cands, repeat, min_time)
    for c in cands:                    # the results outlive the arrays the callables hold
        c.fn = c.setup = None
    return cands


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
    """``python -m fastopt bench`` with the parsed `args`; returns the exit code."""
    quick = getattr(args, "quick", False)
    smoke = getattr(args, "smoke", False)
    suite = getattr(args, "suite", "all")
    with_kernels, with_training = suite in ("kernels", "all"), suite in ("training", "all")
    with_mixed = suite in ("mixed", "all")
    try:
        dtypes = args.dtype
        if isinstance(dtypes, str):                    # a Namespace built by hand
            dtypes = parse_dtypes(dtypes)
        if args.threshold:
            kernels = _parse_kernels(args.kernels, THRESHOLD_KERNELS)
        else:
            kernels = _parse_kernels(args.kernels, KERNELS)
        sizes = parse_sizes(args.sizes) if args.sizes else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return 2
    if args.repeat is not None and args.repeat < 1:
        print("error: --repeat must be >= 1", file=sys.stderr)
        return 2
    if getattr(args, "torch", False):
        from .torch_models import run_torch
        return run_torch(args)
    print(config_line())
    if smoke:
        print("--smoke: tiny arrays and few samples, to check that the harness runs; the numbers "
              "mean nothing")
    if args.threshold:
        for dtype in dtypes:
            if smoke:
                run_threshold(kernels, dtype, sizes or [1 << e for e in SMOKE_THRESHOLD_SIZES],
                              args.threads or 2, args.repeat or 3, min_time=1e-4)
            else:
                run_threshold(kernels, dtype, sizes, args.threads or 2, args.repeat or 15)
        return 0

    threads = args.threads or get_num_threads()       # before torch can touch OpenMP's default
    torch = None if getattr(args, "no_torch", False) else import_torch()
    repeat = args.repeat or (3 if smoke else 5 if quick else 9)
    min_time = 1e-4 if smoke else 1.5e-3 if quick else 1e-2
    if sizes is None:
        exps = SMOKE_SIZES if smoke else QUICK_SIZES if quick else DEFAULT_SIZES
        plan = {k: [1 << e for e in exps] for k in kernels}
        if quick and not smoke and "adam" in plan:
            plan["adam"].append(1 << 24)
    else:
        plan = {k: list(sizes) for k in kernels}
    if with_kernels:
        check_twins()
    if with_mixed:
        check_mixed()
    torch_threads0 = torch.get_num_threads() if torch is not None else None
    report.print_settings(dtypes, threads, repeat, torch, with_kernels)
    if with_kernels:
        report.print_kernel_legend(get_serial_threshold())
    warn_if_busy(threads)
    results, training, mixed = {}, {}, {}
    t_start = time.perf_counter()
    try:
        for dtype in (dtypes if with_kernels else ()):
            results[dtype] = res = {}
            if dtype.name in LOWP_DTYPES:
                report.print_lowp_note(dtype)
            for kernel in kernels:
                report.print_kernel_heading(KERNELS[kernel], dtype)
                for n in plan[kernel]:
                    case = Case(kernel, n, dtype)
                    cands = bench_case(case, threads, repeat, min_time, torch)
                    report.print_case(case, cands)
                    res[(kernel, n)] = cands
                    del case, cands
        if with_kernels:
            t_adam, t_add, t_empty = overhead(repeat, min_time if smoke else 2e-2)
            report.print_overhead(repeat, t_adam, t_add, t_empty)
        if with_training:
            training = run_training(threads, torch, quick, args.repeat, min_time, smoke=smoke)
        if with_mixed:
            mixed = run_mixed(threads, torch, quick, args.repeat, min_time, smoke=smoke,
                              sizes=sizes)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads0)
    lines = (report.kernel_target_lines(results.get(np.dtype(np.float32), {}), threads,
                                        list(results), t_adam / t_add)
             if with_kernels else [])
    if with_training:
        lines += report.training_target_lines(training, threads)
    if with_mixed:
        lines += report.mixed_target_lines(mixed, threads)
    report.print_targets(lines, time.perf_counter() - t_start)
    return 0


# ------------------------------------------------------------------------------------------------
# The training-loop section
# ------------------------------------------------------------------------------------------------

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
    report.print_training_case(case, cands, unit)
    return cands


def run_training(threads, torch=None, quick=False, repeat=None, min_time=1e-2, smoke=False):
    """The training-loop section: prints its tables; returns {key: [Candidate]} (medians only,
    the arrays freed) for the targets.  `repeat` (None: 9, --quick 7; the epoch rows 7 and 3).
    A sample lasts at least 5 ms: a single 2-thread call of a few ms is at the mercy of one
    scheduler tick on a busy machine.  `smoke`: the same cases on tiny arrays, `repeat` (None:
    3) samples of `min_time` each."""
    if smoke:
        rep = rep_epoch = repeat or 3
        (n_arrays, n), layouts = SMOKE_MULTI, SMOKE_CLIP_LAYOUTS
        shape, batches = SMOKE_EPOCH_SHAPE, SMOKE_EPOCH_BATCHES
    else:
        rep = repeat or (7 if quick else 9)
        min_time = max(min_time, 5e-3)
        rep_epoch = repeat or (QUICK_EPOCH_REPEAT if quick else EPOCH_REPEAT)
        (n_arrays, n), layouts = (MULTI_ARRAYS, MULTI_N), CLIP_LAYOUTS
        shape, batches = EPOCH_SHAPE, QUICK_EPOCH_BATCHES if quick else EPOCH_BATCHES
    check_training_baselines()
    results = {}
    report.print_training_legend(threads)
    with threads_restored(torch):
        case = MultiAdamCase(n_arrays, n)
        report.print_adam_heading(case, rep)
        results[("adam", case.label, case.n_total)] = _time_training_case(
            case, threads, torch, rep, min_time, "µs")
        del case
        report.print_clip_heading(layouts[0][0] * layouts[0][1], rep)
        for n_arrays, n in layouts:
            case = ClipCase(n_arrays, n)
            results[("clip", case.label)] = _time_training_case(case, threads, torch, rep,
                                                                min_time, "ms")
            if case.missed:
                report.print_clip_missed(case.missed)
            del case
        data = EpochData(shape)
        try:
            for axis in (0, 1):
                A = data.X if axis == 0 else data.XT
                report.print_epoch_heading(A, axis, rep_epoch)
                for b in batches:
                    case = EpochCase(data, axis, b)
                    results[("epoch", axis, b)] = _time_training_case(case, threads, torch,
                                                                      rep_epoch, min_time, "ms")
                    del case
                cutoff = 32768                                # gather_rows' serial cut-off
                serial = [b for b in batches if b * A[0].nbytes < cutoff]
                if axis == 0 and threads > 1 and serial:
                    report.print_epoch_serial_note(serial, A[0].nbytes, cutoff)
        finally:
            del data
            gc.collect()
    return results


# ------------------------------------------------------------------------------------------------
# The mixed-precision section
# ------------------------------------------------------------------------------------------------

def run_mixed(threads, torch=None, quick=False, repeat=None, min_time=1e-2, smoke=False,
              sizes=None):
    """The mixed-precision section: one table per case of MIXED, every row of a (case, size)
    timed round-robin with its same-traffic reference, at the default thread count and 1.
    Prints the tables; returns {(case name, n): [Candidate]} (medians only, the arrays freed)
    for the targets.  `sizes` (None: 2^20 and 2^24; --quick 2^24; --smoke 2^10); `repeat` (None:
    9, --quick 7, --smoke 3); a sample lasts at least 5 ms, as in the training section."""
    if smoke:
        rep = repeat or 3
        sizes = sizes or [1 << e for e in SMOKE_MIXED_SIZES]
    else:
        rep = repeat or (7 if quick else 9)
        min_time = max(min_time, 5e-3)
        sizes = sizes or [1 << e for e in (QUICK_MIXED_SIZES if quick else MIXED_SIZES)]
    results = {}
    report.print_mixed_legend(threads, rep)
    with threads_restored(torch):
        for info in MIXED.values():
            report.print_mixed_heading(info)
            for n in sizes:
                case = MixedCase(info, n)
                cands = training_candidates(case, threads, torch)
                measure(cands, rep, min_time)
                for c in cands:
                    c.fn = c.setup = None
                report.print_mixed_case(case, cands)
                if case.missed:
                    report.print_clip_missed(case.missed)
                results[(info.name, n)] = cands
                del case, cands
                gc.collect()
    return results


# ------------------------------------------------------------------------------------------------
# --threshold: where do 2 threads start to win?
# ------------------------------------------------------------------------------------------------

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


def run_threshold(kernels, dtype, sizes, threads, repeat, min_time=5e-3):
    if sizes is None:
        sizes = threshold_sizes()
    sizes = sorted(sizes)
    if (os.cpu_count() or 1) < threads:
        print(f"warning: {os.cpu_count()} CPU(s) for {threads} threads: the crossover is "
              "meaningless", file=sys.stderr)
    old = get_serial_threshold()
    warn_if_busy(threads)
    report.print_threshold_intro(old, dtype, threads, repeat)
    found = {}
    set_serial_threshold(0)
    try:
        for kernel in kernels:
            report.print_threshold_heading(kernel, threads)
            t1s, t2s = [], []
            for n in sizes:
                case = Case(kernel, n, dtype)
                cands = [Candidate("1", 1, fastopt_fn(case, 1)),
                         Candidate(str(threads), threads, fastopt_fn(case, threads))]
                a, b = measure(cands, repeat, min_time)
                t1s.append(a)
                t2s.append(b)
                report.print_threshold_row(n, a, b)
            found[kernel] = cross = crossover(sizes, t1s, t2s)
            report.print_crossover(cross, sizes, threads, dtype)
    finally:
        set_serial_threshold(old)
    assert get_serial_threshold() == old
    report.print_threshold_summary(found, sizes, old)
    print(f"(serial threshold restored to {get_serial_threshold()})")
    return 0
