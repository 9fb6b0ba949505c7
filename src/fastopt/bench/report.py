"""The report: every line ``python -m fastopt bench`` prints about its measurements.

The kernel tables (:data:`HEADER`, and :data:`HEADER_LOWP` for 16-bit dtypes; :func:`print_case`:
medians, GB/s and the ratios between the rows), the training-loop tables (:func:`training_header`,
:func:`print_training_case`), the mixed-precision tables (:data:`MIXED_HEADER`,
:func:`print_mixed_case`), the ``targets:`` lines (:func:`kernel_target_lines`,
:func:`training_target_lines`, :func:`mixed_target_lines`), the ``--torch`` tables
(:data:`TORCH_HEADER`, :func:`print_torch_table`, :func:`print_per_tensor`) and the
``--threshold`` table.  Nothing here measures: the functions take
:class:`~fastopt.bench.timing.Candidate` lists that :mod:`fastopt.bench.cli` (or
:mod:`fastopt.bench.torch_models`) has timed.
"""

import math
import os
import sys

import numpy as np

from .cases import MIXED, dtype_name, is_lowp, size_label
from .timing import load_average

# ------------------------------------------------------------------------------------------------
# Numbers
# ------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# The kernel tables
# ------------------------------------------------------------------------------------------------

def print_settings(dtypes, threads, repeat, torch, with_kernels):
    """The line under the configuration: dtype(s), threads, samples, torch, CPUs, load."""
    names = ", ".join(dtype_name(d) for d in dtypes)
    dtype_part = f"dtype{'s' if len(dtypes) > 1 else ''} {names}, " if with_kernels else ""
    torch_part = f"{torch.__version__}, same thread counts" if torch else "not used"
    print(f"{dtype_part}{threads} thread(s) (and 1), median of {repeat} round-robin samples; "
          f"torch {torch_part}; {os.cpu_count()} CPUs, {load_average()}")


def print_kernel_legend(serial_threshold):
    print("GB/s: bytes the update must move ((reads + writes) x itemsize x n) / median time.  "
          "of ref: same-traffic ref time / this time, same threads.\nvs course, vs in-place: "
          "speed-up of this row over the NumPy rows.  fastopt x: this time / fastopt's time "
          "at the same threads.  iqr: interquartile range of the samples / median.\nBelow "
          f"the serial threshold ({serial_threshold} elements) fastopt and the ref run "
          "on one thread whatever 'thr' says.")


HEADER = (f"{'size':>6}  {'implementation':<22} {'thr':>3}  {'median µs':>10}  {'GB/s':>6}  "
          f"{'of ref':>6}  {'vs course':>9}  {'vs in-place':>11}  {'fastopt x':>9}  {'iqr':>4}")

# 16-bit tables: no NumPy rows; vs fp32 = the float32 kernel's time / this row's time
HEADER_LOWP = (f"{'size':>6}  {'implementation':<22} {'thr':>3}  {'median µs':>10}  "
               f"{'GB/s':>6}  {'of ref':>6}  {'vs fp32':>7}  {'fastopt x':>9}  {'iqr':>4}")


def kernel_title(info, dtype):
    """The title line of one kernel's table (a :class:`~fastopt.bench.cases.KernelInfo`)."""
    return (f"{info.name} {dtype_name(dtype)}: {info.reads} reads + {info.writes} writes per "
            f"element of {np.dtype(dtype).itemsize} bytes (same-traffic ref: "
            f"same_traffic_step({', '.join(info.arrays)}))")


def print_kernel_heading(info, dtype=np.float32):
    """The title of one kernel's table and its header."""
    print("\n" + kernel_title(info, dtype))
    print(HEADER_LOWP if is_lowp(dtype) else HEADER)


def print_lowp_note(dtype):
    print(f"\n{dtype_name(dtype)}: every array of the update {dtype_name(dtype)}, computed in "
          f"float32.  same-traffic ref: +1 on the raw bits of each written array (no "
          f"conversion), on copies of the arrays.\nvs fp32: time of the float32 kernel "
          f"on float32 arrays (fastopt float32, twice the bytes), same threads / this time.  "
          f"numpy course, numpy in-place: float32/float64 only, left out.")


