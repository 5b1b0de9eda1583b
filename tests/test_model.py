"""MLP: one parameter vector with per-layer views, forward/predict, structure, validation."""
import numpy as np
import pytest

import fastnn
from fastnn._core import _reference as ref
from fastnn.nn.model import Dense, MLP

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def _numpy_forward(model, X):
    A = X.astype(np.float64)
    for layer in model.layers:
        A = ref.dense_forward(A, layer.W.astype(np.float64), layer.b.astype(np.float64),
                              layer.activation, layer._activation_parameter())
    return A


def test_parameters_live_in_one_vector_with_layer_views():
    model = MLP([5, 4, 3, 2], seed=0)
    assert model.n_params == 5 * 4 + 4 + 4 * 3 + 3 + 3 * 2 + 2
    assert model.params.shape == model.grads.shape == (model.n_params,)
    offset = 0
    for layer in model.layers:
        for view, grad in ((layer.W, layer.dW), (layer.b, layer.db)):
            assert np.shares_memory(view, model.params)
            assert np.shares_memory(grad, model.grads)
            np.testing.assert_array_equal(view.ravel(),
                                          model.params[offset:offset + view.size])
            offset += view.size
    assert offset == model.n_params
    model.layers[1].W[0, 0] = 42.0  # writing a view writes the vector
    assert 42.0 in model.params


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 7, 1024, 2500])  # below, at and above one predict chunk
def test_forward_matches_numpy_for_any_number_of_rows(dtype, rows):
    model = MLP([6, 9, 8, 3], activation=["tanh", "leaky_relu"], dtype=dtype, seed=1,
                bias_init=0.1)
    X = np.random.default_rng(2).standard_normal((rows, 6))
    Z = model.forward(X)
    assert Z.dtype == dtype and Z.shape == (rows, 3)
    np.testing.assert_allclose(Z, _numpy_forward(model, X.astype(dtype)), rtol=RTOL[dtype],
                               atol=RTOL[dtype])
    np.testing.assert_array_equal(model.predict(X), Z)  # output="auto" before any loss


def test_output_links_are_applied_by_predict():
    X = np.random.default_rng(0).standard_normal((10, 4))
    for output, link in (("sigmoid", lambda z: ref.activation(z, "sigmoid")),
                         ("softmax", lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True)),
                         ("exp", np.exp)):
        model = MLP([4, 5, 3], output=output, dtype=np.float64, seed=0)
        np.testing.assert_allclose(model.predict(X), link(model.forward(X)), rtol=1e-12)
    model = MLP([4, 5, 3], output="softmax", dtype=np.float64, seed=0)
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="predict_proba needs a sigmoid or softmax output"):
        MLP([4, 3], output="identity").predict_proba(X)


def test_input_of_another_dtype_is_converted_once_by_the_documented_rule():
    model = MLP([3, 4, 2], dtype=np.float32, seed=0)
    X64 = np.arange(12, dtype=np.float64).reshape(4, 3) / 10
    want = model.forward(X64.astype(np.float32))
    np.testing.assert_array_equal(model.forward(X64), want)
    np.testing.assert_array_equal(model.forward(X64.tolist()), want)
    np.testing.assert_array_equal(model.forward(np.asfortranarray(X64)), want)
    Xi = np.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(model.forward(Xi), model.forward(Xi.astype(np.float32)))
    for bad, match in ((X64.astype(complex), "complex128; expected a real numeric"),
                       (X64.astype(object), "object; expected a real numeric"),
                       (X64[0], r"must be 2-dimensional .* got shape \(3,\)"),
                       (X64[:, :2], r"X has 2 features .* the model expects 3"),
                       (X64[:0], "X has 0 samples")):
        with pytest.raises((TypeError, ValueError), match=match):
            model.forward(bad)
    X_nan = X64.copy()
    X_nan[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at row 2, "
                                         r"column 1\)"):
        model.forward(X_nan)


def test_same_seed_same_weights_and_layers_draw_differently():
    a, b = MLP([20, 20, 20, 2], seed=7), MLP([20, 20, 20, 2], seed=7)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.layers[0].W, a.layers[1].W)
    assert not np.array_equal(a.params, MLP([20, 20, 20, 2], seed=8).params)


