"""What scikit-learn, Keras and PyTorch users type first: it works with the same meaning, or
fails with an error that names the fastnn spelling; no fastnn name silently means something
else.  Also: every public callable documents its parameters, and the theory the docstrings
cite is in the project."""
import inspect
import os
import re
import types

import numpy as np
import pytest

import fastnn
from fastnn.nn.losses import LOSS_NAMES, get_loss


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)


def _log_softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))


# ------------------------------------------------------------------ fit without a loss

def test_fit_without_a_loss_names_the_fastnn_spelling():
    X, y = _data()
    model = fastnn.MLP([3, 8, 3], seed=0)
    with pytest.raises(TypeError) as info:
        model.fit(X, y, epochs=1)
    message = str(info.value)
    assert 'loss="cross_entropy"' in message and 'loss="mse"' in message
    assert "integers 0..2" in message  # says what it saw in y
    # once trained (or loaded), the model's loss is the default, as a Keras model keeps its own
    model.fit(X, y, "sparse_categorical_crossentropy", epochs=1, seed=0)
    history = model.fit(X, y, epochs=2, seed=0)
    assert len(history) == 2 and model.loss_.name == "cross_entropy"
    # an explicit output link implies its loss
    reg = fastnn.MLP([3, 4, 1], output="identity", seed=0)
    reg.fit(X, X[:, :1], epochs=1)
    assert reg.loss_.name == "mse"


# ------------------------------------------------------------------ loss names

@pytest.mark.parametrize("alias,canonical", [
    ("mean_squared_error", "mse"), ("MSELoss", "mse"),
    ("binary_crossentropy", "bce"), ("BCEWithLogitsLoss", "bce"), ("BCELoss", "bce"),
    ("categorical_crossentropy", "cross_entropy"),
    ("sparse_categorical_crossentropy", "cross_entropy"), ("CrossEntropyLoss", "cross_entropy"),
    ("PoissonNLLLoss", "poisson"), ("kl_divergence", "kl"),
])
def test_keras_and_pytorch_loss_names_mean_the_same(alias, canonical):
    assert get_loss(alias).name == canonical


