"""The registry of update rules: every fact about a rule, stated once.

This module is plain Python with no imports from fastopt or NumPy, because ``setup.py`` reads it
before anything is built: it generates the loop functions, the loop table and the kernel-index
switch from it (``_loops.pxi.tp``, rendered with Cython's Tempita).  At run time the core
(operand names, optional slots, serial thresholds), the optimizer classes (state slots), the
benchmark cases and the parametrised tests read it too.

A rule is

* ``operands``: the operand slots, in order.  Slot 0 is the written "lead" array (the parameter),
  slot 1 the read-only input (the gradient), slots 2.. written state arrays.  An operand with
  ``needs`` set is present only when that option is on (e.g. Adam's ``v_max`` with ``amsgrad``).
* ``options``: formula switches.  Each has a bit of its own in one flat namespace (no two options
  share a bit), and the loop for every combination is generated with the switches as literal
  constants, so the C compiler emits one branch-free loop per combination.
* ``fields``: the ``Hyper`` fields the element function takes after the gradient, in order
  (each is rounded once per call to the compute type).
* ``twin``: the name of the plain-NumPy function in ``fastopt.reference``.
* ``heavy``: a square root and a division per element (threads pay off from a quarter of the
  serial threshold).
* ``scaled``: the input is a gradient, multiplied by ``grad_scale`` (and the sign, when
  maximizing) before anything else.
* ``stepped``: the kernel takes the update count ``step=`` as a required argument (bias
  corrections); the others take it only for stochastic rounding.
* ``hypers``: the keyword arguments of the entry points, in the order the scalar set-up
  ``_<name>_scalars`` (``_rules.pxi``) takes them, with their kind (validation) and default.
* ``example``: hyperparameters away from the defaults, for the generic tests (so a swapped or
  ignored argument changes the result) and the benchmarks.
* ``axes``: the keyword arguments that select formula variants, each with the values the
  generic tests sweep (the default first).

* ``cls``: the name of the optimizer class ``fastopt.optimizers`` generates for the rule (None:
  no generated class); its keyword arguments are the hyperparameters, with the same names and
  defaults, except ``lr`` (positional) and the ``carry`` ones.
* ``state_init``: (state operand, class-only hyperparameter) pairs: the class fills that state
  array with the hyperparameter's value at the start (Adagrad's initial_accumulator_value).
* ``carry``: (hyperparameter, initial value) pairs: scalar state the class keeps and passes on
  every step; after a step it becomes ``reference.<rule>_carry(value, step=..., **hyper)``
  (NAdam's mu_product).  Saved in ``state_dict()["scalars"]``.

An option is switched on by a keyword: ``Option.keyword`` is true (``amsgrad=True``) or, for a
number, positive (``momentum > 0``); ``Option.when`` says so in error messages and
``Option.on`` is a value that switches it on (for the generic tests).

The element function is ``_<name>_elem`` in ``_rules.pxi``: its arguments are a pointer to each
written operand (slot order, the gradient left out), the gradient value, the fields, then the
option switches (option order).

Adding an element-wise rule touches: this file, ``_rules.pxi`` (the formula and, in
``_hyper.pxi``, the scalar set-up), ``reference.py`` (the twin) and one test file with
hand-derived values.  See docs/architecture.md.
"""

from collections import namedtuple

Operand = namedtuple("Operand", "name plural needs")
Option = namedtuple("Option", "name bit keyword when on")
Rule = namedtuple("Rule", "name operands options fields twin heavy scaled stepped hypers "
                         "example axes cls state_init carry", defaults=(None, (), ()))
Hyperparam = namedtuple("Hyperparam", "name kind default")

# The kinds of hyperparameters and how the entry points validate them (the core's checks):
#   nonneg  a finite real >= 0          beta  a real in [0, 1)          bool  True or False
#   unit  a real in [0, 1]              unit_or_none  None, or a real in [0, 1] (None: -1)
#   eps_mode  "torch", "inside" or "keras" (reaches the scalar set-up as EPS_TORCH/INSIDE/KERAS)
KINDS = ("nonneg", "beta", "bool", "unit", "unit_or_none", "eps_mode")
EPS_MODES = ("torch", "inside", "keras")
REQUIRED = "<required>"       # a hyperparameter without a default


def _h(name, kind, default=REQUIRED):
    assert kind in KINDS, kind
    return Hyperparam(name, kind, default)

