"""Save and resume optimizer state as ``.npz`` files that never execute code on load.

The file is a zip archive of ``.npy`` members, one per entry of the flattened ``state_dict()``
(``format_version``, ``optimizer``, ``hyper/<name>``, ``step_count``, ``epoch``,
``skipped_steps``, ``keys`` and ``state/<i>/<slot>``), holding only numeric, boolean and string
arrays; NumPy's ``np.load`` reads it too.

Paths: ``save_state`` and ``load_state`` resolve a path the same way, NumPy's ``np.savez`` rule:
a path (str or os.PathLike) that does not end in ``.npz`` gets ``.npz`` appended, so
``save_state("ckpt", opt)`` writes ``ckpt.npz`` and ``load_state("ckpt", opt)`` reads it.

Saving is atomic: the archive is written to a temporary file in the target's directory, flushed
to disk, then renamed over the target; an error or an interrupt (KeyboardInterrupt) while writing
leaves any previous checkpoint untouched and no temporary file behind.

Loading trusts nothing in the file.  The member list must be exactly this optimizer's (unknown
members are never read, not even decompressed); each member's ``.npy`` header is checked (no
object or pickled dtypes, C order, the exact shape and dtype this optimizer expects, the member's
size agreeing with the header) before any of its data is read, and state arrays are read into
buffers sized from this optimizer's own arrays, never from the file.  Any problem -- a non-zip or
truncated file, a CRC error, a malformed header, a pickle, a mismatch -- raises ValueError, and
nothing in the optimizer changes (everything is validated, then copied).
"""

import os
import tempfile
import zipfile

import numpy as np
from numpy.lib import format as _npformat

from ._dispatch import kernels as _k
from .optimizers import Optimizer

__all__ = ["save_state", "load_state"]

_SEP = "/"
_SUFFIX = ".npz"
_MAX_HEADER = 64 * 1024      # bytes of .npy preamble + header accepted per member
_MAX_NAME_CHARS = 256        # longest class name / parameter name read from a file
_MAX_HYPER_STR = 16          # longest string hyperparameter (eps_mode) read from a file
_CHUNK = 1 << 20             # bytes read per call into a state buffer
_COUNTERS = ("step_count", "epoch", "skipped_steps")


def _flatten(state):
    out = {}
    for key, value in state.items():
        if key in ("hyper", "scalars"):
            for name, v in value.items():
                out[f"{key}{_SEP}{name}"] = np.asarray(v)
        elif key == "state":
            for i, (pname, slots) in enumerate(value.items()):
                for slot, arr in slots.items():
                    out[f"state{_SEP}{i}{_SEP}{slot}"] = arr
        elif key == "keys":
            out["keys"] = np.array(value, dtype=str)
        else:
            out[key] = np.asarray(value)
    return out


# ------------------------------------------------------------------------------------------------
# Arguments and paths.
# ------------------------------------------------------------------------------------------------

def _check_args(func, path, opt):
    if isinstance(path, Optimizer) and not isinstance(opt, Optimizer):
        raise TypeError(f"fastopt.{func}(path, opt): the path comes first and the optimizer "
                        f"second (got the optimizer first; torch.save's order is not used)")
    if not isinstance(opt, Optimizer):
        raise TypeError(f"fastopt.{func}(path, opt): opt must be a fastopt optimizer "
                        f"(SGD, Momentum, RMSprop, Adam, AdamW), got {type(opt).__name__}")
    return _resolve(func, path)


