"""Fuzz tests of the safety promises: crafted model files and arbitrary arrays never crash or hang.

* Mutations of a saved model file (a JSON field replaced or removed, a .npy header with
  another dtype/shape/order, zip entries dropped, renamed, added or compressed) end in a
  loaded model or a ModelFileError naming the file, never another exception or a crash.
* Arrays of any dtype, shape and layout (strided, transposed, negative strides, read-only)
  given to every public array argument and to the private compiled entry points give a
  result or a TypeError/ValueError; under tests/sanitize.sh (ASan/UBSan) they also prove
  that nothing is read or written out of bounds.

Bounded: a few hundred examples in all, derandomized by default (a few seconds).  Search
harder with FASTNN_HYPOTHESIS_EXAMPLES=2000 FASTNN_HYPOTHESIS_RANDOM=1.
"""
import io as _io
import json
import os
import tempfile
import warnings
import zipfile

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastnn  # noqa: E402
from fastnn._core import _layers, _losses, _network, _sgd  # noqa: E402
from fastnn.io.saving import ModelFileError  # noqa: E402
from fastnn.nn.model import MLP  # noqa: E402
from fastnn.optim.optimizers import SGD, Adam  # noqa: E402

EXAMPLES = int(os.environ.get("FASTNN_HYPOTHESIS_EXAMPLES", "60"))


