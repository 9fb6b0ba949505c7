"""fastopt: in-place CPU optimizer kernels for NumPy (and PyTorch CPU) training loops.

The public API, flat::

    fastopt.sgd_step / momentum_step / rmsprop_step / adam_step   in-place updates
    fastopt.ewa_update / ewa / debias                              exponentially weighted averages
    fastopt.reference                                              plain-NumPy twins (the oracle)
    fastopt.set_num_threads / get_num_threads / show_config        threads and build information
    fastopt.SGD / Momentum / RMSprop / Adam / AdamW / Adagrad /    optimizer classes (one native call
      Adamax / NAdam / RAdam / Adadelta / Lion / ScheduleFreeAdamW per step for all arrays)
    fastopt.inverse_time_decay / exponential_decay / ...           learning-rate schedules
    fastopt.warmup_cosine_decay / one_cycle / join_schedules / ... (optax and PyTorch ones too)
    fastopt.clip_grad_norm / all_finite / EMA                      clipping, checks, weight averaging
    fastopt.save_state / load_state                                 optimizer checkpoints (.npz)
    fastopt.torch.AdamW / Adam / SGD / ...  (import fastopt.torch)   torch.optim-compatible classes

See README.md for the formulas and the conventions each keyword selects.
"""

from . import course, reference
from ._config import get_num_threads, set_num_threads, show_config
from ._version import __version__
from .batching import MiniBatches, minibatches
from .checkpoint import load_state, save_state
from .clip import all_finite, clip_grad_norm, global_norm
from .ema import EMA
from . import optimizers as _optimizers
from .optimizers import SGD, AdamW, Momentum, Optimizer
from .schedule_free import ScheduleFreeAdamW
from .schedules import (
    Schedule,
    as_schedule,
    constant,
    cosine_decay,
    exponential_decay,
    inverse_sqrt_decay,
    inverse_time_decay,
    join_schedules,
    linear_schedule,
    one_cycle,
    piecewise_constant,
    polynomial_decay,
    step_decay,
    warmup_cosine_decay,
)
from .kernels import (
    RULE_KERNELS as _RULE_KERNELS,
    adam_step,
    debias,
    ewa,
    ewa_update,
    momentum_step,
    rmsprop_step,
    sgd_step,
)
from . import kernels as _kernels

__all__ = [
    "EMA",
    "SGD",
    "AdamW",
    "MiniBatches",
    "Momentum",
    "Optimizer",
    "Schedule",
    "ScheduleFreeAdamW",
    "__version__",
    "all_finite",
    "as_schedule",
    "clip_grad_norm",
    "constant",
    "cosine_decay",
    "course",
    "exponential_decay",
    "global_norm",
    "inverse_sqrt_decay",
    "inverse_time_decay",
    "join_schedules",
    "linear_schedule",
    "load_state",
    "minibatches",
    "one_cycle",
    "piecewise_constant",
    "polynomial_decay",
    "save_state",
    "step_decay",
    "warmup_cosine_decay",
    "adam_step",
    "debias",
    "ewa",
    "ewa_update",
    "get_num_threads",
    "momentum_step",
    "reference",
    "rmsprop_step",
    "set_num_threads",
    "sgd_step",
    "show_config",
]

# Every rule of the registry is public, and so is its class (a new rule needs no line here).
for _name in _optimizers.__all__:
    globals()[_name] = getattr(_optimizers, _name)
    if _name not in __all__:
        __all__.append(_name)

for _name in _RULE_KERNELS:
    globals()[_name] = getattr(_kernels, _name)
    if _name not in __all__:
        __all__.append(_name)
del _name