def _ratios(cands, c):
    by = {(x.kind, x.threads): x.median for x in cands}
    ref = by.get(("ref", c.threads))
    fo = by.get(("fastopt", c.threads))
    course = by.get(("course", 1))
    inpl = by.get(("inplace", 1))
    fp32 = by.get(("fp32", c.threads))
    same_bytes = c.kind != "fp32"             # "of ref": rows that move the ref's bytes
    return {
        "of_ref": ref / c.median if ref and same_bytes else None,
        "vs_course": course / c.median if course else None,
        "vs_inplace": inpl / c.median if inpl else None,
        "vs_fp32": fp32 / c.median if fp32 else None,
        "fastopt_x": c.median / fo if fo else None,
    }


def print_case(case, cands):
    """The rows of one (kernel, size) case: one per timed candidate."""
    first = True
    for c in cands:
        r = _ratios(cands, c)
        gbs = (c.nbytes or case.nbytes_moved) / c.median / 1e9
        size = size_label(case.n) if first else ""
        first = False
        head = f"{size:>6}  {c.label:<22} {c.threads:>3}  {_fmt_us(c.median):>10}  {gbs:>6.1f}  "
        if case.lowp:
            mid = f"{_fmt_ratio(r['of_ref']):>6}  {_fmt_ratio(r['vs_fp32'], 'x'):>7}  "
        else:
            mid = (f"{_fmt_ratio(r['of_ref']):>6}  {_fmt_ratio(r['vs_course'], 'x'):>9}  "
                   f"{_fmt_ratio(r['vs_inplace'], 'x'):>11}  ")
        print(f"{head}{mid}{_fmt_ratio(r['fastopt_x'], 'x'):>9}  "
              f"{min(c.spread, 9.99) * 100:>3.0f}%")
    sys.stdout.flush()


def print_overhead(repeat, t_adam, t_add, t_empty):
    print(f"\nper-call overhead (1-element float32, median of {repeat}): adam_step "
          f"{t_adam * 1e9:.0f} ns, np.add(a, b, out=a) {t_add * 1e9:.0f} ns "
          f"(ratio {t_adam / t_add:.2f}; a Python call of an empty lambda: "
          f"{t_empty * 1e9:.0f} ns)")


def _get(results, kernel, n, kind, threads, label=None):
    for c in results.get((kernel, n), ()):
        if c.kind == kind and c.threads == threads and (label is None or c.label == label):
            return c.median
    return None


def kernel_target_lines(results, threads, dtypes, overhead_ratio):
    """The kernel targets, from the float32 tables' {(kernel, n): [Candidate]} (`dtypes`: the
    dtypes measured): one ``[ok]``/``[MISS]`` line each."""
    lines = []

    def line(ok, text):
        lines.append(target_line(ok, text))

    if np.dtype(np.float32) not in [np.dtype(d) for d in dtypes]:
        lines.append("  (the kernel targets are stated for float32; run with --dtype float32; "
                     "the 16-bit targets are in --suite mixed)")
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


def print_targets(lines, seconds):
    print("\ntargets:")
    print("\n".join(lines))
    print(f"\n(benchmark time {seconds:.1f} s, {load_average()})")


# ------------------------------------------------------------------------------------------------
# The training-loop tables
# ------------------------------------------------------------------------------------------------

def print_training_legend(threads):
    print(f"\ntraining loop: float32, {threads} thread(s) (and 1), pinned before every sample "
          f"with fastopt.set_num_threads (and torch.set_num_threads), restored afterwards.\n"
          f"x ref: this time / the reference's time (same threads, else the reference's only "
          f"count).  fastopt x: this time / the first fastopt row's time, same threads.\n"
          f"GB/s: bytes the call must move / median time.  iqr: interquartile range of the "
          f"samples / median.  The NumPy rows run on NumPy's own threads (thr 1).")