def test_default_init_follows_the_activation_and_can_be_set_per_layer():
    model = MLP([4, 8, 8, 2], activation=["relu", "tanh"], seed=0)
    names = [layer.init.name for layer in model.layers]
    # PyTorch's kaiming_normal_ (plain N(0, 2/n_in)); fastnn called it he_normal until
    # he_normal came to mean Keras' truncated normal (fastnn.nn.init)
    assert names == ["kaiming_normal", "glorot_uniform", "glorot_uniform"]
    model = MLP([4, 8, 2], init=["lecun_normal", fastnn.nn.init.normal(std=0.1)],
                bias_init=[0.1, 0.0], seed=0)
    assert model.layers[0].init.name == "lecun_normal"
    np.testing.assert_array_equal(model.layers[0].b, np.float32(0.1))


def test_symmetric_hidden_init_warns_unless_silenced():
    with pytest.warns(UserWarning, match="symmetry problem"):
        MLP([3, 4, 2], init="zeros")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLP([3, 4, 2], init="zeros", warn_symmetric=False)
        MLP([3, 4, 2], init=["he_normal", "zeros"])  # only the output layer: no symmetry issue


def test_from_layers_and_repr_and_summary():
    layers = [Dense(3, 5, "tanh", init="glorot_normal"), Dense(5, 2, "relu", bias_init=0.1)]
    model = MLP.from_layers(layers, dtype=np.float64, seed=0)
    assert model.layers[-1].activation == "identity"  # logits
    assert model.layer_sizes == [3, 5, 2]
    assert "Dense(3 -> 5, tanh" in repr(layers[0])
    text = model.summary()
    assert "(3, 5)" in text and "tanh" in text and "glorot_normal" in text
    assert f"{model.n_params:,}" in text
    assert repr(model).startswith("MLP([3, 5, 2]")
    with pytest.raises(ValueError, match=r"layers\[1\] has n_in=4; expected 5"):
        MLP.from_layers([Dense(3, 5), Dense(4, 2)])
    with pytest.raises(ValueError, match="already belongs to a model"):
        MLP.from_layers(layers)


def test_get_set_flat_params_and_copy_are_independent():
    model = MLP([3, 4, 2], seed=0)
    saved = model.get_flat_params()
    clone = model.copy()
    model.params[:] = 0
    np.testing.assert_array_equal(clone.params, saved)
    model.set_flat_params(saved)
    np.testing.assert_array_equal(model.params, saved)
    with pytest.raises(ValueError, match=r"params has shape \(3,\); expected \(26,\)"):
        model.set_flat_params(np.zeros(3))
    bad = saved.copy()
    bad[0] = np.inf
    with pytest.raises(ValueError, match="params contains NaN or infinity"):
        model.set_flat_params(bad)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(layer_sizes=[3]), ValueError, "expected at least 2 entries"),
    (dict(layer_sizes=[3, 0, 2]), ValueError, r"layer_sizes\[1\]=0; expected"),
    (dict(layer_sizes=[3, 2.5]), TypeError, r"layer_sizes\[1\] must be an integer"),
    (dict(layer_sizes=[3, 4, 2], activation="mish"), ValueError,
     "activation='mish' is not supported; expected one of 'identity'"),
    (dict(layer_sizes=[3, 4, 2], activation=["relu", "tanh"]), ValueError,
     "activation has 2 entries; expected 1"),
    (dict(layer_sizes=[3, 4, 2], output="softplus"), ValueError,
     "output='softplus' is not supported"),
    (dict(layer_sizes=[3, 4, 2], dtype=np.float16), TypeError,
     "dtype is <class 'numpy.float16'>; expected numpy.float32 or numpy.float64"),
    (dict(layer_sizes=[3, 4, 2], init="he_normall"), ValueError, "he_normal"),
], ids=["short", "zero-width", "float-width", "activation", "activation-count", "output",
        "dtype", "init"])
def test_bad_construction_is_rejected(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLP(**kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("n_samples", [1, 3, 5000])   # 5000 x 4 > as_input's isfinite limit
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_inputs_in_the_models_dtype_are_checked_like_any_other(dtype, n_samples, bad):
    # the fast path of as_input (C-contiguous, the model's dtype) keeps every check
    model = MLP([4, 3], dtype=dtype, seed=0)
    X = np.ones((n_samples, 4), dtype)
    expected = model.predict(X.astype(np.float16))   # the converting path
    np.testing.assert_array_equal(model.predict(X), expected)
    X[n_samples - 1, 2] = bad
    with pytest.raises(ValueError, match=rf"X contains NaN or infinity \(first at row "
                                         rf"{n_samples - 1}, column 2\)"):
        model.predict(X)
    with pytest.raises(ValueError, match=r"X has 3 features \(shape \(1, 3\)\); the model "
                                         "expects 4"):
        model.predict(np.ones((1, 3), dtype))
    with pytest.raises(ValueError, match="X has 0 samples"):
        model.predict(np.ones((0, 4), dtype))
