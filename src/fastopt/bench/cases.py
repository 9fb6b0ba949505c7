"""The benchmark cases, as data: what is timed, on which arrays, against what.

* :data:`KERNELS`: one row per kernel with every fact the harness needs (its operands, the arrays
  it reads and writes per element, the fastopt function, the :mod:`fastopt.reference` twin, the
  careful in-place NumPy twin, the hyperparameters all three are called with, the torch.optim
  class and its arguments).  :func:`fastopt_fn`, :func:`course_fn`, :func:`inplace_fn` and
  :func:`torch_fn` only read that table.
* :class:`Case`: the arrays of one (kernel, size, dtype) benchmark.
* the training-loop cases (:class:`MultiAdamCase`, :class:`ClipCase`, :class:`EpochCase`) and
  their rows (:class:`Impl`).
* :func:`check_twins` and :func:`check_training_baselines`: the baselines compute what fastopt
  computes.

Used by ``python -m fastopt bench`` (:mod:`fastopt.bench.cli`) and the pytest-benchmark suite in
``bench/``, so both time the same things.
"""

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .. import _dispatch
from .. import kernels as _fk
from .. import reference as _ref

# ------------------------------------------------------------------------------------------------
# Kernels: hyperparameters, arrays, byte counts
# ------------------------------------------------------------------------------------------------

LR = 1e-3
STEP = 10            # Adam's step counter: fixed, so every call does the same work
WD = 1e-2            # AdamW's decoupled weight decay

DEFAULT_SIZES = (10, 14, 17, 20, 24)          # powers of two
QUICK_SIZES = (10, 14, 20)                    # --quick adds 2^24 for adam (out of cache)
THRESHOLD_KERNELS = ("adam", "sgd", "ewa")
SMOKE_SIZES = (10,)                           # --smoke: does the harness run? (not a measurement)
SMOKE_THRESHOLD_SIZES = (10, 11)


# ---- careful in-place NumPy: ufuncs with out=, one preallocated scratch array, no temporaries ----

def _inplace_sgd(param, grad, s, *, lr):
    np.multiply(grad, lr, out=s)
    np.subtract(param, s, out=param)


def _inplace_momentum(param, grad, velocity, s, *, lr, beta):
    np.multiply(velocity, beta, out=velocity)
    np.multiply(grad, 1.0 - beta, out=s)
    np.add(velocity, s, out=velocity)
    np.multiply(velocity, lr, out=s)
    np.subtract(param, s, out=param)


def _inplace_rmsprop(param, grad, sq_avg, s, *, lr, beta, eps):
    np.multiply(sq_avg, beta, out=sq_avg)
    np.multiply(grad, grad, out=s)
    np.multiply(s, 1.0 - beta, out=s)
    np.add(sq_avg, s, out=sq_avg)
    np.sqrt(sq_avg, out=s)
    np.add(s, eps, out=s)
    np.divide(grad, s, out=s)
    np.multiply(s, lr, out=s)
    np.subtract(param, s, out=param)


def _inplace_adam(param, grad, m, v, s, *, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                  weight_decay=0.0, decoupled_weight_decay=False):
    if weight_decay and not decoupled_weight_decay:
        raise NotImplementedError("the in-place Adam twin has decoupled weight decay (AdamW) only")
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


def _inplace_ewa(avg, value, s, *, beta):
    np.multiply(avg, beta, out=avg)
    np.multiply(value, 1.0 - beta, out=s)
    np.add(avg, s, out=avg)


# ---- the kernel table ----

@dataclass(frozen=True)
class KernelInfo:
    """Everything the harness knows about one kernel.

    `fastopt`, `reference` and `inplace` are called with the case's arrays (in `arrays` order;
    `inplace` also gets a scratch array last) and the keyword arguments `hyper` (`fastopt` also
    gets ``n_threads``).  `torch_name` (a torch.optim class, or None) is built on the parameter
    and its gradient with `torch_hyper`.
    """
    name: str
    arrays: tuple        # array names, in the kernel's argument order (the 2nd is read-only)
    reads: int           # arrays read per element
    writes: int          # arrays written per element
    fastopt: object      # the fastopt.kernels function
    reference: object    # its fastopt.reference twin (the "numpy course" row)
    inplace: object      # its careful in-place NumPy twin (the "numpy in-place" row)
    hyper: dict = field(default_factory=dict)
    torch_name: str = None
    torch_hyper: dict = field(default_factory=dict)

    @property
    def arrays_moved(self):
        return self.reads + self.writes


