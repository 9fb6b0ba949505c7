"""The benchmark cases, as data: what is timed, on which arrays, against what.

* :data:`KERNELS`: one row per kernel with every fact the harness needs (its operands, the arrays
  it reads and writes per element, the fastopt function, the :mod:`fastopt.reference` twin, the
  careful in-place NumPy twin, the hyperparameters all three are called with, the torch.optim
  class and its arguments).  :func:`fastopt_fn`, :func:`course_fn`, :func:`inplace_fn` and
  :func:`torch_fn` only read that table.
* :class:`Case`: the arrays of one (kernel, size, dtype) benchmark; float32, float64, float16 or
  bfloat16 (:data:`BENCH_DTYPES`, every array in that dtype).
* :data:`MIXED`: the mixed-precision Adam cases (16-bit storage, float32 master, 16-bit state,
  stochastic rounding, Kahan compensation, clipping folded into the step), one row each, and
  :class:`MixedCase`, the arrays of one.
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

from .. import _dispatch, _registry
from .. import kernels as _fk
from .. import reference as _ref

# ------------------------------------------------------------------------------------------------
# Kernels: hyperparameters, arrays, byte counts
# ------------------------------------------------------------------------------------------------

LR = 1e-3
STEP = 10            # Adam's step counter: fixed, so every call does the same work
WD = 1e-2            # AdamW's decoupled weight decay

BENCH_DTYPES = ("float32", "float64", "float16", "bfloat16")   # --dtype
LOWP_DTYPES = ("float16", "bfloat16")         # 16-bit storage, float32 compute

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


def _inplace_lion(param, grad, m, s, *, lr, beta1=0.9, beta2=0.99):
    # sign(beta1 m + (1 - beta1) g) = sign(m beta1/(1 - beta1) + g): one scratch array, no
    # temporary
    np.multiply(m, beta1 / (1.0 - beta1), out=s)
    np.add(s, grad, out=s)
    np.sign(s, out=s)
    np.multiply(s, lr, out=s)
    np.subtract(param, s, out=param)
    np.multiply(m, beta2 / (1.0 - beta2), out=m)
    np.add(m, grad, out=m)
    np.multiply(m, 1.0 - beta2, out=m)


def _inplace_adagrad(param, grad, sum_sq, s, *, step, lr, lr_decay=0.0, eps=1e-10):
    np.multiply(grad, grad, out=s)
    np.add(sum_sq, s, out=sum_sq)
    np.sqrt(sum_sq, out=s)
    np.add(s, eps, out=s)
    np.divide(grad, s, out=s)
    np.multiply(s, lr / (1.0 + (step - 1) * lr_decay), out=s)
    np.subtract(param, s, out=param)


def _inplace_adamax(param, grad, m, u, s, *, step, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    np.multiply(m, beta1, out=m)
    np.multiply(grad, 1.0 - beta1, out=s)
    np.add(m, s, out=m)
    np.absolute(grad, out=s)
    np.add(s, eps, out=s)
    np.multiply(u, beta2, out=u)
    np.maximum(u, s, out=u)
    np.divide(m, u, out=s)
    np.multiply(s, lr / (1.0 - beta1 ** step), out=s)
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
    inplace: object      # its careful in-place NumPy twin (the "numpy in-place" row), or None
                         # where one scratch array is not enough (that row is left out)
    hyper: dict = field(default_factory=dict)
    torch_name: str = None
    torch_hyper: dict = field(default_factory=dict)

    @property
    def arrays_moved(self):
        return self.reads + self.writes


def _row(name, rule, inplace, hyper, torch_name=None, torch_hyper=None):
    """A KernelInfo whose operands, byte counts, fastopt function and twin come from the rule
    registry (the operands in use with the default options)."""
    r = _registry.BY_NAME[rule]
    arrays = tuple(op.name for op in r.operands if op.needs is None)
    return KernelInfo(name, arrays, len(arrays), len(arrays) - 1,
                      getattr(_dispatch.kernels, r.twin), getattr(_ref, r.twin), inplace,
                      hyper=hyper, torch_name=torch_name, torch_hyper=torch_hyper or {})


KERNELS = {k.name: k for k in (
    _row("sgd", "sgd", _inplace_sgd, {"lr": LR}, "SGD", {"lr": LR}),
    _row("momentum", "momentum", _inplace_momentum, {"lr": LR, "beta": 0.9},
         "SGD", {"lr": LR, "momentum": 0.9, "dampening": 0.9}),
    _row("rmsprop", "rmsprop", _inplace_rmsprop, {"lr": LR, "beta": 0.9, "eps": 1e-8},
         "RMSprop", {"lr": LR, "alpha": 0.9, "eps": 1e-8}),
    _row("adam", "adam", _inplace_adam, {"step": STEP, "lr": LR}, "Adam", {"lr": LR}),
    _row("adamw", "adam", _inplace_adam,
         {"step": STEP, "lr": LR, "weight_decay": WD, "decoupled_weight_decay": True},
         "AdamW", {"lr": LR, "weight_decay": WD}),
    _row("lion", "lion", _inplace_lion, {"lr": LR}),
    _row("adagrad", "adagrad", _inplace_adagrad, {"step": STEP, "lr": LR}, "Adagrad",
         {"lr": LR}),
    _row("adamax", "adamax", _inplace_adamax, {"step": STEP, "lr": LR}, "Adamax", {"lr": LR}),
    _row("ewa", "ewa", _inplace_ewa, {"beta": 0.9}),
)}

# torch.optim's classes (by name, so that torch is not imported here), and those with a fused CPU
# implementation (torch 2.x); the others get foreach only
TORCH_OPTIM = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam",
               "Adadelta")
TORCH_FUSED = ("SGD", "Adam", "AdamW", "Adagrad")


def _generic_row(rule):
    """The row of a registry rule without a hand-written one: lr, the step and the example values
    of the hyperparameters without a default; the torch.optim class of the same name, if any
    (no in-place NumPy twin)."""
    hyper = {"lr": LR, **_registry.required_hypers(rule)}
    if rule.stepped:
        hyper["step"] = STEP
    torch_name = rule.cls if rule.cls in TORCH_OPTIM else None
    return _row(rule.name, rule.name, None, hyper, torch_name, {"lr": LR})


# every rule of the registry has its row: a new rule needs no line here
for _r in _registry.RULES:
    if _r.name not in KERNELS:
        KERNELS[_r.name] = _generic_row(_r)


def bench_dtype(name):
    """The NumPy dtype of a --dtype name (bfloat16: ``ml_dtypes.bfloat16``); ValueError for
    anything else."""
    if name not in BENCH_DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose from {','.join(BENCH_DTYPES)}")
    if name == "bfloat16":
        bf16 = _dispatch.kernels.BFLOAT16
        if bf16 is None:                                 # pragma: no cover - ml_dtypes is needed
            raise ValueError("bfloat16 needs the ml_dtypes package")
        return bf16
    return np.dtype(name)


def is_lowp(dtype):
    """True for the 16-bit storage types (float16, bfloat16)."""
    return np.dtype(dtype).itemsize == 2


def dtype_name(dtype):
    return np.dtype(dtype).name


# Starting values per operand, in float32 before the cast to the storage type: (scale, offset).
# float16 gets gradients 10x larger (and v, sq_avg 100x): with the float32 ranges its v (~1e-6)
# and part of its m would be subnormal (float16's smallest normal is 6.1e-5), and the speed of
# 16-bit subnormals is not what is measured here.
_START = {"grad": (1e-3, 1e-4), "value": (1e-3, 1e-4),       # (0, 1e-3] + 1e-4
          "sq_avg": (1e-6, 1e-8), "v": (1e-6, 1e-8),         # > 0
          "m": (1e-3, 0.0), "velocity": (1e-3, 0.0),
          "sum_sq": (1e-6, 1e-8), "u": (1e-3, 1e-4), "acc_delta": (1e-6, 1e-8)}   # > 0
_F16_FACTOR = {"grad": 10, "value": 10, "m": 10, "velocity": 10, "sq_avg": 100, "v": 100,
               "sum_sq": 100, "u": 10, "acc_delta": 100}
_PARAM_START = (1.0, -0.5)                                    # param, avg: [-0.5, 0.5)


def start_array(name, n, dtype, rng):
    """The starting values of operand `name` (as :class:`Case`'s docstring says) in `dtype`.
    float32/float64 are drawn in that dtype (the numbers of the float tables never changed);
    16-bit ones are drawn in float32 and rounded once."""
    dtype = np.dtype(dtype)
    scale, offset = _START.get(name, _PARAM_START)
    if not is_lowp(dtype):
        a = rng.random(n, dtype=dtype)                        # [0, 1)
        if offset < 0:
            a += offset
        else:
            a *= scale
            if offset:
                a += offset
        return a
    a = rng.random(n, dtype=np.float32)
    if dtype == np.float16 and name in _F16_FACTOR:
        k = _F16_FACTOR[name]
        scale, offset = scale * k, offset * k
    a *= scale
    a += offset
    return a.astype(dtype)


def torch_tensor(a, torch):
    """A torch tensor sharing `a`'s memory (no copy): ``torch.from_numpy``, through an int16 view
    for bfloat16 (torch does not know ml_dtypes' type)."""
    if a.dtype == _dispatch.kernels.BFLOAT16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


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

    With a 16-bit dtype every array is 16-bit and the same-traffic reference adds 1 to the raw
    bits of each written array: repeated thousands of times that walks the values through Inf,
    NaN and subnormal patterns (harmless to it: integer adds), which would slow down a kernel
    computing on them.  So the reference runs on copies of the arrays (`ref_arrays`: the same
    dtypes and sizes, hence the same bytes); for float32/float64 it shares them.  The NumPy
    twins (`scratch`) exist for float32/float64 only.
    """

    def __init__(self, kernel, n, dtype=np.float32, seed=0):
        self.info = KERNELS[kernel]
        self.kernel = kernel
        self.n = int(n)
        self.dtype = np.dtype(dtype)
        self.lowp = is_lowp(self.dtype)
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.arrays = tuple(start_array(name, self.n, self.dtype, rng)
                            for name in self.info.arrays)
        if self.lowp:
            self.ref_arrays = tuple(a.copy() for a in self.arrays)
            self.scratch = None
        else:
            self.ref_arrays = self.arrays
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
    """same_traffic_step over the arrays the update writes, reading the read-only one (on the
    case's `ref_arrays`)."""
    written, value, *state = case.ref_arrays
    st = _fk.same_traffic_step
    return lambda: st(written, value, *state, n_threads=n_threads)


def course_fn(case):
    """The NumPy course twin (float32/float64 cases only)."""
    if case.lowp:
        raise ValueError(f"no NumPy baseline for {case.dtype}")
    return bind(case.info.reference, case.arrays, case.info.hyper)


def inplace_fn(case):
    """The careful in-place NumPy twin (float32/float64 cases only)."""
    if case.lowp:
        raise ValueError(f"no NumPy baseline for {case.dtype}")
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
    """The torch.optim variants benchmarked for `kernel`: [(label, mode)], mode 'fused'/'foreach'
    (foreach only for the classes without a fused implementation: RMSprop, Adamax, NAdam, ...)."""
    info = KERNELS[kernel]
    if info.torch_name is None:
        return []
    modes = ("fused", "foreach") if info.torch_name in TORCH_FUSED else ("foreach",)
    return [(f"torch {info.torch_name} {mode}", mode) for mode in modes]


def torch_fn(case, mode, torch):
    """One torch.optim step on the case's param and grad (shared with NumPy, no copy; 16-bit
    ones as torch.bfloat16 / torch.float16 tensors); the optimizer keeps its own state tensors
    (in the param's dtype).  One warm-up step creates the state."""
    info = case.info
    if info.torch_name is None:
        raise ValueError(case.kernel)
    p, g = case.arrays[0], case.arrays[1]
    tp = torch.nn.Parameter(torch_tensor(p, torch))
    tp.grad = torch_tensor(g, torch)
    opt = getattr(torch.optim, info.torch_name)([tp], **info.torch_hyper, **{mode: True})
    opt.step()
    return opt.step


def check_twins(dtype=np.float64, n=1001):
    """The in-place NumPy twins and fastopt agree with fastopt.reference (guards the baselines)."""
    rtol = 1e-10 if np.dtype(dtype) == np.float64 else 2e-4
    for kernel in KERNELS:
        cases = [Case(kernel, n, dtype, seed=1) for _ in range(3)]
        fns = [course_fn(cases[0]), fastopt_fn(cases[2], 1)]
        if KERNELS[kernel].inplace is not None:
            fns.insert(1, inplace_fn(cases[1]))
        for _ in range(3):
            for f in fns:
                f()
        checked = [("fastopt", cases[2])]
        if KERNELS[kernel].inplace is not None:
            checked.append(("in-place NumPy", cases[1]))
        for name, c in checked:
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


# ------------------------------------------------------------------------------------------------
# Mixed precision: Adam with 16-bit storage, master copies, 16-bit state, stochastic rounding,
# Kahan compensation, and clipping folded into the step
# ------------------------------------------------------------------------------------------------

MIXED_SIZES = (20, 24)                          # powers of two
QUICK_MIXED_SIZES = (24,)                       # --quick: 2^24 only (out of cache)
SMOKE_MIXED_SIZES = (10,)
MIXED_SEED = 1234                               # stochastic rounding's seed
CLIP_FRACTION = 0.5                             # clip+step: max_norm = this x the gradient's norm


@dataclass(frozen=True)
class MixedInfo:
    """One mixed-precision Adam case.

    `param`, `grad`, `state` (m and v) are the storage types; `aux` is None, "master" (a float32
    master copy: ``master=``) or "compensation" (a Kahan buffer of the param's dtype:
    ``compensation=``); `options` are more ``adam_step`` keywords (``rounding``, ``seed``).
    Every case is timed against its same-traffic reference, ``same_traffic_step(param, grad,
    [aux,] m, v)`` on copies of its arrays; `of_ref` is the target for ref time / step time.
    `fp32` and `torch` (targets: how many times faster, or None) add float32 Adam on float32
    arrays and ``torch.optim.Adam(fused=True)`` on the case's tensors; `fp32` also adds the
    float32 Adam's own same-traffic ref (native float32 loops), the memory rate the other refs
    are compared with (the 16-bit refs run a plain block loop, which may not reach it).

    `clip`: the clip + step case instead (float32): ``norm_and_finite_multi([g])``, then
    ``adam_step_multi([p], [g], [m], [v], grad_scale=coef)`` with clipping active on every call,
    against the step alone plus one read pass (``adam_step_multi`` then ``sumsq_multi([g])``);
    `clip_goal` is the target for its time / that time.
    """
    name: str
    title: str
    param: str = "bfloat16"
    grad: str = "bfloat16"
    state: str = "bfloat16"
    aux: str = None
    options: dict = field(default_factory=dict)
    of_ref: float = None
    fp32: float = None
    torch: float = None
    clip: bool = False
    clip_goal: float = None

    @property
    def aux_dtype(self):
        return {"master": "float32", "compensation": self.param}.get(self.aux)

    def operands(self):
        """[(name, dtype name)] of the step's arrays: param, grad, [aux,] m, v."""
        out = [("param", self.param), ("grad", self.grad)]
        if self.aux:
            out.append((self.aux, self.aux_dtype))
        return out + [("m", self.state), ("v", self.state)]

    def bytes_per_element(self):
        """What the step moves per element: grad read once; param read and written (only
        written with a master, which is read and written in its place); the rest read and
        written.  Clip + step: its norm pass reads grad once more."""
        size = {name: bench_dtype(dt).itemsize for name, dt in self.operands()}
        total = sum(2 * b for b in size.values()) - size["grad"]
        if self.aux == "master":
            total -= size["param"]
        if self.clip:
            total += size["grad"]
        return total

    def ref_bytes_per_element(self):
        """What the reference moves: every array but grad read and written, grad read (clip:
        the step plus one read pass over grad, the same bytes as the clip + step)."""
        if self.clip:
            return self.bytes_per_element()
        size = {name: bench_dtype(dt).itemsize for name, dt in self.operands()}
        return sum(2 * b for b in size.values()) - size["grad"]


MIXED = {m.name: m for m in (
    MixedInfo("bf16", "pure bf16 Adam", of_ref=0.9, fp32=1.8, torch=2.0),
    MixedInfo("master", "bf16 param with a float32 master (master=)", state="float32",
              aux="master", of_ref=0.9),
    MixedInfo("f32-bf16-state", "float32 param, bf16 state", param="float32", grad="float32",
              of_ref=0.9),
    MixedInfo("stochastic", f"pure bf16 Adam, rounding='stochastic' (step={STEP}, "
              f"seed={MIXED_SEED})", options={"rounding": "stochastic", "seed": MIXED_SEED},
              of_ref=0.85),
    MixedInfo("kahan", "bf16 Adam with Kahan compensation=", aux="compensation", of_ref=0.85),
    MixedInfo("clip", "clip + step: norm_and_finite_multi([g]), then adam_step_multi(..., "
              "grad_scale=coef), clipping active", param="float32", grad="float32",
              state="float32", clip=True, clip_goal=1.2),
)}


def mixed_impls(info, torch_available=False):
    """The rows of one mixed case (:class:`Impl`)."""
    if info.clip:
        return [Impl("clip-step", "norm_and_finite + step(scale)", "fastopt"),
                Impl("ref", "step + sumsq_multi (1 read)", "ref"),
                Impl("step", "adam_step_multi alone", "step")]
    out = [Impl("fastopt", "fastopt adam_step", "fastopt"),
           Impl("ref", "same-traffic ref", "ref")]
    if info.fp32:
        out += [Impl("fp32", "fastopt float32 Adam", "fp32"),
                Impl("fp32-ref", "float32 same-traffic ref", "fp32-ref")]
    if info.torch and torch_available:
        out.append(Impl("torch-fused", f"torch Adam fused {info.param}", "torch", torch=True))
    return out


class MixedCase:
    """The arrays of one mixed-precision case (:data:`MIXED`) at `n` elements, with the training
    cases' interface (`impls`, `fn`, `nbytes`).

    Starting values as :class:`Case`'s (a master starts equal to its param, a compensation at
    zero).  The reference runs on copies (see :class:`Case`: its raw-bit adds would walk the
    16-bit values into subnormals); the float32 baseline has float32 arrays of its own; torch
    shares the param and grad (its state is its own).  The clip + step case shares its arrays
    with its reference (float32 only, both are real steps).
    """

    setup = None

    def __init__(self, info, n, seed=SEED):
        self.info, self.n = info, int(n)
        self.name, self.label = info.name, size_label(self.n)
        rng = np.random.default_rng(seed)
        arrays = {}
        for name, dt in info.operands():
            dtype = bench_dtype(dt)
            if name == "master":
                arrays[name] = arrays["param"].astype(np.float32)
            elif name == "compensation":
                arrays[name] = np.zeros(self.n, dtype)
            else:
                arrays[name] = start_array(name, self.n, dtype, rng)
        self.arrays = arrays
        self.missed = 0                  # clip + step calls that found nothing to clip (stays 0)
        if info.clip:
            self.ref_arrays = arrays
            s, _ = _dispatch.kernels.norm_and_finite_multi([arrays["grad"]])
            self.max_norm = CLIP_FRACTION * math.sqrt(s)   # grad is never scaled: every call clips
        else:
            self.ref_arrays = {k: a.copy() for k, a in arrays.items()}
        self._fp32 = None

    def impls(self, torch_available=False):
        return mixed_impls(self.info, torch_available)

    def nbytes(self, impl_id):
        info = self.info
        if impl_id == "ref":
            return info.ref_bytes_per_element() * self.n
        if impl_id in ("fp32", "fp32-ref"):
            return KERNELS["adam"].arrays_moved * 4 * self.n
        if impl_id == "step":
            return (info.bytes_per_element() - bench_dtype(info.grad).itemsize) * self.n
        return info.bytes_per_element() * self.n

    def _step_kwargs(self, threads):
        kw = {"step": STEP, "lr": LR, **self.info.options, "n_threads": threads}
        if self.info.aux:
            kw[self.info.aux] = self.arrays[self.info.aux]
        return kw

    def fn(self, impl_id, threads, torch=None):
        a, info = self.arrays, self.info
        if info.clip:
            return self._clip_fn(impl_id, threads)
        if impl_id == "fastopt":
            return bind(_fk.adam_step, (a["param"], a["grad"], a["m"], a["v"]),
                        self._step_kwargs(threads))
        if impl_id == "ref":
            r = self.ref_arrays
            state = ([r[info.aux]] if info.aux else []) + [r["m"], r["v"]]
            return bind(_fk.same_traffic_step, (r["param"], r["grad"], *state),
                        {"n_threads": threads})
        if impl_id in ("fp32", "fp32-ref"):
            if self._fp32 is None:
                self._fp32 = Case("adam", self.n, np.float32, seed=SEED + 1)
            fn = fastopt_fn if impl_id == "fp32" else traffic_fn
            return fn(self._fp32, threads)
        if impl_id == "torch-fused":
            tp = torch.nn.Parameter(torch_tensor(a["param"], torch))
            tp.grad = torch_tensor(a["grad"], torch)
            opt = torch.optim.Adam([tp], lr=LR, fused=True)
            opt.step()                                  # creates the state
            return opt.step
        raise ValueError(impl_id)

    def _clip_fn(self, impl_id, threads):
        k = _dispatch.kernels
        a, case, max_norm = self.arrays, self, self.max_norm
        p, g, m, v = [a["param"]], [a["grad"]], [a["m"]], [a["v"]]
        adam, nf, sumsq = k.adam_step_multi, k.norm_and_finite_multi, k.sumsq_multi
        sqrt = math.sqrt
        if impl_id == "clip-step":
            def clip_step():
                s, finite = nf(g, n_threads=threads)
                norm = sqrt(s)
                if norm > max_norm:
                    coef = max_norm / (norm + 1e-6)
                else:
                    coef = 1.0
                    case.missed += 1
                if finite:
                    adam(p, g, m, v, step=STEP, lr=LR, grad_scale=coef, n_threads=threads)
            return clip_step
        if impl_id == "ref":
            def step_and_read():
                adam(p, g, m, v, step=STEP, lr=LR, n_threads=threads)
                sumsq(g, n_threads=threads)
            return step_and_read
        if impl_id == "step":
            return lambda: adam(p, g, m, v, step=STEP, lr=LR, n_threads=threads)
        raise ValueError(impl_id)


def check_mixed(n=1001):
    """Every timed mixed-precision step is bitwise what :func:`fastopt.reference.step_exact`
    computes for its storage types and keywords (guards the rows: the timed call is the update
    the row claims), and clip + step is the step of the clipped gradient."""
    for info in MIXED.values():
        case = MixedCase(info, n, seed=7)
        a = {k: x.copy() for k, x in case.arrays.items()}
        case.fn("clip-step" if info.clip else "fastopt", 1)()
        kw = dict(info.options)
        if info.aux:
            kw[info.aux] = a[info.aux]
        if info.clip:
            s, _ = _dispatch.kernels.norm_and_finite_multi([a["grad"]])
            kw["grad_scale"] = case.max_norm / (math.sqrt(s) + 1e-6)
        _ref.step_exact("adam", {k: a[k] for k in ("param", "grad", "m", "v")},
                        step=STEP, lr=LR, **kw)
        for k, x in case.arrays.items():
            if not np.array_equal(x.view(np.uint8), a[k].view(np.uint8)):
                raise AssertionError(f"mixed case {info.name}: {k} differs from "
                                     f"fastopt.reference.step_exact")
        if case.missed:
            raise AssertionError("clip + step: clipping was not active")