def _resolve(func, path):
    """The file a path names: str or os.PathLike, with ``.npz`` appended unless it ends so."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"fastopt.{func}(path, opt): path must be a str or os.PathLike, "
                        f"got {type(path).__name__}")
    p = os.fspath(path)
    if not isinstance(p, str):
        raise TypeError(f"fastopt.{func}(path, opt): path must name a file as str, "
                        f"got {type(p).__name__}")
    if not p:
        raise ValueError(f"fastopt.{func}(path, opt): path is empty")
    return p if p.endswith(_SUFFIX) else p + _SUFFIX


# ------------------------------------------------------------------------------------------------
# Saving.
# ------------------------------------------------------------------------------------------------

def _new_file_mode(target):
    """The permission bits the checkpoint gets: the previous file's, else 0o666 less the umask
    (what a plain ``open(target, "w")`` would give; mkstemp's own default is 0o600)."""
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        pass
    umask = 0o022
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError, IndexError):
        pass
    return 0o666 & ~umask


def _write_archive(f, entries):
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in entries.items():
            with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
                _npformat.write_array(member, np.asanyarray(arr), allow_pickle=False)


def save_state(path, opt):
    """Write ``opt.state_dict()`` to an ``.npz`` file (numbers, booleans, strings; no pickles).

    Parameters
    ----------
    path : str or os.PathLike; ``.npz`` is appended when it does not end in ``.npz`` (as
        ``np.savez`` does; :func:`load_state` applies the same rule).
    opt : the optimizer (SGD, Momentum, RMSprop, Adam, AdamW).

    The write is atomic: a temporary file in the same directory is written, flushed and fsynced,
    then renamed onto the target.  On any error or interrupt the temporary file is removed and a
    previous checkpoint at `path` is left as it was.

    Raises
    ------
    TypeError: the arguments are swapped (the order is ``(path, opt)``) or `opt` is not an
        optimizer.
    """
    target = _check_args("save_state", path, opt)
    entries = _flatten(opt.state_dict())
    directory = os.path.dirname(os.path.abspath(target))
    mode = _new_file_mode(target)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(target) + ".",
                               suffix=".tmp")
    try:
        with open(fd, "wb", closefd=True) as f:
            _write_archive(f, entries)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                    # make the rename itself durable (best effort)
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# ------------------------------------------------------------------------------------------------
# Loading.
# ------------------------------------------------------------------------------------------------

class _Bad(Exception):
    """A problem with one member, reported as ValueError naming it."""


def _expected(opt):
    """{member name: (kind, detail)} for every member this optimizer's file must hold -- the keys
    of ``_flatten(opt.state_dict())`` plus ``.npy``, computed without copying the state."""
    spec = {"format_version.npy": ("int", None), "optimizer.npy": ("str0", None),
            "keys.npy": ("keys", len(opt._params.keys))}
    for name in _COUNTERS:
        spec[name + ".npy"] = ("int", None)
    for name, value in opt.hyper.items():
        spec[f"hyper{_SEP}{name}.npy"] = ("hyper", "str" if isinstance(value, str) else None)
    for name in getattr(opt, "_carry", {}):
        spec[f"scalars{_SEP}{name}.npy"] = ("hyper", None)
    for i, k in enumerate(opt._params.keys):
        for slot, arr in opt.state[k].items():
            spec[f"state{_SEP}{i}{_SEP}{slot}.npy"] = ("state", arr)
    return spec


def _describe(member, nkeys):
    """A member name, with what it would mean (for messages)."""
    name = member[:-4] if member.endswith(".npy") else member
    parts = name.split(_SEP)
    if len(parts) == 3 and parts[0] == "state":
        try:
            i = int(parts[1])
        except ValueError:
            i = None
        if i is not None and not 0 <= i < nkeys:
            return f"{name!r} (parameter {i}; this optimizer has {nkeys})"
        return f"{name!r} (parameter {parts[1]}, slot {parts[2]!r})"
    return repr(name)