KERNELS = {k.name: k for k in (
    KernelInfo("sgd", ("param", "grad"), 2, 1,
               _fk.sgd_step, _ref.sgd_step, _inplace_sgd,
               hyper={"lr": LR},
               torch_name="SGD", torch_hyper={"lr": LR}),
    KernelInfo("momentum", ("param", "grad", "velocity"), 3, 2,
               _fk.momentum_step, _ref.momentum_step, _inplace_momentum,
               hyper={"lr": LR, "beta": 0.9},
               torch_name="SGD", torch_hyper={"lr": LR, "momentum": 0.9, "dampening": 0.9}),
    KernelInfo("rmsprop", ("param", "grad", "sq_avg"), 3, 2,
               _fk.rmsprop_step, _ref.rmsprop_step, _inplace_rmsprop,
               hyper={"lr": LR, "beta": 0.9, "eps": 1e-8},
               torch_name="RMSprop", torch_hyper={"lr": LR, "alpha": 0.9, "eps": 1e-8}),
    KernelInfo("adam", ("param", "grad", "m", "v"), 4, 3,
               _fk.adam_step, _ref.adam_step, _inplace_adam,
               hyper={"step": STEP, "lr": LR},
               torch_name="Adam", torch_hyper={"lr": LR}),
    KernelInfo("adamw", ("param", "grad", "m", "v"), 4, 3,
               _fk.adam_step, _ref.adam_step, _inplace_adam,
               hyper={"step": STEP, "lr": LR, "weight_decay": WD, "decoupled_weight_decay": True},
               torch_name="AdamW", torch_hyper={"lr": LR, "weight_decay": WD}),
    KernelInfo("ewa", ("avg", "value"), 2, 1,
               _fk.ewa_update, _ref.ewa_update, _inplace_ewa,
               hyper={"beta": 0.9}),
)}


def size_label(n):
    """``2^k`` for a power of two, else the count."""
    k = n.bit_length() - 1
    return f"2^{k}" if n == 1 << k else f"{n}"


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


# ---- the implementations of one case, as zero-argument callables ----

_CALLERS = {}


def bind(fn, args, kwargs):
    """``lambda: fn(*args, **kwargs)``, compiled as a plain call with every argument spelled out.

    Unpacking a dict on every call would add ~0.2 µs to each timed call (a fifth of a 2^10 Adam
    step), so the lambda is generated with the argument count and keyword names of the call, as
    one would write it by hand.
    """
    key = (len(args), tuple(kwargs))
    make = _CALLERS.get(key)
    if make is None:
        a = [f"a{i}" for i in range(len(args))]
        k = [f"k{i}" for i in range(len(kwargs))]
        call = ", ".join(a + [f"{name}={v}" for name, v in zip(kwargs, k)])
        namespace = {}
        exec(f"def make(fn, {', '.join(a + k)}):\n    return lambda: fn({call})\n", namespace)
        make = _CALLERS[key] = namespace["make"]
    return make(fn, *args, *kwargs.values())


def fastopt_fn(case, n_threads):
    info = case.info
    return bind(info.fastopt, case.arrays, {**info.hyper, "n_threads": n_threads})


def traffic_fn(case, n_threads):
    """same_traffic_step over the arrays the update writes, reading the read-only one."""
    written, value, *state = case.arrays
    st = _fk.same_traffic_step
    return lambda: st(written, value, *state, n_threads=n_threads)


def course_fn(case):
    return bind(case.info.reference, case.arrays, case.info.hyper)


def inplace_fn(case):
    return bind(case.info.inplace, case.arrays + (case.scratch,), case.info.hyper)


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
    info = case.info
    if info.torch_name is None:
        raise ValueError(case.kernel)
    p, g = case.arrays[0], case.arrays[1]
    tp = torch.nn.Parameter(torch.from_numpy(p))
    tp.grad = torch.from_numpy(g)
    opt = getattr(torch.optim, info.torch_name)([tp], **info.torch_hyper, **{mode: True})
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


def threshold_sizes():
    """--threshold: 2^10 .. 2^17 in steps of sqrt(2), rounded to whole 64-byte lines of float64."""
    out = []
    for i in range(0, 15):
        n = int(round(2 ** (10 + i / 2) / 8)) * 8
        out.append(n)
    return out


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

# --smoke: the same cases on tiny arrays.  A clipping call must still take microseconds, so a
# 0.1 ms sample holds few calls and ClipCase's 1%-a-call shrinking stays far above eps.
SMOKE_MULTI = (8, 256)                          # (arrays, elements each)
SMOKE_CLIP_LAYOUTS = ((1, 1 << 14), (4, 1 << 12))
SMOKE_EPOCH_SHAPE = (1024, 16)
SMOKE_EPOCH_BATCHES = (64,)


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
        from ..optimizers import Adam
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
        from ..clip import global_norm
        rng = np.random.default_rng(seed)
        self.n_arrays, self.n, self.dtype = n_arrays, n, np.dtype(dtype)
        self.arrays = [_positive_grad(rng, n, self.dtype) for _ in range(n_arrays)]
        self.label = f"{n_arrays}x{size_label(n)}"
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
        from ..clip import clip_grad_norm, global_norm
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
        from ..batching import MiniBatches
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
    from ..batching import MiniBatches
    from ..clip import clip_grad_norm
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
