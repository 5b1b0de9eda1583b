"""MLP.input_gradient / MLP.jacobian against float64 central differences, every activation,
output link and loss; chunking, dtypes and bad input."""
import numpy as np
import pytest

import fastnn
from fastnn.nn import derivatives as derivatives_module
from fastnn.nn.layers import ACTIVATIONS

H = 1e-5          # central-difference step: truncation ~H^2, rounding ~1e-16 / H
REL = 1e-7        # the promised bound on the relative error


def _close(actual, expected, rel=REL):
    """max |actual - expected| <= rel * max(1, max |expected|), entrywise scale."""
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(np.asarray(actual, np.float64) - expected).max())
    assert err <= rel * scale, f"max error {err:.3g} > {rel:g} * {scale:.3g}"


def _central(f, X):
    """d f(X)[i, ...] / d X[i, c] by central differences, shape f(X).shape + (n_inputs,).

    Sample i's outputs depend on row i only, so perturbing column c of every row at once
    gives all rows' derivatives in two evaluations."""
    cols = []
    for c in range(X.shape[1]):
        E = np.zeros_like(X)
        E[:, c] = H
        cols.append((f(X + E) - f(X - E)) / (2 * H))
    return np.stack(cols, axis=-1)


# (loss, output width, target maker): every output link fastnn has
LINKS = {
    "identity": ("mse", 3, lambda rng, n: rng.standard_normal((n, 3))),
    "sigmoid": ("bce", 3, lambda rng, n: (rng.random((n, 3)) < 0.5) * 1.0),
    "softmax": ("cross_entropy", 3, lambda rng, n: rng.integers(0, 3, n)),
    "exp": ("poisson", 3, lambda rng, n: rng.poisson(2.0, (n, 3)) * 1.0),
    "learned": (fastnn.GaussianNLL("learned"), 4, lambda rng, n: rng.standard_normal((n, 2))),
}


def _model(activation, link, dtype=np.float64, n_in=4):
    loss, n_out, make_y = LINKS[link]
    model = fastnn.MLP([n_in, 6, 5, n_out], activation=activation, dtype=dtype, seed=3,
                       bias_init=0.1)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((9, n_in))
    y = make_y(rng, 9)
    model.loss_and_grad(X, y, loss)      # sets the model's loss, hence its output link
    return model, loss, X, y


def _output_fn(model, link):
    """What jacobian(of="output") differentiates, in NumPy from the logits."""
    def f(X):
        Z = model.forward(X)
        if link == "sigmoid":
            return 1 / (1 + np.exp(-Z))
        if link == "softmax":
            E = np.exp(Z - Z.max(axis=1, keepdims=True))
            return E / E.sum(axis=1, keepdims=True)
        if link == "exp":
            return np.exp(Z)
        if link == "learned":
            k = Z.shape[1] // 2
            return np.concatenate([Z[:, :k], np.exp(Z[:, k:] / 2)], axis=1)
        return Z
    return f


@pytest.mark.parametrize("link", list(LINKS))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_jacobian_matches_central_differences(activation, link):
    model, _, X, _ = _model(activation, link)
    J = model.jacobian(X)
    assert J.shape == (9, model.n_outputs, 4) and J.dtype == np.float64
    _close(J, _central(_output_fn(model, link), X))
    _close(model.jacobian(X, of="logits"), _central(model.forward, X))
    for j in range(model.n_outputs):
        np.testing.assert_allclose(model.input_gradient(X, output=j), J[:, j, :], rtol=1e-13,
                                   atol=1e-15)