def _check_members(zf, spec, opt):
    names = zf.namelist()
    seen, dups = set(), set()
    for n in names:
        (dups if n in seen else seen).add(n)
    if dups:
        raise _Bad(f"the archive lists members more than once: {sorted(dups)}")
    missing = sorted(set(spec) - seen)
    unknown = sorted(seen - set(spec))
    if missing or unknown:
        nkeys = len(opt._params.keys)
        parts = []
        if missing:
            parts.append("missing entries " + ", ".join(_describe(m, nkeys) for m in missing))
        if unknown:
            shown = [_describe(u, nkeys) for u in unknown[:20]]
            more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
            parts.append("unknown entries " + ", ".join(shown) + more)
        raise _Bad(f"its entries do not match this {type(opt).__name__}'s hyperparameters, "
                   f"parameters and slots: " + "; ".join(parts))


def _is_raw_twin(dtype, want):
    """NumPy's .npy format writes a bfloat16 (ml_dtypes) array with the header dtype '|V2' (raw
    2-byte items): accept exactly that for a bfloat16 state array, and read its bytes as
    bfloat16 (bitwise, no pickle)."""
    return (_k.BFLOAT16 is not None and want == _k.BFLOAT16 and dtype.kind == "V"
            and dtype.itemsize == 2 and dtype.fields is None and dtype.subdtype is None)


