"""Property-based tests (hypothesis): kernels and losses against their NumPy twins over random
shapes and values, extreme magnitudes included, and fuzzed input that must only ever give a
result or a clear error.

The tolerances are error bounds, not guesses.  A sum of n products computed in a precision
with unit roundoff u is off by at most about n u sum |x_i w_i| (the standard bound for dot
products), so the dense layer is compared elementwise against ``(n + 2) u (|X| @ |W| + |b|)``
from the inputs' magnitudes: that holds for every scale from 1e-30 to 1e+150, where a fixed
relative tolerance would fail on cancellation and a fixed absolute one would test nothing.
Every activation has a derivative of at most 1 (selu, gelu and silu: LIPSCHITZ), so it adds
only its own few-ulp error.  The
losses compute in double for both dtypes; they are compared against bounds of the size of the
terms they sum (which can cancel in the reference's textbook forms).
"""
import os
import tempfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastnn  # noqa: E402
from fastnn._core import _reference as ref  # noqa: E402
from fastnn.nn.layers import ACTIVATIONS  # noqa: E402

CLASSIC = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
# max |act'(z)|: selu lambda * alpha (z -> 0-), gelu 1.129 (z = sqrt 2), silu 1.0998 (z = 2.40)
LIPSCHITZ = {"selu": 1.7581, "gelu": 1.1290, "gelu_tanh": 1.1290, "silu": 1.0999}
from fastnn.nn.losses import (BinaryCrossEntropy, CrossEntropy, GaussianNLL,  # noqa: E402
                              KLDivergence, MSE, PoissonNLL)
from fastnn.nn.model import MLP  # noqa: E402

# Modest and reproducible by default (~3 s).  To search harder with fresh examples:
#     FASTNN_HYPOTHESIS_EXAMPLES=5000 FASTNN_HYPOTHESIS_RANDOM=1 pytest tests/test_properties.py
EXAMPLES = int(os.environ.get("FASTNN_HYPOTHESIS_EXAMPLES", "60"))


