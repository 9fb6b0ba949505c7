"""Expected values from third parties that fastopt's optimizer classes must reproduce.

Keras 3
-------
The golden-value tests of keras-team/keras, ``keras/src/optimizers/<name>_test.py`` (the versions
read: adam_test.py @ 0a54048b, adamw_test.py @ 1b78dea6, rmsprop_test.py @ 3324ca6d,
sgd_test.py, nadam_test.py, adamax_test.py and adagrad_test.py @ 51d7e770, adadelta_test.py
@ 1937d487, lion_test.py @ 1b78dea6), their inputs and expected outputs copied below as literal
data, with each test's own loop and tolerance:

* ``test_single_step``: var [1, 2, 3, 4], one step with gradient [1, 6, 7, 2]; rtol = atol = 1e-4.
* ``test_weight_decay``: a scalar var 2.0 and a zero gradient through three fresh optimizers
  (lr 1.0, weight_decay 0.004), each one step: 2 * 0.996**3 = 1.9760959 to 6 decimals.  (Keras'
  var2/var3 there check ``exclude_from_weight_decay``, which fastopt does not have: left out.)
* ``test_correctness_with_golden``: x = ones(10); one step with gradient 0.01 everywhere, then
  steps with gradient [0.1, 0.2, ..., 1.0]; golden[i] is x after i + 1 steps; rtol = atol = 5e-4.

Keras' variables are float32 (floatx), so the runs are float32.  Keras' conventions as fastopt
options (from keras/src/optimizers/<name>.py and base_optimizer.py):

* ``weight_decay`` is decoupled, ``var -= var * wd * lr`` before the update
  (``BaseOptimizer._apply_weight_decay``): ``decoupled_weight_decay=True``.
* Adam/AdamW: ``lr sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)``, "epsilon hat":
  ``eps_mode="keras"``; amsgrad takes the max of the raw v, as fastopt does.
* RMSprop: ``lr g / sqrt(v + eps)`` (centered: ``sqrt(v - avg**2 + eps)``), eps INSIDE the
  square root: ``eps_inside_sqrt=True``; Keras' ``rho`` is fastopt's ``beta``.
* Nadam: Keras' momentum schedule ``u_t = b1 (1 - 0.5 * 0.96**t)`` is torch's
  ``mu_t = b1 (1 - 0.5 * 0.96**(t psi))`` with psi = 1, and the rest of the update (m_hat from
  u_{t+1} m / (1 - prod u_{<=t+1}) + (1 - u_t) g / (1 - prod u_{<=t}), eps outside
  sqrt(v_hat)) is torch's too: ``fastopt.NAdam(momentum_decay=1.0)``.
* Adadelta: ``sqrt(acc_delta + eps) / sqrt(acc_grad + eps) * g``, as torch and fastopt.
* Lion: ``lr sign(b1 m + (1 - b1) g)``, then ``m = b2 m + (1 - b2) g``, as fastopt.
* SGD(nesterov=True) without momentum is plain SGD in Keras (nesterov only acts on the
  momentum buffer); fastopt refuses nesterov without momentum, so the golden run is SGD(lr).
* Keras' defaults are passed explicitly (epsilon 1e-7, Adadelta rho 0.95, Lion lr 1e-3, Keras
  learning rates ...), since fastopt's defaults are torch's.

Those goldens have 4 decimals and mostly eps = 1e-7, too coarse to tell where eps goes (fastopt's
torch forms of Adam, RMSprop, Adagrad and Adamax all land within their 5e-4 as well), so
``test_keras_update_step_formula`` also checks each mapping against Keras' ``update_step``
written out in NumPy, with eps = 0.5, weight decay and momentum, to float64 rounding.

Left out, because fastopt has no option that gives Keras' formula:

* Adagrad single step and golden: Keras divides by ``sqrt(acc + eps)`` (eps inside the root);
  fastopt's Adagrad (torch's) by ``sqrt(acc) + eps``.  Its weight-decay test is kept: with a zero
  gradient both updates are exactly 0, so only the (identical) decoupled decay acts.
* Adamax golden: Keras keeps ``u = max(b2 u, |g|)`` and divides by ``u + eps``; fastopt (torch)
  keeps ``u = max(b2 u, |g| + eps)`` and divides by u.  From a zero state the first step is the
  same formula (both divide by |g| + eps), so the single-step and weight-decay tests are kept; from
  the second step torch's eps is inside the max and decays with b2, Keras' is not.

optax
-----
``optax.lion``: with m = 0 the first step is ``p1 = p0 (1 - lr wd) - lr sign((1 - b1) g)``
(its weight decay is added to the update, times lr: the decoupled form) and m1 = (1 - b2) g;
derived by hand below.
"""