def training_header(unit):
    return (f"{'case':>9}  {'implementation':<30} {'thr':>3}  {'median ' + unit:>10}  "
            f"{'GB/s':>6}  {'x ref':>6}  {'fastopt x':>9}  {'iqr':>4}")


def print_adam_heading(case, repeat):
    print(f"\nadam: one step over {case.n_arrays} arrays of {case.n} float32 "
          f"({case.n_total:,} elements; {case.nbytes(None) / 1e6:.1f} MB moved); "
          f"ref: one flat adam_step over the same total; median of {repeat}")
    print(training_header("µs"))


def print_clip_heading(n_total, repeat):
    print(f"\nclip: clip_grad_norm on {size_label(n_total)} float32, every timed call clipping "
          f"(2 passes: norm, then scale in place); global_norm: the norm pass alone; ref: "
          f"scale_multi(arrays, 1.0), one 1-read/1-write pass over the same arrays; "
          f"median of {repeat}")
    print(training_header("ms"))


def print_clip_missed(missed):
    print(f"  warning: {missed} timed clipping call(s) found nothing to clip")


def print_epoch_heading(A, axis, repeat):
    print(f"\nepoch: one shuffled epoch of MiniBatches(A, axis={axis}), A float32 "
          f"{A.shape} ({A.nbytes / 1e6:.0f} MB), every batch dropped; ref: one "
          f"A.copy(); median of {repeat}")
    print(training_header("ms"))


def print_epoch_serial_note(serial, row_bytes, cutoff):
    print(f"  (batches of {', '.join(map(str, serial))} rows x {row_bytes} B "
          f"are below gather_rows' serial cut-off, {cutoff} B a batch: their "
          f"MiniBatches rows run on one thread whatever 'thr' says)")


def _training_ratios(cands, c):
    """(this / ref, this / fastopt), each at the same thread count, else at the other one."""
    by = {(x.kind, x.threads): x.median for x in cands}

    def at(kind):
        if (kind, c.threads) in by:
            return by[(kind, c.threads)]
        return next((v for (k, _), v in by.items() if k == kind), None)
    ref, fo = at("ref"), at("fastopt")
    return (c.median / ref if ref else None), (c.median / fo if fo else None)


def print_training_case(case, cands, unit):
    """The rows of one training-loop case; `unit` 'µs' or 'ms'."""
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


NOISY_IQR = 0.3          # a target line whose rows' iqr exceeds this says so


def target_line(ok, text, *cands):
    """One ``[ok]``/``[MISS]`` line; it names the rows among `cands` whose iqr exceeds
    NOISY_IQR."""
    noisy = [f"{min(c.spread, 9.99) * 100:.0f}% on {c.label} ({c.threads} thr)"
             for c in cands if c.spread > NOISY_IQR]
    note = f"  (noisy, iqr {'; '.join(noisy)})" if noisy else ""
    return f"  [{'ok' if ok else 'MISS'}] {text}{note}"


def _tcand(results, key, kind, threads):
    for c in results.get(key, ()):
        if c.kind == kind and c.threads == threads:
            return c
    return None


def training_target_lines(results, threads):
    """The training-loop targets, from run_training's {key: [Candidate]}: the keys are
    ("adam", label, elements in all), ("clip", label) and ("epoch", axis, batch size)."""
    lines = []

    def line(ok, text, *cands):
        lines.append(target_line(ok, text, *cands))

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
                               f"{key[2]:,} elements (target <= 1.3x)", fo, ref)
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
# The mixed-precision tables
# ------------------------------------------------------------------------------------------------

MIXED_HEADER = (f"{'size':>6}  {'implementation':<30} {'thr':>3}  {'median µs':>10}  "
                f"{'B/el':>4}  {'GB/s':>6}  {'of ref':>6}  {'fastopt x':>9}  {'iqr':>4}")


