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
    # np.load returns an ndarray (not an archive) for .npy files: a clear ValueError is expected,
    # as for every other file that is not a checkpoint
    path = tmp_path / "ckpt.npy"
    np.save(path, np.ones(3))
    opt, before = _target(rng)
    with pytest.raises(ValueError, match="cannot load optimizer state"):
        fastopt.load_state(str(path), opt)
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
