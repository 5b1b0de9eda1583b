"""Memory safety and integrity: compiled code never trusts mutable Python state or
file contents, saves are one consistent snapshot, and the BLAS thread count has one owner.

One section per kind of fault (1: buffers handed to compiled code, 2: load, 3: saving
under concurrency and interrupts, 6: every setter validates alike, 7: the process-wide thread
count).  The fuzz tests are in tests/test_safety_fuzz.py.
"""
import io as _io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn._core import _epoch, _layers, _losses, _network, _sgd
from fastnn.runtime import threads
from fastnn.io import saving as fio
from fastnn.io.saving import ModelFileError
from fastnn.nn.model import MLP, Dense
from fastnn.optim.optimizers import SGD, Adam


def check_error(call, exc, *fragments):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in the message {message!r}"
    # no "None" placeholders, unless None is the value the message reports
    assert "None" not in message or any("None" in f for f in fragments), message
    return message


def data(n=64, n_in=4, n_classes=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)).astype(dtype), rng.integers(0, n_classes, n)


# =========================================================================================
# Kind 1: what compiled code reads or writes through is owned, or checked at the boundary
# =========================================================================================

def test_params_and_grads_cannot_be_rebound_to_short_vectors():
    # the reported example: predict read past the end, fit with Adam wrote past it
    model = MLP([64, 512, 512, 10], seed=0)
    X = np.ones((3, 64), np.float32)
    before = model.predict(X)
    check_error(lambda: setattr(model, "params", np.zeros(10, np.float32)), ValueError,
                "params has shape (10,)", f"expected ({model.n_params},)")
    check_error(lambda: setattr(model, "grads", np.zeros(10, np.float32)), ValueError,
                "grads has shape (10,)", f"expected ({model.n_params},)")
    np.testing.assert_array_equal(model.predict(X), before)



def _set_strides(array, strides):
    """``array.strides = strides``, as a user can still write it: NumPy 2.4 deprecates the
    setter (a later NumPy will remove it, and then no one can change strides in place); the
    warning is this test's expected consequence, not something to leak into the run."""
    if np.lib.NumpyVersion(np.__version__) >= "2.4.0":
        with pytest.warns(DeprecationWarning, match="strides"):
            array.strides = strides
    else:
        array.strides = strides


@pytest.mark.parametrize("name", ["params", "grads"])
@pytest.mark.parametrize("change", ["dtype", "shape", "strides"])
def test_owned_vectors_changed_in_place_are_a_clear_error(name, change):
    # numpy lets a user change an array's dtype, shape or strides in place; before, the model
    # then reported the new dtype and compiled calls failed with "No matching signature
    # found" or "Buffer dtype mismatch", naming nothing
    X, y = data(16)
    model = MLP([4, 6, 3], seed=0, dtype=np.float64)
    vector = getattr(model, name)
    if change == "dtype":
        vector.dtype = np.float32        # twice as many float32 entries
    elif change == "shape":
        vector.shape = (1, vector.size)
    else:
        _set_strides(vector, (0,))
    assert model.dtype == np.float64
    for call in (lambda: model.predict(X), lambda: model.fit(X, y, "cross_entropy", epochs=1),
                 lambda: model.loss_and_grad(X, y, "cross_entropy"),
                 lambda: Adam().step(model), lambda: model.jacobian(X)):
        try:
            call()
        except ValueError as exc:
            assert f"model.{name} was changed in place" in str(exc), str(exc)
            assert "float64 vector of 51 entries" in str(exc), str(exc)
        else:  # only calls that do not use grads may succeed when grads changed
            assert name == "grads", call


def test_assigning_params_copies_into_the_owned_buffer_and_keeps_the_views():
    model = MLP([3, 4, 2], seed=0)
    owned = model.params
    new = np.arange(model.n_params, dtype=np.float64) / 100
    model.params = new
    assert model.params is owned
    np.testing.assert_array_equal(model.params, new.astype(np.float32))
    assert np.shares_memory(model.layers[0].W, model.params)
    np.testing.assert_array_equal(model.layers[1].b, model.params[-2:])
    model.grads = np.ones(model.n_params)
    assert np.shares_memory(model.layers[0].dW, model.grads)
    assert (model.layers[1].db == 1).all()