def print_mixed_legend(threads, repeat):
    print(f"\nmixed precision: Adam with 16-bit storage, each case timed round-robin with its "
          f"same-traffic ref (same_traffic_step over copies of the case's arrays: the same "
          f"dtypes and sizes), {threads} thread(s) (and 1), median of {repeat}.\nB/el: bytes "
          f"the row moves per element.  GB/s: those bytes / median time.  of ref: ref time / "
          f"this time, same threads (rows with the ref's bytes).  fastopt x: this time / the "
          f"fastopt row's time, same threads.  iqr: interquartile range / median.\nfloat32 "
          f"same-traffic ref (bf16 case): float32 Adam's ref, native float32 loops: the memory "
          f"rate the [info] lines compare the 16-bit refs with.")


def _mixed_operands(info):
    return ", ".join(f"{name} {dt}" for name, dt in info.operands())


def print_mixed_heading(info):
    """The title of one mixed case's table (a :class:`~fastopt.bench.cases.MixedInfo`)."""
    if info.clip:
        ref = "adam_step_multi then sumsq_multi([g]): the step and one read pass"
    else:
        r = ["param", "grad"] + ([info.aux] if info.aux else []) + ["m", "v"]
        ref = f"same_traffic_step({', '.join(r)})"
        if info.ref_bytes_per_element() != info.bytes_per_element():
            ref += (f", {info.ref_bytes_per_element()} B/element: it also reads the param, "
                    f"which the step only writes")
    print(f"\n{info.name}: {info.title}; {_mixed_operands(info)}; "
          f"{info.bytes_per_element()} B/element; ref: {ref}")
    print(MIXED_HEADER)


def _mixed_ratios(cands, c):
    by = {(x.kind, x.threads): x for x in cands}
    ref, fo = by.get(("ref", c.threads)), by.get(("fastopt", c.threads))
    of_ref = ref.median / c.median if ref and c.kind in ("fastopt", "ref", "torch") else None
    return of_ref, (c.median / fo.median if fo else None)


def print_mixed_case(case, cands):
    """The rows of one (mixed case, size)."""
    first = True
    for c in cands:
        of_ref, x_fo = _mixed_ratios(cands, c)
        size = case.label if first else ""
        first = False
        print(f"{size:>6}  {c.label:<30} {c.threads:>3}  {_fmt_us(c.median):>10}  "
              f"{c.nbytes // case.n:>4}  {c.nbytes / c.median / 1e9:>6.1f}  "
              f"{_fmt_ratio(of_ref):>6}  {_fmt_ratio(x_fo, 'x'):>9}  "
              f"{min(c.spread, 9.99) * 100:>3.0f}%")
    sys.stdout.flush()