def budget(n_examples):
    return settings(max_examples=n_examples, deadline=None,
                    derandomize=not os.environ.get("FASTNN_HYPOTHESIS_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow])


SETTINGS = budget(EXAMPLES)
DTYPES = [np.float32, np.float64]


def unit(dtype):
    return float(np.finfo(dtype).eps) / 2


def tiny(dtype):
    return float(np.finfo(dtype).tiny)


def scaled_array(draw, dtype, shape, exponent):
    """Values in [-1, 1] (hypothesis' edge cases included: 0, +-1, subnormals, ties) times
    10**exponent, rounded to dtype once."""
    width = 32 if dtype == np.float32 else 64
    base = draw(hnp.arrays(np.float64, shape,
                           elements=st.floats(-1, 1, width=width, allow_nan=False)))
    return (base * 10.0 ** exponent).astype(dtype)


# ======================================================================================
# The dense layer against NumPy, with elementwise error bounds
# ======================================================================================

@st.composite
def layer_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    batch, n_in, n_out = (draw(st.integers(1, 9)) for _ in range(3))
    activation = draw(st.sampled_from(list(ACTIVATIONS)))
    # exponents keep |X| |W| n and |D| |W| n far from overflow (and mostly from underflow)
    limit = 12 if dtype == np.float32 else 100
    ex, ew, ed = (draw(st.integers(-limit, limit)) for _ in range(3))
    X = scaled_array(draw, dtype, (batch, n_in), ex)
    W = scaled_array(draw, dtype, (n_in, n_out), ew)
    b = scaled_array(draw, dtype, (n_out,), ex + ew)
    dA = scaled_array(draw, dtype, (batch, n_out), ed)
    return dtype, activation, X, W, b, dA


def _assert_within(actual, expected, bound, what):
    actual = np.asarray(actual, np.float64)
    assert np.isfinite(actual).all(), what
    excess = np.abs(actual - expected) - bound
    assert (excess <= 0).all(), (what, float(excess.max()), actual, expected)


@SETTINGS
@given(layer_cases())
def test_dense_layer_matches_numpy_within_the_rounding_bound(case):
    dtype, activation, X, W, b, dA = case
    u, floor = unit(dtype), 64 * tiny(dtype) * (X.shape[1] + X.shape[0] + W.shape[1])
    X64, W64, b64, dA64 = (a.astype(np.float64) for a in (X, W, b, dA))

    A = fastnn.dense_forward(X, W, b, activation)
    assert A.dtype == dtype
    want = ref.dense_forward(X64, W64, b64, activation)
    z_bound = 2 * (X.shape[1] + 2) * u * (np.abs(X64) @ np.abs(W64) + np.abs(b64))
    # an error in z reaches A multiplied by at most max |act'| (the Lipschitz constant)
    _assert_within(A, want, LIPSCHITZ.get(activation, 1.0) * z_bound + 8 * u * np.abs(want)
                   + floor, "A")

    # backward from the kernel's own A, or its own Z for GELU/SiLU (what the training pass
    # keeps; dense_forward with "identity" computes the same Z bit for bit)
    A64 = A.astype(np.float64)
    Z = fastnn.dense_forward(X, W, b, "identity")
    dW, db, dX = fastnn.dense_backward(X, W, A, dA, activation, Z=Z)
    if activation in ref.KEEPS_PREACTIVATION:
        D = dA64 * ref.activation_grad(Z.astype(np.float64), activation)
    else:
        D = dA64 * ref.activation_grad_from_output(A64, activation)
    # act' is formed with a few roundings in dtype: |error of D| <= 4 u |dA| for the classic
    # five (act' <= 1); the exp/erfc-based derivatives (act' <= 1.76) get 16 u |dA|
    d_err = (4 if activation in CLASSIC else 16) * u * np.abs(dA64)
    absX, absW, absD = np.abs(X64), np.abs(W64), np.abs(D)
    _assert_within(dW, X64.T @ D, absX.T @ d_err + 2 * (X.shape[0] + 2) * u * (absX.T @ absD)
                   + floor, "dW")
    _assert_within(db, D.sum(axis=0), d_err.sum(axis=0) + 2 * (X.shape[0] + 2) * u
                   * absD.sum(axis=0) + floor, "db")
    _assert_within(dX, D @ W64.T, d_err @ absW.T + 2 * (W.shape[1] + 2) * u * (absD @ absW.T)
                   + floor, "dX")


@SETTINGS
@given(st.sampled_from(DTYPES), st.sampled_from(["sigmoid", "tanh"]),
       hnp.arrays(np.float64, st.integers(1, 40),
                  elements=st.floats(allow_nan=False, allow_infinity=False, width=32)))
def test_saturating_activations_stay_in_range_and_accurate_for_any_input(dtype, activation, z):
    # one unit with weight 1: A = act(z) for any finite float32 z
    Z = z.astype(dtype)[:, None]
    A = fastnn.dense_forward(Z, np.ones((1, 1), dtype), np.zeros(1, dtype), activation)[:, 0]
    want = ref.activation(Z[:, 0].astype(np.float64), activation)
    low = 0.0 if activation == "sigmoid" else -1.0
    assert ((A >= low) & (A <= 1.0)).all()
    _assert_within(A, want, 8 * unit(dtype) * np.abs(want) + 2 * tiny(dtype), activation)


# ======================================================================================
# The losses against NumPy: values and gradients, weights, extreme logits
# ======================================================================================

LOSSES = ["mse", "gaussian", "gaussian_per_sample", "gaussian_learned", "bce", "ce_labels",
          "ce_probs", "kl", "poisson"]


@st.composite
def loss_cases(draw):
    """(loss, Z, y, sample_weight, reference(Z, y) -> (l, D), term magnitudes (l, D))."""
    name = draw(st.sampled_from(LOSSES))
    dtype = draw(st.sampled_from(DTYPES))
    n, k = draw(st.integers(1, 8)), draw(st.integers(1, 6))
    f32 = dtype == np.float32
    full = draw(st.booleans())
    sw = draw(st.one_of(st.none(), hnp.arrays(np.float64, n, elements=st.floats(0, 1e6))))
    if sw is not None:
        sw[0] = max(sw[0], 1.0)  # at least one positive weight
    if name in ("mse", "gaussian", "gaussian_per_sample"):
        e = draw(st.integers(-20, 20) if f32 else st.integers(-100, 100))
        Z, Y = scaled_array(draw, dtype, (n, k), e), scaled_array(draw, dtype, (n, k), e)
        if name == "mse":
            return (MSE(), Z, Y, sw, ref.mse_loss,
                    lambda Z, Y: (((Z - Y) ** 2).mean(1), 2 * (np.abs(Z) + np.abs(Y)) / k))
        sigma = (10.0 ** draw(st.integers(-4, 4)) if name == "gaussian" else
                 10.0 ** draw(hnp.arrays(np.float64, n, elements=st.floats(-3, 3))))
        # a per-sample sigma is converted to Z's dtype, like sample weights; a scalar is not
        used = sigma if name == "gaussian" else sigma.astype(dtype).astype(np.float64)
        var = np.broadcast_to(np.asarray(used, np.float64) ** 2, (n,))[:, None]
        return (GaussianNLL(sigma, full=full), Z, Y, sw,
                lambda Z, Y: ref.gaussian_nll_loss(Z, Y, used, full),
                lambda Z, Y: ((((Z - Y) ** 2 / var).sum(1) + k * (np.abs(np.log(var[:, 0])) + 1)),
                              (np.abs(Z) + np.abs(Y)) / var))
    if name == "gaussian_learned":
        e = draw(st.integers(-10, 10))
        mu, Y = scaled_array(draw, dtype, (n, k), e), scaled_array(draw, dtype, (n, k), e)
        s = scaled_array(draw, dtype, (n, k), 1) * 5  # log-variance in [-50, 50]
        Z = np.hstack([mu, s]).astype(dtype)

        def terms(Z, Y):
            r = (Y - Z[:, :k]) ** 2 * np.exp(-Z[:, k:])
            # (+ exp(-s/2): the kernel scales the residual by it first, which matters only
            # for subnormal residuals, whose precision is absolute)
            g_mu = np.abs(Y - Z[:, :k]) * np.exp(-Z[:, k:]) + np.exp(-Z[:, k:] / 2)
            return (0.5 * r + 0.5 * np.abs(Z[:, k:]) + 1).sum(1), np.hstack([g_mu, 0.5 + r])
        return GaussianNLL("learned", full=full), Z, Y, sw, \
            lambda Z, Y: ref.gaussian_learned_loss(Z, Y, full), terms
    if name == "poisson":
        lim = 80.0 if f32 else 700.0  # exp(z) stays finite in the dtype
        Z = (scaled_array(draw, dtype, (n, k), 0) * lim).astype(dtype)
        Y = np.floor(scaled_array(draw, np.float64, (n, k), 6) ** 2).astype(dtype)
        return PoissonNLL(full=full), Z, Y, sw, lambda Z, Y: ref.poisson_loss(Z, Y, full), \
            lambda Z, Y: ((np.exp(Z) + np.abs(Y * Z) + Y * np.log1p(Y) + 1).sum(1),
                          np.exp(Z) + Y)
    # logits up to 1e4: exp would overflow without the stable forms
    Z = scaled_array(draw, dtype, (n, k), draw(st.integers(-10, 4)))
    magnitude = lambda Z, Y: (np.abs(Z).max(axis=1) * np.abs(Y).sum(1) * 3 + 3,  # noqa: E731
                              2 * np.abs(Y).sum(1, keepdims=True) + np.zeros_like(Z))
    if name == "bce":
        Y = np.abs(scaled_array(draw, dtype, (n, k), 0))
        return BinaryCrossEntropy(), Z, Y, sw, ref.bce_loss, \
            lambda Z, Y: ((np.abs(Z) + 1).sum(1), np.ones_like(Z))
    if name == "ce_labels":
        labels = np.asarray(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
        return CrossEntropy(), Z, labels, sw, \
            lambda Z, y: ref.cross_entropy_loss(Z, labels=y), \
            lambda Z, y: magnitude(Z, ref._onehot(y, k))
    rows = np.abs(scaled_array(draw, np.float64, (n, k), 0))
    rows[rows.sum(axis=1) == 0, 0] = 1.0
    P = rows / rows.sum(axis=1, keepdims=True)
    loss, reference = ((CrossEntropy(), ref.cross_entropy_loss) if name == "ce_probs" else
                       (KLDivergence(), ref.kl_loss))
    return loss, Z, P.astype(dtype) if dtype == np.float64 else P, sw, reference, magnitude


@SETTINGS
@given(loss_cases())
def test_losses_match_numpy_within_the_size_of_their_terms(case):
    loss, Z, y, sw, reference, magnitudes = case
    # against NumPy's IEEE arithmetic: subnormals kept (flushed, fastnn's default, a
    # subnormal target or gradient is 0; tests/test_boundary.py checks that)
    with fastnn.fpmode.flush_denormals(False):
        value, G = loss.loss_and_grad(Z, y, sw)
        alone = loss(Z, y, sw)
    Z64 = Z.astype(np.float64)
    y64 = y if y.dtype.kind in "iu" else loss.prepare_targets(y, Z.shape[1], Z.dtype)[0] \
        .astype(np.float64)
    l, D = reference(Z64, y64)
    # sample weights are converted to Z's dtype too
    w = np.ones(len(l)) if sw is None else sw.astype(Z.dtype).astype(np.float64)
    # documented limit: sum_i w_i l_i is accumulated in float64 and may overflow even when
    # the mean would not (losses of 1e304 with weights of 1e4)
    assume(np.isfinite((w * l).sum()))
    want_value, want_G = ref.weighted_mean_loss(l, D, w)
    l_size, g_size = magnitudes(Z64, y64)
    share = (w / w.sum())[:, None]
    # the loss is a double whatever the dtype: compare against the size of what it sums
    assert abs(value - want_value) <= 1e-12 * float((w * l_size).sum() / w.sum()) + 1e-300
    # the gradient is rounded once to the dtype: inf where the exact one overflows it
    u = unit(Z.dtype)
    # (the last terms: subnormal weights and gradients carry absolute, not relative, errors)
    bound = u * np.abs(want_G) + 1e-12 * share * g_size \
        + np.finfo(Z.dtype).smallest_subnormal \
        + 8 * np.finfo(np.float64).smallest_subnormal * (1 + g_size) \
        * (1 + np.abs(Z64).max() + np.abs(y64).max())
    assert G.dtype == Z.dtype
    biggest = float(np.finfo(Z.dtype).max)
    overflows = np.abs(want_G) * (1 - 4 * u) > biggest
    assert (G[overflows] == np.sign(want_G[overflows]) * np.inf).all()
    fits = np.abs(want_G) * (1 + 4 * u) < biggest
    _assert_within(G[fits], want_G[fits], bound[fits], type(loss).__name__)
    # the value alone is the same number
    assert alone == value


@SETTINGS
@given(st.sampled_from(DTYPES), st.sampled_from([BinaryCrossEntropy(), CrossEntropy(),
                                                 PoissonNLL(), MSE()]),
       st.integers(1, 6), st.integers(1, 6), st.data())
def test_output_links_are_valid_probabilities_and_match_numpy(dtype, loss, n, k, data):
    lim = {"exp": 80.0}.get(loss.output_name, 1e4)
    Z = (scaled_array(data.draw, np.float64, (n, k), 0) * lim).astype(dtype)
    out = loss.output(Z)
    want = ref.output_link(Z.astype(np.float64), loss.output_name)
    bound = 8 * unit(dtype) * np.abs(want) + np.finfo(dtype).tiny
    if loss.output_name == "softmax":
        # the reference's exp(z - logsumexp(z)) loses ~|z| float64 ulps in the subtraction
        bound += 4 * unit(np.float64) * (np.abs(Z).max(axis=1, keepdims=True) + 1) * want
    _assert_within(out, want, bound, loss.output_name)
    if loss.output_name in ("sigmoid", "softmax"):
        assert ((out >= 0) & (out <= 1)).all()
    if loss.output_name == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=8 * k * unit(dtype))


# ======================================================================================
# Whole networks against the NumPy network
# ======================================================================================

@SETTINGS
@given(st.lists(st.integers(1, 7), min_size=2, max_size=4),
       st.sampled_from(list(ACTIVATIONS)), st.integers(1, 12), st.integers(0, 2**16))
def test_network_loss_and_gradient_match_numpy(sizes, activation, n, seed):
    rng = np.random.default_rng(seed)
    model = MLP(sizes, activation=activation, dtype=np.float64, seed=seed,
                warn_symmetric=False)
    X = rng.standard_normal((n, sizes[0]))
    labels = rng.integers(0, sizes[-1], n)
    sw = rng.uniform(0.1, 2.0, n)
    value = model.loss_and_grad(X, labels, "cross_entropy", sw)
    acts = [layer.activation for layer in model.layers]
    want_value, want_grads = ref.network_loss_grad(model.params, sizes, acts,
                                                   [layer._activation_parameter() for layer in model.layers], X,
                                                   4, labels=labels, sample_weight=sw)
    assert value == pytest.approx(want_value, rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(model.grads, want_grads, rtol=1e-9,
                               atol=1e-12 * max(1.0, np.abs(want_grads).max()))
    np.testing.assert_allclose(model.predict(X), ref.output_link(
        model.forward(X), "softmax"), rtol=1e-12, atol=1e-15)


# ======================================================================================
# Fuzzed input: a result or a clear error (TypeError/ValueError), nothing else
# ======================================================================================

ANY_ARRAY = hnp.arrays(
    dtype=st.one_of(hnp.scalar_dtypes(), hnp.unicode_string_dtypes(max_len=3)),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


def _result_or_clear_error(call):
    try:
        call()
    except (TypeError, ValueError) as exc:
        assert str(exc), "an error without a message"


@budget(EXAMPLES * 5 // 2)
@given(ANY_ARRAY, ANY_ARRAY)
def test_arbitrary_arrays_give_a_result_or_a_clear_error(a, b):
    model = MLP([4, 3], seed=0, dtype=np.float64)
    _result_or_clear_error(lambda: model.predict(a))
    _result_or_clear_error(lambda: model.loss_and_grad(a, b, "cross_entropy"))
    _result_or_clear_error(lambda: fastnn.fit(model, a, b, "mse", epochs=1))
    _result_or_clear_error(lambda: model.fit(np.ones((4, 4)), b, "bce", sample_weight=a,
                                             epochs=1))
    _result_or_clear_error(lambda: MSE()(a, b))
    _result_or_clear_error(lambda: CrossEntropy().loss_and_grad(a, b))
    _result_or_clear_error(lambda: CrossEntropy().target_width(a))
    _result_or_clear_error(lambda: fastnn.dense_forward(a, b, np.zeros(3)))
    _result_or_clear_error(lambda: GaussianNLL(a))
    _result_or_clear_error(lambda: model.set_flat_params(a))
    assert np.isfinite(model.params).all()


# ======================================================================================
# Corrupted model files: load raises ModelFileError or returns the same model
# ======================================================================================

def _saved_model_bytes():
    model = MLP([3, 4, 2], seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        model.save(path)
        with open(path, "rb") as fh:
            return model, fh.read()


MODEL, MODEL_BYTES = _saved_model_bytes()


@budget(EXAMPLES * 4 // 3)
@given(st.one_of(
    st.integers(0, len(MODEL_BYTES) - 1).map(lambda n: ("truncate", n)),
    st.lists(st.tuples(st.integers(0, len(MODEL_BYTES) - 1), st.integers(1, 255)),
             min_size=1, max_size=4).map(lambda flips: ("flip", flips))))
def test_corrupted_model_files_are_rejected_or_load_unchanged(corruption):
    from fastnn.io.saving import ModelFileError
    kind, how = corruption
    data = bytearray(MODEL_BYTES)
    if kind == "truncate":
        data = data[:how]
    else:
        for position, mask in how:
            data[position] ^= mask
    assume(bytes(data) != MODEL_BYTES)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            loaded = fastnn.load(path)
        except ModelFileError as exc:
            assert "m.npz" in str(exc)
            return
    # a flip in bytes the loader does not interpret (zip metadata it does not use)
    np.testing.assert_array_equal(loaded.params, MODEL.params)
    assert loaded.layer_sizes == MODEL.layer_sizes
