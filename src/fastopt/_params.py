"""Parameter containers shared by the optimizers, EMA and clipping.

Parameters come as a dict of name -> array (the course's ``parameters["W1"]``) or as a list/tuple of
arrays.  ``ParamSet`` fixes their order once, checks them once (float64, float32, float16 or bfloat16, C-contiguous,
aligned, writeable: they are updated in place), and maps each step's gradients onto that order.
"""

import operator
from collections.abc import Mapping

import numpy as np

from ._dispatch import kernels as _k


def aligned_zeros(shape, dtype, align=64):
    """A zero-filled C-contiguous array whose data starts on an `align`-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.zeros(nbytes + align, dtype=np.uint8)
    offset = (-buf.ctypes.data) % align
    return buf[offset:offset + nbytes].view(dtype).reshape(shape)


def _describe(obj):
    return type(obj).__name__


class ParamSet:
    """An ordered, validated view of the caller's parameter arrays (never copies them).

    Attributes
    ----------
    keys : list of the dict keys, or of the positions 0..n-1 for a list.
    arrays : list of the arrays, in that order.
    is_dict : whether the parameters came as a mapping.
    """

    def __init__(self, params, what="params"):
        if isinstance(params, Mapping):
            self.is_dict = True
            self.keys = list(params.keys())
            self.arrays = [params[k] for k in self.keys]
        elif isinstance(params, (list, tuple)):
            self.is_dict = False
            self.keys = list(range(len(params)))
            self.arrays = list(params)
        else:
            hint = " (wrap a single array in a list)" if isinstance(params, np.ndarray) else ""
            raise TypeError(f"{what} must be a dict of name -> array or a list of arrays, "
                            f"got {_describe(params)}{hint}")
        if not self.arrays:
            raise ValueError(f"{what} is empty")
        self._source = params   # the caller's container, to notice replaced entries
        self._what = what
        _k.check_param_arrays(self.arrays, self.keys)
        _check_disjoint(self.arrays, self.keys, what)
        if self.is_dict:
            self._course_keys = {f"d{k}": k for k in self.keys if isinstance(k, str)}

    def __len__(self):
        return len(self.arrays)

    def check_same(self):
        """Raise ValueError when an entry of the caller's dict or list was replaced (or removed)
        since construction: ``params["W1"] = params["W1"] * 1.0`` makes a new array, and the
        optimizer would go on updating the old one, silently.  One lookup per entry."""
        src = self._source
        if isinstance(src, tuple):
            return
        # fast path: the container holds exactly our arrays, in order (no lookups)
        if len(src) == len(self.arrays) and all(
                map(operator.is_, src.values() if self.is_dict else src, self.arrays)):
            return
        for k, a in zip(self.keys, self.arrays):
            try:
                now = src[k]
            except (KeyError, IndexError, TypeError):
                raise ValueError(f"{self._what}[{k!r}] was removed from the {self._what} "
                                 f"container after the optimizer was built") from None
            if now is not a:
                raise ValueError(
                    f"{self._what}[{k!r}] was replaced by another array after the optimizer was "
                    f"built: the optimizer updates the arrays it was given, in place, so the new "
                    f"array would never be updated.  Update the array in place "
                    f"(params[{k!r}][...] = new) or build a new optimizer")
        if self.is_dict:
            return    # entries added to the dict are not ours (their gradients are refused)
        raise ValueError(f"the {self._what} list changed length after the optimizer was built "
                         f"({len(src)} entries, {len(self.arrays)} expected)")

    def grads_list(self, grads, what="grads"):
        """The gradients as a list in parameter order.

        Accepts a dict with the parameters' keys, a dict with the course's keys ("dW1" for "W1"),
        or a list/tuple in parameter order (for dict parameters: the order of their keys).  Missing or extra entries raise before anything is
        written; shapes and dtypes are checked by the kernel, also before anything is written.
        """
        if self.is_dict and not isinstance(grads, (list, tuple)):
            if not isinstance(grads, Mapping):
                raise TypeError(f"{what} must be a dict like the parameters (keys "
                                f"{self.keys[:3]}...) or a list in their order, "
                                f"got {_describe(grads)}")
            out = []
            used = set()
            for k in self.keys:
                if k in grads:
                    out.append(grads[k]); used.add(k)
                elif isinstance(k, str) and f"d{k}" in grads:
                    out.append(grads[f"d{k}"]); used.add(f"d{k}")
                else:
                    noun = "gradient" if what == "grads" else "entry"
                    raise ValueError(f"{what} has no {noun} for parameter {k!r} "
                                     f"(expected key {k!r} or {'d' + str(k)!r})")
            if len(used) != len(grads):
                extra = [k for k in grads if k not in used]
                raise ValueError(f"{what} has entries that match no parameter: {extra}")
            return out
        if isinstance(grads, Mapping) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"{what} must be a list or tuple of arrays in parameter order, "
                            f"got {_describe(grads)}")
        if len(grads) != len(self.arrays):
            raise ValueError(f"{what} has {len(grads)} arrays but there are "
                             f"{len(self.arrays)} parameters")
        return list(grads)

    def like(self, arrays):
        """Package `arrays` (in parameter order) like the parameters: a dict or a list."""
        if self.is_dict:
            return dict(zip(self.keys, arrays))
        return list(arrays)


def _check_disjoint(arrays, keys, what):
    spans = []
    for k, a in zip(keys, arrays):
        if a.size:
            lo = a.ctypes.data
            spans.append((lo, lo + a.nbytes, k))
    spans.sort(key=lambda s: s[0])
    for (lo1, hi1, k1), (lo2, hi2, k2) in zip(spans, spans[1:]):
        if lo2 < hi1:
            raise ValueError(f"{what}[{k1!r}] and {what}[{k2!r}] overlap in memory: each "
                             f"parameter must be its own buffer")
