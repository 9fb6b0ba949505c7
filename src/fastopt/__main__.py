"""Command line: ``python -m fastopt info | bench [...] | demo [...]``."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastopt",
                                     description="fastopt: in-place CPU optimizer kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the build and runtime configuration")
    bench = sub.add_parser("bench", help="benchmark the kernels against NumPy (and PyTorch)")
    from .bench import add_arguments as add_bench_arguments
    add_bench_arguments(bench)
    demo = sub.add_parser("demo", help="train small networks with every optimizer of the course "
                                       "and compare them (table and figure)")
    from .demo.cli import add_arguments as add_demo_arguments
    add_demo_arguments(demo)
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._config import show_config
        show_config()
        return 0
    if args.command == "bench":
        from .bench import run as run_bench
        return run_bench(args)
    if args.command == "demo":
        from .demo.cli import run as run_demo
        return run_demo(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