@pytest.mark.parametrize("link", list(LINKS))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_loss_input_gradient_matches_central_differences(activation, link):
    model, loss, X, y = _model(activation, link)
    w = np.random.default_rng(7).uniform(0.5, 2.0, X.shape[0])

    def mean_loss(X):
        return model.copy().loss_and_grad(X, y, loss, sample_weight=w)

    # d(mean)/dX by differences of the scalar, one entry at a time
    expected = np.empty_like(X)
    for i in range(X.shape[0]):
        for c in range(X.shape[1]):
            E = np.zeros_like(X)
            E[i, c] = H
            expected[i, c] = (mean_loss(X + E) - mean_loss(X - E)) / (2 * H)
    got_mean = model.input_gradient(X, y, loss, reduction="mean", sample_weight=w)
    _close(got_mean, expected)
    got = model.input_gradient(X, y, loss, sample_weight=w)     # per sample: w_i dl_i/dx_i
    _close(got, expected * w.sum())
    # unweighted, per sample, and the model's own loss by default
    unweighted = model.input_gradient(X, y)
    expected_1 = np.empty_like(X)
    for i in range(X.shape[0]):
        li = lambda Xi: model.copy().loss_and_grad(Xi, y[i:i + 1], loss)  # noqa: E731
        for c in range(X.shape[1]):
            E = np.zeros((1, X.shape[1]))
            E[0, c] = H
            expected_1[i, c] = (li(X[i:i + 1] + E) - li(X[i:i + 1] - E)) / (2 * H)
    _close(unweighted, expected_1)


