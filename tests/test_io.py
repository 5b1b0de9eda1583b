"""Persistence: MLP.save / fastnn.load (one .npz, no pickle, atomic) and pickling."""
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn.io import saving as fio
from fastnn.datasets import make_regression, make_spirals
from fastnn.io.saving import ModelFileError
from fastnn.nn.losses import GaussianNLL, PoissonNLL
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import SGD, Adam, AdamW, Cosine, ReduceOnPlateau, StepDecay
from tests._helpers import child_process_kwargs

DTYPES = [np.float32, np.float64]


def _classifier(dtype=np.float32, epochs=2, optimizer=None):
    X, y = make_spirals(200, n_classes=3, seed=0)
    model = MLP([2, 8, 6, 3], activation=["tanh", "leaky_relu"], dtype=dtype, seed=0,
                negative_slope=0.05)
    model.fit(X, y, "cross_entropy", optimizer or Adam(lr=0.01), epochs=epochs, seed=0)
    return model, X, y


def _save_bytes(model, tmp_path, name="model.npz", **kwargs):
    path = tmp_path / name
    model.save(path, **kwargs)
    return path, path.read_bytes()


def _rewrite(path, **entries):
    """Rewrite an .npz with some entries replaced (values) or removed (None)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    for name, value in entries.items():
        if value is None:
            arrays.pop(name, None)
        else:
            arrays[name] = value
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _description(path):
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(str(archive["description"]))


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_save_load_gives_bitwise_identical_parameters_and_predictions(tmp_path, dtype):
    model, X, _ = _classifier(dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastnn.load(path)
    assert loaded.dtype == model.dtype
    assert loaded.layer_sizes == model.layer_sizes
    assert [layer.activation for layer in loaded.layers] == \
        [layer.activation for layer in model.layers]
    assert [layer.negative_slope for layer in loaded.layers] == \
        [layer.negative_slope for layer in model.layers]
    assert loaded.params.tobytes() == model.params.tobytes()
    assert type(loaded.loss_) is type(model.loss_)
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert np.array_equal(loaded.forward(X), model.forward(X))
    # the loaded model is a normal model: views into its own vector, trainable
    assert np.shares_memory(loaded.layers[0].W, loaded.params)
    loaded.fit(X, np.zeros(len(X), int), "cross_entropy", epochs=1)


@pytest.mark.parametrize("loss, n_out, target", [
    ("mse", 2, "values"), (GaussianNLL(sigma="learned"), 4, "values"),
    (GaussianNLL(sigma=np.full(100, 0.5)), 2, "values"), ("bce", 2, "binary"),
    (PoissonNLL(full=True), 2, "counts"),
], ids=["mse", "learned-variance", "per-sample-sigma", "bce", "poisson"])
def test_every_loss_and_output_link_survives_the_round_trip(tmp_path, loss, n_out, target):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    Y = {"values": rng.standard_normal((100, 2)),
         "binary": (rng.random((100, 2)) < 0.5).astype(float),
         "counts": rng.poisson(2.0, (100, 2)).astype(float)}[target]
    model = MLP([3, 5, n_out], activation="sigmoid", init="lecun_normal",
                bias_init=fastnn.nn.init.constant(0.1), seed=1)
    model.fit(X, Y, loss, SGD(lr=0.01), epochs=2, seed=0)
    loaded = fastnn.load(_save_bytes(model, tmp_path)[0])
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert loaded._link_name() == model._link_name()
    assert loaded.layers[0].init == fastnn.nn.init.lecun_normal
    assert loaded.layers[0].bias_init == fastnn.nn.init.constant(0.1)
    if model._link_name() == "gaussian":
        assert np.array_equal(loaded.predict_std(X), model.predict_std(X))


def test_an_untrained_model_and_an_explicit_output_link_round_trip(tmp_path):
    model = MLP([4, 3], output="sigmoid", dtype=np.float64, seed=3)
    loaded = fastnn.load(_save_bytes(model, tmp_path)[0])
    assert loaded.loss_ is None and loaded.output == "sigmoid"
    X = np.random.default_rng(0).standard_normal((5, 4))
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_path_is_used_as_given_and_str_or_pathlike_both_work(tmp_path):
    model = MLP([2, 2], seed=0)
    model.save(str(tmp_path / "weights"))  # numpy.savez would have written weights.npz
    assert os.listdir(tmp_path) == ["weights"]
    assert fastnn.load(str(tmp_path / "weights")).params.tobytes() == model.params.tobytes()
    assert fastnn.io.saving.load(tmp_path / "weights").n_params == model.n_params


@pytest.mark.parametrize("make_optimizer", [
    lambda: Adam(lr=0.01, weight_decay=1e-3, schedule=ReduceOnPlateau(patience=1)),
    lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, clip_norm=1.0,
                schedule=Cosine(total_epochs=10, min_lr=0.001)),
    lambda: SGD(lr=0.05),  # no state vectors at all
    lambda: AdamW(lr=0.01, weight_decay=0.1, schedule=StepDecay(2, 0.5)),
], ids=["adam-plateau", "nesterov-cosine", "plain-sgd", "adamw-step"])
def test_optimizer_state_is_saved_and_training_resumes_identically(tmp_path, make_optimizer):
    optimizer = make_optimizer()
    model, X, y = _classifier(np.float64, epochs=3, optimizer=optimizer)
    path = tmp_path / "checkpoint.npz"
    model.save(path, optimizer=optimizer)
    loaded, restored = fastnn.load(path, with_optimizer=True)
    assert repr(restored) == repr(optimizer)
    assert restored.t == optimizer.t > 0
    assert vars(restored.schedule) == vars(optimizer.schedule)
    for a, b in zip(restored.state, optimizer.state):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    # fit resets a schedule's progress, so continue with explicit steps: identical bits
    for m, opt in ((model, optimizer), (loaded, restored)):
        m.loss_and_grad(X, y, "cross_entropy")
        opt.step(m)
    assert loaded.params.tobytes() == model.params.tobytes()


def test_optimizer_that_was_never_used_and_files_without_one(tmp_path):
    model = MLP([3, 2], seed=0)
    path = tmp_path / "m.npz"
    model.save(path, optimizer=Adam(lr=0.5))
    loaded, opt = fastnn.load(path, with_optimizer=True)
    assert opt.lr == 0.5 and opt.t == 0 and opt.state == (None, None)
    model.save(path)
    assert fastnn.load(path, with_optimizer=True)[1] is None
    assert isinstance(fastnn.load(path), MLP)


def test_saving_rejects_what_the_format_cannot_describe(tmp_path):
    class MySchedule(fastnn.optim.optimizers.Constant):
        pass

    model = MLP([3, 2], seed=0)
    with pytest.raises(TypeError, match="MySchedule"):
        model.save(tmp_path / "m.npz", optimizer=SGD(schedule=MySchedule()))
    with pytest.raises(TypeError, match="fastnn.MLP"):
        fio.save_model("not a model", tmp_path / "m.npz")
    other = MLP([5, 2], seed=0)
    opt = SGD(momentum=0.5)
    opt.init_state(other.n_params, other.dtype)
    with pytest.raises(ValueError, match="another model"):
        model.save(tmp_path / "m.npz", optimizer=opt)
    assert os.listdir(tmp_path) == []


def test_the_file_holds_no_pickle_and_a_json_description(tmp_path):
    model, _, _ = _classifier()
    path, _ = _save_bytes(model, tmp_path, optimizer=Adam())
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
    assert names == ["description.npy", "params.npy"]  # Adam() was never stepped: no state
    with np.load(path, allow_pickle=False) as archive:  # would raise on any object array
        for name in archive.files:
            assert archive[name].dtype.kind in "fU"
    d = _description(path)
    assert d["format"] == "fastnn-model" and d["format_version"] == fio.FORMAT_VERSION
    assert d["fastnn_version"] == fastnn.__version__
    assert d["layer_sizes"] == [2, 8, 6, 3] and d["dtype"] == "float32"
    assert [layer["activation"] for layer in d["layers"]] == ["tanh", "leaky_relu", "identity"]
    assert d["loss"] == {"name": "cross_entropy"}
    assert d["optimizer"]["name"] == "Adam" and d["optimizer"]["has_state"] is False


# ------------------------------------------------------------------------------- errors

def _load_error(path):
    with pytest.raises(ModelFileError) as info:
        fastnn.load(path)
    message = str(info.value)
    assert str(path) in message  # every message names the file
    return message


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -1], ids=["empty", "10-bytes", "100-bytes",
                                                           "half", "all-but-one"])
def test_a_truncated_file_is_reported_as_truncated_or_corrupted(tmp_path, keep):
    model, _, _ = _classifier()
    path, data = _save_bytes(model, tmp_path)
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:n])
    message = _load_error(path)
    assert ("truncated or corrupted" in message) or (n == 0 and "empty" in message) or \
        (n < 4 and "not an .npz" in message)


def test_corrupted_parameter_bytes_are_detected(tmp_path):
    model, _, _ = _classifier()
    path, data = _save_bytes(model, tmp_path)
    # flip a byte inside the stored parameter vector: the zip CRC (or our checksum) sees it
    start = data.index(model.params.tobytes()[:16])
    corrupt = bytearray(data)
    corrupt[start + 5] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    assert "corrupted" in _load_error(path)


def test_parameters_that_do_not_match_the_checksum_are_rejected(tmp_path):
    model, _, _ = _classifier()
    path, _ = _save_bytes(model, tmp_path)
    _rewrite(path, params=model.params + np.float32(1e-3))  # a valid archive, wrong bits
    assert "checksum" in _load_error(path)


def test_wrong_formats_are_named(tmp_path):
    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(3.0))
    assert "single .npy array" in _load_error(npy)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "not an .npz" in _load_error(text)
    other = tmp_path / "data.npz"
    np.savez(other, X=np.zeros((2, 2)), y=np.zeros(2))
    assert "no 'description' entry" in _load_error(other)

    model = MLP([2, 2], seed=0)
    path, _ = _save_bytes(model, tmp_path)
    _rewrite(path, description=np.array(json.dumps({"format": "keras", "format_version": 1})))
    assert "format is 'keras'" in _load_error(path)
    _rewrite(path, description=np.array("{not json"))
    assert "not valid JSON" in _load_error(path)
    _rewrite(path, description=np.arange(3))
    assert "one JSON string" in _load_error(path)


def test_a_file_from_a_future_format_version_asks_for_an_upgrade(tmp_path):
    model = MLP([2, 3, 2], seed=0)
    path, _ = _save_bytes(model, tmp_path)
    d = _description(path)
    d.update(format_version=fio.FORMAT_VERSION + 1, fastnn_version="9.0.0")
    _rewrite(path, description=np.array(json.dumps(d)))
    message = _load_error(path)
    assert f"format version {fio.FORMAT_VERSION + 1}" in message
    assert "fastnn 9.0.0" in message and "upgrade fastnn" in message


def test_an_inconsistent_description_is_reported(tmp_path):
    model = MLP([2, 3, 2], seed=0)
    path, _ = _save_bytes(model, tmp_path)
    d = _description(path)
    d["layers"][0]["activation"] = "mish"
    _rewrite(path, description=np.array(json.dumps(d)))
    assert "inconsistent" in _load_error(path) and "mish" in _load_error(path)
    d = _description(path)
    d["layer_sizes"] = [2, 4, 2]
    d["layers"][0]["activation"] = "relu"
    _rewrite(path, description=np.array(json.dumps(d)))
    assert "parameters" in _load_error(path)


class _Trap:
    """Unpickling this creates a file: proof that something in a model file was executed."""

    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return open, (self.sentinel, "w")


def test_nothing_in_a_file_is_executed(tmp_path):
    sentinel = tmp_path / "executed"
    pickled = tmp_path / "model.npz"
    pickled.write_bytes(pickle.dumps(_Trap(str(sentinel))))
    assert "pickle" in _load_error(pickled)
    # an archive whose entries are pickled object arrays
    model = MLP([2, 2], seed=0)
    path, _ = _save_bytes(model, tmp_path, name="objects.npz")
    trap = np.empty((), dtype=object)
    trap[()] = _Trap(str(sentinel))
    _rewrite(path, description=trap)
    assert "holds Python objects" in _load_error(path)
    assert not sentinel.exists()


def test_load_errors_are_value_errors_and_pickle(tmp_path):
    err = ModelFileError(tmp_path / "m.npz", "it is broken")
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.path == err.path


# ------------------------------------------------------------------------ atomic saving

def test_an_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    old, _, _ = _classifier()
    path, before = _save_bytes(old, tmp_path)
    new = MLP([2, 8, 6, 3], seed=7)

    def fail_midway(fh, arrays):
        fh.write(b"PK\x03\x04 half of an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fio, "_write_npz", fail_midway)
    with pytest.raises(OSError, match="No space"):
        new.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind

    def interrupt(fh, arrays):
        fh.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(fio, "_write_npz", interrupt)
    with pytest.raises(KeyboardInterrupt):
        new.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]
    monkeypatch.undo()
    new.save(path)
    assert fastnn.load(path).params.tobytes() == new.params.tobytes()


def test_saving_where_it_cannot_fails_cleanly(tmp_path):
    model = MLP([2, 2], seed=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "missing" / "m.npz")
    (tmp_path / "adir").mkdir()
    with pytest.raises(OSError):
        model.save(tmp_path / "adir")
    assert sorted(os.listdir(tmp_path)) == ["adir"]


def test_a_saved_file_gets_ordinary_permissions(tmp_path):
    model = MLP([2, 2], seed=0)
    path, _ = _save_bytes(model, tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------------------ pickling

@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_models_pickle_with_identical_predictions_and_rebuilt_views(dtype):
    model, X, y = _classifier(dtype)
    clone = pickle.loads(pickle.dumps(model))
    assert np.array_equal(clone.predict(X), model.predict(X))
    assert clone.params.tobytes() == model.params.tobytes()
    for layer in clone.layers:
        assert np.shares_memory(layer.W, clone.params) and np.shares_memory(layer.dW,
                                                                            clone.grads)
    assert len(clone.history_) == len(model.history_)
    clone.layers[0].b[0] = 123.0  # a view of the clone's vector, not the original's
    assert 123.0 in clone.params and 123.0 not in model.params
    # pickles stay small: the layer views are not stored a second time
    assert len(pickle.dumps(model)) < 2 * (model.params.nbytes + model.grads.nbytes) + 4096


def test_optimizers_pickle_with_their_state_and_schedule():
    opt = Adam(lr=0.01, schedule=ReduceOnPlateau(patience=1))
    model, X, y = _classifier(np.float64, epochs=3, optimizer=opt)
    twin_model, twin_opt = pickle.loads(pickle.dumps((model, opt)))
    assert twin_opt.t == opt.t and vars(twin_opt.schedule) == vars(opt.schedule)
    for m, o in ((model, opt), (twin_model, twin_opt)):
        m.loss_and_grad(X, y, "cross_entropy")
        o.step(m)
    assert twin_model.params.tobytes() == model.params.tobytes()


_CHILD = """
import pickle, sys
import numpy as np
with open(sys.argv[1], "rb") as fh:
    objects = pickle.load(fh)