def mixed_target_lines(results, threads):
    """The mixed-precision targets, from run_mixed's {(case name, n): [Candidate]}, at the
    largest size measured (2^24 unless --sizes/--smoke): one line per target and thread count.

    ``of ref`` is the ref's time / the step's time; where the ref moves more bytes than the step
    (the master case: it also reads the param), the ratio per byte (GB/s / the ref's GB/s) is
    the one judged, and both are printed.  An ``[info]`` line follows when a case's ref moves its
    bytes at under 0.8 of float32 same_traffic_step's rate (the bf16 case's ``float32
    same-traffic ref`` row): the 16-bit refs run a plain block loop that may not reach the
    memory limit, and the step's GB/s against the float32 rate is then printed too."""
    lines = []

    def line(ok, text, *cands):
        lines.append(target_line(ok, text, *cands))

    def info_line(text):
        lines.append(f"  [info] {text}")

    ts = sorted({threads, 1}, reverse=True)
    n_all = [n for (_, n) in results]
    n_max = max(n_all) if n_all else None
    mem = {t: c for t in ts                            # the float32 memory rate, per threads
           for key in results if key[1] == n_max
           for c in [_tcand(results, key, "fp32-ref", t)] if c}
    for name, info in MIXED.items():
        sizes = [n for (k, n) in results if k == name]
        if not sizes:
            continue
        n = max(sizes)
        key = (name, n)
        for t in ts:
            fo = _tcand(results, key, "fastopt", t)
            ref = _tcand(results, key, "ref", t)
            what = f"{name} Adam {size_label(n)}, {t} thread(s)"
            if not (fo and ref):
                continue
            if info.clip:
                r = fo.median / ref.median
                line(r <= info.clip_goal, f"{what}: clip + step = {r:.2f}x (step + one read "
                                          f"pass) (target <= {info.clip_goal}x)", fo, ref)
                continue
            r = ref.median / fo.median
            per_byte = (fo.nbytes / fo.median) / (ref.nbytes / ref.median)
            if fo.nbytes != ref.nbytes:
                line(per_byte >= info.of_ref,
                     f"{what}: {per_byte:.2f} of the same-traffic ref per byte ({r:.2f} in "
                     f"time; the ref moves {ref.nbytes // n} B/element, the step "
                     f"{fo.nbytes // n}) (target >= {info.of_ref})", fo, ref)
            else:
                line(r >= info.of_ref, f"{what}: {r:.2f} of the same-traffic ref "
                                       f"(target >= {info.of_ref})", fo, ref)
            if t in mem and n == n_max:
                rate, base = ref.nbytes / ref.median, mem[t].nbytes / mem[t].median
                if rate < 0.8 * base:
                    info_line(f"{what}: that ref moves {rate / 1e9:.1f} GB/s, {rate / base:.2f} "
                              f"of float32 same_traffic_step's {base / 1e9:.1f} GB/s, so 'of "
                              f"ref' flatters the step: per the float32 rate it is "
                              f"{fo.nbytes / fo.median / base:.2f}")
            fp = _tcand(results, key, "fp32", t)
            if info.fp32 and fp:
                x = fp.median / fo.median
                line(x >= info.fp32, f"{what}: {x:.2f}x faster than float32 Adam on float32 "
                                     f"arrays (target >= {info.fp32}x)", fo, fp)
            tf = _tcand(results, key, "torch", t)
            if info.torch and tf:
                x = tf.median / fo.median
                line(x >= info.torch, f"{what}: {x:.2f}x faster than "
                                      f"torch.optim.Adam(fused=True) on the {info.param} "
                                      f"tensors (target >= {info.torch}x)", fo, tf)
    return lines


# ------------------------------------------------------------------------------------------------
# --torch: one AdamW step over a model's parameters (fastopt.bench.torch_models)
# ------------------------------------------------------------------------------------------------

TORCH_HEADER = (f"{'implementation':<30} {'thr':>3}  {'median ms':>10}  {'state':>10}  "
                f"{'B/el':>4}  {'GB/s':>6}  {'of limit':>8}  {'fastopt x':>9}  {'fused x':>7}  "
                f"{'iqr':>4}")


def print_torch_settings(threads, repeat, torch, ds_version, ds_reason, warmup):
    ds = f"deepspeed {ds_version}" if ds_version else f"DeepSpeed unavailable ({ds_reason})"
    print(f"{threads} thread(s) (and 1), median of {repeat} round-robin samples, {warmup} "
          f"warm-up step(s) each; torch {torch.__version__}; {ds}; {os.cpu_count()} CPUs, "
          f"{load_average()}")


def print_torch_legend():
    print("AdamW(lr=1e-3, weight_decay=0.01) over every parameter, gradients fixed; every "
          "optimizer steps the same tensors.  state: the dtype of m and v (+master: a float32 "
          "master copy).\nB/el: bytes its storage must move per parameter; GB/s: those bytes / "
          "median time.  of limit: GB/s / the GB/s of the same-traffic ref of the same storage "
          "(one same_traffic_step over flat arrays), same threads.\nfastopt x, fused x: this "
          "time / fastopt AdamW's, torch AdamW fused's time, same threads.  iqr: interquartile "
          "range of the samples / median.")


def print_torch_heading(model, dtype):
    print(f"\n{model.name} {dtype}: {model.title}; {model.n_params:,} parameters in "
          f"{model.n_tensors:,} tensors")
    print(TORCH_HEADER)
    sys.stdout.flush()


