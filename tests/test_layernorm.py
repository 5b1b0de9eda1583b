"""Layer normalization (normalization="layer"): gradient checks, the compiled network and
training loop against the NumPy reference, and the model's handling of gain and shift."""
import pickle

import numpy as np
import pytest

import fastnn
from fastnn._core import _network, _reference as ref
from fastnn.optim.optimizers import SGD, Adam
from fastnn.training.trainer import fit


def _spec(model):
    return (model.layer_sizes, [layer.activation for layer in model.layers],
            [layer._activation_parameter() for layer in model.layers])


def _norms(model):
    return [layer.normalization for layer in model.layers]


def _perturb(model, seed=0):
    # gain 1 and shift 0 at initialization: move them so that the test sees their role
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.normalization:
            layer.gain[...] = rng.uniform(0.5, 1.5, layer.n_out)
            layer.shift[...] = rng.uniform(-0.3, 0.3, layer.n_out)


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "silu", "elu", "sigmoid"])
def test_gradient_check(activation):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((11, 5))
    y = rng.integers(0, 3, 11)
    model = fastnn.MLP([5, 7, 6, 3], activation=activation, normalization="layer",
                       dtype=np.float64, seed=1)
    _perturb(model)
    report = fastnn.check_gradients(model, X, y, "cross_entropy")
    assert {row["block"] for row in report.rows} == {"W", "b", "gain", "shift"}
    assert report.max_rel_error < 1e-7, str(report)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_network_matches_numpy_reference(dtype):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((13, 4))
    Y = rng.standard_normal((13, 2))
    model = fastnn.MLP([4, 8, 6, 2], activation=["gelu", "tanh"],
                       normalization=["layer", None], dtype=dtype, seed=2)
    _perturb(model)
    loss = model.loss_and_grad(X, Y, "mse")
    want_loss, want = ref.network_loss_grad(model.params, *_spec(model), X.astype(dtype), 0,
                                            Y=Y, norms=_norms(model))
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(loss, want_loss, rtol=tol)
    np.testing.assert_allclose(model.grads, want, rtol=tol, atol=tol * np.abs(want).max())
    # predict: the same forward pass
    Z = model.forward(X)
    W, b = model.layers[0].W.astype(np.float64), model.layers[0].b
    y1, _, _ = ref.layernorm_forward(X.astype(dtype) @ W + b, model.layers[0].gain,
                                     model.layers[0].shift)
    H = ref.activation(ref.activation(y1, "gelu") @ model.layers[1].W + model.layers[1].b,
                       "tanh")
    np.testing.assert_allclose(Z, H @ model.layers[2].W + model.layers[2].b, rtol=tol,
                               atol=tol)


@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=0.1), lambda: SGD(lr=0.05, momentum=0.9,
                                                                       weight_decay=1e-3),
                                      lambda: Adam(lr=0.01)],
                         ids=["sgd-fused", "momentum-decay", "adam"])
def test_training_loop_with_dropout_matches_numpy_reference(make_opt):
    opt = make_opt()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((70, 5))
    labels = rng.integers(0, 3, 70)
    model = fastnn.MLP([5, 9, 7, 3], activation=["relu", "silu"], normalization="layer",
                       dropout=[0.2, 0.0], dtype=np.float64, seed=1, bias_init=0.1)
    start = model.get_flat_params()
    fit(model, X, labels, "cross_entropy", opt, epochs=3, batch_size=16, seed=3)
    kind = "adam" if isinstance(opt, Adam) else "sgd"
    o = {"lr": opt.lr, "weight_decay": opt.weight_decay, "clip_norm": None, "kind": kind}
    if kind == "sgd":
        o.update(momentum=opt.momentum, nesterov=opt.nesterov)
    else:
        o.update(beta1=opt.beta1, beta2=opt.beta2, eps=opt.eps)
    want = ref.train(start, *_spec(model), X, 4, o, epochs=3, batch_size=16, seed=3,
                     labels=labels, rates=[0.2, 0.0, 0.0], dropout_keep=_network.dropout_keep,
                     norms=_norms(model))
    np.testing.assert_allclose(model.params, want, rtol=1e-10, atol=1e-12)