import numpy as np
import pytest

import fastopt

# Keras' defaults where they differ from fastopt's (fastopt follows torch)
KERAS_EPS = 1e-7


# ------------------------------------------------------------------------------------------------
# Keras 3: the optimizer of each Keras test, as a fastopt class and options.
# ------------------------------------------------------------------------------------------------

def keras_adam(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPS, amsgrad=False,
               weight_decay=None):
    return "Adam", dict(lr=lr, beta1=beta_1, beta2=beta_2, eps=epsilon, eps_mode="keras",
                        amsgrad=amsgrad, **_wd(weight_decay))


def keras_adamw(lr=1e-3, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPS):
    return "AdamW", dict(lr=lr, beta1=beta_1, beta2=beta_2, eps=epsilon, eps_mode="keras",
                         **_wd(weight_decay))


def keras_rmsprop(lr=1e-3, rho=0.9, epsilon=KERAS_EPS, centered=False, weight_decay=None):
    return "RMSprop", dict(lr=lr, beta=rho, eps=epsilon, eps_inside_sqrt=True, centered=centered,
                           **_wd(weight_decay))


def keras_sgd(lr=0.01, weight_decay=None):
    return "SGD", dict(lr=lr, **_wd(weight_decay))


def keras_nadam(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPS, weight_decay=None):
    return "NAdam", dict(lr=lr, beta1=beta_1, beta2=beta_2, eps=epsilon, momentum_decay=1.0,
                         **_wd(weight_decay))


def keras_adamax(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=KERAS_EPS, weight_decay=None):
    return "Adamax", dict(lr=lr, beta1=beta_1, beta2=beta_2, eps=epsilon, **_wd(weight_decay))


def keras_adagrad(lr=1e-3, initial_accumulator_value=0.1, epsilon=KERAS_EPS, weight_decay=None):
    return "Adagrad", dict(lr=lr, initial_accumulator_value=initial_accumulator_value,
                           eps=epsilon, **_wd(weight_decay))


def keras_adadelta(lr=1e-3, rho=0.95, epsilon=KERAS_EPS, weight_decay=None):
    return "Adadelta", dict(lr=lr, rho=rho, eps=epsilon, **_wd(weight_decay))


def keras_lion(lr=1e-3, beta_1=0.9, beta_2=0.99, weight_decay=None):
    return "Lion", dict(lr=lr, beta1=beta_1, beta2=beta_2, **_wd(weight_decay))


def _wd(weight_decay):
    """Keras' weight_decay (None: none) as fastopt's decoupled form."""
    if weight_decay is None:
        return dict(weight_decay=0.0)
    return dict(weight_decay=weight_decay, decoupled_weight_decay=True)


def make(spec, params):
    name, kw = spec
    return getattr(fastopt, name)(params, **kw)