def _torch_ratios(rows, c, st):
    """(of limit, fastopt x, fused x) of row (c, st) among `rows` [(Candidate, Storage)]."""
    ref = next((x for x, s in rows if x.kind == "ref" and s == st and x.threads == c.threads),
               None)
    by = {(x.kind, x.threads): x.median for x, _ in rows}
    fo, fused = by.get(("fastopt", c.threads)), by.get(("torch-fused", c.threads))
    of_limit = (c.nbytes / c.median) / (ref.nbytes / ref.median) if ref else None
    return (of_limit, c.median / fo if fo else None, c.median / fused if fused else None)


def print_torch_table(rows, missing, n_params):
    """The rows of one (model, dtype) table of `n_params` parameters, then one line per
    implementation that cannot run: `missing` [(label, reason)]."""
    for c, st in rows:
        of_limit, x_fo, x_fused = _torch_ratios(rows, c, st)
        per_el = c.nbytes // n_params
        print(f"{c.label:<30} {c.threads:>3}  {_fmt_value(c.median * 1e3):>10}  "
              f"{st.describe():>10}  {per_el:>4}  {c.nbytes / c.median / 1e9:>6.1f}  "
              f"{_fmt_ratio(of_limit):>8}  {_fmt_ratio(x_fo, 'x'):>9}  "
              f"{_fmt_ratio(x_fused, 'x'):>7}  {min(c.spread, 9.99) * 100:>3.0f}%")
    for label, reason in missing:
        print(f"{label:<30} {'-':>3}  unavailable ({reason})")
    sys.stdout.flush()


def print_per_tensor(model, rows):
    """Per-tensor overhead on `model` (the many-small-tensors one): (step time - the time of its
    storage's same-traffic ref) / tensors, for fastopt, torch fused and DeepSpeed."""
    print(f"\nper-tensor overhead, {model.name} ({model.title}): (step time - same-traffic ref "
          f"time) / {model.n_tensors:,}")
    for t in sorted({c.threads for c, _ in rows}, reverse=True):
        parts = []
        for kind in ("fastopt", "torch-fused", "deepspeed"):
            for c, st in rows:
                if c.kind == kind and c.threads == t:
                    ref = next((x for x, s in rows
                                if x.kind == "ref" and s == st and x.threads == t), None)
                    if ref is not None:
                        us = (c.median - ref.median) / model.n_tensors * 1e6
                        parts.append(f"{c.label} {us:.3f} µs")
        print(f"  {t} thread(s): " + ("; ".join(parts) if parts else "no rows") + " per tensor")


# ------------------------------------------------------------------------------------------------
# --threshold
# ------------------------------------------------------------------------------------------------

def print_threshold_intro(old, dtype, threads, repeat):
    print(f"serial threshold set to 0 for the measurement (was {old}); dtype {dtype}; "
          f"1 vs {threads} threads; median of {repeat} round-robin samples; {load_average()}")


def print_threshold_heading(kernel, threads):
    print(f"\n{kernel}")
    head = f"{threads} thr µs"
    print(f"{'n':>8}  {'1 thr µs':>9}  {head:>9}  {'1/' + str(threads):>6}")


def print_threshold_row(n, t1, t2):
    mark = "  <- wins" if t2 < t1 else ""
    print(f"{n:>8}  {t1 * 1e6:>9.2f}  {t2 * 1e6:>9.2f}  {t1 / t2:>6.2f}{mark}")
    sys.stdout.flush()


def print_crossover(cross, sizes, threads, dtype):
    if cross is None:
        print(f"crossover: {threads} threads do not win up to {sizes[-1]}")
    elif cross == sizes[0]:
        print(f"crossover: <= {cross} ({threads} threads win at every size measured)")
    else:
        print(f"crossover: {cross} elements ({cross * dtype.itemsize // 1024} KiB per "
              f"array)")


def print_threshold_summary(found, sizes, old):
    known = [c for c in found.values() if c is not None]
    print()
    for k, c in found.items():
        print(f"  {k:<9} crossover {c if c is not None else '> ' + str(sizes[-1])}")
    if known and len(known) == len(found):
        print(f"suggested serial threshold (largest crossover, so no kernel loses with threads): "
              f"{max(known)} elements; current: {old}")
    else:
        print(f"no crossover for every kernel in range; current serial threshold: {old}")
