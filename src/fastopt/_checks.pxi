# ------------------------------------------------------------------------------------------------
# Scalar checks.  Exposed (check_*) so the Python layers validate with the same rules and words.
# ------------------------------------------------------------------------------------------------

# Step counts and counters must stay exact in float64 (bias corrections use them as exponents).
MAX_COUNT = 2 ** 53

cdef object _np_bool = np.bool_
cdef object _np_complex = np.complexfloating
cdef object _ndarray = np.ndarray


cdef inline bint _is_boolish(object x):
    return isinstance(x, bool) or isinstance(x, _np_bool)


cdef double _real(object x, str name) except? -1.0:
    """float(x) for a real number: Python or NumPy int/float, a 0-d real array, anything with
    __float__ that is not bool or complex.  Huge values give ValueError, never OverflowError."""
    cdef double d
    if type(x) is float:                       # the common cases first: no type walks
        return PyFloat_AS_DOUBLE(x)
    if type(x) is int and -9007199254740992 <= x <= 9007199254740992:
        return PyFloat_AsDouble(x)
    if (_is_boolish(x) or isinstance(x, complex) or isinstance(x, _np_complex)
            or isinstance(x, (str, bytes)) or not PyNumber_Check(x)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if isinstance(x, _ndarray) and ((<object>x).ndim != 0 or (<object>x).dtype.kind not in "iuf"):
        raise TypeError(f"{name} must be a real number, got an array of shape "
                        f"{(<object>x).shape} and dtype {(<object>x).dtype}")
    try:
        d = PyFloat_AsDouble(x)
    except OverflowError:
        raise ValueError(f"{name} is out of the float64 range: {x!r}") from None
    except TypeError:
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}") from None
    return d


cdef double _nonneg(object x, str name) except? -1.0:
    cdef double d = _real(x, name)
    if not (d >= 0.0) or not isfinite(d):
        raise ValueError(f"{name} must be a finite number >= 0, got {x!r}")
    return d


