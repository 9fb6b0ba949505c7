"""Optimizer state: state_dict / load_state_dict, and fastopt.save_state / load_state.

* ``state_dict()`` is plain data (NumPy arrays and Python scalars, copies);
* ``load_state_dict`` validates everything first: on any mismatch it raises ValueError and changes
  nothing (parameters, state arrays, counters);
* files are ``.npz`` read with ``allow_pickle=False``: object arrays and pickles are rejected with
  ValueError, and loading never executes code;
* resuming is exact: k steps, save, load into a fresh optimizer, j steps == k + j steps, bit for
  bit, for every class and option set (SGD's first-step rule is not re-applied).
"""

import copy
import os
import pickle
import zipfile

import numpy as np
import pytest

import fastopt

CLASSES = {"SGD": fastopt.SGD, "Momentum": fastopt.Momentum, "RMSprop": fastopt.RMSprop,
           "Adam": fastopt.Adam, "AdamW": fastopt.AdamW}

RESUME_CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
    ("Momentum", dict(lr=0.05, beta=0.8)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("RMSprop", dict(lr=0.01, beta=0.85, eps=1e-3, eps_inside_sqrt=True, weight_decay=0.1,
                     maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, eps_inside_sqrt=True,
                  weight_decay=0.1, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
]


def case_id(cls_name, kw):
    return cls_name + "-" + "-".join(f"{k}={v}" for k, v in kw.items() if k != "lr")


RESUME_PARAMS = [pytest.param(c, kw, id=case_id(c, kw)) for c, kw in RESUME_CASES]


def make_params(rng, as_list=False):
    p = {"W1": rng.standard_normal((5, 4)), "b1": rng.standard_normal((5, 1)),
         "W2": rng.standard_normal((3, 5)).astype(np.float32),
         "b2": rng.standard_normal((3, 1))}
    return list(p.values()) if as_list else p


def grads_for(params, rng):
    if isinstance(params, dict):
        return {f"d{k}": rng.standard_normal(a.shape).astype(a.dtype) for k, a in params.items()}
    return [rng.standard_normal(a.shape).astype(a.dtype) for a in params]


def copy_params(params):
    if isinstance(params, dict):
        return {k: a.copy() for k, a in params.items()}
    return [a.copy() for a in params]


def values(params):
    return list(params.values()) if isinstance(params, dict) else list(params)


def snapshot(opt):
    arrays = [a.tobytes() for a in values(opt.params)]
    arrays += [a.tobytes() for k in opt.state for s, a in sorted(opt.state[k].items())]
    return arrays, (opt.step_count, opt.epoch, opt.skipped_steps)


def trained(cls_name, kw, rng, steps=3, as_list=False):
    params = make_params(rng, as_list)
    opt = CLASSES[cls_name](params, **kw)
    for _ in range(steps):
        opt.step(grads_for(params, rng))
    return params, opt


# ------------------------------------------------------------------------------------------------
# state_dict: plain data.
# ------------------------------------------------------------------------------------------------

def assert_plain(obj, path="state"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str), f"{path}: key {k!r} is not a str"
            assert_plain(v, f"{path}[{k!r}]")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert_plain(v, f"{path}[{i}]")
    elif isinstance(obj, np.ndarray):
        assert obj.dtype.kind in "fiub", f"{path}: array of dtype {obj.dtype}"
    else:
        assert type(obj) in (int, float, bool, str), f"{path}: {type(obj).__name__}"


@pytest.mark.parametrize("cls_name, kw", RESUME_PARAMS)
def test_state_dict_is_plain_data(cls_name, kw, rng):
    params, opt = trained(cls_name, kw, rng, steps=3)
    opt.end_epoch()
    sd = opt.state_dict()
    assert_plain(sd)
    assert sd["format_version"] == 1
    assert sd["optimizer"] == cls_name
    assert sd["step_count"] == 3 and type(sd["step_count"]) is int
    assert sd["epoch"] == 1 and type(sd["epoch"]) is int
    assert sd["skipped_steps"] == 0
    hyper = {k: v for k, v in kw.items() if k != "lr"}
    for k, v in hyper.items():
        assert sd["hyper"][k] == v
    assert "lr" not in sd["hyper"]
    assert sd["hyper"] == opt.hyper
    assert sd["keys"] == list(params)
    assert set(sd["state"]) == set(params)
    for k in params:
        assert set(sd["state"][k]) == set(opt.state[k])
        for s, a in sd["state"][k].items():
            np.testing.assert_array_equal(a, opt.state[k][s])
            assert a.dtype == opt.state[k][s].dtype
            assert not np.shares_memory(a, opt.state[k][s]), "state_dict must hold copies"
    # a copy: changing it changes nothing in the optimizer
    before = snapshot(opt)
    for k in sd["state"]:
        for a in sd["state"][k].values():
            a[...] = 123.0
    sd["hyper"]["lr_like"] = 1
    assert snapshot(opt) == before


def test_state_dict_of_list_params_names_positions(rng):
    params, opt = trained("Adam", dict(lr=0.01), rng, as_list=True)
    sd = opt.state_dict()
    assert sd["keys"] == ["0", "1", "2", "3"]
    assert set(sd["state"]) == {"0", "1", "2", "3"}
    assert_plain(sd)


# ------------------------------------------------------------------------------------------------
# load_state_dict: validated first, nothing changes on error.
# ------------------------------------------------------------------------------------------------

def _set(path, value):
    def mutate(sd):
        d = sd
        for p in path[:-1]:
            d = d[p]
        d[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(sd):
        d = sd
        for p in path[:-1]:
            d = d[p]
        del d[path[-1]]
    return mutate


def _reshape_last_m(sd):
    sd["state"]["b2"]["m"] = np.zeros((1, 3))


def _retype_last_v(sd):
    sd["state"]["b2"]["v"] = sd["state"]["b2"]["v"].astype(np.float32)


def _retype_float32_param(sd):
    sd["state"]["W2"]["m"] = sd["state"]["W2"]["m"].astype(np.float64)


def _rename_key(sd):
    sd["keys"] = ["W1", "b1", "W2", "b3"]
    sd["state"]["b3"] = sd["state"].pop("b2")


def _swap_keys(sd):
    sd["keys"] = ["b1", "W1", "W2", "b2"]


def _extra_param(sd):
    sd["keys"].append("W3")
    sd["state"]["W3"] = {s: np.zeros(2) for s in ("m", "v", "v_max")}


def _extra_slot(sd):
    sd["state"]["b2"]["velocity"] = np.zeros((3, 1))


def _list_state_array(sd):
    sd["state"]["b2"]["m"] = sd["state"]["b2"]["m"].tolist()


LOAD_ERRORS = {
    "format_version_2": (_set(["format_version"], 2), r"format_version"),
    "format_version_0": (_set(["format_version"], 0), r"format_version"),
    "format_version_str": (_set(["format_version"], "1"), r"format_version"),
    "wrong_class_name": (_set(["optimizer"], "AdamW"), r"AdamW"),
    "wrong_beta1": (_set(["hyper", "beta1"], 0.8), r"beta1"),
    "wrong_amsgrad": (_set(["hyper", "amsgrad"], False), r"amsgrad"),
    "wrong_eps": (_set(["hyper", "eps"], 1e-7), r"eps"),
    "missing_hyper": (_delete(["hyper", "beta2"]), r"hyperparameters"),
    "extra_hyper": (_set(["hyper", "momentum"], 0.9), r"hyperparameters"),
    "missing_format_version": (_delete(["format_version"]), r"missing"),
    "missing_optimizer": (_delete(["optimizer"]), r"missing"),
    "missing_hyper_entry": (_delete(["hyper"]), r"missing"),
    "missing_step_count": (_delete(["step_count"]), r"missing.*step_count"),
    "missing_epoch": (_delete(["epoch"]), r"missing.*epoch"),
    "missing_skipped": (_delete(["skipped_steps"]), r"missing"),
    "missing_keys": (_delete(["keys"]), r"missing"),
    "missing_state": (_delete(["state"]), r"missing"),
    "missing_param_state": (_delete(["state", "b2"]), r"state"),
    "missing_slot": (_delete(["state", "b2", "v_max"]), r"slots"),
    "extra_slot": (_extra_slot, r"slots"),
    "negative_step_count": (_set(["step_count"], -1), r"step_count"),
    "negative_epoch": (_set(["epoch"], -3), r"epoch"),
    "negative_skipped": (_set(["skipped_steps"], -1), r"skipped_steps"),
    "float_step_count": (_set(["step_count"], 2.5), r"step_count"),
    "bool_epoch": (_set(["epoch"], True), r"epoch"),
    "wrong_shape": (_reshape_last_m, r"shape"),
    "wrong_dtype": (_retype_last_v, r"dtype"),
    "wrong_dtype_float32_param": (_retype_float32_param, r"dtype"),
    "renamed_param": (_rename_key, r"names"),
    "reordered_keys": (_swap_keys, r"names"),
    "extra_param": (_extra_param, r"names"),
    "not_an_array": (_list_state_array, r"shape"),
}


@pytest.mark.parametrize("error", list(LOAD_ERRORS))
def test_load_state_dict_validates_before_changing_anything(error, rng):
    _, source = trained("Adam", dict(lr=0.01, amsgrad=True), rng, steps=4)
    source.end_epoch()
    sd = source.state_dict()
    mutate, pattern = LOAD_ERRORS[error]
    mutate(sd)
    params, target = trained("Adam", dict(lr=0.01, amsgrad=True), rng, steps=1)
    before = snapshot(target)
    with pytest.raises(ValueError, match=pattern):
        target.load_state_dict(sd)
    assert snapshot(target) == before
    # the unmodified state still loads
    target.load_state_dict(source.state_dict())
    assert target.step_count == 4 and target.epoch == 1


@pytest.mark.parametrize("bad", [None, [], "state", 3])
def test_load_state_dict_rejects_non_dicts(bad, rng):
    _, opt = trained("SGD", dict(lr=0.1, momentum=0.9), rng, steps=1)
    before = snapshot(opt)
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict(bad)
    assert snapshot(opt) == before


@pytest.mark.parametrize("source_cls, target_cls, kw", [
    ("Adam", "AdamW", dict(lr=0.01, weight_decay=0.0)),     # same hyperparameter names
    ("AdamW", "Adam", dict(lr=0.01, weight_decay=0.0)),
    ("SGD", "Momentum", dict(lr=0.1)),
    ("Momentum", "SGD", dict(lr=0.1)),
])
def test_load_state_dict_rejects_another_class(source_cls, target_cls, kw, rng):
    skw = dict(kw, momentum=0.9) if source_cls == "SGD" else kw
    tkw = dict(kw, momentum=0.9) if target_cls == "SGD" else kw
    _, source = trained(source_cls, skw, rng, steps=2)
    _, target = trained(target_cls, tkw, rng, steps=1)
    before = snapshot(target)
    with pytest.raises(ValueError, match=source_cls):
        target.load_state_dict(source.state_dict())
    assert snapshot(target) == before


def test_load_state_dict_rejects_other_parameter_shapes(rng):
    _, source = trained("RMSprop", dict(lr=0.01, centered=True), rng, steps=2)
    params = make_params(rng)
    params["b2"] = np.zeros((4, 1))
    target = fastopt.RMSprop(params, lr=0.01, centered=True)
    target.step(grads_for(params, rng))
    before = snapshot(target)
    with pytest.raises(ValueError, match="shape"):
        target.load_state_dict(source.state_dict())
    assert snapshot(target) == before


def test_load_state_dict_copies_into_own_arrays(rng):
    _, source = trained("Adam", dict(lr=0.01), rng, steps=3)
    params, target = trained("Adam", dict(lr=0.01), rng, steps=1)
    ptrs = {k: {s: a.ctypes.data for s, a in slots.items()} for k, slots in target.state.items()}
    sd = source.state_dict()
    target.load_state_dict(sd)
    for k, slots in target.state.items():
        for s, a in slots.items():
            assert a.ctypes.data == ptrs[k][s] and a.ctypes.data % 64 == 0
            np.testing.assert_array_equal(a, source.state[k][s])
            assert not np.shares_memory(a, sd["state"][k][s])
    assert (target.step_count, target.epoch, target.skipped_steps) == (3, 0, 0)


# ------------------------------------------------------------------------------------------------
# Files.
# ------------------------------------------------------------------------------------------------

def test_save_state_writes_a_plain_npz(tmp_path, rng):
    _, opt = trained("Adam", dict(lr=0.01, amsgrad=True), rng, steps=2)
    path = tmp_path / "ckpt.npz"
    fastopt.save_state(str(path), opt)
    assert path.exists()
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as f:          # readable without pickle
        entries = {name: f[name] for name in f.files}
    assert all(a.dtype.kind != "O" for a in entries.values())
    assert int(entries["format_version"]) == 1
    assert int(entries["step_count"]) == 2
    assert str(entries["optimizer"]) == "Adam"


class WritesMarker:
    """A pickle payload: unpickling it creates the file at `path` (code execution)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _target(rng):
    params, opt = trained("Adam", dict(lr=0.01, amsgrad=True), rng, steps=2)
    return opt, snapshot(opt)


def test_load_state_rejects_a_pickle_and_runs_no_code(tmp_path, rng):
    marker = tmp_path / "marker"
    path = tmp_path / "ckpt.npz"
    with open(path, "wb") as f:
        pickle.dump({"format_version": 1, "payload": WritesMarker(marker)}, f)
    opt, before = _target(rng)
    with pytest.raises(ValueError, match="cannot load optimizer state"):
        fastopt.load_state(str(path), opt)
    assert not marker.exists(), "loading a checkpoint executed code"
    assert snapshot(opt) == before
    # control: the payload is live (unpickling it does write the marker)
    with open(path, "rb") as f:
        obj = pickle.load(f)
    obj["payload"].close()
    assert marker.exists()


def test_load_state_rejects_object_arrays_and_runs_no_code(tmp_path, rng):
    marker = tmp_path / "marker"
    good = tmp_path / "good.npz"
    source, _ = _target(rng)
    source.step(grads_for(source.params, rng))
    fastopt.save_state(str(good), source)
    with np.load(good, allow_pickle=False) as f:
        entries = {name: f[name] for name in f.files}
    evil = tmp_path / "evil.npz"
    np.savez(evil, **entries, extra=np.array([WritesMarker(marker)], dtype=object))
    opt, before = _target(rng)
    with pytest.raises(ValueError, match="cannot load optimizer state"):
        fastopt.load_state(str(evil), opt)
    assert not marker.exists(), "loading a checkpoint executed code"
    assert snapshot(opt) == before
    # an object array in place of a state array
    entries2 = dict(entries)
    name = next(n for n in entries if n.startswith("state/"))
    entries2[name] = np.array([1.0, "x", None], dtype=object)
    np.savez(evil, **entries2)
    with pytest.raises(ValueError, match="cannot load optimizer state"):
        fastopt.load_state(str(evil), opt)
    assert snapshot(opt) == before
    # the good file loads
    fastopt.load_state(str(good), opt)
    assert opt.step_count == 3


def test_load_state_rejects_text_as_pickle_data(tmp_path, rng):
    # a file that is neither .npz nor .npy is treated by NumPy as pickle data: refused
    path = tmp_path / "ckpt.npz"
    path.write_bytes(b"not a checkpoint at all")
    opt, before = _target(rng)
    with pytest.raises(ValueError, match="cannot load optimizer state"):
        fastopt.load_state(str(path), opt)
    assert snapshot(opt) == before


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage"], ids=["empty", "truncated_zip"])
def test_load_state_corrupt_file_changes_nothing(content, tmp_path, rng):
    path = tmp_path / "ckpt.npz"
    path.write_bytes(content)
    opt, before = _target(rng)
    with pytest.raises((ValueError, EOFError, OSError, zipfile.BadZipFile)):
        fastopt.load_state(str(path), opt)
    assert snapshot(opt) == before


def test_load_state_rejects_a_plain_npy_file(tmp_path, rng):
    # a .npy file (not an archive) under a checkpoint's name: a clear ValueError, as for every
    # other file that is not a checkpoint
    path = tmp_path / "ckpt.npz"
    with open(path, "wb") as f:
        np.save(f, np.ones(3))
    opt, before = _target(rng)
    with pytest.raises(ValueError, match="cannot load optimizer state"):
        fastopt.load_state(str(path), opt)
    assert snapshot(opt) == before
    # "ckpt.npy" names "ckpt.npy.npz" (the path rule save_state uses), which does not exist
    np.save(tmp_path / "ckpt.npy", np.ones(3))
    with pytest.raises(FileNotFoundError, match=r"ckpt\.npy\.npz"):
        fastopt.load_state(str(tmp_path / "ckpt.npy"), opt)
    assert snapshot(opt) == before


@pytest.mark.parametrize("edit, pattern", [
    (lambda e: e.update(format_version=np.asarray(2)), "format_version"),
    (lambda e: e.update(optimizer=np.asarray("AdamW")), "AdamW"),
    (lambda e: e.update({"hyper/beta2": np.asarray(0.99)}), "beta2"),
    (lambda e: e.update(step_count=np.asarray(-2)), "step_count"),
    (lambda e: e.pop("epoch"), "missing"),
    (lambda e: e.pop("state/3/v"), "slots"),
    (lambda e: e.update({"state/7/m": np.zeros(2)}), "parameter 7"),
    (lambda e: e.update({"state/3/m": np.zeros((1, 3))}), "shape"),
])
def test_load_state_validates_file_contents(edit, pattern, tmp_path, rng):
    source, _ = _target(rng)
    good = tmp_path / "good.npz"
    fastopt.save_state(str(good), source)
    with np.load(good, allow_pickle=False) as f:
        entries = {name: f[name] for name in f.files}
    edit(entries)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **entries)
    opt, before = _target(rng)
    with pytest.raises(ValueError, match=pattern):
        fastopt.load_state(str(bad), opt)
    assert snapshot(opt) == before


def test_load_state_missing_file(tmp_path, rng):
    opt, before = _target(rng)
    with pytest.raises(OSError):
        fastopt.load_state(str(tmp_path / "nope.npz"), opt)
    assert snapshot(opt) == before


# ------------------------------------------------------------------------------------------------
# Exact resume.
# ------------------------------------------------------------------------------------------------

def run_with_resume(cls_name, kw, seed, k, j, via, tmp_path, as_list=False, epoch_every=None):
    """Return (params after k+j uninterrupted steps, params after k, save, load, j steps) and
    the two optimizers."""
    rng = np.random.default_rng(seed)
    init = make_params(rng, as_list)
    gseq = [grads_for(init, rng) for _ in range(k + j)]

    def steps(opt, start, stop):
        for t in range(start, stop):
            opt.step(gseq[t])
            if epoch_every and (t + 1) % epoch_every == 0:
                opt.end_epoch()

    full_params = copy_params(init)
    full = CLASSES[cls_name](full_params, **kw)
    steps(full, 0, k + j)

    first_params = copy_params(init)
    first = CLASSES[cls_name](first_params, **kw)
    steps(first, 0, k)
    saved_params = copy_params(first_params)
    if via == "file":
        path = tmp_path / "ckpt.npz"
        fastopt.save_state(str(path), first)
    else:
        sd = first.state_dict()
    del first

    resumed_params = copy_params(saved_params)       # params restored to the saved values
    resumed = CLASSES[cls_name](resumed_params, **kw)
    if via == "file":
        fastopt.load_state(str(path), resumed)
    else:
        resumed.load_state_dict(copy.deepcopy(sd))
    assert resumed.step_count == k
    steps(resumed, k, k + j)
    return full_params, full, resumed_params, resumed


@pytest.mark.parametrize("via", ["file", "state_dict"])
@pytest.mark.parametrize("cls_name, kw", RESUME_PARAMS)
def test_resume_is_bitwise_exact(cls_name, kw, via, tmp_path):
    full_p, full, res_p, res = run_with_resume(cls_name, kw, 11, 4, 3, via, tmp_path)
    assert (res.step_count, res.epoch, res.skipped_steps) == (full.step_count, full.epoch, 0)
    for a, b in zip(values(full_p), values(res_p)):
        assert a.tobytes() == b.tobytes()
    for k in full.state:
        for s in full.state[k]:
            assert full.state[k][s].tobytes() == res.state[k][s].tobytes(), (k, s)


@pytest.mark.parametrize("via", ["file", "state_dict"])
def test_resume_after_first_step_does_not_reapply_sgd_first_step_rule(via, tmp_path):
    kw = dict(lr=0.05, momentum=0.9, dampening=0.5)
    full_p, _, res_p, _ = run_with_resume("SGD", kw, 3, 1, 2, via, tmp_path)
    for a, b in zip(values(full_p), values(res_p)):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("via", ["file", "state_dict"])
def test_resume_with_schedule_and_epochs(via, tmp_path):
    kw = dict(lr=fastopt.inverse_time_decay(0.2, decay_rate=1.0), weight_decay=0.0)
    full_p, full, res_p, res = run_with_resume("Adam", kw, 5, 5, 4, via, tmp_path,
                                               epoch_every=2)
    assert res.epoch == full.epoch == 4
    assert res.lr == full.lr == pytest.approx(0.2 / 5)
    for a, b in zip(values(full_p), values(res_p)):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("via", ["file", "state_dict"])
def test_resume_with_list_params(via, tmp_path):
    full_p, _, res_p, _ = run_with_resume("RMSprop", dict(lr=0.01, centered=True, momentum=0.9),
                                          9, 3, 3, via, tmp_path, as_list=True)
    for a, b in zip(values(full_p), values(res_p)):
        assert a.tobytes() == b.tobytes()


def test_skipped_steps_are_saved_and_restored(tmp_path, rng):
    params = make_params(rng)
    opt = fastopt.Adam(params, lr=0.01)
    opt.step(grads_for(params, rng))
    bad = grads_for(params, rng)
    bad["dW1"][0, 0] = np.nan
    assert opt.step(bad, skip_if_nonfinite=True) is False
    opt.end_epoch()
    fastopt.save_state(str(tmp_path / "c.npz"), opt)
    fresh = fastopt.Adam(copy_params(params), lr=0.01)
    fastopt.load_state(str(tmp_path / "c.npz"), fresh)
    assert (fresh.step_count, fresh.epoch, fresh.skipped_steps) == (1, 1, 1)


def test_save_state_appends_npz_suffix_like_numpy(tmp_path, rng):
    # np.savez semantics: a path without .npz gets the suffix; load_state reads that file
    _, opt = trained("Momentum", dict(lr=0.1), rng, steps=2)
    fastopt.save_state(str(tmp_path / "ckpt"), opt)
    assert os.path.exists(tmp_path / "ckpt.npz")
    fresh = fastopt.Momentum(make_params(rng), lr=0.1)
    fastopt.load_state(str(tmp_path / "ckpt.npz"), fresh)
    assert fresh.step_count == 2


# ------------------------------------------------------------------------------------------------
# Hostile files: the member list and every .npy header are checked before any data is read;
# nothing is allocated from what a file claims; nothing changes on failure.
# ------------------------------------------------------------------------------------------------

import io
import pathlib
import struct
import tracemalloc

from fastopt import checkpoint as _ckpt


def npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_header(header_text, version=(1, 0)):
    """Magic + header for an arbitrary header text (padded as NumPy pads it)."""
    h = header_text.encode("latin1")
    fmt = "<H" if version == (1, 0) else "<I"
    pre = 6 + 2 + struct.calcsize(fmt)
    h = h + b" " * (-(pre + len(h) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(h)) + h


def claim(shape, descr="<f8", fortran=False):
    return npy_header(repr({"descr": descr, "fortran_order": fortran, "shape": shape}))


def members_of(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.fixture
def good(tmp_path, rng):
    """(path of a good checkpoint, its members, a target optimizer, the target's snapshot)."""
    source, _ = _target(rng)
    source.end_epoch()
    path = tmp_path / "good.npz"
    fastopt.save_state(path, source)
    opt, before = _target(rng)
    return path, members_of(path), opt, before


def load_fails(tmp_path, members, opt, before, pattern, compression=zipfile.ZIP_STORED):
    bad = tmp_path / "bad.npz"
    write_zip(bad, members, compression)
    with pytest.raises(ValueError, match=pattern) as info:
        fastopt.load_state(bad, opt)
    assert "cannot load optimizer state" in str(info.value)
    assert snapshot(opt) == before, "a failed load changed the optimizer"
    return info.value


def test_expected_members_are_the_flattened_state_dict(rng):
    for cls_name, kw in RESUME_CASES:
        _, opt = trained(cls_name, kw, rng, steps=1)
        assert set(_ckpt._expected(opt)) == {k + ".npy" for k in _ckpt._flatten(opt.state_dict())}


def test_good_file_loads_and_matches(good):
    path, members, opt, before = good
    assert "state/0/m.npy" in members and "keys.npy" in members
    fastopt.load_state(path, opt)
    assert (opt.step_count, opt.epoch, opt.skipped_steps) == (2, 1, 0)
    assert snapshot(opt) != before


@pytest.mark.parametrize("shape", [(2 ** 34,), (2 ** 40,), (2 ** 31, 2 ** 31), (5, 4)],
                         ids=["2**34", "2**40", "2**62", "right_shape_no_data"])
def test_header_claiming_a_huge_array_allocates_nothing(shape, good, tmp_path, monkeypatch):
    path, members, opt, before = good
    members["state/0/m.npy"] = claim(shape)          # a header, and no data at all
    bad = tmp_path / "bad.npz"
    write_zip(bad, members)
    sizes = []
    real_empty = np.empty

    def recording_empty(shape, *a, **k):
        sizes.append(int(np.prod(shape, dtype=object)))
        return real_empty(shape, *a, **k)

    monkeypatch.setattr(_ckpt.np, "empty", recording_empty)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"state/0/m"):
            fastopt.load_state(bad, opt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2 ** 20, f"loading allocated {peak} bytes"
    assert all(n <= 20 for n in sizes), f"allocation sized from the file: {sizes}"
    assert snapshot(opt) == before


@pytest.mark.parametrize("header, pattern", [
    (b"not an npy member at all", "malformed"),
    (b"\x93NUMPY\x01\x00", "malformed"),                                  # no header length
    (b"\x93NUMPY\x01\x00\xff\xff{'descr'", "malformed"),                  # length beyond data
    (b"\x93NUMPY\x09\x00" + b"\x10\x00" + b" " * 16, "malformed"),        # version 9.0
    (npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (5, 4"), "malformed"),
    (npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (5, 4), }}}"), "malformed"),
    (npy_header("[1, 2, 3]"), "malformed"),
    (npy_header("{'descr': '<f8', 'shape': (5, 4)}"), "malformed"),
    (npy_header("{'descr': 'not a dtype', 'fortran_order': False, 'shape': (5, 4)}"),
     "malformed"),
    (npy_header("{'descr': '<f8', 'fortran_order': 'no', 'shape': (5, 4)}"), "malformed"),
    (npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (5.0, 4)}"), "malformed"),
    (npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (5, 4)}", (3, 0)),
     "malformed"),
    (npy_header("\"" + "x" * 70000, (2, 0)), "malformed|bytes"),
    (npy_header("\"" + "x" * 20000), "malformed"),            # over NumPy's header limit
    (claim((5, 4), fortran=True) + bytes(160), "Fortran"),
    (claim((5, 4), descr="|O") + bytes(160), "objects"),
    (claim((5, 4), descr=[("a", "|O")]) + bytes(160), "objects"),
    (claim((5, 4), descr=">f8") + bytes(160), "dtype"),
    (claim((5, 4), descr="<f4") + bytes(80), "dtype"),
    (claim((20,)) + bytes(160), "shape"),
    (claim((5, 4)) + bytes(159), "bytes"),                    # one data byte short
    (claim((5, 4)) + bytes(161), "bytes"),                    # one data byte extra
], ids=lambda v: None if isinstance(v, bytes) else v)
def test_malformed_or_mismatched_state_header(header, pattern, good, tmp_path):
    _, members, opt, before = good
    members["state/0/m.npy"] = header
    err = load_fails(tmp_path, members, opt, before, pattern)
    assert "state/0/m" in str(err)


def test_huge_header_length_in_a_compressed_member_is_not_decompressed(good, tmp_path):
    # a version-2 header claiming a 2 GiB header, followed by 64 MiB of zeros deflated to
    # ~64 KiB: refused from the member's size, before the header is read
    _, members, opt, before = good
    bad = tmp_path / "bad.npz"
    del members["state/0/m.npy"]
    write_zip(bad, members)
    with zipfile.ZipFile(bad, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("state/0/m.npy", "w", force_zip64=True) as m:
            m.write(b"\x93NUMPY\x02\x00" + struct.pack("<I", 2 ** 31))
            chunk = bytes(2 ** 20)
            for _ in range(64):
                m.write(chunk)
    assert bad.stat().st_size < 2 ** 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"state/0/m.* bytes, more than"):
            fastopt.load_state(bad, opt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2 ** 20, f"loading allocated {peak} bytes"
    assert snapshot(opt) == before


def test_version_2_headers_are_read(good, tmp_path):
    _, members, opt, _ = good
    arr = np.lib.format.read_array(io.BytesIO(members["state/0/m.npy"]))
    members["state/0/m.npy"] = npy_header(
        repr({"descr": "<f8", "fortran_order": False, "shape": (5, 4)}), (2, 0)) + arr.tobytes()
    write_zip(tmp_path / "v2.npz", members)
    fastopt.load_state(tmp_path / "v2.npz", opt)
    assert opt.state["W1"]["m"].tobytes() == arr.tobytes()


def test_unknown_member_is_refused_and_never_read(good, tmp_path, monkeypatch):
    _, members, opt, before = good
    bad = tmp_path / "bad.npz"
    write_zip(bad, members)
    # a large, highly compressible extra member (a small "zip bomb")
    with zipfile.ZipFile(bad, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("extra.npy", "w", force_zip64=True) as m:
            chunk = bytes(2 ** 20)
            for _ in range(64):
                m.write(chunk)
    opened = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, *a, **k):
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    with pytest.raises(ValueError, match=r"unknown entries 'extra'"):
        fastopt.load_state(bad, opt)
    assert "extra.npy" not in opened
    assert opened == [], f"members were read before the member list was checked: {opened}"
    assert snapshot(opt) == before


def test_unknown_member_among_valid_ones_only_expected_are_read(good, tmp_path, monkeypatch):
    # even a load that fails late never opens anything outside the expected set
    _, members, opt, before = good
    opened = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, *a, **k):
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    bad = tmp_path / "bad.npz"
    members["format_version.npy"] = npy_bytes(np.asarray(2))
    write_zip(bad, members)
    opened.clear()
    with pytest.raises(ValueError, match="format_version"):
        fastopt.load_state(bad, opt)
    assert set(opened) <= set(_ckpt._expected(opt)) and opened
    assert snapshot(opt) == before


@pytest.mark.parametrize("name", ["step_count.npy", "hyper/beta1.npy", "keys.npy",
                                  "state/3/v_max.npy", "optimizer.npy"])
def test_missing_member_is_named(name, good, tmp_path):
    _, members, opt, before = good
    del members[name]
    load_fails(tmp_path, members, opt, before, "missing entries .*" + name[:-4])


def test_duplicate_member_is_refused(good, tmp_path):
    _, members, opt, before = good
    bad = tmp_path / "bad.npz"
    write_zip(bad, members)
    with pytest.warns(UserWarning, match="Duplicate"):
        with zipfile.ZipFile(bad, "a") as zf:
            zf.writestr("step_count.npy", npy_bytes(np.asarray(10 ** 6)))
    with pytest.raises(ValueError, match="more than once"):
        fastopt.load_state(bad, opt)
    assert snapshot(opt) == before


@pytest.mark.parametrize("name, value, pattern", [
    ("step_count", np.array([3, 4]), "integer scalar"),
    ("step_count", np.array([[3]]), "integer scalar"),
    ("step_count", np.asarray(np.uint64(2 ** 64 - 1)), "step_count"),
    ("step_count", np.asarray(2 ** 53), "step_count"),
    ("epoch", np.asarray(-1), "epoch"),
    ("step_count", np.asarray(True), "integer scalar"),
    ("step_count", np.asarray(1.5), "integer scalar"),
    ("step_count", np.asarray(2.0), "integer scalar"),
    ("skipped_steps", np.asarray("3"), "integer scalar"),
    ("epoch", np.asarray(1 + 0j), "integer scalar"),
    ("format_version", np.asarray(1.0), "format_version"),
    ("format_version", np.asarray(True), "format_version"),
    ("format_version", np.asarray(2), "format_version"),
    ("format_version", np.asarray([1]), "format_version"),
    ("hyper/beta1", np.asarray("0.9"), "hyper/beta1"),
    ("hyper/beta1", np.asarray(0.9 + 0j), "hyper/beta1"),
    ("hyper/beta1", np.full(10, 0.9), "hyper/beta1"),
    ("hyper/amsgrad", np.asarray(1), "amsgrad"),                # an int is not a bool
    ("hyper/eps", np.asarray(False), "eps"),                    # a bool is not a number
    ("optimizer", np.asarray(["Adam"]), "optimizer"),
    ("optimizer", np.asarray(7), "optimizer"),
    ("optimizer", np.asarray("A" * 300), "optimizer"),
    ("keys", np.array(["W1", "b1", "W2"]), "keys"),
    ("keys", np.array([1, 2, 3, 4]), "keys"),
    ("keys", np.array(["W1", "b1", "W2", "b3"]), "names"),
    ("keys", np.array([["W1", "b1", "W2", "b2"]]), "keys"),
])
def test_scalar_and_string_entries_are_checked(name, value, pattern, good, tmp_path):
    _, members, opt, before = good
    members[name + ".npy"] = npy_bytes(value)
    load_fails(tmp_path, members, opt, before, pattern)


@pytest.mark.parametrize("name, shape, descr", [
    ("step_count", (2 ** 40,), "<i8"),
    ("hyper/beta1", (2 ** 40,), "<f8"),
    ("optimizer", (), "<U1000000000"),
    ("keys", (4,), "<U1000000000"),
    ("keys", (2 ** 40,), "<U2"),
    ("step_count", (), "V1000000000"),
])
def test_scalar_headers_cannot_inflate(name, shape, descr, good, tmp_path):
    _, members, opt, before = good
    members[name + ".npy"] = claim(shape, descr)
    tracemalloc.start()
    try:
        load_fails(tmp_path, members, opt, before, name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2 ** 20, f"loading allocated {peak} bytes"


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_savez_written_files_load(compression, good, tmp_path):
    # np.savez / np.savez_compressed archives of the same entries are accepted
    path, members, opt, _ = good
    write_zip(tmp_path / "c.npz", members, compression)
    fastopt.load_state(tmp_path / "c.npz", opt)
    assert (opt.step_count, opt.epoch) == (2, 1)


def test_counter_limits_in_file(good, tmp_path):
    _, members, opt, before = good
    members["step_count.npy"] = npy_bytes(np.asarray(2 ** 53 - 1))
    members["skipped_steps.npy"] = npy_bytes(np.asarray(np.uint32(7)))
    write_zip(tmp_path / "ok.npz", members)
    fastopt.load_state(tmp_path / "ok.npz", opt)
    assert (opt.step_count, opt.skipped_steps) == (2 ** 53 - 1, 7)
    assert type(opt.step_count) is int


@pytest.mark.parametrize("cut", [0.5, 0.9, -1, -22, 30])
def test_truncated_file(cut, good, tmp_path):
    path, _, opt, before = good
    data = path.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(data) + cut)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(data[:n])
    with pytest.raises(ValueError, match="cannot load optimizer state"):
        fastopt.load_state(bad, opt)
    assert snapshot(opt) == before


def _data_offset(path, member):
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = path.read_bytes()
    off = info.header_offset
    assert raw[off:off + 4] == b"PK\x03\x04"
    nlen, xlen = struct.unpack("<HH", raw[off + 26:off + 30])
    return off + 30 + nlen + xlen, info.file_size


@pytest.mark.parametrize("member, where", [("state/2/v.npy", -1), ("state/0/m.npy", -100),
                                           ("step_count.npy", -1), ("keys.npy", 9)])
def test_flipped_bytes_fail_the_crc(member, where, good, tmp_path):
    path, _, opt, before = good
    start, size = _data_offset(path, member)
    raw = bytearray(path.read_bytes())
    pos = start + (where % size)
    raw[pos] ^= 0x01
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="cannot load optimizer state") as info:
        fastopt.load_state(bad, opt)
    assert snapshot(opt) == before
    assert "CRC" in str(info.value) or "header" in str(info.value)


def test_failure_late_in_the_file_changes_nothing(good, tmp_path):
    # the last state member is bad: everything before it was read, but nothing was copied
    _, members, opt, before = good
    last = sorted(n for n in members if n.startswith("state/3/"))[-1]
    members[last] = members[last][:-1]
    load_fails(tmp_path, members, opt, before, "state/3")


def test_load_state_dict_counter_rules(rng):
    _, source = trained("Adam", dict(lr=0.01), rng, steps=2)
    bad_values = {
        "step_count": [np.array(3), np.array([3]), 2 ** 64 - 1, 2 ** 53, True, 1.5, "3", None,
                       np.float64(2.0), -1],
        "epoch": [np.array(0), False, 2 ** 53, 0.0],
        "skipped_steps": [np.array([0]), True, 2 ** 70],
        "format_version": [1.0, True, np.array(1), np.float64(1.0), "1", 2, None],
    }
    _, target = trained("Adam", dict(lr=0.01), rng, steps=1)
    before = snapshot(target)
    for name, values in bad_values.items():
        for v in values:
            sd = source.state_dict()
            sd[name] = v
            with pytest.raises(ValueError, match=name):
                target.load_state_dict(sd)
            assert snapshot(target) == before, (name, v)
    sd = source.state_dict()
    sd["step_count"], sd["epoch"] = 2 ** 53 - 1, np.int64(4)
    target.load_state_dict(sd)
    assert (target.step_count, target.epoch) == (2 ** 53 - 1, 4)


@pytest.mark.parametrize("mutate", [
    lambda sd: sd.update(optimizer=np.asarray("Adam")),
    lambda sd: sd.update(keys="W1b1W2b2"),
    lambda sd: sd.update(keys=[np.zeros(2)] * 4),
    lambda sd: sd["hyper"].update(beta1=np.array([0.9, 0.9])),
    lambda sd: sd["hyper"].update(amsgrad=1),
    lambda sd: sd["hyper"].update(eps=True),
    lambda sd: sd["state"]["b2"].update(m=np.zeros((3, 1), dtype=object)),
], ids=["optimizer_array", "keys_str", "keys_arrays", "hyper_array", "bool_as_int",
        "float_as_bool", "object_state"])
def test_load_state_dict_rejects_odd_types(mutate, rng):
    _, source = trained("Adam", dict(lr=0.01), rng, steps=2)
    _, target = trained("Adam", dict(lr=0.01), rng, steps=1)
    before = snapshot(target)
    sd = source.state_dict()
    mutate(sd)
    with pytest.raises(ValueError, match="cannot load optimizer state"):
        target.load_state_dict(sd)
    assert snapshot(target) == before


# ------------------------------------------------------------------------------------------------
# Atomic save, path rule, argument order.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
@pytest.mark.parametrize("existing", [True, False])
def test_interrupted_save_keeps_the_old_checkpoint(exc, existing, tmp_path, rng, monkeypatch):
    _, opt = trained("Adam", dict(lr=0.01, amsgrad=True), rng, steps=2)
    path = tmp_path / "ckpt.npz"
    if existing:
        fastopt.save_state(path, opt)
        old = path.read_bytes()
    opt.step(grads_for(opt.params, rng))
    real_write = np.lib.format.write_array
    calls = []

    def interrupted_write(fp, array, *a, **k):
        calls.append(1)
        if len(calls) == 9:                  # part of a state array, then the interrupt
            real_write(io.BytesIO(), array, *a, **k)
            fp.write(b"\x93NUMPY" + bytes(50))
            raise exc("interrupted mid-write")
        return real_write(fp, array, *a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", interrupted_write)
    with pytest.raises(exc):
        fastopt.save_state(path, opt)
    assert len(calls) == 9
    assert sorted(os.listdir(tmp_path)) == (["ckpt.npz"] if existing else [])
    if existing:
        assert path.read_bytes() == old
        monkeypatch.undo()
        fresh = fastopt.Adam(make_params(rng), lr=0.01, amsgrad=True)
        fastopt.load_state(path, fresh)
        assert fresh.step_count == 2


def test_save_replaces_atomically_and_fsyncs(tmp_path, rng, monkeypatch):
    _, opt = trained("Momentum", dict(lr=0.1), rng, steps=2)
    path = tmp_path / "ckpt.npz"
    path.write_bytes(b"old")
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                 real_fsync(fd))[1])

    def recording_replace(src, dst):
        assert path.read_bytes() == b"old"          # the target is untouched until the rename
        assert synced == [src], "the temporary file must be fsynced before the rename"
        assert os.path.dirname(src) == str(tmp_path)
        replaced.append((src, dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    fastopt.save_state(path, opt)
    assert len(replaced) == 1 and replaced[0][1] == str(path)
    assert synced[0] == replaced[0][0]
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert zipfile.is_zipfile(path)


def test_saved_file_mode_follows_umask(tmp_path, rng):
    _, opt = trained("Momentum", dict(lr=0.1), rng, steps=1)
    old = os.umask(0o027)
    try:
        fastopt.save_state(tmp_path / "a.npz", opt)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.npz").st_mode & 0o777 == 0o640
    os.chmod(tmp_path / "a.npz", 0o604)
    fastopt.save_state(tmp_path / "a.npz", opt)      # an existing file keeps its mode
    assert os.stat(tmp_path / "a.npz").st_mode & 0o777 == 0o604


@pytest.mark.parametrize("given, file", [("ckpt", "ckpt.npz"), ("ckpt.npz", "ckpt.npz"),
                                         ("ckpt.pt", "ckpt.pt.npz"), ("c.NPZ", "c.NPZ.npz")])
@pytest.mark.parametrize("as_path", [False, True])
def test_save_and_load_share_the_path_rule(given, file, as_path, tmp_path, rng):
    _, opt = trained("Momentum", dict(lr=0.1), rng, steps=2)
    p = tmp_path / given if as_path else str(tmp_path / given)
    fastopt.save_state(p, opt)
    assert os.listdir(tmp_path) == [file]
    fresh = fastopt.Momentum(make_params(rng), lr=0.1)
    fastopt.load_state(p, fresh)
    assert fresh.step_count == 2
    fresh2 = fastopt.Momentum(make_params(rng), lr=0.1)
    fastopt.load_state(pathlib.Path(tmp_path / file), fresh2)
    assert fresh2.step_count == 2


@pytest.mark.parametrize("func", [fastopt.save_state, fastopt.load_state])
def test_swapped_or_wrong_arguments(func, tmp_path, rng):
    _, opt = trained("Adam", dict(lr=0.01), rng, steps=1)
    path = tmp_path / "ckpt.npz"
    fastopt.save_state(path, opt)
    old = path.read_bytes()
    before = snapshot(opt)
    with pytest.raises(TypeError, match=r"\(path, opt\): the path comes first"):
        func(opt, str(path))
    with pytest.raises(TypeError, match=r"\(path, opt\): the path comes first"):
        func(opt, path)
    with pytest.raises(TypeError, match="optimizer"):
        func(str(path), {"W1": np.zeros(3)})
    with pytest.raises(TypeError, match="optimizer"):
        func(str(path), None)
    with pytest.raises(TypeError, match="path"):
        func(3, opt)
    with pytest.raises(TypeError, match="path"):
        func(b"ckpt.npz", opt)
    assert snapshot(opt) == before
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["ckpt.npz"]
