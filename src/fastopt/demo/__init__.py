"""``python -m fastopt demo``: a small NumPy neural-network trainer, every update by fastopt.

Modules, each readable on its own:

* ``nn`` -- dense layers, ReLU, sigmoid/softmax, cross-entropy and back-propagation in NumPy
  (the course's layout: one example per column, ``parameters["W1"]``, ``grads["dW1"]``);
* ``data`` -- the two moons (generated with NumPy) and scikit-learn's 8x8 digits;
* ``experiments`` -- the training loop (``fastopt.MiniBatches`` + a fastopt optimizer) and the two
  experiments, ``run_moons()`` and ``run_digits()``, which return ``{optimizer: result}``;
* ``lowp`` -- the bf16 experiment, ``run_bf16()``: the digits network trained with Adam in
  float32 and in bfloat16 storage (round to nearest, stochastic rounding, Kahan compensation,
  float32 master weights), with the median time of ``opt.step``;
* ``plot`` -- the figure (matplotlib);  ``cli`` -- the command line.

Only NumPy is needed to import this package and to run the moons experiment; the digits and bf16
experiments need scikit-learn, the figure matplotlib, the progress bar tqdm
(``pip install "fastopt[demo]"``).
"""

from .experiments import run_bf16, run_digits, run_moons, train

__all__ = ["run_moons", "run_digits", "run_bf16", "train", "main"]


def main(argv=None):
    """The command line (``python -m fastopt demo``) as a function; returns the exit code."""
    from .cli import main as cli_main
    return cli_main(argv)
