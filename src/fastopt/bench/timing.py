"""Timing: calibration, round-robin sampling, medians and spreads, thread pinning, load checks.

Nothing here knows what is being timed: a :class:`Candidate` is a label and a zero-argument
callable.  :func:`measure` times a list of them round-robin (one sample of each in turn, repeated),
so slow drift on a shared machine hits them alike.
"""

import contextlib
import gc
import itertools
import os
import statistics
import time
from dataclasses import dataclass, field

from .. import _dispatch
from .._config import set_num_threads


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


# ---- threads ----

def torch_threads_setter(torch, n):
    """A `setup` that sets torch's thread count to `n` (untimed, before each sample)."""
    # torch.set_num_threads also sets the OpenMP runtime's default count, which fastopt's
    # n_threads=None would follow: that is why every fastopt call here passes n_threads.
    def setup():
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return setup


def thread_counts(impl, threads):
    """The thread counts `impl` (a :class:`~fastopt.bench.cases.Impl`) is timed at, given the
    default count `threads`."""
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


# ---- a busy machine ----

def warn_if_busy(threads):
    """Print a warning when the load average says other processes hold the cores."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    cpus = os.cpu_count() or 1
    if threads > 1 and load > cpus - 0.5:
        print(f"warning: load average {load:.2f} on {cpus} CPUs: while other processes hold the "
              f"cores, every {threads}-thread region can wait a scheduler tick (ms); the 1-thread "
              f"rows are the reliable ones")


def load_average():
    """``load average 0.12 0.34 0.56`` (or ``load average unknown``), for the report."""
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unknown"