def test_structure_the_compiled_network_was_built_from_is_read_only():
    model = MLP([3, 4, 2], seed=0)
    for name, value in (("dtype", np.float64), ("layer_sizes", [3, 100, 2]),
                        ("layers", ()), ("n_params", 3)):
        with pytest.raises(AttributeError):
            setattr(model, name, value)
    sizes = model.layer_sizes
    sizes[0] = 100  # a copy: the model is unchanged
    assert model.n_inputs == 3 and model.layer_sizes == [3, 4, 2]
    layer = model.layers[0]
    with pytest.raises(AttributeError):
        layer.n_in = 100
    check_error(lambda: setattr(layer, "activation", "tanh"), AttributeError,
                "cannot change once it belongs to a model")
    check_error(lambda: setattr(layer, "alpha", 0.5), AttributeError, "cannot change")
    check_error(lambda: setattr(model, "output", "bogus"), ValueError, "output='bogus'")
    check_error(lambda: setattr(model, "loss_", 3), TypeError, "loss must be", "got int")
    model.loss_ = "cross_entropy"  # checked like fit's loss argument
    assert model.loss_.output_name == "softmax"
    check_error(lambda: setattr(model, "output", "sigmoid"), ValueError, "does not match")


def _spec_args(model):
    return model._spec, model.params, model.grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_compiled_entry_points_check_every_buffer(dtype):
    model = MLP([4, 8, 3], seed=0, dtype=dtype)
    spec, params, grads = _spec_args(model)
    X = np.ones((5, 4), dtype)
    out = np.empty((5, 3), dtype)
    short = np.zeros(7, dtype)
    check_error(lambda: _network.forward_into(spec, short, X, out, 0, 1024), ValueError,
                "params has 7 entries", f"{model.n_params} parameters")
    check_error(lambda: _network.forward_into(spec, params, np.ones((5, 9), dtype), out, 0,
                                              1024), ValueError, "X has 9 features")
    check_error(lambda: _network.forward_into(spec, params, X, np.empty((5, 2), dtype), 0,
                                              1024), ValueError, "out has shape (5, 2)")
    check_error(lambda: _network.forward_into(spec, params, X, out, 99, 1024), ValueError,
                "unknown loss code 99")
    labels = np.zeros(5, np.intp)
    check_error(lambda: _network.loss_grad_into(spec, params, short, X, 4, 0, 1.0, None,
                                                labels, None, None, 1.0), ValueError,
                "grads has 7 entries")
    check_error(lambda: _network.loss_grad_into(spec, params, grads, X, 4, 0, 1.0, None,
                                                labels[:3], None, None, 1.0), ValueError,
                "labels has 3 entries")
    check_error(lambda: _network.loss_grad_into(spec, params, grads, X, 0, 0, 1.0,
                                                np.ones((5, 2), dtype), None, None, None,
                                                1.0), ValueError, "Y has shape (5, 2)")
    check_error(lambda: _network.loss_grad_into(spec, params, grads, X, 0, 0, 1.0,
                                                np.ones((5, 3), dtype), None,
                                                np.ones(2, dtype), None, 1.0), ValueError,
                "sample_weight has 2 entries")
    # optimizer state: Adam needs two vectors, SGD with momentum one
    full = np.zeros(model.n_params, dtype)
    empty = np.zeros(0, dtype)
    check_error(lambda: _sgd.update_params(spec, params, grads, full, short, _sgd.OPT_ADAM,
                                           0.1, 0, 0, 0, 0, 0.9, 0.99, 1e-8, 1), ValueError,
                "optimizer state 2 has 7 entries")
    check_error(lambda: _sgd.update_params(spec, params, grads, empty, empty, _sgd.OPT_SGD,
                                           0.1, 0.9, 0, 0, 0, 0, 0, 0, 1), ValueError,
                "SGD with momentum=0.9 needs optimizer state 1")
    check_error(lambda: _sgd.update_params(spec, params, grads, None, None, 7, 0.1, 0, 0, 0,
                                           0, 0, 0, 0, 1), ValueError, "optimizer code 7")
    check_error(lambda: _sgd.update_params(spec, short, grads, None, None, 0, 0.1, 0, 0, 0,
                                           0, 0, 0, 0, 1), ValueError, "params has 7 entries")


def test_train_epoch_checks_workspace_batch_and_state_sizes(epoch_kwargs):
    model = MLP([4, 8, 3], seed=0)
    X, y = data(20)
    labels = y.astype(np.intp)
    ok = _epoch.train_epoch(**epoch_kwargs(model, X, labels, 8))
    assert ok[4] == _epoch.STATUS_OK
    dt = model.dtype
    bad = [
        (dict(acts=np.empty(3, dt)), "the workspace acts has 3 entries"),
        (dict(delta1=np.empty(3, dt)), "the workspace delta1 has 3 entries"),
        (dict(X_batch=np.empty((2, 4), dt)), "X_batch has shape (2, 4)"),
        (dict(X_batch=None), "X_batch is missing"),
        (dict(labels_batch=np.empty(2, np.intp)), "labels_batch has shape (2,)"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(X=np.ones((20, 5), dt)), "X has 5 features"),
        (dict(labels=labels[:5]), "labels has 5 entries"),
        (dict(order=np.full(20, -4, np.intp)), "order[0] is -4"),
        (dict(grads=np.zeros(3, dt)), "grads has 3 entries"),
        (dict(momentum=0.9), "needs optimizer state 1"),
        (dict(opt_kind=_sgd.OPT_ADAM), "needs optimizer state 1"),
        (dict(t0=-1), "step count is -1"),
        (dict(loss_kind=-1), "unknown loss code -1"),
    ]
    for change, fragment in bad:
        # (built inside the call: the fit's EpochConfig refuses batch_size=0 itself)
        check_error(lambda: _epoch.train_epoch(**epoch_kwargs(model, X, labels, 8, **change)),
                    ValueError, fragment)


