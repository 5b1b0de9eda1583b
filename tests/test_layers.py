"""The fused dense layer against its plain-NumPy twin, finite differences and a hand example."""
import numpy as np
import pytest

import fastnn
from fastnn._core import _reference as ref
from fastnn.nn.layers import ACTIVATIONS

DTYPES = [np.float32, np.float64]
# float32: sums of up to a few hundred products in a different order than NumPy's BLAS, each
# with relative error 2^-24 ~ 6e-8; 1e-4 leaves room for sqrt(n) growth and the polynomial exp.
RTOL = {np.float32: 1e-4, np.float64: 1e-12}
ATOL = {np.float32: 1e-5, np.float64: 1e-12}
# one row (and, for dW = X^T D, one input) takes the GEMV path of _blas.gemm_rowmajor
SHAPES = [(1, 1, 1), (1, 5, 3), (7, 1, 4), (5, 6, 1), (7, 33, 129), (33, 129, 7),
          (1, 784, 256), (512, 784, 256)]


def _data(shape, dtype, seed=0):
    n_samples, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_in)).astype(dtype)
    W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    return X, W, b


def _close(actual, desired, dtype):
    scale = max(1.0, float(np.abs(desired).max()))
    np.testing.assert_allclose(actual, desired, rtol=RTOL[dtype], atol=ATOL[dtype] * scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_backward_match_numpy(shape, activation, dtype):
    X, W, b = _data(shape, dtype)
    A = fastnn.dense_forward(X, W, b, activation)
    assert A.dtype == dtype and A.shape == (shape[0], shape[2])
    # the reference runs in float64 from the same (rounded) inputs
    X64, W64, b64 = (a.astype(np.float64) for a in (X, W, b))
    _close(A, ref.dense_forward(X64, W64, b64, activation), dtype)

    dA = np.random.default_rng(1).standard_normal(A.shape).astype(dtype)
    Z = fastnn.dense_forward(X, W, b, "identity")   # read by gelu/silu, ignored by the others
    dW, db, dX = fastnn.dense_backward(X, W, A, dA, activation, Z=Z)
    rdW, rdb, rdX = ref.dense_backward(X64, W64, A.astype(np.float64), dA.astype(np.float64),
                                       activation, Z=Z.astype(np.float64))
    for got, want in ((dW, rdW), (db, rdb), (dX, rdX)):
        assert got.dtype == dtype
        _close(got, want, dtype)


def test_hand_worked_example():
    # X = [[1, 2]], W = [[1, -1], [0.5, 2]], b = [0.5, -4]:
    #   Z = [1*1 + 2*0.5 + 0.5, 1*(-1) + 2*2 - 4] = [2.5, -1]
    #   relu -> A = [2.5, 0];  with dA = [[1, 1]]: D = [1, 0] (relu' = [a > 0])
    #   dW = X^T D = [[1, 0], [2, 0]];  db = [1, 0];  dX = D W^T = [1*1 + 0*(-1), 1*0.5 + 0*2]
    X = np.array([[1.0, 2.0]])
    W = np.array([[1.0, -1.0], [0.5, 2.0]])
    b = np.array([0.5, -4.0])
    A = fastnn.dense_forward(X, W, b, "relu")
    np.testing.assert_array_equal(A, [[2.5, 0.0]])
    dW, db, dX = fastnn.dense_backward(X, W, A, np.ones_like(A), "relu")
    np.testing.assert_array_equal(dW, [[1.0, 0.0], [2.0, 0.0]])
    np.testing.assert_array_equal(db, [1.0, 0.0])
    np.testing.assert_array_equal(dX, [[1.0, 0.5]])


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_gradients_match_float64_central_differences(activation):
    # l = sum(G * act(X W + b)) for a fixed random G, so dl/dA = G.
    rng = np.random.default_rng(3)
    X, W, b = _data((6, 5, 4), np.float64, seed=3)
    if activation in ("relu", "leaky_relu"):
        # keep every pre-activation at least 0.05 away from the kink at 0
        Z = X @ W + b
        b = b + np.where(np.abs(Z).min(axis=0) < 0.05, 0.5, 0.0)
        assert np.abs(X @ W + b).min() > 0.05 or activation == "identity"
    G = rng.standard_normal((6, 4))

    def loss(X_, W_, b_):
        return float(np.sum(G * fastnn.dense_forward(X_, W_, b_, activation)))

    A = fastnn.dense_forward(X, W, b, activation)
    Z = fastnn.dense_forward(X, W, b, "identity")
    dW, db, dX = fastnn.dense_backward(X, W, A, G, activation, Z=Z)
    eps = 1e-6
    for arr, grad in ((W, dW), (b, db), (X, dX)):
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            orig = arr[idx]
            arr[idx] = orig + eps
            up = loss(X, W, b)
            arr[idx] = orig - eps
            down = loss(X, W, b)
            arr[idx] = orig
            numeric[idx] = (up - down) / (2 * eps)
        rel = np.abs(grad - numeric).max() / max(np.abs(numeric).max(), 1e-12)
        assert rel < 1e-6, (activation, rel)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_float32_agrees_with_float64(activation):
    # Inputs are exactly representable in float32 (rounded first), so the only difference is
    # float32 arithmetic: a dot product of n_in=129 terms of unit size has error
    # ~ sqrt(129) * 2^-24 * |terms| ~ 1e-6 relative to the largest magnitudes; 2e-5 gives margin.
    X, W, b = _data((64, 129, 33), np.float32, seed=5)
    A32 = fastnn.dense_forward(X, W, b, activation)
    A64 = fastnn.dense_forward(*(a.astype(np.float64) for a in (X, W, b)), activation)
    np.testing.assert_allclose(A32, A64, rtol=2e-5, atol=2e-5)
    dA = np.ones_like(A32)
    X64, W64, b64 = (a.astype(np.float64) for a in (X, W, b))
    Z32 = fastnn.dense_forward(X, W, b, "identity")
    Z64 = fastnn.dense_forward(X64, W64, b64, "identity")
    for g32, g64 in zip(fastnn.dense_backward(X, W, A32, dA, activation, Z=Z32),
                        fastnn.dense_backward(X64, W64, A64, dA.astype(np.float64), activation,
                                              Z=Z64)):
        scale = np.abs(g64).max()
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_saturating_activations_do_not_overflow(activation, dtype):
    z = np.array([[-1e4], [-1000.0], [-100.0], [-1e-8], [0.0], [1e-8], [100.0], [1000.0],
                  [1e4]], dtype)
    one, zero = np.ones((1, 1), dtype), np.zeros(1, dtype)
    with np.errstate(all="raise"):
        a = fastnn.dense_forward(z, one, zero, activation)
    assert np.isfinite(a).all()
    z64 = z.astype(np.float64)
    want = np.tanh(z64) if activation == "tanh" else ref.activation(z64, "sigmoid")
    np.testing.assert_allclose(a, want, rtol=RTOL[dtype], atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_polynomial_exp_is_accurate_over_the_whole_range(dtype):
    # sigmoid(z) = exp(z) / (1 + exp(z)) for z < 0 uses fastnn's own exp; compare densely with
    # a float64 reference wherever the result is a normal number of `dtype`.
    z = np.linspace(-120 if dtype == np.float32 else -740, 40, 400_001).astype(dtype)[:, None]
    one, zero = np.ones((1, 1), dtype), np.zeros(1, dtype)
    got = fastnn.dense_forward(z, one, zero, "sigmoid")[:, 0].astype(np.float64)
    want = ref.activation(z[:, 0].astype(np.float64), "sigmoid")
    normal = want > np.finfo(dtype).tiny
    rel = np.abs(got[normal] - want[normal]) / want[normal]
    assert rel.max() < 8 * np.finfo(dtype).eps
    got_t = fastnn.dense_forward(z / 8, one, zero, "tanh")[:, 0].astype(np.float64)
    want_t = np.tanh((z[:, 0] / 8).astype(np.float64))
    nz = want_t != 0
    assert (np.abs(got_t[nz] - want_t[nz]) / np.abs(want_t[nz])).max() < 8 * np.finfo(dtype).eps


def test_nan_propagates_through_every_activation():
    X = np.array([[np.nan]])
    for activation in ACTIVATIONS:
        A = fastnn.dense_forward(X, np.ones((1, 1)), np.zeros(1), activation)
        assert np.isnan(A).all(), activation


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n_samples", [9, 1])
def test_out_buffers_give_the_same_results(dtype, n_samples):
    # NaN-filled buffers: a product with beta = 0 must not read them (GEMV included)
    X, W, b = _data((n_samples, 8, 7), dtype)
    A = fastnn.dense_forward(X, W, b, "tanh")
    out = np.full_like(A, np.nan)
    assert fastnn.dense_forward(X, W, b, "tanh", out=out) is out
    np.testing.assert_array_equal(out, A)
    dA = np.random.default_rng(0).standard_normal(A.shape).astype(dtype)
    dA_copy = dA.copy()
    plain = fastnn.dense_backward(X, W, A, dA, "tanh")
    bufs = dict(out_dW=np.full_like(W, np.nan), out_db=np.full_like(b, np.nan),
                out_dX=np.full_like(X, np.nan))
    buffered = fastnn.dense_backward(X, W, A, dA, "tanh", **bufs)
    for got, want, buf in zip(buffered, plain, bufs.values()):
        assert got is buf
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(dA, dA_copy)  # the upstream gradient is not modified
    dW, db, dX = fastnn.dense_backward(X, W, A, dA, "tanh", compute_dX=False)
    assert dX is None
    np.testing.assert_array_equal(dW, plain[0])


def test_non_contiguous_inputs_are_copied_and_read_only_inputs_accepted():
    X, W, b = _data((10, 6, 4), np.float64)
    want = fastnn.dense_forward(X, W, b, "relu")
    Xf, Wf = np.asfortranarray(X), np.asfortranarray(W)
    np.testing.assert_array_equal(fastnn.dense_forward(Xf, Wf, b, "relu"), want)
    Xbig = np.zeros((20, 6))
    Xbig[::2] = X
    np.testing.assert_array_equal(fastnn.dense_forward(Xbig[::2], W, b, "relu"), want)
    np.testing.assert_array_equal(fastnn.dense_forward(X[::-1], W, b, "relu"), want[::-1])
    for arr in (X, W, b):
        arr.flags.writeable = False
    np.testing.assert_array_equal(fastnn.dense_forward(X, W, b, "relu"), want)


@pytest.mark.parametrize("call, exc, match", [
    (lambda X, W, b: fastnn.dense_forward(X, W, b, "mish"), ValueError,
     r"activation='mish' is not supported; expected one of 'identity', 'sigmoid'"),
    (lambda X, W, b: fastnn.dense_forward(X.astype(np.float32), W, b), TypeError,
     r"W has dtype float64; expected float32"),
    (lambda X, W, b: fastnn.dense_forward(X.astype(np.int64), W, b), TypeError,
     r"X has dtype int64; expected float32 or float64"),
    (lambda X, W, b: fastnn.dense_forward(X.astype(np.float16), W, b), TypeError,
     r"X has dtype float16"),
    (lambda X, W, b: fastnn.dense_forward(X[0], W, b), ValueError,
     r"X must be 2-dimensional; got shape \(6,\)"),
    (lambda X, W, b: fastnn.dense_forward(X, W[:5], b), ValueError,
     r"W has shape \(5, 4\); expected \(6, n_out\) to match X of shape \(10, 6\)"),
    (lambda X, W, b: fastnn.dense_forward(X, W, b[:3]), ValueError,
     r"b has shape \(3,\); expected \(4,\)"),
    (lambda X, W, b: fastnn.dense_forward(X[:0], W, b), ValueError, r"X is empty"),
    (lambda X, W, b: fastnn.dense_forward(X.tolist(), W, b), TypeError,
     r"X must be a numpy.ndarray; got list"),
    (lambda X, W, b: fastnn.dense_forward(X, W, b, "leaky_relu", negative_slope=-1.0),
     ValueError,
     r"negative_slope=-1.0; expected negative_slope >= 0"),
    (lambda X, W, b: fastnn.dense_forward(X, W, b, out=np.empty((10, 5))), ValueError,
     r"out has shape \(10, 5\); expected \(10, 4\)"),
    (lambda X, W, b: fastnn.dense_forward(X, W, b, out=np.empty((10, 4), np.float32)),
     TypeError, r"out has dtype float32; expected float64"),
    (lambda X, W, b: fastnn.dense_forward(X, W, b, out=np.empty((4, 10)).T), ValueError,
     r"out must be C-contiguous"),
    (lambda X, W, b: fastnn.dense_backward(X, W, np.ones((10, 4)), np.ones((9, 4))),
     ValueError, r"dA has shape \(9, 4\); expected \(10, 4\)"),
    (lambda X, W, b: fastnn.dense_backward(X, W, np.ones((10, 4)), np.ones((10, 4)),
                                           out_db=np.empty(5)),
     ValueError, r"out_db has shape \(5,\); expected \(4,\)"),
    (lambda X, W, b: fastnn.dense_backward(X, W, np.ones((10, 4)), np.ones((10, 4)),
                                           compute_dX=False, out_dX=np.empty((10, 6))),
     ValueError, r"out_dX was given but compute_dX is False"),
], ids=["activation", "mixed-dtype", "int", "float16", "ndim", "W-shape", "b-shape", "empty",
        "list", "alpha", "out-shape", "out-dtype", "out-order", "dA-shape", "db-shape",
        "dX-skip"])
def test_bad_input_is_rejected_with_a_clear_message(call, exc, match):
    X, W, b = _data((10, 6, 4), np.float64)
    with pytest.raises(exc, match=match):
        call(X, W, b)


def test_out_buffer_must_be_writeable_and_separate():
    X, W, b = _data((4, 4, 4), np.float64)
    out = np.empty((4, 4))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        fastnn.dense_forward(X, W, b, out=out)
    with pytest.raises(ValueError, match="out shares memory with X"):
        fastnn.dense_forward(X, W, b, out=X)
