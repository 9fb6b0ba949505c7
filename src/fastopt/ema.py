r"""Exponential moving average of parameters (Polyak averaging): the course's EWA on weights."""


from ._dispatch import kernels as _k
from ._params import ParamSet, aligned_zeros
from .kernels import debias


class EMA:
    r"""Keep an exponentially weighted average of the parameters.

    .. math::
        a_t = \beta a_{t-1} + (1-\beta)\,\theta_t, \quad a_0 = 0, \qquad
        \hat a_t = \frac{a_t}{1 - \beta^t}

    Call ``update()`` after each optimizer step (one native call for all arrays);
    ``averaged()`` returns bias-corrected copies; ``copy_to(params)`` writes them into parameter
    arrays (for evaluation with averaged weights).  It averages over about ``1 / (1 - beta)``
    steps.

    Parameters
    ----------
    params : dict of name -> array or list of arrays (the optimizer's parameters; read only).
    beta : float in [0, 1), default 0.999.

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> w = {"W1": np.array([1.0, 2.0])}
    >>> ema = fastopt.EMA(w, beta=0.9)
    >>> ema.update(); w["W1"] += 1.0; ema.update()
    >>> ema.averaged()["W1"]          # (0.9*0.1*w1 + 0.1*w2) / (1 - 0.9**2)
    array([1.52631579, 2.52631579])
    """

    def __init__(self, params, *, beta=0.999):
        self._params = ParamSet(params)
        self.beta = _k.check_beta(beta, "beta")
        self._avgs = [aligned_zeros(p.shape, p.dtype) for p in self._params.arrays]
        self._plan = _k.Plan(self._avgs, ("avg", "param", "", "", ""), (),
                             labels=self._params.keys)

    def update(self):
        """avg <- beta avg + (1 - beta) param, for every array, in one native call."""
        self._params.check_same()
        # the native call increments count together with the averages (interrupt-consistent);
        # a second thread updating this EMA concurrently gets RuntimeError
        _k.ewa_update_multi(self._plan, self._params.arrays, beta=self.beta)

    @property
    def count(self):
        """The number of ``update()`` calls applied."""
        return self._plan.count

    @count.setter
    def count(self, value):
        self._plan.count = value

    def _corrected(self):
        if self.count == 0:
            raise ValueError("EMA.update() has not been called yet: there is no average")
        return [debias(a, beta=self.beta, step=self.count) for a in self._avgs]

    def averaged(self):
        """Bias-corrected copies of the averages, packaged like the parameters (dict or list)."""
        return self._params.like(self._corrected())

    def copy_to(self, params=None):
        """Write the bias-corrected averages into `params` (default: the tracked parameters).

        `params` must have the same keys (or length), shapes and dtypes; all are checked before
        any array is written."""
        if params is None:
            dst = self._params.arrays
        else:   # checked as parameters (writeable, ...), then matched to ours key by key
            given = ParamSet(params, what="params")
            dst = self._params.grads_list(given.like(given.arrays), what="params")
        for d, a in zip(dst, self._avgs):
            if d.shape != a.shape or d.dtype != a.dtype:
                raise ValueError(f"params do not match the averaged parameters: got shape "
                                 f"{d.shape} {d.dtype}, expected {a.shape} {a.dtype}")
        for d, a in zip(dst, self._corrected()):
            d[...] = a

    @property
    def averages(self):
        """The raw (not bias-corrected) running averages, like the parameters."""
        return self._params.like(self._avgs)
