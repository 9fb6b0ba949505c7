"""fastopt: in-place CPU optimizer kernels for NumPy (and PyTorch CPU) training loops.

The public API, flat::

    fastopt.sgd_step / momentum_step / rmsprop_step / adam_step   in-place updates
    fastopt.ewa_update / ewa / debias                              exponentially weighted averages
    fastopt.reference                                              plain-NumPy twins (the oracle)
    fastopt.set_num_threads / get_num_threads / show_config        threads and build information

See README.md for the formulas and the conventions each keyword selects.
"""

from . import reference
from ._config import get_num_threads, set_num_threads, show_config
from ._version import __version__
from .kernels import (
    adam_step,
    debias,
    ewa,
    ewa_update,
    momentum_step,
    rmsprop_step,
    sgd_step,
)

__all__ = [
    "__version__",
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