# test_single_step: optimizer (as in the Keras test) -> expected var after one step
SINGLE_VAR = [1.0, 2.0, 3.0, 4.0]
SINGLE_GRAD = [1.0, 6.0, 7.0, 2.0]
SINGLE_STEP = {
    "adam": (keras_adam(lr=0.5), [0.5, 1.5, 2.5, 3.5]),
    "adamw": (keras_adamw(lr=0.5), [0.4980, 1.4960, 2.494, 3.492]),
    "rmsprop": (keras_rmsprop(lr=0.5), [-0.5811, 0.4189, 1.4189, 2.4189]),
    "sgd": (keras_sgd(lr=0.5), [0.5, -1.0, -0.5, 3.0]),
    "nadam": (keras_nadam(lr=0.5), [0.4686, 1.4686, 2.4686, 3.4686]),
    "adamax": (keras_adamax(lr=0.5), [0.5, 1.5, 2.5, 3.5]),
    "adadelta": (keras_adadelta(lr=0.5), [0.9993, 1.9993, 2.9993, 3.9993]),
    "lion": (keras_lion(lr=0.5), [0.5, 1.5, 2.5, 3.5]),
    # left out: adagrad ([0.5233, 1.5007, 2.5005, 3.5061]), eps inside the square root
}

# test_weight_decay: the optimizer (lr 1.0, weight_decay 0.004) applied to var1 three times
WEIGHT_DECAY = {
    "adam": keras_adam(lr=1.0, weight_decay=0.004),
    "adamw": keras_adamw(lr=1.0, weight_decay=0.004),
    "rmsprop": keras_rmsprop(lr=1.0, weight_decay=0.004),
    "sgd": keras_sgd(lr=1.0, weight_decay=0.004),
    "nadam": keras_nadam(lr=1.0, weight_decay=0.004),
    "adamax": keras_adamax(lr=1.0, weight_decay=0.004),
    "adagrad": keras_adagrad(lr=1.0, weight_decay=0.004),
    "adadelta": keras_adadelta(lr=1.0, weight_decay=0.004),
    "lion": keras_lion(lr=1.0, weight_decay=0.004),
}
WEIGHT_DECAY_VAR1 = 1.9760959

# test_correctness_with_golden
GOLDEN_FIRST_GRAD = [0.01] * 10
GOLDEN_GRAD = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]    # ops.arange(0.1, 1.1, 0.1)


def _tile(column):
    return [[c] * 10 for c in column]


GOLDEN = {
    "adam": (keras_adam(amsgrad=True), _tile([0.999, 0.9982, 0.9974, 0.9965, 0.9955])),
    "adamw": (keras_adamw(lr=1.0, weight_decay=0.5, epsilon=2), [
        [0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998, 0.4998],
        [0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417, 0.2405, 0.2394, 0.2382],
        [0.1223, 0.1198, 0.1174, 0.1149, 0.1124, 0.11, 0.1075, 0.1051, 0.1027, 0.1003],
        [0.0586, 0.0549, 0.0512, 0.0475, 0.0439, 0.0402, 0.0366, 0.033, 0.0294, 0.0258],
        [0.0263, 0.0215, 0.0167, 0.012, 0.0073, 0.0026, -0.0021, -0.0067, -0.0113, -0.0159]]),
    "rmsprop": (keras_rmsprop(centered=True), _tile([0.9967, 0.9933, 0.9908, 0.9885, 0.9864])),
    # Keras: SGD(nesterov=True), momentum 0 (see the module docstring)
    "sgd": (keras_sgd(), [
        [0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999, 0.9999],
        [0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939, 0.9929, 0.9919, 0.9909, 0.9899],
        [0.9979, 0.9959, 0.9939, 0.9919, 0.9899, 0.9879, 0.9859, 0.9839, 0.9819, 0.9799],
        [0.9969, 0.9939, 0.9909, 0.9879, 0.9849, 0.9819, 0.9789, 0.9759, 0.9729, 0.9699],
        [0.9959, 0.9919, 0.9879, 0.9839, 0.9799, 0.9759, 0.9719, 0.9679, 0.9639, 0.9599]]),
    "nadam": (keras_nadam(lr=0.5, beta_1=0.5, beta_2=0.67, epsilon=1e-5), [
        [0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281, 0.4281],
        [-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718,
         -0.1717],
        [-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085,
         -0.7084],
        [-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23,
         -1.2299],
        [-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455,
         -1.7454]]),
    "adadelta": (keras_adadelta(lr=1.0, rho=0.8, epsilon=1e-6),
                 _tile([0.9978, 0.9947, 0.9915, 0.9882, 0.9849])),
    "lion": (keras_lion(), _tile([0.999, 0.998, 0.997, 0.996, 0.995])),
    # left out: adagrad (Adagrad(learning_rate=0.2, initial_accumulator_value=0.3,
    # epsilon=1e-6), eps inside the square root) and adamax (Adamax(learning_rate=0.2,
    # beta_1=0.85, beta_2=0.95, epsilon=1e-6), eps inside vs outside the max): see above
}


