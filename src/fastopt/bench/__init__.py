"""``python -m fastopt bench``: the benchmark harness, one concern per module.

* ``cases`` -- what is timed, as data: the kernel table (``KERNELS``: operands, bytes moved, the
  fastopt function, its NumPy twins, torch.optim), the arrays of a case, the training-loop cases,
  and the checks that the baselines compute what fastopt computes;
* ``timing`` -- calibration, round-robin sampling, medians and spreads, thread pinning, the
  busy-machine warning;
* ``report`` -- every printed table, ratio and target line;
* ``torch_models`` -- ``--torch``: one AdamW step over whole models' parameters (GPT-style,
  2,000 small tensors), fastopt.torch against torch.optim and DeepSpeed;
* ``cli`` -- the options (``add_arguments``) and the runs (``run``: the kernel tables, the
  training-loop section, ``--threshold``).

The pytest-benchmark suites in the repository's ``bench/`` folder time the same cases.
"""

from .cli import add_arguments, run

__all__ = ["add_arguments", "run"]
