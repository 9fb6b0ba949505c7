"""Save and resume optimizer state as ``.npz`` files that never execute code on load.

The file holds only numeric, boolean and string arrays (``np.savez`` of the ``state_dict()``, with
``allow_pickle=False`` on both sides).  A file with object arrays or pickled data is rejected with
ValueError before anything changes.
"""

import zipfile

import numpy as np

_SEP = "/"


def _flatten(state):
    out = {}
    for key, value in state.items():
        if key == "hyper":
            for name, v in value.items():
                out[f"hyper{_SEP}{name}"] = np.asarray(v)
        elif key == "state":
            for i, (pname, slots) in enumerate(value.items()):
                for slot, arr in slots.items():
                    out[f"state{_SEP}{i}{_SEP}{slot}"] = arr
        elif key == "keys":
            out["keys"] = np.array(value, dtype=str)
        else:
            out[key] = np.asarray(value)
    return out


def _scalar(a):
    return a.item() if a.ndim == 0 else a


def _unflatten(files):
    state = {"hyper": {}, "state": {}}
    keys = [str(k) for k in files["keys"]] if "keys" in files else []
    state["keys"] = keys
    for k in keys:
        state["state"][k] = {}
    for name in files:
        arr = files[name]
        if arr.dtype.kind == "O":
            raise ValueError(f"entry {name!r} holds Python objects; refusing to load it")
        parts = name.split(_SEP)
        if parts[0] == "hyper" and len(parts) == 2:
            state["hyper"][parts[1]] = _scalar(arr)
        elif parts[0] == "state" and len(parts) == 3:
            i = int(parts[1])
            if not 0 <= i < len(keys):
                raise ValueError(f"entry {name!r} refers to parameter {i}, but the file names "
                                 f"{len(keys)} parameters")
            state["state"][keys[i]][parts[2]] = arr
        elif name != "keys":
            state[name] = _scalar(arr)
    return state


def save_state(path, opt):
    """Write ``opt.state_dict()`` to `path` (an ``.npz`` file; numbers, booleans, strings)."""
    np.savez(path, **_flatten(opt.state_dict()))


def load_state(path, opt):
    """Load a file written by :func:`save_state` into `opt` (validated first; nothing changes on
    error).  Loading never unpickles: object arrays and pickles raise ValueError."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot load optimizer state from {path!r}: {exc}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"cannot load optimizer state from {path!r}: not an .npz archive "
                         f"written by fastopt.save_state")
    try:
        with loaded as f:
            files = {name: f[name] for name in f.files}
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot load optimizer state from {path!r}: {exc}") from None
    opt.load_state_dict(_unflatten(files))