def _f32(values):
    a = np.array(values, dtype=np.float32)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("name", list(SINGLE_STEP))
def test_keras_single_step(name):
    spec, expected = SINGLE_STEP[name]
    params = {"vars": np.array(SINGLE_VAR, dtype=np.float32)}
    opt = make(spec, params)
    assert opt.step({"vars": _f32(SINGLE_GRAD)}) is True
    np.testing.assert_allclose(params["vars"], expected, rtol=1e-4, atol=1e-4)
    # sgd_test also checks the optimizer's variables: iterations 1, learning rate 0.5
    assert opt.step_count == 1 and opt.lr == 0.5


@pytest.mark.parametrize("name", list(WEIGHT_DECAY))
def test_keras_weight_decay(name):
    var1 = np.array(2.0, dtype=np.float32)
    grads = np.zeros((), dtype=np.float32)
    for _ in range(3):          # optimizer_1, _2, _3: fresh ones, one step each on var1
        opt = make(WEIGHT_DECAY[name], {"var1": var1})
        assert opt.step({"var1": grads}) is True
    np.testing.assert_almost_equal(var1, WEIGHT_DECAY_VAR1, decimal=6)


@pytest.mark.parametrize("name", list(GOLDEN))
def test_keras_correctness_with_golden(name):
    spec, golden = GOLDEN[name]
    x = np.ones(10, dtype=np.float32)
    opt = make(spec, {"x": x})
    opt.step({"x": _f32(GOLDEN_FIRST_GRAD)})
    for i in range(5):
        np.testing.assert_allclose(x, golden[i], rtol=5e-4, atol=5e-4,
                                   err_msg=f"golden[{i}], after {i + 1} steps")
        opt.step({"x": _f32(GOLDEN_GRAD)})


def test_keras_nadam_schedule_is_momentum_decay_one():
    """The mapping above: Keras' u_t = b1 (1 - 0.5 * 0.96**t) is fastopt's (torch's) mu_t with
    momentum_decay = 1, and the class carries the product of the u_t as Keras' _u_product."""
    b1 = 0.5
    opt = fastopt.NAdam({"x": np.ones(3)}, lr=0.1, beta1=b1, momentum_decay=1.0)
    product = 1.0
    for t in range(1, 6):
        assert fastopt.reference.nadam_mu(t, b1, 1.0) == b1 * (1.0 - 0.5 * 0.96 ** t)
        opt.step({"x": np.full(3, 0.1)})
        product *= b1 * (1.0 - 0.5 * 0.96 ** t)
        assert opt.state_dict()["scalars"]["mu_product"] == pytest.approx(product, rel=1e-15)


