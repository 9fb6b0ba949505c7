"""``python -m fastopt bench`` runs end to end, in-process, on tiny arrays (``--smoke``: seconds);
``--torch --smoke`` too, on tiny models.

These are smoke tests of the harness (every section runs, prints its tables and ratios, and puts
the thread counts back), not measurements: no timing is asserted.
"""

import re
import sys

import numpy as np
import pytest

from conftest import require_torch
from fastopt._config import get_num_threads, get_serial_threshold
from fastopt.__main__ import main
from fastopt.bench import cases, report, torch_models

RATIO = r"(?:\d+(?:\.\d+)?)"                 # a ratio as the tables print it (never "-" here)


def _section(out, title):
    """The lines of the section that starts with the line `title` (up to the next blank line)."""
    lines = out.splitlines()
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1:end]


def _kernel_title(info, dtype="float32", itemsize=4):
    return (f"{info.name} {dtype}: {info.reads} reads + {info.writes} writes per element of "
            f"{itemsize} bytes (same-traffic ref: same_traffic_step({', '.join(info.arrays)}))")


def _kernel_row(label):
    """A kernel-table row: size (first row only), label, thr, µs, GB/s, of ref, vs course,
    vs in-place, fastopt x, iqr."""
    return re.compile(rf"^\s*(?:2\^10)?\s+{re.escape(label)}\s+\d+\s+{RATIO}\s+{RATIO}\s+"
                      rf"({RATIO})\s+({RATIO})x\s+({RATIO}x|-)\s+({RATIO})x\s+\d+%$")


def _lowp_row(label, of_ref=True):
    """A 16-bit kernel-table row: size (first row only), label, thr, µs, GB/s, of ref ("-" for
    the float32 baseline: other bytes), vs fp32, fastopt x, iqr."""
    ref = f"({RATIO})" if of_ref else "(-)"
    return re.compile(rf"^\s*(?:2\^10)?\s+{re.escape(label)}\s+\d+\s+{RATIO}\s+{RATIO}\s+"
                      rf"{ref}\s+({RATIO})x\s+({RATIO})x\s+\d+%$")


def _mixed_row(label, of_ref=True):
    """A mixed-precision row: size (first row only), label, thr, µs, B/el, GB/s, of ref,
    fastopt x, iqr."""
    ref = f"({RATIO})" if of_ref else "(-)"
    return re.compile(rf"^\s*(?:2\^10)?\s+{re.escape(label)}\s+\d+\s+{RATIO}\s+(\d+)\s+"
                      rf"{RATIO}\s+{ref}\s+({RATIO})x\s+\d+%$")


def _training_row(label):
    """A training-table row: case (first row only), label, thr, median, GB/s, x ref, fastopt x,
    iqr."""
    return re.compile(rf"^\s*\S*\s+{re.escape(label)}\s+\d+\s+{RATIO}\s+{RATIO}\s+"
                      rf"({RATIO})\s+({RATIO})x\s+\d+%$")


def _rows(section, pattern):
    return [m for m in map(pattern.match, section) if m]