MAX_OPS = 6          # operand slots of a rule (the core adds one auxiliary slot: AUX)


def _op(name, plural=None, needs=None):
    return Operand(name, plural or name + "s", needs)


# One flat namespace of option bits: no two options share a bit (they used to alias: nesterov,
# centered and amsgrad were all 2).
OPTION_BITS = {
    "l2": 1 << 0,          # L2 weight decay added to the gradient (every step rule)
    "nesterov": 1 << 1,    # momentum
    "centered": 1 << 2,    # rmsprop
    "momentum": 1 << 3,    # rmsprop
    "amsgrad": 1 << 4,     # adam
    "rectify": 1 << 5,     # radam: the rectified (adaptive) step, chosen per step from rho_t
}


# How each option is switched on by the entry points' keywords: (keyword, how messages say it,
# a value that switches it on).
_SWITCH = {
    "l2": ("weight_decay", "weight_decay > 0 (L2)", 0.1),
    "nesterov": ("nesterov", "nesterov=True", True),
    "centered": ("centered", "centered=True", True),
    "momentum": ("momentum", "momentum > 0", 0.9),
    "amsgrad": ("amsgrad", "amsgrad=True", True),
    # set by the scalar set-up, not by a keyword: RAdam's step is adaptive once rho_t > 5
    "rectify": (None, "step with rho_t > 5 (RAdam's rectified step)", None),
}

# Hyperparameters the generated entry points handle themselves, for every rule that has them
# (they never reach the rule's scalar set-up):
#   decoupled_weight_decay, fully_decoupled: the weight-decay form (``_weight_decay_mode`` in
#       _hyper.pxi), applied after the set-up: L2 (``wd`` field, option ``l2``), or the
#       ``decay`` field: param * (1 - lr*wd), or param * (1 - wd) when fully decoupled.
#   eps_inside_sqrt: where a rule also has ``eps_mode``, the old spelling of eps_mode="inside".
GENERIC = ("decoupled_weight_decay", "fully_decoupled")


def _decay(decoupled=False):
    """The weight-decay hyperparameters every step rule takes (see GENERIC)."""
    return (_h("weight_decay", "nonneg", 0.0), _h("decoupled_weight_decay", "bool", decoupled),
            _h("fully_decoupled", "bool", False))


_EPS = (_h("eps_mode", "eps_mode", "torch"), _h("eps_inside_sqrt", "bool", False))


def _opts(*names):
    return tuple(Option(n, OPTION_BITS[n], *_SWITCH[n]) for n in names)


_WD = dict(weight_decay=(0.0, 0.1), decoupled_weight_decay=(False, True))