# ------------------------------------------------------------------------------------------------
# optax Lion: the first step from m = 0, by hand.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1], ids=["wd0", "wd0.1"])
def test_optax_lion_first_step(dtype, weight_decay):
    lr, b1, b2 = 0.01, 0.9, 0.99
    p0 = np.array([1.0, -2.0, 0.5, 3.0, -0.25], dtype=dtype)
    g = np.array([0.3, -4.0, 0.0, 1e-8, -1e-3], dtype=dtype)
    params = {"w": p0.copy()}
    opt = fastopt.Lion(params, lr=lr, beta1=b1, beta2=b2, weight_decay=weight_decay)
    opt.step({"w": g})
    # sign((1 - b1) g) = sign(g): [1, -1, 0, 1, -1]; the zero gradient only decays
    expected = p0.astype(np.float64) * (1 - lr * weight_decay) - lr * np.array([1, -1, 0, 1, -1])
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(params["w"], expected, rtol=rtol, atol=0)
    np.testing.assert_allclose(opt.state["w"]["m"], (1 - b2) * g.astype(np.float64),
                               rtol=rtol, atol=0)


# ------------------------------------------------------------------------------------------------
# Keras 3's update_step formulas, written out in NumPy from keras/src/optimizers/<name>.py: the
# golden values above have 4 decimals and eps 1e-7, too coarse to tell eps placements apart, so
# the mapping is also checked here with eps = 0.5 (where they differ), weight decay and momentum,
# 12 steps in float64.
# ------------------------------------------------------------------------------------------------

def _keras_adam(x, grads, lr, beta_1, beta_2, epsilon, amsgrad=False, weight_decay=None):
    m, v, v_hat = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for t, g in enumerate(grads, 1):
        if weight_decay is not None:                    # BaseOptimizer._apply_weight_decay
            x = x - x * weight_decay * lr
        alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        if amsgrad:
            v_hat = np.maximum(v_hat, v)
        x = x - m * alpha / (np.sqrt(v_hat if amsgrad else v) + epsilon)
    return x


def _keras_rmsprop(x, grads, lr, rho, epsilon, momentum=0.0, centered=False, weight_decay=None):
    vel, avg, mom = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for g in grads:
        if weight_decay is not None:
            x = x - x * weight_decay * lr
        vel = rho * vel + (1 - rho) * g * g
        if centered:
            avg = rho * avg + (1 - rho) * g
            denominator = vel - avg * avg + epsilon
        else:
            denominator = vel + epsilon
        increment = lr * g / np.sqrt(denominator)
        if momentum > 0:
            mom = momentum * mom + increment
            x = x - mom
        else:
            x = x - increment
    return x


def _keras_nadam(x, grads, lr, beta_1, beta_2, epsilon, weight_decay=None):
    m, v, u_product = np.zeros_like(x), np.zeros_like(x), 1.0
    for t, g in enumerate(grads, 1):
        if weight_decay is not None:
            x = x - x * weight_decay * lr
        u_product = u_product * beta_1 * (1.0 - 0.5 * 0.96 ** t)    # _backend_update_step
        u_t = beta_1 * (1.0 - 0.5 * 0.96 ** t)
        u_t_1 = beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        u_product_t_1 = u_product * u_t_1
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * g / (1 - u_product)
        v_hat = v / (1 - beta_2 ** t)
        x = x - m_hat * lr / (np.sqrt(v_hat) + epsilon)
    return x


def _keras_adadelta(x, grads, lr, rho, epsilon, weight_decay=None):
    acc_grad, acc_delta = np.zeros_like(x), np.zeros_like(x)
    for g in grads:
        if weight_decay is not None:
            x = x - x * weight_decay * lr
        acc_grad = rho * acc_grad + (1 - rho) * g * g
        delta = -(np.sqrt(acc_delta + epsilon) * g) / np.sqrt(acc_grad + epsilon)
        acc_delta = rho * acc_delta + (1 - rho) * delta * delta
        x = x + lr * delta
    return x


def _keras_lion(x, grads, lr, beta_1, beta_2, weight_decay=None):
    m = np.zeros_like(x)
    for g in grads:
        if weight_decay is not None:
            x = x - x * weight_decay * lr
        x = x - lr * np.sign(m * beta_1 + g * (1.0 - beta_1))
        m = m * beta_2 + g * (1.0 - beta_2)
    return x