def test_smoke_prints_every_table_and_ratio(capsys):
    torch = cases.import_torch()
    threads0 = get_num_threads()
    torch_threads0 = torch.get_num_threads() if torch is not None else None

    assert main(["bench", "--quick", "--smoke"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Traceback" not in out + captured.err

    # the kernel tables: every kernel, with every implementation and its ratios
    assert out.count(report.HEADER) == len(cases.KERNELS)
    assert report.HEADER_LOWP not in out               # float32 only by default
    for info in cases.KERNELS.values():
        section = _section(out, _kernel_title(info))
        assert section[0] == report.HEADER, info.name
        rows = section[1:]
        fastopt = _rows(rows, _kernel_row("fastopt"))
        assert fastopt, f"{info.name}: no fastopt row"
        for m in fastopt:
            assert float(m.group(4)) == 1.0           # fastopt x: fastopt against itself
        labels = ["same-traffic ref", "numpy course"]
        if info.inplace is not None:
            labels.append("numpy in-place")
        if torch is not None:
            labels += [label for label, _ in cases.torch_variants(info.name)]
        for label in labels:
            assert _rows(rows, _kernel_row(label)), f"{info.name}: no {label!r} row"
        assert len(rows) == sum(len(_rows(rows, _kernel_row(x))) for x in ["fastopt"] + labels)
    assert re.search(r"^per-call overhead .*: adam_step \d+ ns, np\.add\(a, b, out=a\) \d+ ns "
                     rf"\(ratio {RATIO};", out, re.M)

    # the training-loop section: Adam.step over many arrays, clipping, the epoch
    for heading, label in (("adam: one step over", "fastopt Adam.step"),
                           ("clip: clip_grad_norm on", "fastopt clip_grad_norm"),
                           ("epoch: one shuffled epoch of MiniBatches(A, axis=0)",
                            "fastopt MiniBatches"),
                           ("epoch: one shuffled epoch of MiniBatches(A, axis=1)",
                            "fastopt MiniBatches")):
        title = next(line for line in out.splitlines() if line.startswith(heading))
        section = _section(out, title)
        assert section[0] == report.training_header("µs" if heading.startswith("adam")
                                                     else "ms")
        assert _rows(section[1:], _training_row(label)), f"no {label!r} row under {title!r}"
    assert "found nothing to clip" not in out         # every timed clipping call clipped
    assert "not available" not in out

    # the targets, and the thread counts put back
    targets = out.split("\ntargets:\n", 1)[1]
    assert re.search(r"^  \[(ok|MISS)\] adam_step on 1 element costs", targets, re.M)
    assert re.search(r"^  \[(ok|MISS)\] Adam\.step .* one flat adam_step over [\d,]+ elements",
                     targets, re.M)
    assert re.search(r"^  \[(ok|MISS)\] epoch axis=1, batch \d+", targets, re.M)
    assert re.search(r"^\(benchmark time \d+\.\d s, ", targets, re.M)
    assert get_num_threads() == threads0
    if torch is not None:
        assert torch.get_num_threads() == torch_threads0


def test_smoke_dtype_axis(capsys):
    """--dtype float32,bfloat16: every kernel table twice; the bfloat16 ones with the
    same-traffic ref, the float32 baseline (vs fp32) and torch on bf16 tensors, no NumPy rows."""
    torch = cases.import_torch()
    threads0 = get_num_threads()
    assert main(["bench", "--smoke", "--suite", "kernels", "--dtype", "float32,bfloat16"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Traceback" not in out + captured.err
    assert "dtypes float32, bfloat16," in out
    assert out.count(report.HEADER) == len(cases.KERNELS)
    assert out.count(report.HEADER_LOWP) == len(cases.KERNELS)
    assert re.search(r"^bfloat16: every array of the update bfloat16, computed in float32", out,
                     re.M)
    assert "numpy course, numpy in-place: float32/float64 only, left out." in out
    for info in cases.KERNELS.values():
        f32 = _section(out, _kernel_title(info))
        assert f32[0] == report.HEADER
        assert _rows(f32[1:], _kernel_row("numpy course")), info.name
        assert bool(_rows(f32[1:], _kernel_row("numpy in-place"))) == (
            info.inplace is not None), info.name
        section = _section(out, _kernel_title(info, "bfloat16", 2))
        assert section[0] == report.HEADER_LOWP, info.name
        rows = section[1:]
        fastopt = _rows(rows, _lowp_row("fastopt"))
        assert fastopt, f"{info.name}: no fastopt row"
        for m in fastopt:
            assert float(m.group(3)) == 1.0            # fastopt x: fastopt against itself
        base = _rows(rows, _lowp_row("fastopt float32", of_ref=False))
        assert base, f"{info.name}: no float32 baseline row"
        for m in base:
            assert float(m.group(2)) == 1.0            # vs fp32: the baseline against itself
        labels = ["same-traffic ref"]
        if torch is not None:
            labels += [label for label, _ in cases.torch_variants(info.name)]
        for label in labels:
            assert _rows(rows, _lowp_row(label)), f"{info.name}: no {label!r} row"
        assert not any("numpy" in r for r in rows)
        assert len(rows) == len(fastopt) + len(base) + sum(
            len(_rows(rows, _lowp_row(x))) for x in labels)
    assert "not available" not in out
    targets = out.split("\ntargets:\n", 1)[1]
    assert re.search(r"^  \[(ok|MISS)\] adam_step on 1 element costs", targets, re.M)
    assert "targets are stated for float32" not in targets
    assert get_num_threads() == threads0


def test_smoke_mixed(capsys):
    """--suite mixed: one table per mixed-precision case, every row with its ratios, and every
    target line, for both thread counts."""
    torch = cases.import_torch()
    threads0 = get_num_threads()
    torch_threads0 = torch.get_num_threads() if torch is not None else None
    assert main(["bench", "--smoke", "--suite", "mixed"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Traceback" not in out + captured.err
    assert report.HEADER not in out                    # no kernel tables, no training section
    assert "\nadam: one step over" not in out
    threads = sorted({threads0, 1}, reverse=True)
    for info in cases.MIXED.values():
        title = next(line for line in out.splitlines() if line.startswith(f"{info.name}: "))
        assert f"; {info.bytes_per_element()} B/element; ref: " in title
        section = _section(out, title)
        assert section[0] == report.MIXED_HEADER
        rows = section[1:]
        if info.clip:
            expected = [("norm_and_finite + step(scale)", True, 32),
                        ("step + sumsq_multi (1 read)", True, 32),
                        ("adam_step_multi alone", False, 28)]
        else:
            expected = [("fastopt adam_step", True, info.bytes_per_element()),
                        ("same-traffic ref", True, info.ref_bytes_per_element())]
            if info.fp32:
                expected += [("fastopt float32 Adam", False, 28),
                             ("float32 same-traffic ref", False, 28)]
            if info.torch and torch is not None:
                expected.append((f"torch Adam fused {info.param}", True, 14))
        for label, of_ref, nbytes in expected:
            found = _rows(rows, _mixed_row(label, of_ref))
            assert len(found) == len(threads), f"{info.name}: {label!r}"
            assert all(int(m.group(1)) == nbytes for m in found), f"{info.name}: {label!r}"
        assert len(rows) == len(expected) * len(threads), info.name
        assert float(_rows(rows, _mixed_row(expected[0][0]))[0].group(3)) == 1.0
    assert "found nothing to clip" not in out
    assert "not available" not in out

    targets = out.split("\ntargets:\n", 1)[1]
    for t in threads:
        what = rf"^  \[(ok|MISS)\] {{}} Adam 2\^10, {t} thread\(s\): "
        assert re.search(what.format("bf16") + rf"{RATIO} of the same-traffic ref "
                         r"\(target >= 0\.9\)", targets, re.M)
        assert re.search(what.format("bf16") + rf"{RATIO}x faster than float32 Adam on float32 "
                         r"arrays \(target >= 1\.8x\)", targets, re.M)
        if torch is not None:
            assert re.search(what.format("bf16") + rf"{RATIO}x faster than "
                             r"torch\.optim\.Adam\(fused=True\) on the bfloat16 tensors "
                             r"\(target >= 2\.0x\)", targets, re.M)
        assert re.search(what.format("master") + rf"{RATIO} of the same-traffic ref per byte "
                         rf"\({RATIO} in time; the ref moves 30 B/element, the step 28\) "
                         r"\(target >= 0\.9\)", targets, re.M)
        assert re.search(what.format("f32-bf16-state") + rf"{RATIO} of the same-traffic ref "
                         r"\(target >= 0\.9\)", targets, re.M)
        for name in ("stochastic", "kahan"):
            assert re.search(what.format(name) + rf"{RATIO} of the same-traffic ref "
                             r"\(target >= 0\.85\)", targets, re.M)
        assert re.search(what.format("clip") + rf"clip \+ step = {RATIO}x \(step \+ one read "
                         r"pass\) \(target <= 1\.2x\)", targets, re.M)
    for info_line in re.findall(r"^  \[info\] .*$", targets, re.M):
        assert re.match(rf"^  \[info\] \S+ Adam 2\^10, \d thread\(s\): that ref moves {RATIO} "
                        rf"GB/s, {RATIO} of float32 same_traffic_step's {RATIO} GB/s, so 'of "
                        rf"ref' flatters the step: per the float32 rate it is {RATIO}$",
                        info_line), info_line
    assert not re.search(r"adam_step on 1 element", targets)     # no kernel tables
    assert get_num_threads() == threads0
    if torch is not None:
        assert torch.get_num_threads() == torch_threads0


def test_smoke_threshold(capsys):
    old = get_serial_threshold()
    assert main(["bench", "--threshold", "--smoke", "--kernels", "sgd,ewa"]) == 0
    out = capsys.readouterr().out
    for kernel in ("sgd", "ewa"):
        assert re.search(rf"^  {kernel}\s+crossover ", out, re.M)
    assert re.search(r"^\s+1024\s+\d+\.\d\d\s+\d+\.\d\d\s+\d+\.\d\d", out, re.M)
    assert f"(serial threshold restored to {old})" in out
    assert get_serial_threshold() == old


@pytest.mark.parametrize("argv, message", [
    (["--suite", "nope"], "argument --suite: invalid choice: 'nope'"),
    (["--repeat", "many"], "argument --repeat: invalid int value: 'many'"),
    (["--smoke", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--smoke", "--dtype", "float32,float8"],
     "argument --dtype: unknown dtype 'float8'; choose from float32,float64,float16,bfloat16"),
    (["--smoke", "--dtype", ","], "argument --dtype: no dtype given; choose from float32,"),
])
def test_bad_argument_is_a_usage_error(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["bench", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m fastopt")   # unknown options: the top parser's
    assert message in err


@pytest.mark.parametrize("argv, message", [
    (["--kernels", "sgd,nope"], "error: unknown kernel(s) nope; choose from sgd,"),
    (["--threads", "0"], "error: --threads must be >= 1"),
    (["--repeat", "0"], "error: --repeat must be >= 1"),
    (["--repeat", "-1"], "error: --repeat must be >= 1"),
    (["--sizes", "10,-3"], "error: size must be >= 0, got -3"),
])
def test_bad_value_is_a_clean_error(capsys, argv, message):
    assert main(["bench", "--smoke", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message)
    assert captured.out == ""                          # nothing measured


# ------------------------------------------------------------------------------------------------
# --torch: one AdamW step over whole models
# ------------------------------------------------------------------------------------------------

def _torch_row(label, threads, state, b_el, ref=False, fused=True):
    """A --torch row: label, thr, median ms, state, B/el, GB/s, of limit, fastopt x, fused x
    ("-" without a fused row), iqr."""
    fused_x = rf"({RATIO})x" if fused else r"(-)"
    return re.compile(rf"^{re.escape(label)}\s+{threads}\s+{RATIO}\s+{re.escape(state)}\s+"
                      rf"{b_el}\s+{RATIO}\s+({RATIO})\s+({RATIO})x\s+{fused_x}\s+\d+%$")


# (label, state, B/el) of every timed row of each table, DeepSpeed apart
_TORCH_ROWS = {
    "float32": [("fastopt AdamW", "f32", 28), ("torch AdamW fused", "f32", 28),
                ("torch AdamW foreach", "f32", 28), ("torch AdamW for-loop", "f32", 28)],
    "bfloat16": [("fastopt AdamW", "f32", 22), ("fastopt AdamW master", "f32+master", 28),
                 ("fastopt AdamW stochastic", "f32", 22), ("fastopt AdamW bf16 m/v", "bf16", 14),
                 ("torch AdamW fused", "bf16", 14),
                 ("torch AdamW foreach", "bf16", 14), ("torch AdamW for-loop", "bf16", 14)],
}
_TORCH_REFS = {
    "float32": [("same-traffic ref", "f32", 28)],
    "bfloat16": [("same-traffic ref (f32 m/v)", "f32", 22),
                 ("same-traffic ref (f32 master)", "f32+master", 30),
                 ("same-traffic ref (bf16 m/v)", "bf16", 14)],
}


def test_torch_smoke_prints_every_model_row_and_ratio(capsys):
    """--torch --smoke: the gpt tables (float32, bfloat16) and the small one, each with every
    implementation at both thread counts (DeepSpeed timed or 'unavailable (...)'), the refs and
    the ratios; then the per-tensor overhead; the thread counts put back."""
    torch = require_torch()
    threads0 = get_num_threads()
    torch_threads0 = torch.get_num_threads()
    assert main(["bench", "--torch", "--smoke"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Traceback" not in out + captured.err
    assert report.HEADER not in out and "targets:" not in out      # no kernel tables
    settings = next(line for line in out.splitlines() if "round-robin samples" in line)
    ds_missing = re.search(r"; DeepSpeed unavailable \((.+)\); \d+ CPUs", settings)
    assert ds_missing or re.search(r"; deepspeed \S+; \d+ CPUs", settings), settings
    threads = sorted({threads0, 1}, reverse=True)
    small = torch_models.models(smoke=True)["small"]
    for name, dtype in torch_models.TABLES:
        title = next((line for line in out.splitlines()
                      if line.startswith(f"{name} {dtype}: ")), None)
        assert title, f"no {name} {dtype} table"
        assert re.search(r"; [\d,]+ parameters in [\d,]+ tensors$", title), title
        section = _section(out, title)
        assert section[0] == report.TORCH_HEADER
        rows = section[1:]
        expected = [(label, st, b, False) for label, st, b in _TORCH_ROWS[dtype]]
        expected += [(label, st, b, True) for label, st, b in _TORCH_REFS[dtype]]
        if not ds_missing:
            expected.append(("DeepSpeedCPUAdam", "f32", 28 if dtype == "float32" else 22, False))
        for label, st, b, ref in expected:
            for t in threads:
                found = _rows(rows, _torch_row(label, t, st, b))
                assert len(found) == 1, f"{name} {dtype}: {label!r} at {t} thread(s)"
                of_limit, fastopt_x, fused_x = (float(x) for x in found[0].groups())
                if ref:
                    assert of_limit == 1.0, f"{label}: the ref against itself"
                if label == "fastopt AdamW":
                    assert fastopt_x == 1.0
                if label == "torch AdamW fused":
                    assert fused_x == 1.0
        unavailable = [r for r in rows if re.match(r"^DeepSpeedCPUAdam\s+-\s+unavailable \(.+\)$",
                                                   r)]
        assert len(unavailable) == (1 if ds_missing else 0), f"{name} {dtype}"
        assert len(rows) == len(expected) * len(threads) + len(unavailable), f"{name} {dtype}"

    section = _section(out, next(line for line in out.splitlines()
                                 if line.startswith("per-tensor overhead, small ")))
    assert len(section) == len(threads)
    for line, t in zip(section, threads):
        labels = ["fastopt AdamW", "torch AdamW fused"] + ([] if ds_missing
                                                           else ["DeepSpeedCPUAdam"])
        body = "; ".join(rf"{re.escape(x)} -?\d+\.\d+ µs" for x in labels)
        assert re.fullmatch(rf"  {t} thread\(s\): {body} per tensor", line), line
    assert f"/ {small.n_tensors:,}" in out
    assert re.search(r"^\(benchmark time \d+\.\d s, ", out, re.M)
    assert get_num_threads() == threads0
    assert torch.get_num_threads() == torch_threads0


def test_torch_without_torch_is_a_clean_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)          # import torch -> ImportError
    assert main(["bench", "--torch", "--smoke"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "torch is not installed; pip install torch==2.13.0\n"
    assert captured.out == ""


def test_torch_and_no_torch_exclude_each_other(capsys):
    assert main(["bench", "--torch", "--no-torch", "--smoke"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: --torch and --no-torch exclude each other")
    assert captured.out == ""


def test_torch_models_and_storage_bytes():
    """The issue's models, and the bytes per parameter each storage must move (and its ref)."""
    full = torch_models.models()
    gpt, small = full["gpt"], full["small"]
    assert gpt.shapes[0] == (50257, 256)
    layer = 256 * 768 + 768 + 256 * 256 + 256 + 256 * 1024 + 1024 + 1024 * 256 + 256 + 4 * 256
    assert gpt.n_params == 50257 * 256 + 12 * layer + 2 * 256 == 22_343_424
    assert gpt.n_tensors == 1 + 12 * 12 + 2 == 147
    assert small.n_tensors == 2000 and set(small.shapes) == {(4096,)}
    assert small.n_params == 8_192_000
    S = torch_models.Storage
    f32, bf16_f32, bf16 = (S("float32", "float32", "float32"),
                           S("bfloat16", "bfloat16", "float32"),
                           S("bfloat16", "bfloat16", "bfloat16"))
    master = S("bfloat16", "bfloat16", "float32", "float32")
    assert [s.step_bytes() for s in (f32, bf16_f32, bf16, master)] == [28, 22, 14, 28]
    assert [s.ref_bytes() for s in (f32, bf16_f32, bf16, master)] == [28, 22, 14, 30]
    assert [s.ref_label() for s in (f32, bf16_f32, bf16, master)] == [
        "same-traffic ref", "same-traffic ref (f32 m/v)", "same-traffic ref (bf16 m/v)",
        "same-traffic ref (f32 master)"]
    assert [s.describe() for s in (f32, bf16, master)] == ["f32", "bf16", "f32+master"]