def test_parameters_views_and_persistence(tmp_path):
    model = fastnn.MLP([3, 4, 5, 2], normalization=["layer", None], seed=0)
    first = model.layers[0]
    # [W (12) | b (4) | gain (4) | shift (4)] then layer 2, layer 3
    assert model.n_params == 3 * 4 + 3 * 4 + 4 * 5 + 5 + 5 * 2 + 2
    np.testing.assert_array_equal(first.gain, 1)
    np.testing.assert_array_equal(first.shift, 0)
    assert np.shares_memory(first.gain, model.params)
    assert model.layers[1].gain is None
    assert "norm" in model.summary() and "layer" in model.summary()
    _perturb(model)
    X = np.random.default_rng(0).standard_normal((6, 3))
    model.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    assert _norms(back) == ["layer", None, None]
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    for other in (model.copy(), model.astype(np.float64), pickle.loads(pickle.dumps(model))):
        assert _norms(other) == ["layer", None, None]
        np.testing.assert_allclose(other.predict(X), model.predict(X), rtol=1e-6)


def test_bad_normalization_is_rejected():
    with pytest.raises(ValueError, match="normalization='batch' is not supported"):
        fastnn.MLP([3, 4, 2], normalization="batch")
    with pytest.raises(ValueError, match="hidden layers only"):
        fastnn.MLP.from_layers([fastnn.Dense(3, 2, normalization="layer")])
    with pytest.raises(ValueError, match="normalization has 1 entries; expected 2"):
        fastnn.MLP([3, 4, 4, 2], normalization=["layer"])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_take_normalization():
    from fastnn.interop.sklearn import MLPClassifier
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    clf = MLPClassifier((8,), normalization="layer", max_iter=3, random_state=0)
    clf.fit(X, (X[:, 0] > 0).astype(int))
    assert _norms(clf.model_) == ["layer", None]
    assert clf.get_params()["normalization"] == "layer"


# ------------------------------------------------------------------------ attack (att15)

@pytest.mark.parametrize("dtype, big", [(np.float32, 1e20), (np.float32, 3e37),
                                        (np.float64, 1e160)])
def test_rows_whose_variance_overflows_are_still_normalized(dtype, big):
    # (z - mu)^2 overflowed in the variance sum (|z| > 1.8e19 in float32): the row came out
    # as xhat = 0 (y = shift) without any sign of trouble (PyTorch gives NaN there).  Layer
    # normalization is scale-invariant, so the row must give what a moderate scale gives.
    model = fastnn.MLP([1, 4, 2], activation="tanh", normalization="layer", dtype=dtype,
                       seed=0)
    model.layers[0].W = [[1.0, 2.0, 3.0, -4.0]]
    model.layers[0].b = np.zeros(4)
    model.layers[0].gain = [1.0, 2.0, 3.0, 4.0]
    X_big, X_mod = np.array([[big], [-big]], dtype), np.array([[1e6], [-1e6]], dtype)
    np.testing.assert_allclose(model.predict(X_big), model.predict(X_mod), rtol=1e-6)
    y = np.array([[0.3, -0.2], [0.1, 0.5]])
    loss_big = model.loss_and_grad(X_big, y, "mse")
    g_big = model.grads.copy()
    loss_mod = model.loss_and_grad(X_mod, y, "mse")
    np.testing.assert_allclose(loss_big, loss_mod, rtol=1e-6)
    # gain, shift and the last layer see the same normalized values
    n = model.layers[0].n_in * 4 + 4
    np.testing.assert_allclose(g_big[n:], model.grads[n:], rtol=1e-5, atol=1e-7)
