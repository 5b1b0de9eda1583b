"""Prediction of a few rows in one compiled call (fastnn/nn/inference.py) and the fixed-order
products behind every prediction (src_c/fastnn_gemm.h).

A row predicted alone must be the same bits as that row inside any batch (any chunking, any
thread count), for every activation, output link and dtype; float64 predictions must match a
NumPy float64 reference to 1e-10; every input the general path refuses is still refused with
its message; and the plain C kernel agrees with the vector one.
"""
import threading

import numpy as np
import pytest

import fastnn
from fastnn._core import _reference as ref
from fastnn.nn import inference
from fastnn.nn import model as model_module
from fastnn.nn.layers import ACTIVATIONS
from fastnn.runtime import boundary

DTYPES = [np.float32, np.float64]
DT_IDS = ["float32", "float64"]
LINKS = {"identity": "mse", "sigmoid": "bce", "softmax": "cross_entropy", "exp": "poisson"}


def _model(activation, link, dtype, sizes=(7, 19, 13, 5), normalization=None, seed=0):
    m = fastnn.MLP(list(sizes), activation=activation, output=link, dtype=dtype, seed=seed,
                   normalization=normalization)
    # biases away from zero, so that a wrong bias handling cannot hide
    rng = np.random.default_rng(seed + 1)
    m.set_weights(intercepts=[rng.standard_normal(layer.n_out) * 0.3 for layer in m.layers])
    return m


def _numpy_predict(m, X, activation, link):
    """The float64 NumPy reference: the layers one by one, then the output link."""
    A = np.asarray(X, np.float64)
    for k, layer in enumerate(m.layers):
        Z = A @ layer.W.astype(np.float64) + layer.b.astype(np.float64)
        if k < m.n_layers - 1:
            if layer.normalization:
                Z = ref.layernorm_forward(Z, layer.gain.astype(np.float64),
                                          layer.shift.astype(np.float64))[0]
            A = ref.activation(Z, activation, layer._activation_parameter())
        else:
            A = Z
    return ref.output_link(A, link)