def test_netspec_and_layer_wrappers_check_their_arguments():
    check_error(lambda: _network.NetSpec([3, 4], [0, 0], [0.0]), ValueError,
                "acts has 2 entries; expected 1")
    check_error(lambda: _network.NetSpec([3, 4], [11], [0.0]), ValueError, "acts=[11]")
    check_error(lambda: _network.NetSpec([3, 0], [0], [0.0]), ValueError, "sizes=[3, 0]")
    check_error(lambda: _network.NetSpec([3, 2**40], [0], [0.0]), ValueError, "sizes=")
    check_error(lambda: _network.NetSpec([3], [], []), ValueError, "at least 2")
    check_error(lambda: _network.NetSpec([3, 4], [0], [np.nan]), ValueError, "alphas")
    # the canary sanitize.sh used to rely on: a bias of 2 entries for 5 units
    check_error(lambda: _layers.forward_into(np.ones((4, 3)), np.ones((3, 5)), np.ones(2),
                                             np.empty((4, 5)), 0, 0.0), ValueError,
                "b has shape (2,); expected (5,)")
    args = [np.ones((4, 3)), np.ones((3, 5)), np.ones((4, 5)), np.ones((4, 5)),
            np.empty((4, 5)), np.empty((3, 5)), np.empty(5), np.empty((4, 3)), 0, 0.0]
    for i, name in ((2, "A"), (3, "dA"), (4, "D"), (5, "dW"), (6, "db"), (7, "dX")):
        bad = list(args)
        bad[i] = np.empty((1,) * args[i].ndim)
        check_error(lambda: _layers.backward_into(*bad), ValueError, f"{name} has shape")
    check_error(lambda: _losses.output_into(11, np.ones((2, 2))), ValueError, "loss code 11")


def test_a_callback_raising_momentum_mid_fit_gets_its_velocity():
    X, y = data(64)
    model = MLP([4, 8, 3], seed=0)
    opt = SGD(lr=0.05)

    def raise_momentum(epoch, logs):
        opt.momentum = 0.9

    fastnn.fit(model, X, y, "cross_entropy", opt, epochs=3, batch_size=16, shuffle=False,
               callbacks=[raise_momentum])
    assert opt.state[0].shape == (model.n_params,)
    # the same as one epoch without momentum, then two with it from a zero velocity
    reference = MLP([4, 8, 3], seed=0)
    ref_opt = SGD(lr=0.05)
    fastnn.fit(reference, X, y, "cross_entropy", ref_opt, epochs=1, batch_size=16,
               shuffle=False)
    ref_opt.momentum = 0.9
    fastnn.fit(reference, X, y, "cross_entropy", ref_opt, epochs=2, batch_size=16,
               shuffle=False)
    np.testing.assert_array_equal(model.params, reference.params)


@pytest.mark.parametrize("attribute, value, fragment", [
    ("beta1", 1.5, "beta1=1.5"), ("lr", float("nan"), "lr=nan"), ("eps", -1.0, "eps=-1.0"),
    ("t", -3, "t (the optimizer's step count)=-3"), ("weight_decay", "x", "weight_decay must"),
])
def test_a_hyperparameter_broken_mid_fit_raises_before_compiled_code(attribute, value,
                                                                      fragment):
    X, y = data(32)
    model = MLP([4, 8, 3], seed=0)
    opt = Adam(lr=0.01)

    def break_it(epoch, logs):
        setattr(opt, attribute, value)

    before = None

    def remember(epoch, logs):
        nonlocal before
        before = model.get_flat_params()

    exc = (TypeError, ValueError)
    check_error(lambda: fastnn.fit(model, X, y, "cross_entropy", opt, epochs=3,
                                   callbacks=[remember, break_it]), exc, fragment)
    np.testing.assert_array_equal(model.params, before)  # nothing ran with the bad value



