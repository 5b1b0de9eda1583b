"""Dropout: the counter-based masks (Philox-4x32-10), the compiled training loop against a
NumPy re-implementation calling the same mask function, gradients through a fixed mask,
the statistics of the masks, and prediction without dropout."""
import numpy as np
import pytest

import fastnn
from fastnn._core import _network, _reference as ref
from fastnn.optim.optimizers import SGD, Adam
from fastnn.training.trainer import fit


def _spec(model):
    return (model.layer_sizes, [layer.activation for layer in model.layers],
            [layer._activation_parameter() for layer in model.layers])


def test_philox_known_answers():
    # the known-answer vectors of Random123 (kat_vectors, philox4x32_10)
    assert _network.philox4x32_10([0, 0, 0, 0], [0, 0]) == [
        0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert _network.philox4x32_10([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2) == [
        0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert _network.philox4x32_10([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
                                  [0xA4093822, 0x299F31D0]) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_mask_is_a_function_of_its_counter_only():
    samples = np.arange(50, dtype=np.intp)
    m = _network.dropout_keep(7, 3, 1, samples, 37, 0.3)
    # any subset, in any order, gives the same rows
    sub = np.array([41, 2, 17], dtype=np.intp)
    np.testing.assert_array_equal(_network.dropout_keep(7, 3, 1, sub, 37, 0.3), m[sub])
    # and a different seed, epoch or layer a different mask
    for args in ((8, 3, 1), (7, 4, 1), (7, 3, 2)):
        assert (_network.dropout_keep(*args, samples, 37, 0.3) != m).any(), args


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.9])
def test_kept_fraction_within_binomial_error(rate):
    n = 200_000  # 2000 samples x 100 units
    m = _network.dropout_keep(12345, 0, 0, np.arange(2000, dtype=np.intp), 100, rate)
    p = 1 - rate
    se = np.sqrt(p * (1 - p) / n)
    assert abs(m.mean() - p) < 5 * se, (m.mean(), p)
    # units and samples are not correlated with their neighbours (blocks of 4 units share
    # one Philox call): the kept fraction per unit column is binomial too
    per_unit = m.mean(axis=0)
    assert np.abs(per_unit - p).max() < 5 * np.sqrt(p * (1 - p) / 2000)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_forward_scaling_and_predict_unaffected(dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 6))
    model = fastnn.MLP([6, 40, 3], activation="relu", dropout=0.25, dtype=dtype, seed=0)
    plain = fastnn.MLP([6, 40, 3], activation="relu", dtype=dtype, seed=0)
    plain.params[...] = model.params
    # predict and loss_and_grad use every unit, unscaled
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))
    y = rng.integers(0, 3, 300)
    assert model.loss_and_grad(X, y, "cross_entropy") == plain.loss_and_grad(
        X, y, "cross_entropy")
    # training mode: the hidden output is keep * relu(z) / 0.75 exactly, for any rows
    samples = rng.permutation(300).astype(np.intp)
    W1, b1 = model.layers[0].W, model.layers[0].b
    H = np.maximum(X.astype(dtype) @ W1 + b1, 0)
    keep = _network.dropout_keep(99, 2, 0, samples, 40, 0.25)
    Hd = np.where(keep != 0, H[samples] * dtype(1 / 0.75), 0)
    W2, b2 = model.layers[1].W, model.layers[1].b
    Z_want = Hd.astype(np.float64) @ W2 + b2
    want = ref.cross_entropy_loss(Z_want, labels=y[samples])[0].sum()
    grads = np.zeros_like(model.params)
    total = _network.loss_grad_into(model._spec, model.params, grads,
                                    np.ascontiguousarray(X[samples], dtype), 4, 0, 1.0, None,
                                    np.ascontiguousarray(y[samples], np.intp), None, None, 1.0,
                                    dropout_samples=samples, dropout_seed=99, epoch=2)
    np.testing.assert_allclose(total, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "elu", "sigmoid"])
def test_gradient_check_through_a_fixed_mask(activation):
    # loss_grad_into with a fixed mask is a smooth function of the parameters: compare its
    # gradient with float64 central differences
    rng = np.random.default_rng(1)
    X = rng.standard_normal((10, 4))
    y = rng.integers(0, 3, 10)
    model = fastnn.MLP([4, 7, 6, 3], activation=activation, dropout=[0.3, 0.5],
                       dtype=np.float64, seed=2, bias_init=0.1)
    samples = np.arange(100, 110, dtype=np.intp)
    labels = y.astype(np.intp)

    def loss_grad(params):
        g = np.zeros_like(params)
        f = _network.loss_grad_into(model._spec, params, g, X, 4, 0, 1.0, None, labels, None,
                                    None, 1.0, dropout_samples=samples, dropout_seed=5,
                                    epoch=1)
        return f, g

    p0 = model.params.copy()
    _, g = loss_grad(p0)
    eps = 1e-6
    num = np.empty_like(p0)
    for i in range(p0.size):
        p = p0.copy()
        p[i] += eps
        up = loss_grad(p)[0]
        p[i] -= 2 * eps
        num[i] = (up - loss_grad(p)[0]) / (2 * eps)
    rel = np.abs(g - num).max() / np.abs(num).max()
    assert rel < 1e-7, rel
    # the mask matters: the gradient differs from the one without dropout
    plain = np.zeros_like(p0)
    _network.loss_grad_into(model._spec, p0, plain, X, 4, 0, 1.0, None, labels, None, None,
                            1.0)
    assert np.abs(plain - g).max() > 1e-3


