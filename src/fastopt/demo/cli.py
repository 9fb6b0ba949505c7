"""``python -m fastopt demo``: train the demo's networks with every optimizer and compare them.

Prints one table per experiment (optimizer, final cost, train and test accuracy, seconds, steps/s;
for bf16: storage, final cost, accuracies, median time of one step) and writes a PNG of the cost
curves, the moons decision boundaries and the learning-rate curves.
"""

import argparse
import importlib.util
import os
import sys
import time

__all__ = ["add_arguments", "run", "main", "format_table", "missing_dependencies",
           "check_output_path"]

DEFAULT_OUT = "fastopt_demo.png"
INSTALL_HINT = ('    pip install "fastopt[demo]"\n'
                "or\n"
                "    pip install matplotlib scikit-learn tqdm")

# import name -> pip name
_PIP_NAMES = {"matplotlib": "matplotlib", "sklearn": "scikit-learn", "tqdm": "tqdm"}


def add_arguments(parser):
    """Add the demo's options to an argparse parser."""
    parser.add_argument("--experiment", choices=("moons", "digits", "bf16", "all"),
                        default="all",
                        help="which experiment to run (default: all); bf16 trains the digits "
                             "network with Adam in float32 and in bfloat16 storage")
    parser.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                        help="epochs per optimizer, overriding the defaults (moons 1000, "
                             "digits and bf16 100; SGD with batch 1 takes a tenth), for quick "
                             "runs")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initialisation and the batch order (default 0)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="PATH",
                        help=f"where to write the figure (default {DEFAULT_OUT})")
    parser.add_argument("--no-plot", action="store_true",
                        help="print the tables only (matplotlib is not needed)")
    return parser


def _positive_int(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return n


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_dependencies(experiments, plot):
    """The pip names of the demo's dependencies that this run needs and cannot import."""
    needed = ["tqdm"]
    if "digits" in experiments or "bf16" in experiments:
        needed.append("sklearn")
    if plot:
        needed.append("matplotlib")
    return [_PIP_NAMES[m] for m in needed if not _installed(m)]


def _figure_formats():
    """The file extensions matplotlib can write (None if that cannot be asked cheaply)."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
        return set(FigureCanvasBase.get_supported_filetypes())
    except Exception:                                    # noqa: BLE001 - then savefig decides
        return None


def check_output_path(path):
    """Why the figure cannot be written to `path`, or None when it can (as far as can be told
    before writing): its directory must exist and be writable, `path` must not be a directory
    (nor a read-only file), and its extension must be a format matplotlib writes."""
    full = os.path.abspath(os.path.expanduser(path))
    parent = os.path.dirname(full)
    if os.path.isdir(full):
        return f"{path!r} is a directory; give a file name such as {DEFAULT_OUT!r}"
    if not os.path.exists(parent):
        return f"the directory {parent!r} does not exist"
    if not os.path.isdir(parent):
        return f"{parent!r} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the directory {parent!r} is not writable"
    if os.path.exists(full) and not os.access(full, os.W_OK):
        return f"{path!r} exists and is not writable"
    ext = os.path.splitext(full)[1].lower().lstrip(".")
    formats = _figure_formats() if ext else None
    if formats is not None and ext not in formats:
        return (f"matplotlib cannot write .{ext} files; use one of "
                f"{', '.join('.' + f for f in sorted(formats))}")
    return None


def format_table(results):
    """The results of one experiment as a text table."""
    head = (f"{'optimizer':<24} {'learning rate':<30} {'epochs':>6} {'batch':>5} {'steps':>6} "
            f"{'final cost':>10} {'train acc':>9} {'test acc':>8} {'seconds':>7} {'steps/s':>8}")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(f"{name:<24} {r['lr']:<30} {r['epochs']:>6} {r['batch_size']:>5} "
                     f"{r['steps']:>6} {r['final_cost']:>10.4f} {100 * r['train_acc']:>8.1f}% "
                     f"{100 * r['test_acc']:>7.1f}% {r['seconds']:>7.2f} "
                     f"{r['steps_per_s']:>8.0f}")
    return "\n".join(lines)


def _table(name, results):
    if name == "bf16":
        from .lowp import format_table as format_bf16_table
        return format_bf16_table(results)
    return format_table(results)


def run(args):
    """Run the demo for parsed arguments; returns the exit code (2: a dependency is missing, or
    the figure cannot be written to ``--out``; both are checked before any training)."""
    names = ["moons", "digits", "bf16"] if args.experiment == "all" else [args.experiment]
    plot = not args.no_plot
    missing = missing_dependencies(names, plot)
    if missing:
        print(f"python -m fastopt demo needs {', '.join(missing)}, which "
              f"{'is' if len(missing) == 1 else 'are'} not installed.  Install the demo's "
              f"dependencies with\n{INSTALL_HINT}", file=sys.stderr)
        return 2
    if plot:                     # before any training: a bad --out must not waste the whole run
        problem = check_output_path(args.out)
        if problem is not None:
            print(f"python -m fastopt demo: error: argument --out: cannot write the figure to "
                  f"{args.out!r}: {problem}", file=sys.stderr)
            return 2

    from . import experiments as ex

    start = time.perf_counter()
    all_results = {}
    for name in names:
        run_experiment, default_epochs = ex.EXPERIMENTS[name]
        epochs = default_epochs if args.epochs is None else args.epochs
        print(ex.describe(name, epochs, args.seed), flush=True)
        t0 = time.perf_counter()
        all_results[name] = run_experiment(epochs=epochs, seed=args.seed, progress=True)
        print(_table(name, all_results[name]))
        print(f"({time.perf_counter() - t0:.1f} s)\n", flush=True)
    if plot:
        from .plot import plot_results
        plot_results(all_results, args.out)
        print(f"wrote {args.out}")
    print(f"total wall time {time.perf_counter() - start:.1f} s")
    return 0


def main(argv=None):
    """``python -m fastopt demo [options]`` as a function: returns the exit code."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m fastopt demo", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))