@pytest.mark.parametrize("target, attribute, value, fragment", [
    ("opt", "completed_epochs", -1, "completed_epochs (the optimizer's epoch count)=-1"),
    ("opt", "completed_epochs", None, "must be an integer; got None"),
    ("opt", "completed_epochs", 2**70, "completed_epochs (the optimizer's epoch count)="),
    ("opt", "completed_epochs", 1.5, "must be an integer; got 1.5"),
    ("schedule", "step_size", 0, "step_size=0; expected step_size >= 1"),
    ("schedule", "gamma", float("inf"), "gamma=inf"),
    ("schedule", "step_size", "x", "step_size must be an integer"),
])
def test_epoch_count_and_schedule_settings_broken_mid_fit_are_checked(target, attribute,
                                                                       value, fragment):
    # before: a ZeroDivisionError inside StepDecay.lr, numpy's "expected non-negative
    # integer" or "Python int too large to convert to C unsigned long" from the shuffling,
    # "unsupported operand type(s)": the epoch count and the schedule's settings are plain
    # attributes, now checked as the constructors check them, before and during a fit
    X, y = data(32)
    for when in ("before", "during"):
        model = MLP([4, 8, 3], seed=0)
        opt = SGD(lr=0.01, schedule=fastnn.optim.optimizers.StepDecay(step_size=2, gamma=0.5))
        obj = opt if target == "opt" else opt.schedule
        before = model.get_flat_params()

        def break_it(epoch, logs):
            nonlocal before
            before = model.get_flat_params()
            setattr(obj, attribute, value)
        if when == "before":
            setattr(obj, attribute, value)
        check_error(lambda: fastnn.fit(model, X, y, "cross_entropy", opt, epochs=3,
                                       callbacks=[break_it] if when == "during" else []),
                    (TypeError, ValueError), fragment)
        np.testing.assert_array_equal(model.params, before)  # nothing ran with the bad value


def test_optimizer_state_assignment_is_checked_and_refitted_to_the_model():
    model = MLP([4, 8, 3], seed=0)
    X, y = data(16)
    model.loss_and_grad(X, y, "cross_entropy")
    opt = Adam(lr=0.01)
    check_error(lambda: setattr(opt, "state", "moments"), TypeError, "state must be a pair",
                "(None, None)")
    check_error(lambda: setattr(opt, "state", (np.zeros(3), None)), ValueError,
                "two arrays or (None, None)")
    check_error(lambda: setattr(opt, "state", (np.zeros((2, 2)), np.zeros((2, 2)))),
                ValueError, "state[0] is a float64 array of shape (2, 2)")
    check_error(lambda: setattr(opt, "state", (np.zeros(4), np.zeros(4, np.float32))),
                ValueError, "state[1]")
    shared = np.zeros(model.n_params, np.float32)
    check_error(lambda: setattr(opt, "state", (shared, shared[:])), ValueError,
                "share memory")
    ro = np.zeros(model.n_params, np.float32)
    ro.flags.writeable = False
    check_error(lambda: setattr(opt, "state", (ro, ro)), ValueError, "read-only")
    # a state of the wrong length (first moment fits, second does not) is replaced, not used
    opt.state = (np.zeros(model.n_params, np.float32), np.zeros(3, np.float32))
    opt.t = 5
    other = model.copy()
    opt.step(model)
    Adam(lr=0.01).step(other)
    np.testing.assert_array_equal(model.params, other.params)


# =========================================================================================
# Kind 2: load trusts nothing in the file
# =========================================================================================

def _npy(array=None, header=None, payload=None):
    """The bytes of one .npy entry: np.save of array, or a crafted header and payload."""
    buf = _io.BytesIO()
    if header is None:
        np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(payload)
    return buf.getvalue()


def _model_file(tmp_path, model, optimizer=None, name="m.npz"):
    path = tmp_path / name
    model.save(path, optimizer=optimizer)
    with zipfile.ZipFile(path) as zf:
        entries = {n[:-4]: zf.read(n) for n in zf.namelist()}
    description = json.loads(str(np.load(_io.BytesIO(entries["description"]))))
    return path, entries, description


def _write(path, entries, description=None, compression=zipfile.ZIP_STORED):
    entries = dict(entries)
    if description is not None:
        entries["description"] = _npy(np.array(json.dumps(description)))
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, payload in entries.items():
            zf.writestr(name + ".npy", payload)


def _load_error(path, **kwargs):
    with pytest.raises(ModelFileError) as info:
        fastnn.load(path, **kwargs)
    assert os.fspath(path) in str(info.value)
    return str(info.value)