def test_alias_losses_match_their_numpy_definitions():
    """Each alias evaluated on a model equals the formula of the library it comes from."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    model = fastnn.MLP([3, 5, 3], dtype=np.float64, seed=0)
    Z = model.forward(X)
    labels = rng.integers(0, 3, size=50)
    onehot = np.eye(3)[labels]
    ce = -np.mean(_log_softmax(Z)[np.arange(50), labels])  # Keras / PyTorch cross-entropy
    for name, y in [("sparse_categorical_crossentropy", labels),
                    ("categorical_crossentropy", onehot), ("CrossEntropyLoss", labels)]:
        assert model.copy().evaluate(X, y, name)[0] == pytest.approx(ce, rel=1e-12)
    Y = rng.normal(size=(50, 3))
    for name in ("mean_squared_error", "MSELoss"):  # mean over all elements
        assert model.copy().evaluate(X, Y, name)[0] == pytest.approx(np.mean((Z - Y) ** 2),
                                                                     rel=1e-12)
    B = (rng.random((50, 3)) > 0.5).astype(float)
    bce = np.mean(np.sum(np.logaddexp(0, Z) - B * Z, axis=1))  # summed over outputs
    assert model.copy().evaluate(X, B, "BCEWithLogitsLoss")[0] == pytest.approx(bce, rel=1e-12)
    C = rng.poisson(2.0, size=(50, 3)).astype(float)
    poisson = np.mean(np.sum(np.exp(Z) - C * Z, axis=1))
    assert model.copy().evaluate(X, C, "PoissonNLLLoss")[0] == pytest.approx(poisson, rel=1e-12)


def test_an_unknown_loss_name_suggests_the_close_one():
    with pytest.raises(ValueError, match="did you mean 'mean_squared_error'"):
        get_loss("MeanSquaredError")
    with pytest.raises(ValueError, match="did you mean 'cross_?entropy'"):
        get_loss("cross-entropy")


def test_every_loss_name_is_valid_and_round_trips_through_a_model_file(tmp_path):
    X, y = _data(30)
    for name in LOSS_NAMES:
        loss = get_loss(name)
        assert get_loss(loss.name).name == loss.name  # canonical names resolve to themselves
    model = fastnn.MLP([3, 4, 3], seed=0)
    model.fit(X, y, "sparse_categorical_crossentropy", epochs=1)
    model.save(tmp_path / "m.npz")
    assert fastnn.load(tmp_path / "m.npz").loss_.name == "cross_entropy"


# ------------------------------------------------------------------ callbacks, optimizers

def test_early_stopping_in_callbacks_is_early_stopping():
    X, y = _data()
    kwargs = dict(epochs=40, seed=0, validation_split=0.3, batch_size=16)
    a = fastnn.MLP([3, 16, 3], seed=0)
    ha = a.fit(X, y, "cross_entropy", fastnn.SGD(lr=0.5), **kwargs,
               early_stopping=fastnn.EarlyStopping(patience=2))
    b = fastnn.MLP([3, 16, 3], seed=0)
    seen = []
    hb = b.fit(X, y, "cross_entropy", fastnn.SGD(lr=0.5), **kwargs,
               callbacks=[fastnn.EarlyStopping(patience=2),
                          lambda epoch, logs: seen.append(epoch)])
    assert ha.stopped_early and hb.stopped_early and len(ha) == len(hb) < 40
    assert ha.best_epoch == hb.best_epoch
    assert np.array_equal(a.params, b.params) and seen == hb.epoch
    with pytest.raises(TypeError, match="early_stopping="):
        b.fit(X, y, "cross_entropy", epochs=1, early_stopping=3,
              callbacks=[fastnn.EarlyStopping()])


def test_learning_rate_is_an_alias_of_lr(tmp_path):
    assert fastnn.Adam(learning_rate=3e-3).lr == 3e-3
    assert fastnn.SGD(learning_rate=0.2, momentum=0.5).lr == 0.2
    assert fastnn.Adam().lr == 1e-3 and fastnn.SGD().lr == 0.01
    with pytest.raises(TypeError, match="learning_rate is Keras' name for lr"):
        fastnn.Adam(lr=1e-3, learning_rate=1e-2)
    with pytest.raises(ValueError, match="lr"):
        fastnn.SGD(learning_rate=-1.0)
    X, y = _data(40)
    model = fastnn.MLP([3, 4, 3], seed=0)
    opt = fastnn.Adam(learning_rate=0.02)
    model.fit(X, y, "cross_entropy", opt, epochs=1)
    model.save(tmp_path / "m.npz", optimizer=opt)
    assert fastnn.load(tmp_path / "m.npz", with_optimizer=True)[1].lr == 0.02


# ------------------------------------------------------------------ evaluate and score

def test_evaluate_returns_the_loss_and_the_metric():
    X, y = _data()
    model = fastnn.MLP([3, 8, 3], dtype=np.float64, seed=0)
    history = model.fit(X, y, "cross_entropy", epochs=3, seed=0, validation_data=(X, y))
    loss, accuracy = model.evaluate(X, y)
    # the same numbers fit reported for its validation data, and the independent formulas
    assert (loss, accuracy) == (history.val_loss[-1], history.val_metric[-1])
    Z = model.forward(X)
    assert loss == pytest.approx(-np.mean(_log_softmax(Z)[np.arange(len(y)), y]), rel=1e-12)
    assert accuracy == np.mean(Z.argmax(axis=1) == y) == model.score(X, y)

    reg = fastnn.MLP([3, 8, 2], dtype=np.float64, seed=0)
    Y = np.column_stack([X[:, 0], X[:, 1] * 2])
    reg.fit(X, Y, "mse", epochs=3, seed=0)
    mse, r2 = reg.evaluate(X, Y)
    P = reg.predict(X)
    assert mse == pytest.approx(np.mean((P - Y) ** 2), rel=1e-12)
    expected_r2 = np.mean(1 - ((Y - P) ** 2).sum(0) / ((Y - Y.mean(0)) ** 2).sum(0))
    assert r2 == pytest.approx(expected_r2, rel=1e-10)
    w = np.linspace(0.5, 2, len(y))
    wloss, _ = model.evaluate(X, y, sample_weight=w)
    per = -_log_softmax(model.forward(X))[np.arange(len(y)), y]
    assert wloss == pytest.approx(np.sum(w * per) / w.sum(), rel=1e-12)
    with pytest.raises(TypeError, match='loss="cross_entropy"'):
        fastnn.MLP([3, 2, 3]).evaluate(X, y)


# ------------------------------------------------------------------ renamed parameters

def test_alpha_never_silently_means_the_slope():
    # a scikit-learn user's alpha (an L2 penalty) on a relu network: refused, with the way
    with pytest.raises(TypeError, match="weight_decay"):
        fastnn.MLP([3, 4, 2], alpha=1e-4)
    with pytest.raises(TypeError, match="weight_decay"):
        fastnn.Dense(3, 4, "relu", alpha=1e-4)
    # with a leaky_relu layer it still sets the slope, loudly
    with pytest.warns(FutureWarning, match="negative_slope"):
        old = fastnn.MLP([3, 4, 2], activation="leaky_relu", alpha=0.2, seed=0)
    new = fastnn.MLP([3, 4, 2], activation="leaky_relu", negative_slope=0.2, seed=0)
    assert old.layers[0].negative_slope == new.layers[0].negative_slope == 0.2
    X = np.random.default_rng(0).normal(size=(6, 3))
    assert np.array_equal(old.forward(X), new.forward(X))
    # the slope is what leaky_relu computes: a NumPy reference of one layer
    W, b = new.layers[0].W, new.layers[0].b
    Z = X.astype(np.float32) @ W + b
    np.testing.assert_allclose(fastnn.dense_forward(X.astype(np.float32), W, b, "leaky_relu",
                                                    negative_slope=0.2),
                               np.where(Z > 0, Z, 0.2 * Z), rtol=1e-6)
    with pytest.raises(TypeError, match="pass only negative_slope"):
        fastnn.MLP([3, 4, 2], activation="leaky_relu", negative_slope=0.3, alpha=0.2)
    with pytest.warns(FutureWarning):
        fastnn.dense_forward(X, X.T[:, :2].copy(), np.zeros(2), "leaky_relu", alpha=0.1)


def test_alpha_is_elus_parameter_as_in_pytorch():
    X = np.random.default_rng(1).normal(size=(6, 3))
    # with an elu layer, alpha is ELU's alpha (torch.nn.ELU) and negative_slope the slope of
    # the leaky_relu layers (torch.nn.LeakyReLU), each used by its own layers only
    model = fastnn.MLP([3, 4, 5, 2], activation=["elu", "leaky_relu"], alpha=0.5,
                       negative_slope=0.2, dtype=np.float64, seed=0)
    assert (model.layers[0].alpha, model.layers[1].negative_slope) == (0.5, 0.2)
    h = X @ model.layers[0].W + model.layers[0].b
    h = np.where(h > 0, h, 0.5 * np.expm1(np.minimum(h, 0)))
    h = h @ model.layers[1].W + model.layers[1].b
    h = np.where(h > 0, h, 0.2 * h)
    np.testing.assert_allclose(model.forward(X), h @ model.layers[2].W + model.layers[2].b,
                               rtol=1e-12, atol=1e-14)
    assert fastnn.MLP([3, 4, 2], activation="elu").layers[0].alpha == 1.0  # torch's default
    # without an elu layer, alpha names ELU and the two things a user may have meant
    for activation in ("relu", "selu", "tanh", ["relu", "gelu"]):
        with pytest.raises(TypeError, match="ELU's parameter") as info:
            fastnn.MLP([3, 4, 4, 2], activation=activation, alpha=1e-4)
        assert "weight_decay" in str(info.value) and "negative_slope" in str(info.value)
    with pytest.raises(TypeError, match="ELU's parameter"):
        fastnn.dense_forward(X, X.T[:, :2].copy(), np.zeros(2), "relu", alpha=0.1)
    # the ensemble passes both names through to its members
    members = fastnn.MLPEnsemble([3, 4, 2], n_members=2, activation="elu", alpha=0.3).members
    assert [m.layers[0].alpha for m in members] == [0.3, 0.3]
    with pytest.raises(TypeError, match="weight_decay"):
        fastnn.MLPEnsemble([3, 4, 2], n_members=2, alpha=1e-4)
    # on a layer that is not part of a model yet: alpha sets ELU's alpha, names it elsewhere
    layer = fastnn.Dense(3, 4, "elu")
    layer.alpha = 0.4
    assert layer.alpha == 0.4
    with pytest.raises(TypeError, match="weight_decay"):
        fastnn.Dense(3, 4, "relu").alpha = 1e-4
    leaky = fastnn.Dense(3, 4, "leaky_relu")
    with pytest.warns(FutureWarning, match="negative_slope"):
        leaky.alpha = 0.3
    assert leaky.negative_slope == 0.3
    # a pickle of a model from before the rename (one alpha per layer) keeps its meaning
    state = model.__getstate__()
    for d in state["layers"]:
        d["alpha"] = d.pop("negative_slope") if d["activation"] == "leaky_relu" else d["alpha"]
        d.pop("negative_slope", None)
    old = fastnn.MLP.__new__(fastnn.MLP)
    old.__setstate__(state)
    assert (old.layers[0].alpha, old.layers[1].negative_slope) == (0.5, 0.2)
    assert np.array_equal(old.forward(X), model.forward(X))


def test_flat_parameter_vector_has_its_own_name():
    model = fastnn.MLP([3, 4, 2], seed=0)
    flat = model.get_flat_params()
    assert np.array_equal(flat, model.params) and flat is not model.params
    model.set_flat_params(np.zeros_like(flat))
    assert not model.params.any()
    with pytest.warns(FutureWarning, match="get_flat_params"):
        assert np.array_equal(model.get_params(), model.params)
    with pytest.warns(FutureWarning, match="set_flat_params"):
        model.set_params(flat)
    assert np.array_equal(model.params, flat)
    with pytest.raises(TypeError):  # scikit-learn's get_params(deep=True) is not this
        model.get_params(deep=True)


def test_summary_shows_the_link_the_loss_will_use():
    X, y = _data(30)
    model = fastnn.MLP([3, 4, 3], seed=0)
    assert "output link: set by the loss at fit" in model.summary()
    model.fit(X, y, "cross_entropy", epochs=1)
    assert "output link: softmax" in model.summary()
    assert "output link: identity" in fastnn.MLP([3, 1], output="identity").summary()


# ------------------------------------------------------------------ documentation

def _public_callables():
    """(name, object) for every public callable reachable from fastnn.__all__."""
    seen = {}
    for name in fastnn.__all__:
        obj = getattr(fastnn, name)
        members = ([(f"{name}.{n}", getattr(obj, n)) for n in getattr(obj, "__all__", [])]
                   if isinstance(obj, types.ModuleType) else [(name, obj)])
        for full, member in members:
            if not (inspect.isclass(member) or inspect.isfunction(member)):
                continue  # initializer instances, constants: documented by their class
            seen[full] = member
            if inspect.isclass(member):
                for attr, value in vars(member).items():
                    if not attr.startswith("_") and (inspect.isfunction(value) or isinstance(
                            value, (classmethod, staticmethod))):
                        seen[f"{full}.{attr}"] = getattr(member, attr)
    return seen


def _parameter_names(obj):
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [p.name for p in signature.parameters.values()
            if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def test_every_public_callable_documents_its_parameters():
    missing = []
    for name, obj in _public_callables().items():
        params = _parameter_names(obj)
        if not params:
            continue
        doc = inspect.getdoc(obj) or ""  # inherits an overridden method's base docstring
        if "Parameters\n----------" not in doc:
            missing.append(f"{name}: no Parameters section")
            continue
        section = doc.split("Parameters\n----------", 1)[1]
        section = re.split(r"\n\n[A-Z][a-z ]+\n-{3,}", section)[0]
        documented = set(re.findall(r"^([A-Za-z_][A-Za-z_0-9, ]*?)\s*(?::|$)", section, re.M))
        names = {n.strip() for entry in documented for n in entry.split(",")}
        undocumented = [p for p in params if p not in names]
        if undocumented:
            missing.append(f"{name}: {undocumented} not in its Parameters section")
    assert not missing, "\n".join(missing)


def test_docstrings_cite_the_projects_own_theory():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    theory = os.path.join(root, "docs", "theory.md")
    assert os.path.exists(theory), "docs/theory.md ships with the sources (MANIFEST.in)"
    text = open(theory, encoding="utf-8").read()
    sections = set(re.findall(r"^## (\d+)\.", text, re.M))
    package = os.path.dirname(fastnn.__file__)
    for filename in sorted(os.listdir(package)):
        if not filename.endswith((".py", ".pyx", ".pxd")):
            continue
        source = open(os.path.join(package, filename), encoding="utf-8").read()
        assert "THEORY.md" not in source, filename
        for cited in re.findall(r"docs/theory\.md,?\s*\(?section (\d+)", source):
            assert cited in sections, (filename, cited)
