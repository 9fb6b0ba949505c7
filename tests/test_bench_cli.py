"""``python -m fastopt bench`` runs end to end, in-process, on tiny arrays (``--smoke``: seconds).

These are smoke tests of the harness (every section runs, prints its tables and ratios, and puts
the thread counts back), not measurements: no timing is asserted.
"""

import re

import pytest

from fastopt._config import get_num_threads, get_serial_threshold
from fastopt.__main__ import main
from fastopt.bench import cases, report

RATIO = r"(?:\d+(?:\.\d+)?)"                 # a ratio as the tables print it (never "-" here)


def _section(out, title):
    """The lines of the section that starts with the line `title` (up to the next blank line)."""
    lines = out.splitlines()
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1:end]


def _kernel_title(info):
    return (f"{info.name}: {info.reads} reads + {info.writes} writes per element "
            f"(same-traffic ref: same_traffic_step({', '.join(info.arrays)}))")


def _kernel_row(label):
    """A kernel-table row: size (first row only), label, thr, µs, GB/s, of ref, vs course,
    vs in-place, fastopt x, iqr."""
    return re.compile(rf"^\s*(?:2\^10)?\s+{re.escape(label)}\s+\d+\s+{RATIO}\s+{RATIO}\s+"
                      rf"({RATIO})\s+({RATIO})x\s+({RATIO})x\s+({RATIO})x\s+\d+%$")


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
    for info in cases.KERNELS.values():
        section = _section(out, _kernel_title(info))
        assert section[0] == report.HEADER, info.name
        rows = section[1:]
        fastopt = _rows(rows, _kernel_row("fastopt"))
        assert fastopt, f"{info.name}: no fastopt row"
        for m in fastopt:
            assert float(m.group(4)) == 1.0           # fastopt x: fastopt against itself
        labels = ["same-traffic ref", "numpy course", "numpy in-place"]
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