def test_declared_sizes_are_cross_checked_before_anything_is_allocated(tmp_path):
    # the reported example: a 2 KB file declaring a 400-million-parameter network
    path, entries, d = _model_file(tmp_path, MLP([2, 2], seed=0))
    for sizes, n_params, header_n in (([20000, 20000], 8, 8),
                                      ([20000, 20000], 400_020_000, 8),
                                      ([20000, 20000], 400_020_000, 400_020_000)):
        d.update(layer_sizes=sizes, n_params=n_params,
                 layers=[dict(d["layers"][0])])
        crafted = dict(entries, params=_npy(header={"descr": "<f4", "fortran_order": False,
                                                    "shape": (header_n,)},
                                            payload=b"\0" * 32))
        _write(path, crafted, d)
        assert path.stat().st_size < 4096
        tracemalloc.start()
        try:
            message = _load_error(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 * 2**20, f"loading a {path.stat().st_size}-byte file took {peak} bytes"
        assert any(f in message for f in ("n_params", "'params' entry")), message


@pytest.mark.parametrize("change, fragments", [
    (dict(loss="mse"), "its loss is 'mse'; expected a JSON object"),
    (dict(loss={"name": "nope"}), "its loss is invalid"),
    (dict(layer_sizes=[2, "2"]), "layer_sizes[1]"),
    (dict(layer_sizes=[2, 0]), "its layer_sizes[1]=0; expected layer_sizes[1] >= 1"),
    (dict(layer_sizes=[2, True]), "layer_sizes[1] must be an integer; got True"),
    (dict(layer_sizes="22"), "its layer_sizes is '22'"),
    (dict(n_params=-1), "its n_params=-1; expected n_params >= 1"),
    (dict(dtype="float16"), "its dtype='float16' is not supported"),
    (dict(dtype=["float32"]), "its dtype=['float32'] is not supported"),
    (dict(layers=[{"activation": "relu"}]), "'layers[0].alpha'"),
    (dict(layers=[{"activation": "swish", "alpha": 0.01}]), "layers[0].activation"),
    (dict(layers=[{"activation": "relu", "alpha": -1}]), "layers[0].alpha=-1; expected layers[0].alpha >= 0.0"),
    (dict(layers=[{"activation": "relu", "alpha": 0.01, "negative_slope": 0.01,
                   "init": "he"}]), "layers[0].init"),
    (dict(layers=[{"activation": "relu", "alpha": 0.01, "negative_slope": 0.01,
                   "init": {"name": "normal", "std": -1}}]),
     "layers[0].init is invalid"),
    (dict(layers=[]), "its layers is []"),
    (dict(output=3), "its output=3 is not supported"),
    (dict(params_sha256=None), ("its params_sha256 is None", "None")),
])
def test_every_description_field_is_checked_like_the_constructors(tmp_path, change,
                                                                   fragments):
    path, entries, d = _model_file(tmp_path, MLP([2, 2], seed=0))
    d.update(change)
    _write(path, entries, d)
    fragments = (fragments,) if isinstance(fragments, str) else fragments
    check_error(lambda: fastnn.load(path), ModelFileError, *fragments)


@pytest.mark.parametrize("change, fragment", [
    (lambda o: o.update(t=-1), "optimizer.t=-1; expected optimizer.t >= 0"),
    (lambda o: o.update(t=1.5), "optimizer.t must be an integer; got 1.5"),
    (lambda o: o.update(t=2**70), "optimizer.t"),
    (lambda o: o.update(has_state="yes"), "optimizer.has_state"),
    (lambda o: o.update(name="RMSprop"), "optimizer.name='RMSprop' is not supported"),
    (lambda o: o["config"].update(lr=-1), "optimizer.config is invalid"),
    (lambda o: o["config"].update(beta1=2), "optimizer.config is invalid"),
    (lambda o: o["config"].update(bogus=1), "optimizer.config is invalid"),
    (lambda o: o.update(config=[]), "optimizer.config is []"),
    (lambda o: o["schedule"]["state"].update(_scale=5.0), "schedule.state._scale=5.0; expected"),
    (lambda o: o["schedule"]["state"].update(_scale="nan"), "schedule.state._scale"),
    (lambda o: o["schedule"]["state"].update(_bad_epochs=-2),
     "schedule.state._bad_epochs=-2; expected"),
    (lambda o: o["schedule"]["state"].update(_best="nan"), "schedule.state._best"),
    (lambda o: o["schedule"]["state"].update(lr=1), "schedule.state.lr is not part"),
    (lambda o: o["schedule"].update(name="Warp"), "schedule.name='Warp' is not supported"),
    (lambda o: o["schedule"]["config"].update(factor=7), "schedule.config is invalid"),
])
def test_optimizer_and_schedule_state_are_checked(tmp_path, change, fragment):
    model = MLP([2, 3, 2], seed=0)
    opt = Adam(lr=0.01, schedule="plateau")
    X, y = data(16, n_in=2, n_classes=2)
    model.fit(X, y, "cross_entropy", opt, epochs=2)
    path, entries, d = _model_file(tmp_path, model, opt)
    change(d["optimizer"])
    _write(path, entries, d)
    check_error(lambda: fastnn.load(path, with_optimizer=True), ModelFileError, fragment)


def test_headers_and_entries_are_checked_before_the_data_is_read(tmp_path):
    model = MLP([2, 3, 2], seed=0)
    opt = SGD(lr=0.1, momentum=0.9)
    X, y = data(16, n_in=2, n_classes=2)
    model.fit(X, y, "cross_entropy", opt, epochs=1)
    path, entries, d = _model_file(tmp_path, model, opt)
    n = model.n_params
    cases = [
        ("params", _npy(header={"descr": "<f8", "fortran_order": False, "shape": (n,)},
                        payload=b"\0" * 8 * n), "expected float32"),
        ("params", _npy(header={"descr": "<f4", "fortran_order": False, "shape": (n, 1)},
                        payload=b"\0" * 4 * n), f"expected shape ({n},)"),
        ("params", _npy(header={"descr": "<f4", "fortran_order": False, "shape": (n,)},
                        payload=b"\0" * 7), "does not hold"),
        ("params", _npy(header={"descr": "|O", "fortran_order": False, "shape": (n,)},
                        payload=b""), "holds Python objects"),
        ("optimizer_state_0", _npy(np.zeros(3, np.float32)), "optimizer_state_0"),
        ("optimizer_state_0", _npy(np.full(n, np.nan, np.float32)), "NaN"),
        ("description", _npy(np.zeros(3)), "expected one JSON string"),
        ("description", _npy(np.array("[" * 100_000 + "]" * 100_000)), "not valid JSON"),
        ("description", _npy(np.array('{"format": NaN}')), "not valid JSON"),
    ]
    for name, payload, fragment in cases:
        _write(path, dict(entries, **{name: payload}))
        check_error(lambda: fastnn.load(path, with_optimizer=True), ModelFileError, fragment)
    crafted = dict(entries)
    del crafted["optimizer_state_1"]
    _write(path, crafted)
    check_error(lambda: fastnn.load(path, with_optimizer=True), ModelFileError,
                "'optimizer_state_1' entry is missing")
    # a NaN parameter with a matching checksum: the file is consistent but not a model
    bad = model.params.copy()
    bad[0] = np.nan
    d["params_sha256"] = __import__("hashlib").sha256(bad.astype("<f4").tobytes()).hexdigest()
    _write(path, dict(entries, params=_npy(bad)), d)
    check_error(lambda: fastnn.load(path), ModelFileError, "params contain NaN")
    # a compressed (deflated) archive of a valid model still loads
    _write(tmp_path / "z.npz", entries, compression=zipfile.ZIP_DEFLATED)
    np.testing.assert_array_equal(fastnn.load(tmp_path / "z.npz").params, model.params)


def test_a_loaded_model_is_built_without_running_initializers(tmp_path, monkeypatch):
    model = MLP([3, 5, 2], seed=0)
    model.save(tmp_path / "m.npz")
    monkeypatch.setattr(MLP, "init_params", lambda *a, **k: pytest.fail("initialised"))
    loaded = fastnn.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.params, model.params)