def test_fixed_and_per_sample_sigma_gaussian_and_kl():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 3))
    model = fastnn.MLP([3, 7, 2], activation="tanh", dtype=np.float64, seed=1)
    y = rng.standard_normal((8, 2))
    sigma = rng.uniform(0.5, 2.0, 8)
    for loss, s in ((fastnn.GaussianNLL(0.7), np.full(8, 0.7)),
                    (fastnn.GaussianNLL(sigma, full=True), sigma)):
        g = model.input_gradient(X, y, loss)
        Z_grad = (model.forward(X) - y) / (s ** 2)[:, None]
        J = model.jacobian(X, of="logits")
        _close(g, np.einsum("ij,ijc->ic", Z_grad, J), 1e-12)
    P = rng.dirichlet(np.ones(2), 8)
    g = model.input_gradient(X, P, "kl_divergence")
    # a KL-trained model's output link is softmax
    model.loss_and_grad(X, P, "kl_divergence")
    _close(model.jacobian(X), _central(_output_fn(model, "softmax"), X))
    Z = model.forward(X)
    S = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
    _close(g, np.einsum("ij,ijc->ic", S - P, model.jacobian(X, of="logits")), 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_chunks_give_the_same_rows(monkeypatch, dtype):
    model, loss, X, y = _model("tanh", "softmax", dtype)
    X = np.tile(X, (5, 1))
    y = np.tile(y, 5)
    J, g = model.jacobian(X), model.input_gradient(X, y)
    assert J.dtype == dtype and g.dtype == dtype
    monkeypatch.setattr(derivatives_module, "SENSITIVITY_CHUNK_ROWS", 4)
    monkeypatch.setattr(derivatives_module, "JACOBIAN_STACKED_ROWS", 7)   # 2 rows x 3 columns
    # the same values to rounding: a one-row chunk's products go through BLAS's GEMV, which
    # sums in another order than GEMM (fastnn/_core/_blas.pyx)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(model.jacobian(X), J, **tol)
    np.testing.assert_allclose(model.input_gradient(X, y), g, **tol)


def test_float32_agrees_with_float64():
    m64, loss, X, y = _model("relu", "learned")
    m32 = m64.astype(np.float32)
    np.testing.assert_allclose(m32.jacobian(X), m64.jacobian(X), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m32.input_gradient(X, y), m64.input_gradient(X, y),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_one_row(dtype):
    # a one-row product takes BLAS's matrix-vector path (fastnn/_core/_blas.pyx)
    model, loss, X, y = _model("tanh", "softmax", dtype)
    J = model.jacobian(X[:1])
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(model.input_gradient(X[:1], output=1), J[:, 1, :], **tol)
    if dtype == np.float64:
        _close(J, _central(_output_fn(model, "softmax"), X[:1]))
        _close(model.input_gradient(X[:1], y[:1]),
               np.einsum("ij,ijc->ic", model.predict(X[:1]) - np.eye(3)[y[:1]],
                         model.jacobian(X[:1], of="logits")))
    np.testing.assert_allclose(J[0], model.jacobian(X)[0], **tol)


def test_wide_input_layer():
    # the input is wider than every layer: the delta buffers must hold n_inputs columns
    model = fastnn.MLP([40, 3, 2], activation="sigmoid", dtype=np.float64, seed=0)
    X = np.random.default_rng(0).standard_normal((5, 40))
    _close(model.jacobian(X), _central(model.forward, X))


def test_bad_input():
    model, loss, X, y = _model("tanh", "identity")
    with pytest.raises(ValueError, match="exactly one of y .* got neither"):
        model.input_gradient(X)
    with pytest.raises(ValueError, match="got both"):
        model.input_gradient(X, y, output=0)
    with pytest.raises(ValueError, match="output=3; expected output <= 2"):
        model.input_gradient(X, output=3)
    with pytest.raises(TypeError, match="output must be an integer"):
        model.input_gradient(X, output=1.0)
    with pytest.raises(ValueError, match="of='probabilities' is not supported"):
        model.jacobian(X, of="probabilities")
    with pytest.raises(ValueError, match="reduction='sum' is not supported"):
        model.input_gradient(X, y, reduction="sum")
    with pytest.raises(ValueError, match="X has 3 features"):
        model.jacobian(X[:, :3])
    with pytest.raises(ValueError, match="X contains NaN"):
        model.jacobian(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="X has 9 samples but y has 8"):
        model.input_gradient(X, y[:8])
    with pytest.raises(ValueError, match="sample_weight is all zeros"):
        model.input_gradient(X, y, reduction="mean", sample_weight=np.zeros(9))
    with pytest.raises(ValueError, match="pass y"):
        model.input_gradient(X, output=0, loss="mse")
    with pytest.raises(ValueError, match="pass y"):
        model.input_gradient(X, output=0, reduction="mean")
    with pytest.raises(ValueError, match="of='logits' applies to output="):
        model.input_gradient(X, y, of="logits")
    untrained = fastnn.MLP([4, 3, 1], seed=0)
    with pytest.raises(ValueError, match="has not been trained"):
        untrained.input_gradient(X, np.zeros(9))


@pytest.mark.parametrize("flush", [True, False])
def test_the_callers_floating_point_mode_is_kept(flush):
    from fastnn._core import _network
    from fastnn.runtime import fpmode
    model, loss, X, y = _model("tanh", "softmax", np.float32)
    before = _network._get_fpmode()
    previous = fpmode.get_flush_denormals()
    fpmode.set_flush_denormals(flush)
    try:
        model.jacobian(X)
        model.input_gradient(X, y)
    finally:
        fpmode.set_flush_denormals(previous)
    assert _network._get_fpmode() == before


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
def test_layer_normalized_and_dropout_layers(activation):
    # layer normalization is differentiated through; dropout is off outside training
    model = fastnn.MLP.from_layers(
        [fastnn.Dense(4, 6, activation, normalization="layer"),
         fastnn.Dense(6, 5, activation, dropout=0.3), fastnn.Dense(5, 3)],
        dtype=np.float64, seed=0)
    X = np.random.default_rng(0).standard_normal((7, 4))
    _close(model.jacobian(X), _central(model.forward, X))
    y = np.random.default_rng(1).standard_normal((7, 3))
    _close(model.input_gradient(X, y, "mse"),
           np.einsum("ij,ijc->ic", 2 * (model.forward(X) - y) / 3, model.jacobian(X)))


def test_the_private_entry_points_check_sizes_and_codes():
    # _sensitivity was 'unchecked': first/stop out of range wrote out of bounds (segfault),
    # an X of another width read garbage, stop = 2**31 + 1 wrapped to a negative count
    from fastnn._core import _sensitivity as S
    from fastnn.nn.losses import get_loss
    model = fastnn.MLP([5, 8, 3])
    X = np.ones((4, 5), np.float32)
    jac = np.empty((4, 3, 5), np.float32)
    bad_jacobian = [
        (dict(first=10**6, stop=10**6 + 3), "first=1000000"),
        (dict(first=-1, stop=2), "first=-1"),
        (dict(first=0, stop=2**31 + 1), "stop=2147483649"),
        (dict(first=2, stop=2), "first < stop"),
        (dict(X=np.ones((4, 2), np.float32)), "X has 2 features"),
        (dict(out=np.empty((4, 2, 5), np.float32)), "out has shape"),
        (dict(out=np.empty((3, 3, 5), np.float32)), "out has shape"),
        (dict(params=model.params[:-1]), "params has"),
        (dict(seed=7), "seed_kind=7"),
        (dict(link=-1), "link code -1"),
        (dict(stacked=0), "stacked_rows=0"),
        (dict(stacked=-1), "stacked_rows=-1"),
    ]
    for change, message in bad_jacobian:
        a = dict(params=model.params, X=X, seed=1, link=4, first=0, stop=3, out=jac,
                 stacked=64)
        a.update(change)
        with pytest.raises(ValueError, match=message):
            S.jacobian_into(model._spec, a["params"], a["X"], a["seed"], a["link"],
                            a["first"], a["stop"], a["out"], a["stacked"])
    # huge stacked rows: the chunk is capped, the result is the small chunks' bits
    S.jacobian_into(model._spec, model.params, X, 0, 0, 0, 3, jac, 2**62)
    np.testing.assert_array_equal(jac, model.jacobian(X, of="logits"))

    loss = get_loss("cross_entropy")
    labels = np.array([0, 1, 2, 1], dtype=np.intp)
    grad = np.empty((4, 5), np.float32)
    bad_loss = [
        (dict(X=np.ones((4, 2), np.float32)), "X has 2 features"),
        (dict(out=np.empty((4, 4), np.float32)), "out has shape"),
        (dict(out=np.empty((5, 5), np.float32)), "out has shape"),
        (dict(labels=np.array([0, 1], dtype=np.intp)), "labels"),
        (dict(chunk=0), "chunk_rows=0"),
        (dict(chunk=-1), "chunk_rows=-1"),
    ]
    for change, message in bad_loss:
        a = dict(X=X, labels=labels, out=grad, chunk=64)
        a.update(change)
        with pytest.raises(ValueError, match=message):
            S.loss_input_grad_into(model._spec, model.params, a["X"], loss.kind, int(loss.full),
                                   loss.scalar_sigma, None, a["labels"], None, None, 1.0,
                                   a["out"], a["chunk"])
    S.loss_input_grad_into(model._spec, model.params, X, loss.kind, int(loss.full),
                           loss.scalar_sigma, None, labels, None, None, 1.0, grad, 2**62)
    np.testing.assert_array_equal(grad, model.input_gradient(X, labels, loss="cross_entropy"))


# ------------------------------------------------------------------ the NumPy twins

def _twin_args(model):
    """The network as _reference's functions take it."""
    return dict(sizes=model.layer_sizes, acts=[la.activation for la in model.layers],
                alphas=[la._activation_parameter() for la in model.layers],
                norms=[bool(la.normalization) for la in model.layers])


@pytest.mark.parametrize("normalization", [None, "layer"], ids=["plain", "layernorm"])
@pytest.mark.parametrize("link", list(LINKS))
@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if a != "swish"])
def test_input_derivatives_equal_their_numpy_twins(activation, link, normalization):
    # float64: the compiled backward pass run down to X against _reference.jacobian and
    # _reference.input_gradient (the same arithmetic written layer by layer in NumPy)
    from fastnn._core import _reference as ref
    loss, n_out, make_y = LINKS[link]
    model = fastnn.MLP([4, 6, 5, n_out], activation=activation, dtype=np.float64, seed=3,
                       bias_init=0.1, normalization=normalization)
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((9, 4)), make_y(rng, 9)
    w = rng.random(9) + 0.5
    model.loss_and_grad(X, y, loss)      # the model's loss, hence its output link
    args = _twin_args(model)

    def close(actual, expected):
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-10 * scale)

    for of in ("output", "logits"):
        close(model.jacobian(X, of=of),
              ref.jacobian(model.params, X=X, link=model._link_name(), of=of, **args))
    loss_obj, _, Y, labels, sw, _ = model.prepare_data(X, y, loss, w)
    for reduction in ("none", "mean"):
        expected = ref.input_gradient(model.params, X=X, kind=loss_obj.kind, Y=Y,
                                      labels=labels, sample_weight=sw,
                                      full=bool(loss_obj.full), reduction=reduction, **args)
        close(model.input_gradient(X, y, sample_weight=w, reduction=reduction), expected)