def _check_header(name, kind, detail, shape, fortran, dtype):
    """Raise _Bad unless a member's header is what `kind` allows; return the expected
    (shape, dtype) to read."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Bad(f"entry {name!r} holds Python objects (dtype {dtype}); refusing to load it")
    if fortran:
        raise _Bad(f"entry {name!r} is in Fortran order; fastopt writes C order")
    got = f"shape {shape} and dtype {dtype}"
    if kind == "state":
        want = detail
        if _is_raw_twin(dtype, want.dtype):
            dtype = want.dtype
        if shape != want.shape or dtype != want.dtype:
            raise _Bad(f"entry {name!r} has {got}, expected shape {want.shape} and dtype "
                       f"{want.dtype}")
        return want.shape, want.dtype
    if kind in ("int", "hyper"):
        # a hyperparameter is a number, or a short string where this optimizer's is (eps_mode)
        text = kind == "hyper" and detail == "str"
        kinds = "iu" if kind == "int" else ("U" if text else "biuf")
        size = _MAX_HYPER_STR * 4 if text else 16
        if shape != () or dtype.kind not in kinds or dtype.itemsize > size or dtype.subdtype:
            what = ("an integer" if kind == "int" else
                    f"a string of at most {_MAX_HYPER_STR} characters" if text else
                    "a bool, integer or float")
            raise _Bad(f"entry {name!r} has {got}, expected {what} scalar (0-d array)")
        return (), dtype
    if kind == "str0":
        if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * _MAX_NAME_CHARS:
            raise _Bad(f"entry {name!r} has {got}, expected a 0-d string of at most "
                       f"{_MAX_NAME_CHARS} characters")
        return (), dtype
    if kind == "keys":
        if (shape != (detail,) or dtype.kind != "U"
                or dtype.itemsize > 4 * _MAX_NAME_CHARS):
            raise _Bad(f"entry {name!r} has {got}, expected {detail} parameter names "
                       f"(1-D strings of at most {_MAX_NAME_CHARS} characters)")
        return shape, dtype
    raise AssertionError(kind)  # pragma: no cover


def _max_data_bytes(kind, detail):
    if kind == "state":
        return detail.nbytes
    if kind == "int":
        return 16
    if kind == "hyper":
        return 4 * _MAX_HYPER_STR
    if kind == "str0":
        return 4 * _MAX_NAME_CHARS
    return 4 * _MAX_NAME_CHARS * detail


def _read_exact(f, buf, name):
    """Fill the writable buffer `buf` from f (chunk by chunk), then require the member's end
    (which makes zipfile check the CRC)."""
    view = memoryview(buf.reshape(-1).view(np.uint8))
    pos, n = 0, len(view)
    while pos < n:
        got = f.readinto(view[pos:min(n, pos + _CHUNK)])
        if not got:
            raise _Bad(f"entry {name!r} is truncated ({pos} of {n} data bytes)")
        pos += got
    if f.read(1):
        raise _Bad(f"entry {name!r} holds data beyond its array")


def _read_member(zf, info, kind, detail):
    name = info.filename[:-4]
    limit = _MAX_HEADER + _max_data_bytes(kind, detail)
    if info.file_size > limit:
        raise _Bad(f"entry {name!r} is {info.file_size} bytes, more than this optimizer's "
                   f"entry can be ({limit})")
    with zf.open(info) as f:
        try:
            version = _npformat.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = _npformat.read_array_header_1_0(
                    f, max_header_size=_MAX_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = _npformat.read_array_header_2_0(
                    f, max_header_size=_MAX_HEADER)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            header_len = f.tell()
        except _Bad:
            raise
        except Exception as exc:
            raise _Bad(f"entry {name!r} has a malformed .npy header "
                       f"({type(exc).__name__}: {exc})") from None
        shape, dtype = _check_header(name, kind, detail, shape, fortran, dtype)
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        if info.file_size != header_len + nbytes:
            raise _Bad(f"entry {name!r} is {info.file_size} bytes, but its header ({header_len}"
                       f" bytes) describes {nbytes} bytes of data: the file is damaged")
        buf = np.empty(shape, dtype=dtype)
        _read_exact(f, buf, name)
    return buf


def _read_entries(zf, opt):
    spec = _expected(opt)
    _check_members(zf, spec, opt)
    out = {}
    for member, (kind, detail) in spec.items():
        out[member[:-4]] = _read_member(zf, zf.getinfo(member), kind, detail)
    return out


def _to_state(files, opt):
    """The state dict the (validated) member arrays describe, for load_state_dict."""
    keys = [str(k) for k in files["keys"]]
    state = {
        "format_version": files["format_version"].item(),
        "optimizer": str(files["optimizer"].item()),
        "hyper": {name: files[f"hyper{_SEP}{name}"].item() for name in opt.hyper},
        "keys": keys,
        "state": {},
    }
    if getattr(opt, "_carry", {}):
        state["scalars"] = {name: files[f"scalars{_SEP}{name}"].item() for name in opt._carry}
    for name in _COUNTERS:
        state[name] = files[name].item()
    for i, k in enumerate(keys):
        prefix = f"state{_SEP}{i}{_SEP}"
        state["state"][k] = {n[len(prefix):]: a for n, a in files.items()
                             if n.startswith(prefix)}
    return state


def load_state(path, opt):
    """Load a file written by :func:`save_state` into `opt`.

    Parameters
    ----------
    path : str or os.PathLike; ``.npz`` is appended when it does not end in ``.npz`` (the rule
        :func:`save_state` uses).
    opt : the optimizer to restore, built as the saved one was (class, hyperparameters,
        parameter names, shapes and dtypes).

    The file is validated completely before anything changes: the member list, every ``.npy``
    header (no object or pickled dtypes, C order, the exact shapes and dtypes of `opt`'s state),
    the member sizes, the CRCs and then the contents (``Optimizer.load_state_dict``'s checks).
    Members that are not expected are never read; no allocation is sized from the file.

    Raises
    ------
    TypeError: swapped arguments (the order is ``(path, opt)``) or `opt` not an optimizer.
    OSError: the file cannot be opened (FileNotFoundError when it does not exist).
    ValueError: anything wrong with the file's contents; `opt` is then unchanged.
    """
    target = _check_args("load_state", path, opt)

    def fail(msg):
        raise ValueError(f"cannot load optimizer state from {target!r}: {msg}") from None

    with open(target, "rb") as fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                files = _read_entries(zf, opt)
        except _Bad as exc:
            fail(str(exc))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError,
                NotImplementedError, RuntimeError) as exc:
            fail(f"not a readable .npz archive written by fastopt.save_state "
                 f"({type(exc).__name__}: {exc})")
    opt.load_state_dict(_to_state(files, opt))