# =========================================================================================
# Kind 3: a save is one consistent snapshot and cleans up after any exception
# =========================================================================================

def test_save_during_fit_in_another_thread_writes_an_epoch_boundary(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 32)).astype(np.float32)
    y = rng.integers(0, 10, 4000)
    model = MLP([32, 128, 128, 10], seed=0)
    opt = Adam(lr=1e-3)
    boundaries = [model.get_flat_params()]
    done = threading.Event()

    def record(epoch, logs):
        boundaries.append(model.get_flat_params())

    def train():
        try:
            fastnn.fit(model, X, y, "cross_entropy", opt, epochs=12, batch_size=16,
                       callbacks=[record])
        finally:
            done.set()

    worker = threading.Thread(target=train)
    worker.start()
    saved = []
    while not done.is_set() and len(saved) < 20:
        path = tmp_path / f"m{len(saved)}.npz"
        model.save(path, optimizer=opt)
        saved.append(path)
    worker.join()
    assert len(saved) >= 3
    for path in saved:
        loaded, restored = fastnn.load(path, with_optimizer=True)  # the checksum holds
        assert any(np.array_equal(loaded.params, b) for b in boundaries), path


def _leftovers(directory):
    return sorted(p for p in os.listdir(directory) if p.endswith(".tmp"))


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("where", ["write", "fsync", "close", "replace", "fchmod"])
def test_an_interrupted_save_releases_the_temporary_file_and_descriptor(tmp_path,
                                                                        monkeypatch, where):
    model = MLP([3, 4, 2], seed=0)
    target = tmp_path / "m.npz"
    model.save(target)
    target.chmod(0o640)
    good = target.read_bytes()
    fds = _open_fds()
    calls = {"n": 0}

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        raise KeyboardInterrupt

    if where == "write":
        monkeypatch.setattr(fio, "_write_npz", interrupt)
    else:
        real = getattr(os, where)

        def once(*args, **kwargs):
            # os.close also runs on the directory's descriptor: interrupt the first call;
            # the interrupt lands after a close (it is one system call), before the others
            if calls["n"] == 0:
                if where == "close":
                    real(*args, **kwargs)
                interrupt()
            return real(*args, **kwargs)
        monkeypatch.setattr(os, where, once)
    model.params[0] += 1
    with pytest.raises(KeyboardInterrupt):
        model.save(target)
    monkeypatch.undo()
    assert calls["n"] == 1
    assert _leftovers(tmp_path) == []
    assert _open_fds() == fds
    assert target.read_bytes() == good


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd") or not hasattr(signal, "SIGINT"),
                    reason="needs /proc and POSIX signals")
