"""Command line: ``python -m fastopt info | bench [...]``."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastopt",
                                     description="fastopt: in-place CPU optimizer kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the build and runtime configuration")
    bench = sub.add_parser("bench", help="benchmark the kernels against NumPy (and PyTorch)")
    from ._bench import add_arguments as add_bench_arguments
    add_bench_arguments(bench)
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._config import show_config
        show_config()
        return 0
    if args.command == "bench":
        from ._bench import run
        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
