r"""Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled").

The optimizer of facebookresearch/schedule_free's ``AdamWScheduleFree``, on the fused kernel
``fastopt.schedule_free_adamw_step`` (one pass updates y, z and v).  It needs no decay schedule:
the iterate it returns, x, is an online average of the base sequence z, and gradients are taken at
an interpolation y between the two:

.. math::
    y_t = (1-\beta_1) z_t + \beta_1 x_t \qquad
    z_{t+1} = z_t - \eta_t \Big(\frac{g(y_t)}{\sqrt{v_t} + \epsilon} + \lambda y_t\Big) \qquad
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

with ``eta_t = lr * warmup(t) * sqrt(1 - beta2**t)``, v the EWA of g**2, and the averaging weight
``c_{t+1} = w_t / sum_{s<=t} w_s``, ``w_t = t**r * max_{s<=t}(eta_s)**weight_lr_power``.

The parameters hold y while training.  Call :meth:`ScheduleFreeAdamW.eval` before evaluating or
saving the model (the parameters then hold x) and :meth:`ScheduleFreeAdamW.train` before the next
step (they hold y again, bit for bit: ``eval`` keeps a copy of y).
"""

import math

import numpy as np

from ._dispatch import kernels as _k
from ._params import aligned_zeros
from .optimizers import Optimizer, _bool

__all__ = ["ScheduleFreeAdamW"]


class ScheduleFreeAdamW(Optimizer):
    r"""Schedule-Free AdamW, as ``schedulefree.AdamWScheduleFree`` (see the module docstring).

    Parameters
    ----------
    params : dict or list of arrays, updated in place (they hold y; see :meth:`eval`).
    lr : float >= 0 or a schedule (none is needed: a constant lr is the method's point).
    beta1 : float in (0, 1), the interpolation between z and x (the reference's momentum).
    beta2 : float in [0, 1), the decay of the squared-gradient average v.
    eps : float >= 0, added to sqrt(v).
    weight_decay : float >= 0, lambda, at y, added to the normalised gradient (the reference's).
    warmup_steps : int >= 0, a linear warmup of lr over the first steps.
    r : float >= 0, the polynomial weighting power of the average.
    weight_lr_power : float >= 0, the power of the largest lr so far in the weights.
    maximize : bool.

    State: ``state[name]["z"]`` (starts as a copy of the parameter) and ``state[name]["v"]``
    (zero); the scalars ``weight_sum`` and ``lr_max`` (``state_dict()["scalars"]``).
    """

    _OPERANDS = ("z", "v")

    def __init__(self, params, lr=0.0025, *, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0, maximize=False,
                 **precision):
        self._carry = {"weight_sum": 0.0, "lr_max": -1.0}
        super().__init__(params, lr, beta1=beta1, beta2=beta2, eps=eps,
                         weight_decay=weight_decay, warmup_steps=warmup_steps, r=r,
                         weight_lr_power=weight_lr_power, maximize=maximize, **precision)
        for k, p in zip(self._params.keys, self._params.arrays):
            slots = self.state[k]
            slots["z"][...] = slots["master"] if "master" in slots else p
        self.train_mode = True
        self._saved_y = None

    def _validate(self, beta1, beta2, eps, weight_decay, warmup_steps, r, weight_lr_power,
                  maximize):
        h = {"beta1": _k.check_beta(beta1, "beta1"), "beta2": _k.check_beta(beta2, "beta2"),
             "eps": _k.check_nonneg(eps, "eps"),
             "weight_decay": _k.check_nonneg(weight_decay, "weight_decay"),
             "warmup_steps": _k.check_int(warmup_steps, "warmup_steps", 0, _k.MAX_COUNT),
             "r": _k.check_nonneg(r, "r"),
             "weight_lr_power": _k.check_nonneg(weight_lr_power, "weight_lr_power"),
             "maximize": _bool(maximize, "maximize")}
        if h["beta1"] == 0:
            raise ValueError("beta1 must be in (0, 1): with beta1 = 0 the parameters (y) equal z "
                             "and the average x cannot be recovered from them")
        return h

    def _slots(self):
        return ("z", "v")

    def _coefficients(self, lr, step):
        """(warmed-up lr, ckp1, lr_max, weight_sum) of update `step`, as the reference."""
        h = self.hyper
        k = step - 1
        sched = (k + 1) / h["warmup_steps"] if k < h["warmup_steps"] else 1.0
        lr = lr * sched
        lr_max = max(lr * math.sqrt(1 - h["beta2"] ** (k + 1)), self._carry["lr_max"])
        weight = ((k + 1) ** h["r"]) * (lr_max ** h["weight_lr_power"])
        weight_sum = self._carry["weight_sum"] + weight
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
        return lr, ckp1, lr_max, weight_sum

    def _update(self, grads, lr, step, **kw):
        if not self.train_mode:
            raise RuntimeError("ScheduleFreeAdamW.step() in eval mode: the parameters hold x, "
                               "not y; call opt.train() before stepping")
        h = self.hyper
        lr, ckp1, lr_max, weight_sum = self._coefficients(lr, step)
        _k.schedule_free_adamw_step_multi(
            self._plan, grads, step=step, lr=lr, ckp1=min(max(ckp1, 0.0), 1.0),
            beta1=h["beta1"], beta2=h["beta2"], eps=h["eps"], weight_decay=h["weight_decay"],
            maximize=h["maximize"], **kw)
        self._carry["lr_max"] = lr_max        # only once the step went through
        self._carry["weight_sum"] = weight_sum

    def eval(self):
        """Switch the parameters to x, the averaged iterate (for evaluation and for saving the
        model); a copy of y is kept, so :meth:`train` restores it bit for bit.  No-op in eval
        mode."""
        if not self.train_mode:
            return
        b1 = self.hyper["beta1"]
        if self._saved_y is None:
            self._saved_y = [aligned_zeros(p.shape, p.dtype) for p in self._params.arrays]
        for k, p, saved in zip(self._params.keys, self._params.arrays, self._saved_y):
            slots = self.state[k]
            saved[...] = p
            ct = np.float64 if p.dtype == np.float64 else np.float32
            y = (slots["master"] if "master" in slots else p).astype(ct)
            z = slots["z"].astype(ct)
            # the reference's y.lerp_(z, 1 - 1/beta1): x = y + (1 - 1/beta1) (z - y)
            p[...] = y + ct(1.0 - 1.0 / b1) * (z - y)
        self.train_mode = False

    def train(self):
        """Switch the parameters back to y (the copy :meth:`eval` kept).  No-op in train mode."""
        if self.train_mode:
            return
        for p, saved in zip(self._params.arrays, self._saved_y):
            p[...] = saved
        self.train_mode = True

    def state_dict(self):
        """As :meth:`Optimizer.state_dict`, in train mode only (the parameters must hold y)."""
        self._require_train("state_dict")
        return super().state_dict()

    def load_state_dict(self, state):
        """As :meth:`Optimizer.load_state_dict`, in train mode only."""
        self._require_train("load_state_dict")
        super().load_state_dict(state)

    def _require_train(self, what):
        if not self.train_mode:
            raise RuntimeError(f"ScheduleFreeAdamW.{what}() in eval mode: call opt.train() "
                               f"first (the saved state goes with y, the training parameters)")