def test_ctrl_c_during_repeated_saves_leaves_no_files_or_descriptors(tmp_path):
    # The child saves until a stop file appears, counting the Ctrl-Cs that interrupt it
    # (one that lands between two saves is caught by the outer handler); signals that
    # arrive together may be delivered as one, so only "at least one" is asserted.
    child = textwrap.dedent("""
        import os, sys
        import numpy as np
        import fastnn
        model = fastnn.MLP([64, 256, 10], seed=0)
        directory = sys.argv[1]
        target = os.path.join(directory, "m.npz")
        stop = os.path.join(directory, "stop")
        model.save(target)
        fds = len(os.listdir("/proc/self/fd"))
        print("ready", flush=True)
        interrupts = 0

        def save_until_stopped():
            global interrupts
            while not os.path.exists(stop):
                try:
                    model.save(target)
                except KeyboardInterrupt:
                    interrupts += 1

        while True:
            try:
                save_until_stopped()
                break
            except KeyboardInterrupt:
                interrupts += 1
        leftovers = [p for p in os.listdir(directory) if p.endswith(".tmp")]
        fastnn.load(target)
        print(interrupts, len(os.listdir("/proc/self/fd")) - fds, len(leftovers), flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastnn.__file__))] + sys.path))
    proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == "ready"
        import time
        for _ in range(5):
            time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        (tmp_path / "stop").touch()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    interrupts, fd_growth, leftovers = map(int, out.split())
    assert interrupts >= 1 and (fd_growth, leftovers) == (0, 0)


def test_save_keeps_permissions_and_works_for_unusual_names(tmp_path):
    model = MLP([3, 4, 2], seed=0)
    target = tmp_path / "m.npz"
    model.save(target)
    target.chmod(0o600)
    model.save(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    for name in ("a" * 255, "spaces and ünïcödé.npz", "-leading-dash", "new\nline.npz"):
        model.save(tmp_path / name)
        np.testing.assert_array_equal(fastnn.load(tmp_path / name).params, model.params)
    model.save(os.fsencode(tmp_path / "bytes.npz"))
    assert (tmp_path / "bytes.npz").exists()
    # a symbolic link is followed: the link stays, its target gets the new model
    real = tmp_path / "real.npz"
    model.save(real)
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    model.params[...] = 0.5
    model.save(link)
    assert link.is_symlink()
    np.testing.assert_array_equal(fastnn.load(real).params, model.params)
    assert _leftovers(tmp_path) == []


def test_save_refuses_non_finite_parameters_and_keeps_the_file(tmp_path):
    model = MLP([3, 4, 2], seed=0)
    target = tmp_path / "m.npz"
    model.save(target)
    good = target.read_bytes()
    model.params[2] = np.nan  # written straight into the buffer, as a diverged step would
    check_error(lambda: model.save(target), ValueError, "NaN or infinity", "unchanged")
    assert target.read_bytes() == good


# =========================================================================================
# Kind 6: every way of putting values into a model checks them alike
# =========================================================================================

def test_every_setter_rejects_what_set_params_rejects():
    model = MLP([3, 4, 2], seed=0)  # float32
    before = model.get_flat_params()
    W0 = model.layers[0].W.copy()
    huge_w = np.full((3, 4), 1e300)
    setters = [
        lambda v: model.set_flat_params(v),
        lambda v: setattr(model, "params", v),
        lambda v: setattr(model, "grads", v),
    ]
    for set_ in setters:
        check_error(lambda: set_(np.full(model.n_params, 1e300)), ValueError,
                    "too large for the model's dtype float32", "1e+300")
        check_error(lambda: set_(np.full(model.n_params, np.inf)), ValueError,
                    "NaN or infinity")
        check_error(lambda: set_(np.zeros(model.n_params, complex)), TypeError,
                    "dtype complex128")
        check_error(lambda: set_(np.zeros(5)), ValueError, "shape (5,)",
                    f"expected ({model.n_params},)")
    check_error(lambda: setattr(model.layers[0], "W", huge_w), ValueError, "W has values too "
                "large")
    check_error(lambda: setattr(model.layers[0], "W", np.zeros((4, 3))), ValueError,
                "W has shape (4, 3); expected (3, 4)")
    check_error(lambda: setattr(model.layers[1], "b", [np.nan, 0]), ValueError, "b contains NaN")
    check_error(lambda: model.set_weights([huge_w, np.zeros((4, 2))],
                                          [np.zeros(4), np.zeros(2)]), ValueError,
                "coefs[0] has values too large")
    check_error(lambda: model.set_weights([W0], [np.zeros(4)]), ValueError,
                "coefs has 1 entries; expected 2")
    check_error(lambda: model.set_weights([W0, np.zeros((4, 2))],
                                          [np.zeros(4), np.zeros(3)]), ValueError,
                "intercepts[1] has shape (3,); expected (2,)")
    check_error(lambda: model.set_weights(np.zeros(3), []), TypeError, "coefs must be a list")
    np.testing.assert_array_equal(model.params, before)  # nothing was written
    check_error(lambda: setattr(Dense(3, 4), "W", np.zeros((3, 4))), AttributeError,
                "part of an MLP")


def test_set_weights_and_layer_assignment_write_into_the_model():
    model = MLP([3, 4, 2], seed=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    coefs = [rng.standard_normal((3, 4)), rng.standard_normal((4, 2))]
    intercepts = [rng.standard_normal(4), rng.standard_normal(2)]
    model.set_weights(coefs, intercepts)
    X = rng.standard_normal((5, 3))
    expected = np.maximum(X @ coefs[0] + intercepts[0], 0) @ coefs[1] + intercepts[1]
    np.testing.assert_allclose(model.forward(X), expected, rtol=1e-12)
    model.set_weights(intercepts=[np.zeros(4), np.ones(2)])  # coefs kept
    np.testing.assert_allclose(model.forward(X), np.maximum(X @ coefs[0], 0) @ coefs[1] + 1,
                               rtol=1e-12)
    model.layers[1].W = np.zeros((4, 2))
    model.layers[1].b = [1, 2]  # integers are converted, as set_params converts them
    np.testing.assert_array_equal(model.forward(X), np.tile([1.0, 2.0], (5, 1)))


# =========================================================================================
# Kind 7: the process-wide BLAS thread count has one owner
# =========================================================================================

@pytest.mark.skipif(threads.get_num_threads() is None, reason="scipy's BLAS is not OpenBLAS")
def test_concurrent_fits_with_different_thread_counts_hold_blas_at_one():
    """n_threads is fastnn's own thread count: every fit holds scipy's OpenBLAS at
    one thread while it runs, so fits asking for different counts run together, and the
    count found before is restored after the last."""
    before = threads.get_num_threads()
    X, y = data(4000, n_in=8)  # epochs long enough for the two fits to overlap
    seen = {1: set(), 2: set()}
    start = threading.Barrier(2)
    errors = []

    def train(n):
        try:
            model = MLP([8, 64, 3], seed=0)
            start.wait()
            fastnn.fit(model, X, y, "cross_entropy", epochs=6, batch_size=32, n_threads=n,
                       callbacks=[lambda e, logs: seen[n].add(threads.get_num_threads())])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=train, args=(n,)) for n in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert seen == {1: {1}, 2: {1}}
    assert threads.get_num_threads() == before


@pytest.mark.skipif(threads.get_num_threads() is None, reason="scipy's BLAS is not OpenBLAS")
def test_the_thread_count_cannot_change_under_a_running_block():
    before = threads.get_num_threads()
    with threads.blas_threads(1):
        check_error(lambda: threads.set_num_threads(2), RuntimeError, "own the BLAS thread")
        with threads.blas_threads(1):  # the same count nests
            assert threads.get_num_threads() == 1

        def nested():
            with threads.blas_threads(2):
                pass
        check_error(nested, RuntimeError, "blas_threads(2) inside this thread's")
    assert threads.get_num_threads() == before
