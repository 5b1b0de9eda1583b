"""Saved formats and their versions: every version reads as it was meant, a newer one is refused.

fastnn.io.saving's model files (FORMAT_VERSION) and fastnn.ensemble's ensemble files
(ENSEMBLE_FORMAT_VERSION).  Files of an older version are written here by hand, the way that
version's writer laid them out (fastnn.io.saving's module docstring lists what each version means):
taking a file this fastnn writes and rewriting its description into the old layout.
"""
import json
import pickle
import re

import numpy as np
import pytest

import fastnn
from fastnn.nn import init
from fastnn.io import format as fio_format, saving as fio
from fastnn.ensemble import ENSEMBLE_FORMAT_VERSION, MLPEnsemble, load_ensemble
from fastnn.io.saving import ModelFileError
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import SGD, ReduceOnPlateau
from fastnn.io.tabular import Preprocessor


def _read(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _write(path, arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _description(path):
    return json.loads(str(_read(path)["description"]))


def _with_description(path, out, description):
    arrays = _read(path)
    arrays["description"] = np.array(json.dumps(description))
    _write(out, arrays)


# ------------------------------------------------------------------ the version-1 layout

#: this fastnn's initializer configs -> the version-1 name of the same draws
_V1_NAME = {
    "kaiming_normal": "he_normal",
    "xavier_normal": "glorot_normal",
}


def _v1_initializer(config):
    """A version-2 initializer config as a version-1 writer named the same draws."""
    if config is None:
        return None
    if config.get("name") in _V1_NAME:
        return {"name": _V1_NAME[config["name"]]}
    if config == {"name": "variance_scaling", "scale": 1.0, "mode": "fan_in",
                  "distribution": "normal"}:
        return {"name": "lecun_normal"}
    if config.get("name") == "variance_scaling" and config["mode"] == "fan_in" and \
            config["distribution"] == "uniform" and abs(config["scale"] - 1 / 3) < 1e-15:
        return {"name": "uniform"}
    # the truncated presets and lecun_uniform did not exist: version 1 wrote their draws as
    # variance_scaling (the other names kept their meaning)
    preset = init.from_config(config)
    if config["name"] in ("he_normal", "glorot_normal", "lecun_normal", "lecun_uniform"):
        return {"name": "variance_scaling", "scale": preset.scale, "mode": preset.mode,
                "distribution": preset.distribution}
    return config


def v1_description(description, transitional=False):
    """`description` (written by this fastnn) in the layout of format version 1.

    transitional=False: as fastnn wrote it before negative_slope existed (a layer's alpha is
    its activation's one parameter: leaky_relu's slope, elu's alpha, 0.01 otherwise).
    transitional=True: as fastnn wrote it between the slope's renaming and the bump to 2
    (negative_slope and alpha = elu's alpha, 1.0 on a leaky_relu layer, still labelled 1).
    Initializer names are the version-1 names either way.
    """
    d = json.loads(json.dumps(description))
    d["format_version"] = 1
    for layer in d["layers"]:
        if not transitional:
            slope = layer.pop("negative_slope")
            layer["alpha"] = {"leaky_relu": slope, "elu": layer["alpha"]}.get(
                layer["activation"], 0.01)
        layer["init"] = _v1_initializer(layer["init"])
        layer["bias_init"] = _v1_initializer(layer["bias_init"])
    return d


def _model():
    """One of every kind of layer parameter and initializer whose meaning changed."""
    return MLP([3, 6, 5, 4, 5, 4, 2],
               activation=["leaky_relu", "elu", "selu", "relu", "tanh"],
               negative_slope=0.2, alpha=0.6, dtype=np.float64, seed=0,
               init=[None, init.xavier_normal, None,
                     init.variance_scaling(1 / 3, "fan_in", "uniform"), init.he_normal, None])


def _numpy_forward(model, X):
    """The closed forms of the activations, in NumPy (an independent reference)."""
    def act(name, z):
        if name == "leaky_relu":
            return np.where(z > 0, z, 0.2 * z)
        if name == "elu":
            return np.where(z > 0, z, 0.6 * np.expm1(np.minimum(z, 0)))
        if name == "selu":
            a, s = 1.6732632423543772, 1.0507009873554805
            return s * np.where(z > 0, z, a * np.expm1(np.minimum(z, 0)))
        if name == "relu":
            return np.maximum(z, 0)
        if name == "tanh":
            return np.tanh(z)
        assert name == "identity"
        return z
    h = X
    for layer in model.layers:
        h = act(layer.activation, h @ layer.W + layer.b)
    return h


@pytest.mark.parametrize("transitional", [False, True], ids=["v1", "v1-after-rename"])
def test_version_1_files_load_with_their_meaning(tmp_path, transitional):
    model = _model()
    new = tmp_path / "new.npz"
    model.save(new)
    old_description = v1_description(_description(new), transitional)
    if transitional:  # what that writer stored on a leaky_relu layer: elu's default alpha
        assert old_description["layers"][0]["alpha"] == 1.0
    else:
        assert [la["alpha"] for la in old_description["layers"][:2]] == [0.2, 0.6]
    # the version-1 names of the initializers, as that writer stored them
    assert [la["init"]["name"] for la in old_description["layers"]] == [
        "he_normal", "glorot_normal", "lecun_normal", "uniform", "variance_scaling",
        "glorot_uniform"]
    old = tmp_path / "old.npz"
    _with_description(new, old, old_description)

    loaded = fastnn.load(old)
    assert [la.negative_slope for la in loaded.layers[:1]] == [0.2]
    assert loaded.layers[1].alpha == 0.6
    X = np.random.default_rng(0).normal(size=(9, 3))
    np.testing.assert_allclose(loaded.forward(X), _numpy_forward(model, X), rtol=1e-12,
                               atol=1e-14)
    assert np.array_equal(loaded.forward(X), model.forward(X))
    # each initializer draws what it drew in the version-1 fastnn that wrote the file
    want = [init.variance_scaling(2.0, "fan_in", "normal"),    # he_normal then
            init.variance_scaling(1.0, "fan_avg", "normal"),   # glorot_normal then
            init.variance_scaling(1.0, "fan_in", "normal"),    # lecun_normal then
            init.variance_scaling(1 / 3, "fan_in", "uniform"),  # uniform then
            init.variance_scaling(2.0, "fan_in", "truncated_normal"),
            init.glorot_uniform]
    for layer, initializer in zip(loaded.layers, want):
        np.testing.assert_array_equal(layer.init((40, 30), rng=1),
                                      initializer((40, 30), rng=1), strict=True)
    assert loaded.layers[0].init == init.kaiming_normal
    assert loaded.layers[1].init == init.xavier_normal


def test_version_2_round_trip_keeps_every_initializer(tmp_path):
    model = _model()
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fastnn.load(path)
    assert [la.init for la in loaded.layers] == [la.init for la in model.layers]
    assert loaded.layers[4].init == init.he_normal  # Keras' truncated one, as saved
    assert _description(path)["format_version"] == fio.FORMAT_VERSION == 2


def test_an_older_reader_refuses_a_newer_file(tmp_path, monkeypatch):
    # every reader since the first release checks format_version; one that reads up to 1
    # (simulated: the same check with FORMAT_VERSION = 1) refuses this fastnn's files
    path = tmp_path / "m.npz"
    _model().save(path)
    monkeypatch.setattr(fio_format, "FORMAT_VERSION", 1)  # where the reader checks it
    with pytest.raises(ModelFileError, match=r"written in format version 2 \(by fastnn "
                                             r".*\); this fastnn .* reads format versions up "
                                             r"to 1: upgrade fastnn to load it"):
        fastnn.load(path)


@pytest.mark.parametrize("where", ["description", "layers[1]", "optimizer",
                                   "optimizer.schedule", "optimizer.early_stopping",
                                   "optimizer.early_stopping.record"])
def test_an_unknown_key_is_refused_not_ignored(tmp_path, where):
    # a newer writer that adds a field without bumping the version must not be half-read
    path = tmp_path / "m.npz"
    _full_model_save(path)
    d = _description(path)
    obj = d["layers"][1] if where == "layers[1]" else d
    for part in where.split(".") if where.startswith("optimizer") else ():
        obj = obj[part]
    obj["from_the_future"] = 1
    _with_description(path, path, d)
    with pytest.raises(ModelFileError, match=re.escape(where) + r" has the keys "
                       r"\['from_the_future'\], which this fastnn .* does not know"):
        fastnn.load(path, with_optimizer=True)


def test_a_version_2_layer_needs_negative_slope(tmp_path):
    path = tmp_path / "m.npz"
    _model().save(path)
    d = _description(path)
    del d["layers"][0]["negative_slope"]
    _with_description(path, path, d)
    with pytest.raises(ModelFileError, match=r"no 'layers\[0\].negative_slope'"):
        fastnn.load(path)


# --------------------------------------------------- the layout is pinned to its version

def _full_model_save(path):
    """A model and optimizer using every field the format has."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    model = MLP([3, 6, 1], activation="leaky_relu", dropout=0.1, normalization="layer",
                dtype=np.float64, seed=0)
    model.preprocessor_ = Preprocessor(["a", "b", "c"], "y", "regression",
                                       x_mean=[0.0] * 3, x_scale=[1.0] * 3, x_fill=[0.0] * 3)
    opt = SGD(lr=0.01, momentum=0.9, schedule=ReduceOnPlateau(patience=1))
    fastnn.fit(model, X, y, "mse", opt, epochs=3, seed=0, validation_data=(X, y),
               early_stopping=fastnn.EarlyStopping(patience=5))
    model.save(path, optimizer=opt)


def _key_paths(obj, prefix=""):
    """Every key path of a JSON object; list items as [] (the same layout for each)."""
    paths = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            paths.add(prefix + key)
            paths |= _key_paths(value, prefix + key + ".")
    elif isinstance(obj, list) and obj and isinstance(obj[0], dict):
        for item in obj:
            paths |= _key_paths(item, prefix[:-1] + "[].")
    return paths


#: the description's layout in each format version (the files of the model above).  A change
#: to what save writes fails this test: bump fastnn.io.saving.FORMAT_VERSION, teach load the old
#: version's meaning (and _DESCRIPTION_KEYS etc. the new keys), add the new layout here and a
#: test that the previous version's files still load.
LAYOUT = {2: {
    "format", "format_version", "fastnn_version", "layer_sizes", "dtype", "output", "loss",
    "loss.name", "n_params", "params_sha256",
    "layers", *(f"layers[].{k}" for k in ("activation", "negative_slope", "alpha", "dropout",
                                           "normalization", "init", "bias_init")),
    "layers[].init.name", "layers[].bias_init.name",
    "tabular", *(f"tabular.{k}" for k in ("feature_names", "target", "task", "classes",
                                          "x_mean", "x_scale", "x_fill", "y_mean", "y_scale")),
    "optimizer", *(f"optimizer.{k}" for k in ("name", "config", "schedule", "t",
                                              "completed_epochs", "has_state",
                                              "early_stopping")),
    *(f"optimizer.config.{k}" for k in ("lr", "momentum", "nesterov", "weight_decay",
                                        "clip_norm")),
    "optimizer.schedule.name", "optimizer.schedule.config", "optimizer.schedule.state",
    *(f"optimizer.schedule.config.{k}" for k in ("factor", "patience", "min_lr",
                                                 "min_delta")),
    *(f"optimizer.schedule.state.{k}" for k in ("_best", "_bad_epochs", "_scale")),
    "optimizer.early_stopping.config", "optimizer.early_stopping.record",
    *(f"optimizer.early_stopping.config.{k}" for k in ("patience", "min_delta", "monitor",
                                                       "restore_best_weights")),
    *(f"optimizer.early_stopping.record.{k}" for k in ("best_value", "best_epoch", "wait",
                                                       "at_epoch", "run_params")),
}}
#: keys written only in some runs (run_params: the last fit restored the best weights, and
#: they differ from those the run reached; tabular.encodings: a `fastnn train` model with
#: category or date columns, tests/test_cli_categories.py)
OPTIONAL = {"optimizer.early_stopping.record.run_params", "tabular.encodings"}


def test_the_file_layout_is_that_of_its_format_version(tmp_path):
    path = tmp_path / "m.npz"
    _full_model_save(path)
    found = _key_paths(_description(path))
    expected = LAYOUT[fio.FORMAT_VERSION]
    assert found | OPTIONAL == expected | OPTIONAL, (
        f"save writes a layout that differs from format version {fio.FORMAT_VERSION}'s "
        f"(added {sorted(found - expected)}, removed {sorted(expected - found)}): bump "
        "fastnn.io.saving.FORMAT_VERSION and keep reading the old version (see LAYOUT)")
    # the reader knows every key the writer writes (its unknown-key check)
    top = {p for p in found if "." not in p and "[" not in p}
    assert top == set(fio._DESCRIPTION_KEYS)
    assert {p.split(".", 1)[1] for p in found if p.startswith("layers[].")
            and p.count(".") == 1} == set(fio._LAYER_KEYS)
    assert {p.split(".")[1] for p in found if p.startswith("optimizer.")} == \
        set(fio._OPTIMIZER_KEYS)
    assert set(_read(path)) | {"early_stopping_run_params"} == {
        "description", "params", "optimizer_state_0", "optimizer_state_1",
        "early_stopping_best_params", "early_stopping_run_params"}


# ------------------------------------------------------------------------- ensemble files

def _ensemble():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.normal(size=30)
    ens = MLPEnsemble([3, 4, 1], n_members=2, activation="leaky_relu", negative_slope=0.2,
                      dtype=np.float64, seed=0)
    ens.fit(X, y, "mse", epochs=2)
    return ens, X


def test_ensemble_layout_is_that_of_its_format_version(tmp_path):
    # the ensemble's own description did not change (version 1); its members are model files,
    # each with its own format version, checked by fastnn.load
    ens, _ = _ensemble()
    path = tmp_path / "e.npz"
    ens.save(path)
    arrays = _read(path)
    d = json.loads(str(arrays["description"]))
    assert ENSEMBLE_FORMAT_VERSION == 1
    assert set(d) == {"format", "format_version", "fastnn_version", "n_members",
                      "member_seeds", "bootstrap"}, (
        "the ensemble description changed: bump ENSEMBLE_FORMAT_VERSION and keep reading "
        "version 1")
    assert set(arrays) == {"description", "member_0", "member_1"}


def test_ensemble_with_version_1_members_loads_with_their_meaning(tmp_path):
    ens, X = _ensemble()
    path = tmp_path / "e.npz"
    ens.save(path)
    arrays = _read(path)
    for k in range(2):  # each member rewritten as a version-1 model file
        member = tmp_path / f"m{k}.npz"
        member.write_bytes(arrays[f"member_{k}"].tobytes())
        _with_description(member, member, v1_description(_description(member)))
        arrays[f"member_{k}"] = np.frombuffer(member.read_bytes(), dtype=np.uint8)
    _write(path, arrays)
    loaded = load_ensemble(path)
    assert [m.layers[0].negative_slope for m in loaded.members] == [0.2, 0.2]
    for a, b in zip(loaded.members, ens.members):
        assert np.array_equal(a.forward(X), b.forward(X))


def test_an_older_reader_refuses_an_ensemble_of_newer_members(tmp_path, monkeypatch):
    ens, _ = _ensemble()
    path = tmp_path / "e.npz"
    ens.save(path)
    monkeypatch.setattr(fio_format, "FORMAT_VERSION", 1)  # where the reader checks it
    with pytest.raises(ModelFileError, match=r"member 0: it was written in format version 2"):
        load_ensemble(path)


# ------------------------------------------------------------------------------- pickles

def test_model_pickles_keep_their_initializers(tmp_path):
    model = _model()
    back = pickle.loads(pickle.dumps(model))
    assert [la.init for la in back.layers] == [la.init for la in model.layers]


# ------------------------------------------------- what a stored initializer name means

#: the draws each initializer name stands for in a file of each format version (what
#: fastnn.io.saving reads a version-1 name as, and fastnn.nn.init's names now).  Changing what a name
#: draws changes what every file holding it means: bump FORMAT_VERSION and translate the old
#: names on reading (fastnn.io.saving._V1_INITIALIZERS), then add the new version's table here.
MEANING = {
    1: {"he_normal": (2.0, "fan_in", "normal"), "glorot_normal": (1.0, "fan_avg", "normal"),
        "lecun_normal": (1.0, "fan_in", "normal"), "xavier_normal": (1.0, "fan_in", "normal"),
        "uniform": (1 / 3, "fan_in", "uniform"), "glorot_uniform": (1.0, "fan_avg", "uniform"),
        "xavier_uniform": (1.0, "fan_avg", "uniform"), "he_uniform": (2.0, "fan_in", "uniform")},
    2: {"glorot_uniform": (1.0, "fan_avg", "uniform"),
        "xavier_uniform": (1.0, "fan_avg", "uniform"),
        "xavier_normal": (1.0, "fan_avg", "normal"),
        "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
        "he_uniform": (2.0, "fan_in", "uniform"), "kaiming_uniform": (2.0, "fan_in", "uniform"),
        "kaiming_normal": (2.0, "fan_in", "normal"),
        "he_normal": (2.0, "fan_in", "truncated_normal"),
        "lecun_uniform": (1.0, "fan_in", "uniform"),
        "lecun_normal": (1.0, "fan_in", "truncated_normal")},
}


@pytest.mark.parametrize("version", sorted(MEANING))
def test_initializer_names_mean_what_their_version_says(tmp_path, version):
    assert max(MEANING) == fio.FORMAT_VERSION, "add the new format version's table"
    names = MEANING[version]
    if version == fio.FORMAT_VERSION:  # every name this fastnn accepts has its meaning pinned
        ready = set(init.NAMES) - {"zeros", "normal", "variance_scaling"}
        assert ready == set(names)
    for name, setting in names.items():
        config = fio._versioned_initializer({"name": name}, version)
        rebuilt = init.from_config(config)
        scale, mode, distribution = setting
        assert rebuilt.scale == pytest.approx(scale, rel=1e-15), name
        assert (rebuilt.mode, rebuilt.distribution) == (mode, distribution), name