cdef double _beta(object x, str name) except? -1.0:
    cdef double d = _real(x, name)
    if not (0.0 <= d < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {x!r}")
    return d


cdef double _unit_or_none(object x, str name) except? -2.0:
    """None -> -1.0 (the rule's default), else a real in [0, 1]."""
    cdef double d
    if x is None:
        return -1.0
    d = _real(x, name)
    if not (0.0 <= d <= 1.0):
        raise ValueError(f"{name} must be in [0, 1] or None, got {x!r}")
    return d


cdef double _unit(object x, str name) except? -2.0:
    """A real in [0, 1]."""
    cdef double d = _real(x, name)
    if not (0.0 <= d <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {x!r}")
    return d


_EPS_MODES = ("torch", "inside", "keras")


cdef int _eps_mode(object x, str name) except -1:
    """"torch", "inside" or "keras" -> 0, 1, 2 (EPS_TORCH, EPS_INSIDE, EPS_KERAS)."""
    if not isinstance(x, str):
        raise TypeError(f"{name} must be a str, one of {', '.join(map(repr, _EPS_MODES))}; got "
                        f"{type(x).__name__}")
    if str(x) in _EPS_MODES:
        return _EPS_MODES.index(str(x))
    raise ValueError(f"{name} must be one of {', '.join(map(repr, _EPS_MODES))}, got {x!r}")


def check_eps_mode(x, name="eps_mode"):
    """x, validated as an eps_mode ("torch", "inside", "keras"), as a plain str."""
    return _EPS_MODES[_eps_mode(x, name)]


def check_unit(x, name):
    """float(x) for a real in [0, 1]."""
    return _unit(x, name)


cdef bint _bool(object x, str name) except -1:
    if x is True or x is False:
        return x is True
    if isinstance(x, _np_bool):
        return bool(x)
    raise TypeError(f"{name} must be True or False, got {x!r} ({type(x).__name__})")


cdef object _int(object x, str name, object low, object high):
    """x as a Python int: anything with __index__ except bool; low <= x < high (None: no
    bound).  TypeError for non-integers, ValueError out of range (never OverflowError)."""
    cdef object i
    if _is_boolish(x) or not PyIndex_Check(x):
        raise TypeError(f"{name} must be an integer, got {type(x).__name__}")
    i = x.__index__()
    if low is not None and i < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {i}")
    if high is not None and i >= high:
        raise ValueError(f"{name} must be an integer below {high}, got {i}")
    return i


cdef Py_ssize_t _step(object step) except -1:
    if type(step) is int and 1 <= step <= MAX_COUNT:   # the common case, no type walks
        return <Py_ssize_t>step
    if _is_boolish(step) or not PyIndex_Check(step):
        raise TypeError(f"step must be an integer >= 1 (the update count, from 1), "
                        f"got {type(step).__name__}")
    t = step.__index__()
    if t < 1 or t > MAX_COUNT:
        raise ValueError(f"step must be an integer in [1, 2**53] (the update count, from 1), "
                         f"got {t}")
    return <Py_ssize_t>t


def check_real(x, name):
    """Return float(x); TypeError naming `name` unless x is a real number (bool, complex and
    non-0-d arrays are not); ValueError when it is beyond the float64 range."""
    return _real(x, name)


def check_nonneg(x, name):
    """Return float(x); ValueError naming `name` unless x is finite and >= 0."""
    return _nonneg(x, name)


def check_beta(x, name):
    """Return float(x); ValueError naming `name` unless 0 <= x < 1."""
    return _beta(x, name)


def check_step(step):
    """Return int(step); TypeError/ValueError unless step is an integer in [1, 2**53]."""
    return _step(step)


def check_bool(x, name):
    """Return x as a bool; TypeError naming `name` unless it is ``bool`` or ``numpy.bool_``
    (never truthiness: ``"no"``, 0, 1 and None are refused)."""
    return _bool(x, name)


def check_int(x, name, low=None, high=None):
    """Return x as a Python int; TypeError naming `name` unless x has ``__index__`` and is not
    a bool; ValueError unless ``low <= x`` and ``x < high`` (None: unbounded)."""
    return _int(x, name, low, high)


def check_axis(axis, ndim, name="axis"):
    """Return `axis` normalised to [0, ndim); TypeError unless an integer, ValueError (naming the
    dimension count) when out of range."""
    cdef object ax = _int(axis, name, None, None)
    if not -ndim <= ax < ndim:
        raise ValueError(f"{name} {ax} is out of range for an array of {ndim} dimension(s)")
    return ax % ndim


# ------------------------------------------------------------------------------------------------
# Array checks: structure (type, byte order, contiguity, alignment, writeability, shape), then
# storage types.
#
# Storage types and what each operand may be (compute type in brackets):
#   param float64              every array float64                              [float64]
#   param float32              grad float32; state float32 or bfloat16          [float32]
#   param float16 / bfloat16   grad the param's dtype or float32;               [float32]
#                              state float32, bfloat16 or the param's dtype;
#                              master= float32; compensation= the param's dtype
# ------------------------------------------------------------------------------------------------

cdef extern from "numpy/arrayobject.h":
    enum: NPY_HALF

try:
    import ml_dtypes as _ml_dtypes
    _BF16_NUM = np.dtype(_ml_dtypes.bfloat16).num
    BFLOAT16 = np.dtype(_ml_dtypes.bfloat16)
except ImportError:       # pragma: no cover - ml_dtypes is a dependency
    _ml_dtypes = None
    _BF16_NUM = -1
    BFLOAT16 = None

_TYPE_NAMES = ("float64", "float32", "float16", "bfloat16")
_PARAM_TYPES = ("float32, float64, float16 or bfloat16" if _BF16_NUM >= 0 else
                "float32, float64 or float16 (bfloat16 needs the ml_dtypes package)")


cdef inline int _code(cnp.ndarray a) noexcept:
    """The storage type of `a` (FO_*), or -1."""
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT:
        return FO_F32
    if t == cnp.NPY_DOUBLE:
        return FO_F64
    if t == NPY_HALF:
        return FO_F16
    if t == _BF16_NUM:
        return FO_BF16
    return -1


cdef str _name(tuple names, int i, object suffix):
    return names[i] if suffix is None else f"{names[i]}[{suffix!r}]"


cdef int _check_array(object obj, tuple names, int i, object suffix, bint writable,
                      object ref) except -1:
    """Check the structure of operand i of a call (names[i], with "[suffix]" in messages when
    given): an ndarray, not masked, native byte order, C-contiguous, aligned, writeable when
    written, and (when `ref`, operand 0, is given) of ref's shape.  Storage types are checked by
    _check_types.  Messages are only built on failure."""
    cdef cnp.ndarray a, r
    if not cnp.PyArray_Check(obj):
        raise TypeError(f"{_name(names, i, suffix)} must be a numpy.ndarray, "
                        f"got {type(obj).__name__}")
    a = <cnp.ndarray>obj
    if not cnp.PyArray_CheckExact(obj) and isinstance(obj, np.ma.MaskedArray):
        raise TypeError(f"{_name(names, i, suffix)} is a numpy.ma.MaskedArray: its mask would be "
                        f"ignored by an element-wise update; pass the .data array (and handle "
                        f"masked entries yourself)")
    if _code(a) < 0:
        raise TypeError(f"{_name(names, i, suffix)} must have dtype {_PARAM_TYPES}, "
                        f"got {a.dtype} (convert once, e.g. x = x.astype(np.float32), and "
                        f"keep using the converted array)")
    if ref is not None:
        r = <cnp.ndarray>ref
        if not cnp.PyArray_SAMESHAPE(a, r):
            raise ValueError(f"{_name(names, i, suffix)} has shape {(<object>a).shape} but "
                             f"{_name(names, 0, suffix)} has shape {(<object>r).shape}: "
                             f"all arrays of one update must share one shape")
    if not cnp.PyArray_ISNOTSWAPPED(a):
        raise TypeError(f"{_name(names, i, suffix)} must be in native byte order, "
                        f"got dtype {a.dtype.str}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{_name(names, i, suffix)} must be C-contiguous: fastopt updates arrays "
                         f"in place and never works on a copy; make the array contiguous once "
                         f"(x = np.ascontiguousarray(x)) and keep using that array")
    if not cnp.PyArray_ISALIGNED(a):
        raise ValueError(f"{_name(names, i, suffix)} must be aligned to its itemsize "
                         f"({a.itemsize} bytes)")
    if writable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{_name(names, i, suffix)} is read-only, but it is updated in place")
    return 0


cdef str _accepted(int p, int i):
    """The storage types operand slot i (1: the input, >= 2: state) accepts with param type p."""
    if p == FO_F64:
        return "float64"
    if i == 1:
        return "float32" if p == FO_F32 else f"{_TYPE_NAMES[p]} or float32"
    if p == FO_F16:
        return "float32, bfloat16 or float16"
    return "float32 or bfloat16"


cdef inline bint _type_ok(int p, int i, int t) noexcept:
    if p == FO_F64 or t == FO_F64:
        return p == t
    if i == 1:
        return t == p or t == FO_F32
    return t == FO_F32 or t == FO_BF16 or t == p


cdef int _check_type(tuple names, int i, object suffix, int p, int t, str pname) except -1:
    """Operand slot i has storage type t; the parameter (named pname) has p."""
    if not _type_ok(p, i, t):
        raise TypeError(f"{_name(names, i, suffix)} has dtype {_TYPE_NAMES[t]} but {pname} "
                        f"has dtype {_TYPE_NAMES[p]}: with a {_TYPE_NAMES[p]} {pname}, "
                        f"{names[i]} must be {_accepted(p, i)}")
    return 0