def _rows_alone(m, X):
    return np.vstack([m.predict(X[i:i + 1]) for i in range(X.shape[0])])


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("link", list(LINKS))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_a_row_alone_is_the_same_bits_as_in_a_batch(activation, link, dtype):
    m = _model(activation, link, dtype)
    X = np.random.default_rng(2).standard_normal((23, 7)).astype(dtype)
    batch = m.predict(X)
    alone = _rows_alone(m, X)
    assert alone.dtype == dtype
    np.testing.assert_array_equal(alone, batch)
    if dtype == np.float64:
        np.testing.assert_allclose(batch, _numpy_predict(m, X, activation, link), rtol=1e-10,
                                   atol=1e-10)
    else:
        np.testing.assert_allclose(batch, _numpy_predict(m, X, activation, link), rtol=2e-4,
                                   atol=2e-5)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_large_batches_threads_and_chunks_give_the_rows_bits(dtype, monkeypatch):
    # wide enough that the batch is shared among threads and cut into chunks
    m = _model("tanh", "softmax", dtype, sizes=(40, 300, 200, 10))
    X = np.random.default_rng(3).standard_normal((1500, 40)).astype(dtype)
    one = m.predict(X[:1])
    some = m.predict(X[:7])
    out = {}
    for n in (1, 2):
        Z = np.empty((1500, 10), dtype)
        boundary.net_forward(m._spec, m.params, X, Z, 4, 1024, n_threads=n)
        out[n] = Z
    np.testing.assert_array_equal(out[1], out[2])
    np.testing.assert_array_equal(out[1], m.predict(X))
    np.testing.assert_array_equal(out[1][:1], one)
    np.testing.assert_array_equal(out[1][:7], some)
    monkeypatch.setattr(model_module, "PREDICT_CHUNK_ROWS", 5)
    monkeypatch.setattr(inference, "PREDICT_CHUNK_ROWS", 7)
    np.testing.assert_array_equal(m.predict(X), out[1])
    np.testing.assert_array_equal(m.predict(X.astype(int)), m.predict(X.astype(int).astype(dtype)))
    np.testing.assert_allclose(out[1], _numpy_predict(m, X, "tanh", "softmax"),
                               rtol=1e-10 if dtype == np.float64 else 1e-4,
                               atol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("n_out", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("width", [3, 8, 13, 64])
def test_narrow_output_layers_give_the_rows_bits(width, n_out, dtype):
    """Outputs of 1-4 columns (float32) go through the product kernel that puts 8 rows in a
    vector (groups of 16 and 8 rows, then the rows left over one by one); each row must be the
    bits of the one-row kernel, for inner sizes below, at and off a multiple of 8."""
    m = _model("relu", "identity", dtype, sizes=(5, width, n_out))
    X = np.random.default_rng(width + n_out).standard_normal((16 + 16 + 8 + 3, 5)).astype(dtype)
    X[4, :] = 0.0           # a row of zeros: a -0 or +0 from the kernel shows in the bits
    batch = m.predict(X)
    np.testing.assert_array_equal(batch, _rows_alone(m, X))
    for rows in (8, 9, 16, 17, 24):
        np.testing.assert_array_equal(m.predict(X[:rows]), batch[:rows])
    np.testing.assert_allclose(batch, _numpy_predict(m, X, "relu", "identity"),
                               rtol=1e-10 if dtype == np.float64 else 1e-5,
                               atol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_layer_norm_and_learned_variance(dtype):
    m = _model("gelu", "auto", dtype, sizes=(6, 16, 16, 4), normalization="layer")
    m.loss_ = fastnn.GaussianNLL(sigma="learned")
    X = np.random.default_rng(4).standard_normal((9, 6)).astype(dtype)
    np.testing.assert_array_equal(_rows_alone(m, X), m.predict(X))
    assert m.predict(X).shape == (9, 2)
    np.testing.assert_array_equal(
        np.vstack([m.predict_std(X[i:i + 1]) for i in range(9)]), m.predict_std(X))
    m2 = _model("relu", "identity", dtype, sizes=(6, 16, 16, 4), normalization="layer")
    np.testing.assert_array_equal(_rows_alone(m2, X), m2.predict(X))
    np.testing.assert_allclose(m2.predict(X), _numpy_predict(m2, X, "relu", "identity"),
                               rtol=1e-10 if dtype == np.float64 else 1e-4,
                               atol=1e-10 if dtype == np.float64 else 1e-5)


def test_the_one_call_path_resolves_threads_for_large_inputs_only(monkeypatch):
    m = _model("relu", "softmax", np.float32)
    calls = []
    real = boundary.net_predict_rows

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((kwargs.get("n_threads"), out is not None))
        return out
    monkeypatch.setattr(boundary, "net_predict_rows", spy)
    m.predict(np.ones((1, 7), np.float32))
    flops_per_row = 2 * (7 * 19 + 19 * 13 + 13 * 5)
    assert boundary.flops_per_row(m._spec) == flops_per_row
    rows = int(inference.SMALL_FLOPS // flops_per_row)
    m.predict(np.ones((rows, 7), np.float32))
    m.predict(np.ones((rows + 1, 7), np.float32))
    m.predict(np.ones((1, 7), np.float64))        # converted first, by the general path
    assert calls == [(1, True), (1, True), (None, True), (1, False)]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_inputs_the_general_path_refuses_are_refused(dtype):
    m = _model("tanh", "identity", dtype)
    x = np.ones((1, 7), dtype)
    bad = {"NaN": np.where(np.arange(7) == 3, np.nan, 1).astype(dtype)[None, :],
           "inf": np.where(np.arange(7) == 3, -np.inf, 1).astype(dtype)[None, :]}
    for name, X in bad.items():
        with pytest.raises(ValueError, match=r"NaN or infinity \(first at row 0, column 3\)"):
            m.predict(X)
    with pytest.raises(ValueError, match="has 6 features"):
        m.predict(np.ones((1, 6), dtype))
    with pytest.raises(ValueError, match="2-dimensional"):
        m.predict(np.ones(7, dtype))
    with pytest.raises(ValueError, match="0 samples"):
        m.predict(np.ones((0, 7), dtype))
    with pytest.raises(TypeError, match="real numeric"):
        m.predict(np.ones((1, 7), complex))
    # converted inputs give the bits of the model's dtype
    expected = m.predict(x)
    np.testing.assert_array_equal(m.predict(np.ones((1, 7), int)), expected)
    np.testing.assert_array_equal(m.predict([[1.0] * 7]), expected)
    np.testing.assert_array_equal(m.predict(np.ones((1, 14), dtype)[:, ::2]), expected)
    other = np.float64 if dtype == np.float32 else np.float32
    np.testing.assert_array_equal(m.predict(x.astype(other)), expected)
    # a read-only input is read, never written
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(m.predict(ro), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_a_nan_or_inf_anywhere_in_a_large_input_is_refused(dtype):
    """The one-call path's finiteness check is a vectorized loop: a bad value in its first,
    middle or last element, or in the remainder after the full vectors, is still found."""
    m = _model("tanh", "identity", dtype)
    X = np.random.default_rng(9).standard_normal((301, 7)).astype(dtype)
    for flat in (0, 1, 1000, 2106, 2107 - 1):
        for value in (np.nan, np.inf, -np.inf):
            bad = X.copy()
            bad.flat[flat] = value
            row, col = divmod(flat, 7)
            with pytest.raises(ValueError, match=rf"NaN or infinity \(first at row {row}, "
                                                 rf"column {col}\)"):
                m.predict(bad)


def test_a_params_vector_changed_in_place_is_reported():
    m = _model("tanh", "identity", np.float32)
    m.params.shape = (1, m.n_params)
    with pytest.raises(ValueError, match="was changed in place"):
        m.predict(np.ones((1, 7), np.float32))


def test_the_link_follows_the_loss_and_output_settings():
    m = fastnn.MLP([3, 4, 2], seed=0)
    X = np.ones((1, 3), np.float32)
    logits = m.forward(X)
    np.testing.assert_array_equal(m.predict(X), logits)          # identity before a loss
    m.loss_ = "cross_entropy"
    np.testing.assert_allclose(m.predict(X), ref.output_link(logits.astype(np.float64),
                                                             "softmax"), rtol=1e-6)
    m.loss_ = None
    m.output = "sigmoid"
    np.testing.assert_allclose(m.predict(X), 1 / (1 + np.exp(-logits.astype(np.float64))),
                               rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_the_plain_c_kernel_agrees_with_the_vector_kernel(dtype):
    from fastnn._core import _network
    m = _model("silu", "softmax", dtype, sizes=(33, 70, 17, 9))
    X = np.random.default_rng(5).standard_normal((31, 33)).astype(dtype)
    vector = m.predict(X)
    kernel = _network._gemm_kernel()
    try:
        assert _network._gemm_kernel(plain=True) == 0
        plain = m.predict(X)
        np.testing.assert_array_equal(_rows_alone(m, X), plain)   # row-independent too
    finally:
        _network._gemm_kernel(plain=False)
    assert _network._gemm_kernel() == kernel
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain, vector, **tol)


def test_predict_during_a_fit_sees_one_epoch_boundary():
    """A one-row predict in another thread while a fit runs returns the prediction of the
    parameters at one epoch boundary (recorded by a callback), never of a half-written
    epoch."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((2000, 8)).astype(np.float32)
    y = X[:, :1] ** 2
    m = fastnn.MLP([8, 64, 64, 1], activation="tanh", seed=0)
    x = X[:1]
    seen, boundaries = [], [m.get_flat_params()]
    done = threading.Event()

    def reader():
        while not done.is_set():
            seen.append(m.predict(x))

    def record(*args, **kwargs):
        boundaries.append(m.get_flat_params())

    t = threading.Thread(target=reader)
    t.start()
    try:
        m.fit(X, y, "mse", fastnn.SGD(lr=0.01), epochs=6, batch_size=16, seed=0,
              callbacks=[record])
    finally:
        done.set()
        t.join()
    probe = m.copy()
    allowed = []
    for params in boundaries:
        probe.params = params
        allowed.append(probe.predict(x).tobytes())
    assert seen
    assert all(s.tobytes() in allowed for s in seen)