np.savez(sys.argv[2], **{name: obj.predict(X) for name, (obj, X) in objects.items()})
with open(sys.argv[3], "wb") as fh:  # and pickle them again for the parent to read
    pickle.dump(objects, fh)
"""


def test_pickles_cross_process_boundaries_with_identical_predictions(tmp_path):
    model, X, _ = _classifier()
    objects = {"model": (model, X)}
    try:
        from fastnn.interop.sklearn import MLPClassifier
    except ImportError:  # scikit-learn is optional
        pass
    else:
        Xr, yr = make_regression(150, n_features=3, seed=0)
        # tol=1e9: stops after n_iter_no_change + 1 epochs, without a ConvergenceWarning
        clf = MLPClassifier((8,), tol=1e9, n_iter_no_change=1, random_state=0)
        clf.fit(Xr, yr > 0)
        objects["classifier"] = (clf, Xr)
    with open(tmp_path / "objects.pkl", "wb") as fh:
        pickle.dump(objects, fh)
    # the child imports the same fastnn as this process, from a directory outside the repo
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    subprocess.run([sys.executable, "-c", _CHILD, "objects.pkl", "pred.npz", "back.pkl"],
                   cwd=tmp_path, env=env, check=True, timeout=120)
    with open(tmp_path / "back.pkl", "rb") as fh:
        back = pickle.load(fh)
    with np.load(tmp_path / "pred.npz", allow_pickle=False) as child:
        for name, (obj, X) in objects.items():
            assert np.array_equal(child[name], obj.predict(X)), name
            assert np.array_equal(back[name][0].predict(X), obj.predict(X)), name


def test_files_written_before_the_slope_rename_load_with_their_meaning(tmp_path):
    # before negative_slope existed, a layer held one "alpha": the leaky_relu slope, or elu's
    # alpha.  Such a file (its description rewritten to the old layout) loads as written.
    model = MLP([3, 5, 4, 2], activation=["leaky_relu", "elu"], negative_slope=0.2, alpha=0.6,
                dtype=np.float64, seed=0)
    path = tmp_path / "old.npz"
    model.save(path)
    description = _description(path)
    assert [(d["negative_slope"], d["alpha"]) for d in description["layers"][:2]] == \
        [(0.2, 1.0), (0.2, 0.6)]  # each stored; each used by its own activation only
    for d, old in zip(description["layers"], (0.2, 0.6, 0.01)):
        del d["negative_slope"]
        d["alpha"] = old
    description["format_version"] = 1  # the layout of format version 1 (tests/test_formats.py)
    _rewrite(path, description=np.array(json.dumps(description)))
    loaded = fastnn.load(path)
    assert (loaded.layers[0].negative_slope, loaded.layers[1].alpha) == (0.2, 0.6)
    X = np.random.default_rng(0).normal(size=(7, 3))
    # the closed forms of the two activations, in NumPy
    h = X @ model.layers[0].W + model.layers[0].b
    h = np.where(h > 0, h, 0.2 * h) @ model.layers[1].W + model.layers[1].b
    h = np.where(h > 0, h, 0.6 * np.expm1(np.minimum(h, 0)))
    want = h @ model.layers[2].W + model.layers[2].b
    np.testing.assert_allclose(loaded.forward(X), want, rtol=1e-12, atol=1e-14)
    assert np.array_equal(loaded.forward(X), model.forward(X))


def test_loading_an_ensemble_file_names_it_and_the_function_that_loads_it(tmp_path):
    fastnn.MLPEnsemble([3, 4, 2], 2, seed=0).save(tmp_path / "ensemble.npz")
    with pytest.raises(fio.ModelFileError, match="it is an ensemble file .*MLPEnsemble.save.*"
                                                 "load it with fastnn.load_ensemble"):
        fastnn.load(tmp_path / "ensemble.npz")
    assert fio._ENSEMBLE_FORMAT == fastnn.ensemble.ENSEMBLE_FORMAT
    assert fastnn.load_ensemble(tmp_path / "ensemble.npz").n_members == 2


@pytest.mark.parametrize("description, loader, field", [
    ({"layer_sizes": [2, 1]}, "load", "format"),
    ({"format": "fastnn-model"}, "load", "format_version"),
    ({"format": "fastnn-ensemble"}, "load_ensemble", "format_version"),
    ({"format": "fastnn-ensemble", "format_version": 1, "fastnn_version": "0",
      "member_seeds": [], "bootstrap": False}, "load_ensemble", "n_members"),
], ids=["model-format", "model-version", "ensemble-version", "ensemble-members"])
def test_a_missing_description_field_is_named_missing_not_none(tmp_path, description, loader,
                                                               field):
    # "its format is None" showed Python's placeholder for a field the file does not have
    path = tmp_path / "crafted.npz"
    np.savez(path, description=np.array(json.dumps(description)), params=np.zeros(3))
    with pytest.raises(ModelFileError, match=f"{field} is missing") as info:
        getattr(fastnn, loader)(path)
    assert "None" not in str(info.value)


@pytest.mark.parametrize("kind", ["model", "ensemble"])
@pytest.mark.parametrize("craft", ["duplicate entry", "duplicate key"])
def test_a_crafted_file_with_a_second_description_is_refused(tmp_path, kind, craft):
    # zipfile reads the last of two same-named entries and json the last of two same keys:
    # a crafted file could carry a description that a reader of the first never sees
    import zipfile
    path = tmp_path / "f.npz"
    if kind == "model":
        MLP([2, 3, 2], seed=0).save(path)
        load = fastnn.load
    else:
        fastnn.MLPEnsemble([2, 3, 2], 2, seed=0).save(path)
        load = fastnn.load_ensemble
    with zipfile.ZipFile(path) as archive:
        raw = archive.read("description.npy")
    text = np.lib.format.read_array(__import__("io").BytesIO(raw))[()]
    if craft == "duplicate entry":
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
            with zipfile.ZipFile(path, "a") as archive:
                archive.writestr("description.npy", raw)
        match = "two 'description' entries"
    else:
        doubled = text.replace('{"format"', '{"format": "x", "format"', 1)
        assert doubled != text
        arrays = dict(np.load(path))
        arrays["description"] = np.array(doubled)
        np.savez(path, **arrays)
        match = "appears twice"
    with pytest.raises(ModelFileError, match=match):
        load(path)


def test_a_model_file_with_an_entry_no_version_writes_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    MLP([2, 3, 2], seed=0).save(path, optimizer=Adam())
    arrays = dict(np.load(path))
    assert fastnn.load(path).n_params > 0
    np.savez(path, **arrays, payload=np.zeros(3))
    with pytest.raises(ModelFileError, match="entries no fastnn model file has: 'payload'"):
        fastnn.load(path)


def test_a_save_killed_midway_leaves_the_previous_file_intact(tmp_path):
    # the process dies while writing (no Python cleanup runs, as with SIGKILL or a power
    # cut): the target is still the previous, loadable model
    old = MLP([3, 5, 2], seed=1)
    path = tmp_path / "model.npz"
    old.save(path)
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os
        import fastnn, fastnn.io.saving
        def die_midway(fh, arrays):
            fh.write(b"PK\\x03\\x04 part of an archive")
            fh.flush()
            os._exit(9)
        fastnn.io.saving._write_npz = die_midway
        fastnn.MLP([3, 7, 2], seed=2).save({str(path)!r})
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, **child_process_kwargs(path.parent))
    assert done.returncode == 9, done.stderr
    assert path.read_bytes() == before
    np.testing.assert_array_equal(fastnn.load(path).params, old.params)