@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=0.1), lambda: SGD(lr=0.05, momentum=0.9),
                                      lambda: Adam(lr=0.01)],
                         ids=["sgd-fused", "momentum", "adam"])
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "storage-order"])
def test_training_loop_equals_numpy_reference(make_opt, shuffle):
    # float64, 83 samples in batches of 16 (a last batch of 3), relu and gelu layers with
    # dropout 0.2 and 0.4: the compiled loop (plain SGD fused into the GEMMs, or a separate
    # update) equals the NumPy reference that draws the masks from the same function
    opt = make_opt()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((83, 5))
    labels = rng.integers(0, 4, 83)
    model = fastnn.MLP([5, 9, 7, 4], activation=["relu", "gelu"], dropout=[0.2, 0.4],
                       dtype=np.float64, seed=1, bias_init=0.1)
    start = model.get_flat_params()
    fit(model, X, labels, "cross_entropy", opt, epochs=3, batch_size=16, seed=3,
        shuffle=shuffle)
    kind = "adam" if isinstance(opt, Adam) else "sgd"
    o = {"lr": opt.lr, "weight_decay": 0.0, "clip_norm": None, "kind": kind}
    if kind == "sgd":
        o.update(momentum=opt.momentum, nesterov=opt.nesterov)
    else:
        o.update(beta1=opt.beta1, beta2=opt.beta2, eps=opt.eps)
    want = ref.train(start, *_spec(model), X, 4, o, epochs=3, batch_size=16, seed=3,
                     labels=labels, shuffle=shuffle, rates=[0.2, 0.4, 0.0],
                     dropout_keep=_network.dropout_keep)
    np.testing.assert_allclose(model.params, want, rtol=1e-10, atol=1e-12)
    # and the dropout made a difference
    plain = fastnn.MLP([5, 9, 7, 4], activation=["relu", "gelu"], dtype=np.float64, seed=1,
                       bias_init=0.1)
    fit(plain, X, labels, "cross_entropy", make_opt(), epochs=3, batch_size=16, seed=3,
        shuffle=shuffle)
    assert np.abs(plain.params - model.params).max() > 1e-3


def test_bitwise_reproducible_and_independent_of_batching_of_the_masks():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((64, 4))
    y = rng.integers(0, 2, 64)
    runs = []
    for _ in range(2):
        m = fastnn.MLP([4, 16, 2], dropout=0.5, seed=0)
        fit(m, X, y, "cross_entropy", SGD(lr=0.1), epochs=3, batch_size=8, seed=11)
        runs.append(m.params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_dropout_arguments_are_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match=r"dropout=1.0; expected dropout < 1"):
        fastnn.MLP([3, 4, 2], dropout=1.0)
    with pytest.raises(ValueError, match=r"dropout=-0.1; expected dropout >= 0"):
        fastnn.MLP([3, 4, 2], dropout=-0.1)
    with pytest.raises(ValueError, match="dropout has 1 entries; expected 2"):
        fastnn.MLP([3, 4, 4, 2], dropout=[0.1])
    with pytest.raises(ValueError, match="hidden layers only"):
        fastnn.MLP.from_layers([fastnn.Dense(3, 2, dropout=0.5)])
    model = fastnn.MLP([3, 5, 4, 2], dropout=[0.1, 0.3])
    assert [layer.dropout for layer in model.layers] == [0.1, 0.3, 0.0]
    assert "dropout" in model.summary() and "dropout=[0.1, 0.3]" in repr(model)
    model.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    assert [layer.dropout for layer in back.layers] == [0.1, 0.3, 0.0]
    assert [layer.dropout for layer in model.copy().layers] == [0.1, 0.3, 0.0]
    import pickle
    again = pickle.loads(pickle.dumps(model))
    assert [layer.dropout for layer in again.layers] == [0.1, 0.3, 0.0]
    X = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_take_dropout():
    from fastnn.interop.sklearn import MLPClassifier, MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    clf = MLPClassifier((8, 6), dropout=[0.2, 0.1], max_iter=3, random_state=0).fit(
        X, (X[:, 0] > 0).astype(int))
    assert [layer.dropout for layer in clf.model_.layers] == [0.2, 0.1, 0.0]
    assert clf.get_params()["dropout"] == [0.2, 0.1]
    reg = MLPRegressor(hidden_layer_sizes=(5,), dropout=0.3, max_iter=2, random_state=0).fit(X, X[:, 1])
    assert reg.model_.layers[0].dropout == 0.3
    with pytest.raises(ValueError, match="dropout"):
        MLPRegressor(hidden_layer_sizes=(5,), dropout=1.5, max_iter=2).fit(X, X[:, 1])


def test_a_fixed_mask_needs_one_sample_index_per_row():
    model = fastnn.MLP([3, 4, 2], dropout=0.5, dtype=np.float64)
    X = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"dropout_samples has 2 entries; expected one per "
                                         r"row of X \(5\)"):
        _network.loss_grad_into(model._spec, model.params, np.zeros_like(model.params), X, 4,
                                0, 1.0, None, np.zeros(5, np.intp), None, None, 1.0,
                                dropout_samples=np.arange(2, dtype=np.intp), dropout_seed=1)