def budget(n_examples):
    return settings(max_examples=n_examples, deadline=None,
                    derandomize=not os.environ.get("FASTNN_HYPOTHESIS_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------- a saved model

def _saved():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 3))
    y = rng.integers(0, 2, 32)
    model = MLP([3, 4, 2], seed=0)
    opt = Adam(lr=0.01, schedule="plateau")
    model.fit(X, y, "cross_entropy", opt, epochs=2, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        model.save(path, optimizer=opt)
        with zipfile.ZipFile(path) as zf:
            entries = {n: zf.read(n) for n in zf.namelist()}
    description = json.loads(str(np.load(_io.BytesIO(entries["description.npy"]))))
    return model, entries, description


MODEL, ENTRIES, DESCRIPTION = _saved()
X_CHECK = np.random.default_rng(1).standard_normal((4, 3))


def _npy(array):
    buf = _io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _load_outcome(entries, compression=zipfile.ZIP_STORED):
    """Write `entries` as an archive and load it: a model, or a ModelFileError naming it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fuzzed.npz")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about duplicate names
            with zipfile.ZipFile(path, "w", compression) as zf:
                for name, payload in entries:
                    zf.writestr(name, payload)
        try:
            model, opt = fastnn.load(path, with_optimizer=True)
        except ModelFileError as exc:
            assert "fuzzed.npz" in str(exc)
            return None
    # whatever loaded is a working model (and optimizer)
    assert np.isfinite(model.params).all()
    model.forward(X_CHECK[:, :model.n_inputs] if model.n_inputs <= 3 else
                  np.zeros((2, model.n_inputs)))
    if opt is not None:
        model.loss_and_grad(np.zeros((2, model.n_inputs)), np.zeros((2, model.n_outputs)),
                            "mse")
        opt.step(model)
    return model


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
              st.sampled_from(["inf", "-inf", "nan", "relu", "float64", "SGD", "Adam",
                               "cross_entropy", "StepDecay", "he_normal", "softmax"]),
              st.sampled_from([0, 1, -1, 2, 10**9, 2**31, 0.5, 1.5])),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=6)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, prefix + (i,))


PATHS = [p for p, _ in _paths(DESCRIPTION) if p]


@budget(EXAMPLES * 3)
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.booleans(), JSON_VALUES),
                min_size=1, max_size=3))
def test_json_field_mutations_load_or_raise_model_file_error(mutations):
    description = json.loads(json.dumps(DESCRIPTION))
    for path, remove, value in mutations:
        node = description
        try:
            for key in path[:-1]:
                node = node[key]
            if remove and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    entries = dict(ENTRIES, **{"description.npy": _npy(np.array(json.dumps(description)))})
    _load_outcome(entries.items())


DESCRS = ["<f4", "<f8", ">f4", ">f8", "<f2", "<i4", "<i8", "|u1", "|b1", "<c8", "<U8",
          "|S4", "|V8", "|O", "<M8[s]"]


@budget(EXAMPLES * 3)
@given(st.sampled_from(["params.npy", "optimizer_state_0.npy", "optimizer_state_1.npy",
                        "description.npy"]),
       st.sampled_from(DESCRS),
       st.lists(st.one_of(st.integers(0, 40), st.sampled_from([2**31, 2**40, 2**62])),
                max_size=3).map(tuple),
       st.booleans(), st.binary(max_size=200), st.sampled_from([(1, 0), (2, 0)]))
def test_npy_header_mutations_load_or_raise_model_file_error(entry, descr, shape, fortran,
                                                             payload, version):
    buf = _io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    buf.write(payload)
    _load_outcome(dict(ENTRIES, **{entry: buf.getvalue()}).items())


@budget(EXAMPLES * 2)
@given(st.lists(st.tuples(st.sampled_from(sorted(ENTRIES)),
                          st.sampled_from(["keep", "rename", "duplicate", "truncate",
                                           "drop", "extend"])),
                min_size=1, max_size=4),
       st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_zip_entry_mutations_load_or_raise_model_file_error(changes, compression):
    entries = list(ENTRIES.items())
    for name, how in changes:
        payload = ENTRIES[name]
        if how == "rename":
            entries = [(n + ".bak" if n == name else n, p) for n, p in entries]
        elif how == "duplicate":
            entries.append((name, payload[: len(payload) // 2]))
        elif how == "truncate":
            entries = [(n, p[: len(p) - 7] if n == name else p) for n, p in entries]
        elif how == "drop":
            entries = [(n, p) for n, p in entries if n != name]
        elif how == "extend":
            entries = [(n, p + b"\0" * 16 if n == name else p) for n, p in entries]
    _load_outcome(entries, compression)


# -------------------------------------------------------------- arbitrary arrays

LAYOUTS = ["as is", "transposed", "every other", "reversed", "read-only", "fortran", "list"]


def _arrays(dtypes, min_dims, max_dims, max_side):
    """(values, dtype, layout): an array of any of `dtypes` in one of the layouts a caller
    may pass (built by _apply)."""
    return st.tuples(
        hnp.arrays(np.float64, hnp.array_shapes(min_dims=min_dims, max_dims=max_dims,
                                                min_side=0, max_side=max_side),
                   elements=st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0, 3.0])),
        st.sampled_from(dtypes), st.sampled_from(LAYOUTS))


def _apply(values, dtype, layout):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        array = values.astype(dtype)
    if layout == "transposed":
        return array.T
    if layout == "every other" and array.ndim:
        return array[::2]
    if layout == "reversed" and array.ndim:
        return array[::-1]
    if layout == "read-only":
        array.flags.writeable = False
        return array
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "list":
        return array.tolist()
    return array


ARRAYS = _arrays([np.float32, np.float64, np.int64, np.bool_, np.complex64, np.float16,
                  np.uint8], 0, 3, 9)
# float arrays, the kind the compiled entry points accept, in any shape and layout
FLOAT_ARRAYS = _arrays([np.float32, np.float64], 1, 2, 40)


def _result_or_clear_error(call):
    try:
        call()
    except (TypeError, ValueError) as exc:
        assert str(exc), "an error without a message"


@budget(EXAMPLES * 2)
@given(ARRAYS, ARRAYS)
def test_arbitrary_arrays_at_every_public_setter(a, b):
    a, b = _apply(*a), _apply(*b)
    model = MLP([3, 4, 2], seed=0)
    before = model.get_flat_params()
    _result_or_clear_error(lambda: setattr(model, "params", a))
    _result_or_clear_error(lambda: setattr(model, "grads", a))
    _result_or_clear_error(lambda: setattr(model.layers[0], "W", a))
    _result_or_clear_error(lambda: setattr(model.layers[1], "b", b))
    _result_or_clear_error(lambda: model.set_weights([a, b], [b, a]))
    _result_or_clear_error(lambda: model.set_flat_params(a))
    _result_or_clear_error(lambda: model.predict(a))
    _result_or_clear_error(lambda: model.loss_and_grad(a, b, "mse"))
    X4 = np.ones((4, 3))
    _result_or_clear_error(lambda: fastnn.fit(model, X4, a, "mse", epochs=1, batch_size=2))
    _result_or_clear_error(lambda: fastnn.fit(model, X4, np.zeros(4, int), "cross_entropy",
                                              sample_weight=a, validation_data=(b, a),
                                              epochs=1))
    _result_or_clear_error(lambda: fastnn.dense_backward(a, b, b, a, "tanh"))
    _result_or_clear_error(lambda: fastnn.dense_forward(X4, a, b, "relu", out=a))
    _result_or_clear_error(lambda: fastnn.nn.losses.GaussianNLL(a)(np.ones((4, 1)),
                                                              np.ones((4, 1))))
    _result_or_clear_error(lambda: fastnn.check_gradients(model, a, b, "mse"))
    assert np.isfinite(model.params).all()
    if not np.array_equal(model.params, before):
        model.predict(np.zeros((2, 3)))
    for opt in (SGD(lr=0.1, momentum=0.5), Adam()):
        _result_or_clear_error(lambda: setattr(opt, "state", (a, b)))
        model.loss_and_grad(np.zeros((2, 3)), np.zeros((2, 2)), "mse")
        opt.step(model)  # whatever the state holds, the step runs on a fitted state
        assert np.isfinite(model.params).all()


@budget(EXAMPLES * 3)
@given(FLOAT_ARRAYS, FLOAT_ARRAYS, FLOAT_ARRAYS, FLOAT_ARRAYS,
       st.integers(-1, 8), st.integers(-2, 3000))
def test_arbitrary_buffers_at_the_private_compiled_entry_points(p, x, y, z, code, rows):
    """The private functions are reachable from Python: any buffers give a result or a
    ValueError/TypeError (under ASan: and nothing out of bounds)."""
    p, x, y, z = _apply(*p), _apply(*x), _apply(*y), _apply(*z)
    spec = MLP([3, 4, 2], seed=0)._spec
    labels = np.zeros(len(y) if hasattr(y, "__len__") else 0, np.intp)
    calls = [
        lambda: _network.forward_into(spec, p, x, y, code, rows),
        lambda: _network.loss_grad_into(spec, p, z, x, code, 0, 1.0, y, None, None, None,
                                        1.0),
        lambda: _network.loss_grad_into(spec, p, z, x, 4, 0, 1.0, None, labels, None, None,
                                        1.0),
        lambda: _sgd.update_params(spec, p, z, y, x, code % 2, 0.1, 0.5, 0, 0, 0, 0.9,
                                   0.99, 1e-8, 1),
        lambda: _layers.forward_into(x, y, p, z, code, 0.1),
        lambda: _layers.backward_into(x, y, z, z, x, y, p, None, code, 0.1),
        lambda: _losses.loss_grad_into(code, 0, 1.0, x, y, None, p, None, 1.0, None),
        lambda: _losses.output_into(code, z),
    ]
    for call in calls:
        _result_or_clear_error(call)