RULES = (
    Rule("sgd",
         operands=(_op("param"), _op("grad")),
         options=_opts("l2"),
         fields=("lr", "wd", "decay"),
         twin="sgd_step", heavy=False, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg"), *_decay(), _h("maximize", "bool", False)),
         example=dict(lr=0.1),
         axes=dict(maximize=(False, True), **_WD, fully_decoupled=(False, True))),
    Rule("momentum",
         operands=(_op("param"), _op("grad"), _op("velocity", "velocities")),
         options=_opts("l2", "nesterov"),
         fields=("lr", "wd", "decay", "b1", "damp1"),
         twin="momentum_step", heavy=False, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg"), _h("beta", "beta", 0.9),
                 _h("dampening", "unit_or_none", None), _h("nesterov", "bool", False),
                 *_decay(), _h("maximize", "bool", False)),
         example=dict(lr=0.05, beta=0.8),
         axes=dict(maximize=(False, True), **_WD, nesterov=(False, True),
                   dampening=(None, 0.0, 0.3))),
    Rule("rmsprop",
         operands=(_op("param"), _op("grad"), _op("sq_avg"), _op("grad_avg", needs="centered"),
                   _op("momentum_buf", needs="momentum")),
         options=_opts("l2", "centered", "momentum"),
         fields=("lr", "wd", "decay", "b1", "omb1", "eps_in", "eps_out", "mom"),
         twin="rmsprop_step", heavy=True, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg"), _h("beta", "beta", 0.9), _h("eps", "nonneg", 1e-8),
                 _h("eps_inside_sqrt", "bool", False), *_decay(),
                 _h("centered", "bool", False), _h("momentum", "nonneg", 0.0),
                 _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta=0.85, eps=1e-3),
         axes=dict(maximize=(False, True), **_WD, centered=(False, True),
                   momentum=(0.0, 0.9), eps_inside_sqrt=(False, True)),
         cls="RMSprop"),
    Rule("adam",
         operands=(_op("param"), _op("grad"), _op("m", "ms"), _op("v", "vs"),
                   _op("v_max", needs="amsgrad")),
         options=_opts("l2", "amsgrad"),
         fields=("step_size", "wd", "decay", "b1", "omb1", "b2", "omb2", "c2", "eps_in",
                 "eps_out"),
         twin="adam_step", heavy=True, scaled=True, stepped=True,
         hypers=(_h("lr", "nonneg", 1e-3), _h("beta1", "beta", 0.9), _h("beta2", "beta", 0.999),
                 _h("eps", "nonneg", 1e-8), *_EPS, *_decay(), _h("amsgrad", "bool", False),
                 _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3),
         axes=dict(maximize=(False, True), **_WD, amsgrad=(False, True),
                   eps_mode=EPS_MODES),
         cls="Adam"),
    Rule("adagrad",
         operands=(_op("param"), _op("grad"), _op("sum_sq")),
         options=_opts("l2"),
         fields=("lr", "wd", "decay", "eps_out"),
         twin="adagrad_step", heavy=True, scaled=True, stepped=True,
         hypers=(_h("lr", "nonneg", 1e-2), _h("lr_decay", "nonneg", 0.0),
                 _h("eps", "nonneg", 1e-10), *_decay(), _h("maximize", "bool", False)),
         example=dict(lr=0.05, lr_decay=0.01, eps=1e-3),
         axes=dict(maximize=(False, True), **_WD),
         cls="Adagrad",
         state_init=(("sum_sq", _h("initial_accumulator_value", "nonneg", 0.0)),)),
    Rule("adamax",
         operands=(_op("param"), _op("grad"), _op("m", "ms"), _op("u", "us")),
         options=_opts("l2"),
         fields=("step_size", "wd", "decay", "b1", "omb1", "b2", "eps_out"),
         twin="adamax_step", heavy=True, scaled=True, stepped=True,
         hypers=(_h("lr", "nonneg", 2e-3), _h("beta1", "beta", 0.9), _h("beta2", "beta", 0.999),
                 _h("eps", "nonneg", 1e-8), *_decay(), _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3),
         axes=dict(maximize=(False, True), **_WD),
         cls="Adamax"),
    Rule("nadam",
         operands=(_op("param"), _op("grad"), _op("m", "ms"), _op("v", "vs")),
         options=_opts("l2"),
         fields=("lr", "step_size", "wd", "decay", "b1", "omb1", "b2", "omb2", "c2", "eps_in",
                 "eps_out"),
         twin="nadam_step", heavy=True, scaled=True, stepped=True,
         hypers=(_h("lr", "nonneg", 2e-3), _h("beta1", "beta", 0.9), _h("beta2", "beta", 0.999),
                 _h("eps", "nonneg", 1e-8), *_EPS, *_decay(),
                 _h("momentum_decay", "nonneg", 4e-3), _h("mu_product", "unit"),
                 _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, momentum_decay=0.01,
                      mu_product=0.7),
         axes=dict(maximize=(False, True), **_WD, eps_mode=EPS_MODES),
         cls="NAdam", carry=(("mu_product", 1.0),)),
    Rule("radam",
         operands=(_op("param"), _op("grad"), _op("m", "ms"), _op("v", "vs")),
         options=_opts("l2", "rectify"),
         fields=("lr", "step_size", "wd", "decay", "b1", "omb1", "b2", "omb2", "c2", "eps_in",
                 "eps_out"),
         twin="radam_step", heavy=True, scaled=True, stepped=True,
         hypers=(_h("lr", "nonneg", 1e-3), _h("beta1", "beta", 0.9), _h("beta2", "beta", 0.999),
                 _h("eps", "nonneg", 1e-8), *_EPS, *_decay(), _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3),
         axes=dict(maximize=(False, True), **_WD, eps_mode=EPS_MODES),
         cls="RAdam"),
    Rule("adadelta",
         operands=(_op("param"), _op("grad"), _op("sq_avg"), _op("acc_delta")),
         options=_opts("l2"),
         fields=("lr", "wd", "decay", "b1", "omb1", "eps_in"),
         twin="adadelta_step", heavy=True, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg", 1.0), _h("rho", "beta", 0.9), _h("eps", "nonneg", 1e-6),
                 *_decay(), _h("maximize", "bool", False)),
         example=dict(lr=0.5, rho=0.8, eps=1e-3),
         axes=dict(maximize=(False, True), **_WD),
         cls="Adadelta"),
    Rule("lion",
         operands=(_op("param"), _op("grad"), _op("m", "ms")),
         options=_opts("l2"),
         fields=("lr", "wd", "decay", "b1", "omb1", "b2", "omb2"),
         twin="lion_step", heavy=False, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg", 1e-4), _h("beta1", "beta", 0.9), _h("beta2", "beta", 0.99),
                 *_decay(decoupled=True), _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta1=0.8, beta2=0.95),
         axes=dict(maximize=(False, True), weight_decay=(0.0, 0.1),
                   decoupled_weight_decay=(True, False)),
         cls="Lion"),
    Rule("schedule_free_adamw",
         operands=(_op("param"), _op("grad"), _op("z", "zs"), _op("v", "vs")),
         options=_opts("l2"),
         fields=("lr", "step_size", "mom", "wd", "b2", "omb2", "eps_out"),
         twin="schedule_free_adamw_step", heavy=True, scaled=True, stepped=True,
         hypers=(_h("lr", "nonneg", 0.0025), _h("ckp1", "unit"), _h("beta1", "beta", 0.9),
                 _h("beta2", "beta", 0.999), _h("eps", "nonneg", 1e-8),
                 _h("weight_decay", "nonneg", 0.0), _h("maximize", "bool", False)),
         example=dict(lr=0.01, ckp1=0.3, beta1=0.8, beta2=0.95, eps=1e-3),
         axes=dict(maximize=(False, True), weight_decay=(0.0, 0.1))),
    Rule("ewa",
         operands=(_op("avg"), _op("value")),
         options=(),
         fields=("b1", "omb1"),
         twin="ewa_update", heavy=False, scaled=False, stepped=False,
         hypers=(_h("beta", "beta"),),
         example=dict(beta=0.7),
         axes={}),
)