def _keras_sgd(x, grads, lr, momentum=0.0, nesterov=False, weight_decay=None):
    m = np.zeros_like(x)
    for g in grads:
        if weight_decay is not None:
            x = x - x * weight_decay * lr
        if momentum != 0:
            m = m * momentum - g * lr
            x = x + (m * momentum - g * lr if nesterov else m)
        else:
            x = x - g * lr
    return x


_H = dict(lr=0.1, epsilon=0.5, weight_decay=0.1)
KERAS_FORMULAS = {
    "adam": (_keras_adam, dict(_H, beta_1=0.8, beta_2=0.9),
             ("Adam", dict(lr=0.1, beta1=0.8, beta2=0.9, eps=0.5, eps_mode="keras",
                           weight_decay=0.1, decoupled_weight_decay=True))),
    "adam-amsgrad": (_keras_adam, dict(_H, beta_1=0.8, beta_2=0.9, amsgrad=True),
                     ("Adam", dict(lr=0.1, beta1=0.8, beta2=0.9, eps=0.5, eps_mode="keras",
                                   amsgrad=True, weight_decay=0.1,
                                   decoupled_weight_decay=True))),
    "rmsprop": (_keras_rmsprop, dict(_H, rho=0.8),
                ("RMSprop", dict(lr=0.1, beta=0.8, eps=0.5, eps_inside_sqrt=True,
                                 weight_decay=0.1, decoupled_weight_decay=True))),
    "rmsprop-centered-momentum": (
        _keras_rmsprop, dict(_H, rho=0.8, centered=True, momentum=0.7),
        ("RMSprop", dict(lr=0.1, beta=0.8, eps=0.5, eps_inside_sqrt=True, centered=True,
                         momentum=0.7, weight_decay=0.1, decoupled_weight_decay=True))),
    "nadam": (_keras_nadam, dict(_H, beta_1=0.8, beta_2=0.9),
              ("NAdam", dict(lr=0.1, beta1=0.8, beta2=0.9, eps=0.5, momentum_decay=1.0,
                             weight_decay=0.1, decoupled_weight_decay=True))),
    "adadelta": (_keras_adadelta, dict(_H, rho=0.8),
                 ("Adadelta", dict(lr=0.1, rho=0.8, eps=0.5, weight_decay=0.1,
                                   decoupled_weight_decay=True))),
    "lion": (_keras_lion, dict(lr=0.1, beta_1=0.8, beta_2=0.9, weight_decay=0.1),
             ("Lion", dict(lr=0.1, beta1=0.8, beta2=0.9, weight_decay=0.1,
                           decoupled_weight_decay=True))),
    "sgd-momentum": (_keras_sgd, dict(lr=0.1, momentum=0.7, weight_decay=0.1),
                     ("SGD", dict(lr=0.1, momentum=0.7, weight_decay=0.1,
                                  decoupled_weight_decay=True))),
    "sgd-nesterov": (_keras_sgd, dict(lr=0.1, momentum=0.7, nesterov=True, weight_decay=0.1),
                     ("SGD", dict(lr=0.1, momentum=0.7, nesterov=True, weight_decay=0.1,
                                  decoupled_weight_decay=True))),
}


@pytest.mark.parametrize("case", list(KERAS_FORMULAS))
def test_keras_update_step_formula(case):
    keras_ref, keras_kw, spec = KERAS_FORMULAS[case]
    rng = np.random.default_rng(20240917)
    x0 = rng.standard_normal(33)
    grads = [rng.standard_normal(33) for _ in range(12)]
    x = x0.copy()
    opt = make(spec, {"x": x})
    for g in grads:
        opt.step({"x": g})
    np.testing.assert_allclose(x, keras_ref(x0, grads, **keras_kw), rtol=1e-12, atol=1e-14)
