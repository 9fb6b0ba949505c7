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
                         "example axes")
Hyperparam = namedtuple("Hyperparam", "name kind default")

# The kinds of hyperparameters and how the entry points validate them (the core's checks):
#   nonneg  a finite real >= 0          beta  a real in [0, 1)          bool  True or False
#   unit_or_none  None, or a real in [0, 1] (None reaches the scalar set-up as -1)
KINDS = ("nonneg", "beta", "bool", "unit_or_none")
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
}


# How each option is switched on by the entry points' keywords: (keyword, how messages say it,
# a value that switches it on).
_SWITCH = {
    "l2": ("weight_decay", "weight_decay > 0 (L2)", 0.1),
    "nesterov": ("nesterov", "nesterov=True", True),
    "centered": ("centered", "centered=True", True),
    "momentum": ("momentum", "momentum > 0", 0.9),
    "amsgrad": ("amsgrad", "amsgrad=True", True),
}


def _opts(*names):
    return tuple(Option(n, OPTION_BITS[n], *_SWITCH[n]) for n in names)


RULES = (
    Rule("sgd",
         operands=(_op("param"), _op("grad")),
         options=_opts("l2"),
         fields=("lr", "wd"),
         twin="sgd_step", heavy=False, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg"), _h("weight_decay", "nonneg", 0.0),
                 _h("maximize", "bool", False)),
         example=dict(lr=0.1),
         axes=dict(maximize=(False, True), weight_decay=(0.0, 0.1))),
    Rule("momentum",
         operands=(_op("param"), _op("grad"), _op("velocity", "velocities")),
         options=_opts("l2", "nesterov"),
         fields=("lr", "wd", "b1", "damp1"),
         twin="momentum_step", heavy=False, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg"), _h("beta", "beta", 0.9),
                 _h("dampening", "unit_or_none", None), _h("nesterov", "bool", False),
                 _h("weight_decay", "nonneg", 0.0), _h("maximize", "bool", False)),
         example=dict(lr=0.05, beta=0.8),
         axes=dict(maximize=(False, True), weight_decay=(0.0, 0.1), nesterov=(False, True),
                   dampening=(None, 0.0, 0.3))),
    Rule("rmsprop",
         operands=(_op("param"), _op("grad"), _op("sq_avg"), _op("grad_avg", needs="centered"),
                   _op("momentum_buf", needs="momentum")),
         options=_opts("l2", "centered", "momentum"),
         fields=("lr", "wd", "b1", "omb1", "eps_in", "eps_out", "mom"),
         twin="rmsprop_step", heavy=True, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg"), _h("beta", "beta", 0.9), _h("eps", "nonneg", 1e-8),
                 _h("eps_inside_sqrt", "bool", False), _h("weight_decay", "nonneg", 0.0),
                 _h("centered", "bool", False), _h("momentum", "nonneg", 0.0),
                 _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta=0.85, eps=1e-3),
         axes=dict(maximize=(False, True), weight_decay=(0.0, 0.1), centered=(False, True),
                   momentum=(0.0, 0.9), eps_inside_sqrt=(False, True))),
    Rule("adam",
         operands=(_op("param"), _op("grad"), _op("m", "ms"), _op("v", "vs"),
                   _op("v_max", needs="amsgrad")),
         options=_opts("l2", "amsgrad"),
         fields=("step_size", "wd", "decay", "b1", "omb1", "b2", "omb2", "c2", "eps_in",
                 "eps_out"),
         twin="adam_step", heavy=True, scaled=True, stepped=True,
         hypers=(_h("lr", "nonneg", 1e-3), _h("beta1", "beta", 0.9), _h("beta2", "beta", 0.999),
                 _h("eps", "nonneg", 1e-8), _h("eps_inside_sqrt", "bool", False),
                 _h("weight_decay", "nonneg", 0.0),
                 _h("decoupled_weight_decay", "bool", False), _h("amsgrad", "bool", False),
                 _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3),
         axes=dict(maximize=(False, True), weight_decay=(0.0, 0.1),
                   decoupled_weight_decay=(False, True), amsgrad=(False, True),
                   eps_inside_sqrt=(False, True))),
    Rule("adagrad",
         operands=(_op("param"), _op("grad"), _op("sum_sq")),
         options=_opts("l2"),
         fields=("lr", "wd", "eps_out"),
         twin="adagrad_step", heavy=True, scaled=True, stepped=True,
         hypers=(_h("lr", "nonneg", 1e-2), _h("lr_decay", "nonneg", 0.0),
                 _h("eps", "nonneg", 1e-10), _h("weight_decay", "nonneg", 0.0),
                 _h("maximize", "bool", False)),
         example=dict(lr=0.05, lr_decay=0.01, eps=1e-3),
         axes=dict(maximize=(False, True), weight_decay=(0.0, 0.1))),
    Rule("adamax",
         operands=(_op("param"), _op("grad"), _op("m", "ms"), _op("u", "us")),
         options=_opts("l2"),
         fields=("step_size", "wd", "b1", "omb1", "b2", "eps_out"),
         twin="adamax_step", heavy=True, scaled=True, stepped=True,
         hypers=(_h("lr", "nonneg", 2e-3), _h("beta1", "beta", 0.9), _h("beta2", "beta", 0.999),
                 _h("eps", "nonneg", 1e-8), _h("weight_decay", "nonneg", 0.0),
                 _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3),
         axes=dict(maximize=(False, True), weight_decay=(0.0, 0.1))),
    Rule("adadelta",
         operands=(_op("param"), _op("grad"), _op("sq_avg"), _op("acc_delta")),
         options=_opts("l2"),
         fields=("lr", "wd", "b1", "omb1", "eps_in"),
         twin="adadelta_step", heavy=True, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg", 1.0), _h("rho", "beta", 0.9), _h("eps", "nonneg", 1e-6),
                 _h("weight_decay", "nonneg", 0.0), _h("maximize", "bool", False)),
         example=dict(lr=0.5, rho=0.8, eps=1e-3),
         axes=dict(maximize=(False, True), weight_decay=(0.0, 0.1))),
    Rule("lion",
         operands=(_op("param"), _op("grad"), _op("m", "ms")),
         options=(),
         fields=("lr", "decay", "b1", "omb1", "b2", "omb2"),
         twin="lion_step", heavy=False, scaled=True, stepped=False,
         hypers=(_h("lr", "nonneg", 1e-4), _h("beta1", "beta", 0.9), _h("beta2", "beta", 0.99),
                 _h("weight_decay", "nonneg", 0.0), _h("maximize", "bool", False)),
         example=dict(lr=0.01, beta1=0.8, beta2=0.95),
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