BY_NAME = {r.name: r for r in RULES}


def combos(rule):
    """Every option combination of `rule`, as (local index, flat option mask), index order."""
    out = []
    for local in range(1 << len(rule.options)):
        mask = 0
        for j, opt in enumerate(rule.options):
            if (local >> j) & 1:
                mask |= opt.bit
        out.append((local, mask))
    return out


def layout():
    """The loop table's layout: (rule, first index) for each rule, and the table size."""
    base, out = 0, []
    for r in RULES:
        out.append((r, base))
        base += 1 << len(r.options)
    return out, base


def scalar_hypers(rule):
    """The hyperparameters `rule`'s scalar set-up ``_<rule>_scalars`` takes, in order: all but
    the GENERIC ones (and eps_inside_sqrt where the rule has eps_mode, which folds it in)."""
    names = {hp.name for hp in rule.hypers}
    skip = set(GENERIC) | ({"eps_inside_sqrt"} if "eps_mode" in names else set())
    return tuple(hp for hp in rule.hypers if hp.name not in skip)


def has_hyper(rule, name):
    return any(hp.name == name for hp in rule.hypers)


def operand_names(rule):
    """The operand names, padded to MAX_OPS slots with empty strings."""
    names = tuple(o.name for o in rule.operands)
    return names + ("",) * (MAX_OPS - len(names))


def option(rule, name):
    """The Option of `rule` called `name`."""
    return next(o for o in rule.options if o.name == name)


def with_all_operands(rule):
    """The rule's example hyperparameters with every option that brings an operand switched on:
    a call that uses all of the rule's operands."""
    kw = dict(rule.example)
    for op in rule.operands:
        if op.needs is not None:
            o = option(rule, op.needs)
            kw[o.keyword] = o.on
    return kw


def required_hypers(rule):
    """The example values of the hyperparameters without a default (the least a call needs)."""
    return {hp.name: rule.example[hp.name] for hp in rule.hypers if hp.default == REQUIRED}


def operands_in_use(rule, kwargs):
    """The operand names a call of `rule` with keyword arguments `kwargs` uses, slot order."""
    out = []
    for op in rule.operands:
        if op.needs is None or kwargs.get(option(rule, op.needs).keyword):
            out.append(op.name)
    return out


def state_operands(rule):
    """The written state operands (slots 2..): what an optimizer class allocates."""
    return rule.operands[2:]
