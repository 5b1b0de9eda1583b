"""fastnn.nn.losses and its compiled core fastnn._core._losses, against the NumPy oracle in _reference."""
import json

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logsumexp, softmax

import fastnn  # noqa: F401  (fails early with a build hint if the extension is missing)
from fastnn._core import _losses
from fastnn._core import _reference as ref
from fastnn.nn.losses import (KINDS, LOSS_NAMES, BinaryCrossEntropy, CrossEntropy, GaussianNLL,
                              KLDivergence, Loss, MSE, PoissonNLL, get_loss)

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
# The kernels work in double for both dtypes, so float32 results are the double ones rounded
# once (~6e-8); 1e-5 leaves room for the reference's own float64 rounding at large magnitudes.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}

N, K = 6, 3


def sigmas(n):
    return 0.5 + 0.25 * np.arange(n)  # exact in float32 too


def probability_rows(rng, n, k, zeros=True):
    Y = rng.dirichlet(np.ones(k), size=n)
    if zeros:  # exercise 0 log 0 = 0
        Y[0] = 0.0
        Y[0, 1] = 1.0
    return Y


def make_case(name, rng, n=N, k=K):
    """(loss, Z, y, reference(Z, y) -> (l, D)), all float64; callers cast to their dtype."""
    Z = 2.0 * rng.standard_normal((n, k))
    y = rng.standard_normal((n, k))
    if name == "mse":
        return MSE(), Z, y, ref.mse_loss
    if name in ("gaussian", "gaussian_full"):
        full = name == "gaussian_full"
        return (GaussianNLL(0.7, full=full), Z, y,
                lambda Z, y: ref.gaussian_nll_loss(Z, y, 0.7, full))
    if name == "gaussian_per_sample":
        s = sigmas(n)
        return (GaussianNLL(s, full=True), Z, y,
                lambda Z, y: ref.gaussian_nll_loss(Z, y, s, True))
    if name in ("gaussian_learned", "gaussian_learned_full"):
        full = name == "gaussian_learned_full"
        Z = np.hstack([Z, rng.standard_normal((n, k))])
        y[0, 0] = Z[0, 0]  # an exact match: the r = 0 branch
        return (GaussianNLL("learned", full=full), Z, y,
                lambda Z, y: ref.gaussian_learned_loss(Z, y, full))
    if name == "bce":
        y = rng.uniform(0, 1, (n, k))
        y[0] = [0.0, 1.0, 1.0][:k]
        return BinaryCrossEntropy(), Z, y, ref.bce_loss
    if name == "ce_labels":
        labels = rng.integers(0, k, n)
        return CrossEntropy(), Z, labels, lambda Z, y: ref.cross_entropy_loss(Z, labels=y)
    if name == "ce_probs":
        return CrossEntropy(), Z, probability_rows(rng, n, k), ref.cross_entropy_loss
    if name == "kl":
        return KLDivergence(), Z, probability_rows(rng, n, k), ref.kl_loss
    if name in ("poisson", "poisson_full"):
        full = name == "poisson_full"
        y = rng.poisson(3.0, (n, k)).astype(np.float64)
        return PoissonNLL(full=full), Z, y, lambda Z, y: ref.poisson_loss(Z, y, full)
    raise ValueError(name)


CASES = ["mse", "gaussian", "gaussian_full", "gaussian_per_sample", "gaussian_learned",
         "gaussian_learned_full", "bce", "ce_labels", "ce_probs", "kl", "poisson",
         "poisson_full"]


def cast(Z, y, dtype):
    """Z and float targets in dtype (labels stay integers); reference sees the same values."""
    Z = Z.astype(dtype)
    if y.dtype.kind == "f":
        y = y.astype(dtype)
    return Z, y


def assert_close(actual, expected, rtol, what):
    """Relative, with an absolute floor scaled to the largest expected magnitude: entries that
    cancel (softmax - y near a fit) are compared to the size of the whole array."""
    expected = np.asarray(expected, np.float64)
    atol = rtol * max(1e-300, np.max(np.abs(expected)))
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol,
                               err_msg=what)


# ---------------------------------------------------------------- against the reference

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES)
def test_matches_reference(case, dtype):
    rng = np.random.default_rng(0)
    loss, Z, y, reference = make_case(case, rng)
    Z, y = cast(Z, y, dtype)
    w = rng.uniform(0.0, 2.0, Z.shape[0]).astype(dtype)
    w[1] = 0.0
    expected_loss, expected_G = ref.weighted_mean_loss(*reference(Z, y), w)

    value, G = loss.loss_and_grad(Z, y, sample_weight=w)
    assert G.dtype == dtype and G.shape == Z.shape
    assert isinstance(value, float)
    assert_close(value, expected_loss, RTOL[dtype], "loss")
    assert_close(G, expected_G, RTOL[dtype], "gradient")
    assert loss(Z, y, w) == value
    # unweighted: the plain mean
    l, D = reference(Z, y)
    assert_close(loss(Z, y), l.mean(), RTOL[dtype], "unweighted loss")


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_finite_differences(case):
    rng = np.random.default_rng(1)
    loss, Z, y, _ = make_case(case, rng, n=4)
    w = np.array([0.5, 1.0, 2.0, 0.25])
    _, G = loss.loss_and_grad(Z, y, w)
    numeric = np.empty_like(Z)
    for idx in np.ndindex(Z.shape):
        h = 1e-6 * max(1.0, abs(Z[idx]))
        Zp, Zm = Z.copy(), Z.copy()
        Zp[idx] += h
        Zm[idx] -= h
        numeric[idx] = (loss(Zp, y, w) - loss(Zm, y, w)) / (2 * h)
    # central differences: truncation O(h^2), rounding O(eps / h) ~ 1e-10
    np.testing.assert_allclose(G, numeric, rtol=1e-6, atol=1e-7)


def test_hand_worked_mse():
    # z = (1, 2), y = (0, 0), k = 2: l = (1 + 4) / 2 = 2.5; dl/dz = 2 (z - y) / 2 = (1, 2)
    value, G = MSE().loss_and_grad(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))
    assert value == 2.5
    np.testing.assert_array_equal(G, [[1.0, 2.0]])


# ------------------------------------------------------------------------ sample weights

@pytest.mark.parametrize("case", CASES)
def test_integer_weights_equal_repeated_rows(case):
    rng = np.random.default_rng(2)
    loss, Z, y, _ = make_case(case, rng)
    w = np.array([2, 0, 1, 3, 1, 2])
    rows = np.repeat(np.arange(N), w)
    loss_rep = loss
    if loss.sample_sigma is not None:
        loss_rep = GaussianNLL(loss.sample_sigma[rows], full=loss.full)
    value, G = loss.loss_and_grad(Z, y, w)
    value_rep, G_rep = loss_rep.loss_and_grad(Z[rows], y[rows])
    np.testing.assert_allclose(value, value_rep, rtol=1e-13)
    summed = np.zeros_like(G)
    np.add.at(summed, rows, G_rep)  # each original row collects the gradient of its copies
    np.testing.assert_allclose(G, summed, rtol=1e-13, atol=1e-16)
    assert not G[1].any()


def test_zero_weight_removes_the_sample_even_where_it_would_overflow():
    loss = GaussianNLL("learned")
    Z = np.array([[0.0, -2000.0], [1.0, 0.0], [0.5, 0.3]])  # row 0: exp(2000) overflows
    y = np.array([1.0, 0.0, 0.0])
    value, G = loss.loss_and_grad(Z, y, sample_weight=[0.0, 1.0, 1.0])
    value_rest, G_rest = loss.loss_and_grad(Z[1:], y[1:])
    assert np.isfinite(value)
    np.testing.assert_allclose(value, value_rest, rtol=1e-15)
    np.testing.assert_array_equal(G[0], 0.0)
    np.testing.assert_allclose(G[1:], G_rest, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_per_sample_sigma_weights_samples_by_inverse_variance(dtype):
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((N, K)).astype(dtype)
    y = rng.standard_normal((N, K)).astype(dtype)
    s = sigmas(N)
    w = 1.0 / s ** 2
    # mean_i l1_i / s_i^2 = (sum_i w_i l1_i / sum_i w_i) * sum_i w_i / N
    value, G = GaussianNLL(s).loss_and_grad(Z, y)
    value_w, G_w = GaussianNLL(1.0).loss_and_grad(Z, y, sample_weight=w)
    factor = w.sum() / N
    np.testing.assert_allclose(value, value_w * factor, rtol=RTOL[dtype])
    assert_close(G, G_w * factor, RTOL[dtype], "gradient")
    # full adds the per-sample constant k (log s_i + 0.5 log 2 pi), averaged
    value_full, G_full = GaussianNLL(s, full=True).loss_and_grad(Z, y)
    const = K * (np.log(s) + ref.HALF_LOG_2PI)
    np.testing.assert_allclose(value_full, value + const.mean(), rtol=RTOL[dtype])
    np.testing.assert_array_equal(G_full, G)


# ---------------------------------------------------------------- stability at the extremes

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_exact_at_huge_logits(dtype):
    Z = np.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4]], dtype)
    y = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.0]], dtype)
    value, G = BinaryCrossEntropy().loss_and_grad(Z, y)
    # per row: 0; 1e4 + 1e4; 0.5 * 1e4 + 1e4 (log1p(exp(-1e4)) = 0 in double)
    l_ref, _ = ref.bce_loss(Z, y)
    np.testing.assert_array_equal(l_ref, [0.0, 2e4, 1.5e4])
    assert value == l_ref.mean()
    np.testing.assert_array_equal(G, np.array([[0, 0], [-1, 1], [0.5, 1]], dtype) / 3)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cross_entropy_exact_at_huge_logits(dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype)
    labels = np.array([0, 0])
    expected = logsumexp(Z.astype(np.float64), axis=1) - Z[[0, 1], labels]  # 0, 2e4 + log 2
    value, G = CrossEntropy().loss_and_grad(Z, labels)
    assert np.isfinite(G).all()
    np.testing.assert_allclose(value, expected.mean(), rtol=1e-15)
    np.testing.assert_allclose(G, np.array([[0, 0, 0], [-1, 0.5, 0.5]]) / 2, rtol=1e-7)
    # the same through probability rows, and KL (entropy 0 for one-hot)
    onehot = np.eye(3, dtype=dtype)[labels]
    for loss in (CrossEntropy(), KLDivergence()):
        v, G2 = loss.loss_and_grad(Z, onehot)
        np.testing.assert_allclose(v, value, rtol=1e-15)
        np.testing.assert_array_equal(G2, G)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_tiny_gradients_keep_relative_accuracy(dtype):
    # sigmoid(30) - 1 formed naively keeps ~3 digits in double and none in float32
    _, G = BinaryCrossEntropy().loss_and_grad(np.array([[30.0, -30.0]], dtype),
                                              np.array([[1.0, 0.0]], dtype))
    np.testing.assert_allclose(G, [[-expit(-30.0), expit(-30.0)]], rtol=10 * RTOL[dtype])
    # softmax_0 - 1 = -(softmax_1 + softmax_2) at a confident, correct prediction
    Z = np.array([[30.0, 0.0, -1.0]], dtype)
    p = softmax(Z.astype(np.float64), axis=1)[0]
    _, G = CrossEntropy().loss_and_grad(Z, np.array([0]))
    np.testing.assert_allclose(G[0], [-(p[1] + p[2]), p[1], p[2]], rtol=10 * RTOL[dtype])
    value = CrossEntropy()(Z, np.array([0]))
    np.testing.assert_allclose(value, np.log1p(np.exp(-30.0) + np.exp(-31.0)),
                               rtol=10 * RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_learned_gaussian_extreme_log_variance(dtype):
    loss = GaussianNLL("learned")
    # columns: mu, s.  Rows: exact fit at s = -1000 (exp(1000) = inf: must not give 0 * inf);
    # s = +1000 with a residual (exp(-1000) underflows); a moderate row against the reference.
    Z = np.array([[0.5, -1000.0], [0.0, 1000.0], [0.0, -40.0]], dtype)
    y = np.array([0.5, 2.0, 1e-3], dtype)
    value, G = loss.loss_and_grad(Z, y)
    assert np.isfinite(value) and np.isfinite(G).all()
    l, D = ref.gaussian_learned_loss(Z, y[:, None])
    np.testing.assert_allclose(l[:2], [-500.0, 500.0], rtol=0)
    np.testing.assert_allclose(value, l.mean(), rtol=RTOL[dtype])
    assert_close(G, D / 3, RTOL[dtype], "gradient")
    np.testing.assert_array_equal(G[:2], np.array([[0.0, 0.5], [0.0, 0.5]], dtype) / dtype(3))
    # a residual at s = -1000 has precision exp(1000): an honest inf, never NaN, never clamped
    value, G = loss.loss_and_grad(np.array([[0.0, -1000.0]], dtype), np.array([1.0], dtype))
    assert value == np.inf
    assert not np.isnan(G).any() and G[0, 0] == -np.inf


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_poisson_large_logits(dtype):
    top = 700.0 if dtype == np.float64 else 80.0  # exp(top) must fit the dtype
    Z = np.array([[top, -top, 20.0]], dtype)
    y = np.array([[3.0, 0.0, 1e6]], dtype)
    for full in (False, True):
        value, G = PoissonNLL(full=full).loss_and_grad(Z, y)
        l, D = ref.poisson_loss(Z, y, full)
        assert np.isfinite(value) and np.isfinite(G).all()
        np.testing.assert_allclose(value, l.mean(), rtol=RTOL[dtype])
        assert_close(G, D, RTOL[dtype], "gradient")


# --------------------------------------------------------- the maximum-likelihood readings

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_kl_is_cross_entropy_minus_target_entropy(dtype):
    rng = np.random.default_rng(4)
    Z = (3 * rng.standard_normal((N, K))).astype(dtype)
    Y = probability_rows(rng, N, K).astype(dtype)
    kl, G_kl = KLDivergence().loss_and_grad(Z, Y)
    ce, G_ce = CrossEntropy().loss_and_grad(Z, Y)
    np.testing.assert_allclose(kl, ce - ref.entropy(Y).mean(), rtol=RTOL[dtype],
                               atol=RTOL[dtype] * ce)
    np.testing.assert_array_equal(G_kl, G_ce)
    # KL vanishes at a perfect fit, cross-entropy does not (it is the entropy there)
    Z_fit = np.log(np.maximum(Y.astype(np.float64), 1e-30)).astype(dtype)
    Y_fit = softmax(Z_fit.astype(np.float64), axis=1).astype(dtype)
    assert abs(KLDivergence()(Z_fit, Y_fit)) < 20 * RTOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_mse_is_gaussian_nll_rescaled(sigma, dtype):
    rng = np.random.default_rng(5)
    Z = rng.standard_normal((N, K)).astype(dtype)
    y = rng.standard_normal((N, K)).astype(dtype)
    mse, G_mse = MSE().loss_and_grad(Z, y)
    factor = K / (2 * sigma ** 2)
    const = K * (np.log(sigma) + ref.HALF_LOG_2PI)
    nll, G_nll = GaussianNLL(sigma).loss_and_grad(Z, y)
    nll_full, G_full = GaussianNLL(sigma, full=True).loss_and_grad(Z, y)
    np.testing.assert_allclose(nll, factor * mse, rtol=RTOL[dtype])
    np.testing.assert_allclose(nll_full, factor * mse + const, rtol=RTOL[dtype])
    assert_close(G_nll, factor * G_mse, RTOL[dtype], "gradient")
    np.testing.assert_array_equal(G_full, G_nll)
    # same minimizer: a constant prediction has zero gradient for both at the column means
    at_mean = np.broadcast_to(y.mean(axis=0, dtype=np.float64), y.shape).astype(dtype)
    for loss in (MSE(), GaussianNLL(sigma)):
        _, G = loss.loss_and_grad(at_mean, y)
        assert np.abs(G.sum(axis=0)).max() < 50 * np.finfo(dtype).eps


def test_gaussian_nll_fit_of_a_constant_is_the_sample_mean():
    # docs/theory.md: mu_ML = (1/N) sum_i x_i.  Gradient descent on a bias-only model.
    rng = np.random.default_rng(6)
    y = rng.normal(3.0, 2.0, (50, 2))
    sigma = 2.0
    c = np.zeros(2)
    for _ in range(60):
        _, G = GaussianNLL(sigma).loss_and_grad(np.tile(c, (50, 1)), y)
        c -= 0.5 * sigma ** 2 * G.sum(axis=0)  # dl/dc = (c - mean) / sigma^2: halves the gap
    np.testing.assert_allclose(c, y.mean(axis=0), rtol=1e-12)


def test_full_nll_is_the_exact_negative_log_likelihood():
    rng = np.random.default_rng(7)
    Z = rng.standard_normal((N, K))
    y = rng.standard_normal((N, K))
    s = sigmas(N)
    np.testing.assert_allclose(GaussianNLL(0.7, full=True)(Z, y),
                               -stats.norm.logpdf(y, Z, 0.7).sum(axis=1).mean(), rtol=1e-12)
    np.testing.assert_allclose(GaussianNLL(s, full=True)(Z, y),
                               -stats.norm.logpdf(y, Z, s[:, None]).sum(axis=1).mean(),
                               rtol=1e-12)
    Zl = np.hstack([Z, rng.standard_normal((N, K))])
    std = np.exp(Zl[:, K:] / 2)
    np.testing.assert_allclose(GaussianNLL("learned", full=True)(Zl, y),
                               -stats.norm.logpdf(y, Z, std).sum(axis=1).mean(), rtol=1e-12)
    counts = rng.poisson(2.0, (N, K))
    np.testing.assert_allclose(PoissonNLL(full=True)(Z, counts),
                               -stats.poisson.logpmf(counts, np.exp(Z)).sum(axis=1).mean(),
                               rtol=1e-12)
    bits = rng.integers(0, 2, (N, K))
    np.testing.assert_allclose(BinaryCrossEntropy()(Z, bits),
                               -stats.bernoulli.logpmf(bits, expit(Z)).sum(axis=1).mean(),
                               rtol=1e-12)
    labels = rng.integers(0, K, N)
    p = softmax(Z, axis=1)[np.arange(N), labels]
    np.testing.assert_allclose(CrossEntropy()(Z, labels), -np.log(p).mean(), rtol=1e-12)


# ------------------------------------------------------------------------------- outputs

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_output_links(dtype):
    rng = np.random.default_rng(8)
    Z = (3 * rng.standard_normal((N, 2 * K))).astype(dtype)
    Z[0, :3] = [1e4, -1e4, 0.0]
    Z_before = Z.copy()
    eps = np.finfo(dtype).eps
    for loss, link in ((MSE(), "identity"), (GaussianNLL(2.0), "identity"),
                       (BinaryCrossEntropy(), "sigmoid"), (CrossEntropy(), "softmax"),
                       (KLDivergence(), "softmax"), (PoissonNLL(), "exp")):
        assert loss.output_name == link
        out = loss.output(Z[1:] if link == "exp" else Z)
        assert out.dtype == dtype and np.isfinite(out).all()
        expected = ref.output_link(Z[1:] if link == "exp" else Z, link)
        np.testing.assert_allclose(out, expected, rtol=4 * eps, atol=4 * eps * (link != "exp"))
        if link == "softmax":
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=4 * K * eps)
            np.testing.assert_array_equal(out[0, :3], [1.0, 0.0, 0.0])
            np.testing.assert_array_equal(loss.predict_proba(Z), out)
        if link == "sigmoid":
            assert ((out >= 0) & (out <= 1)).all()
            np.testing.assert_array_equal(out[0, :2], [1.0, 0.0])
    np.testing.assert_array_equal(Z, Z_before)  # outputs never write into Z
    learned = GaussianNLL("learned")
    assert learned.output_name == "gaussian"
    mean, std = ref.output_link(Z[1:], "gaussian")
    np.testing.assert_array_equal(learned.output(Z[1:]), mean)
    np.testing.assert_allclose(learned.predict_std(Z[1:]), std, rtol=4 * eps)
    assert learned.predict_std(Z[1:]).dtype == dtype
    assert not hasattr(MSE(), "predict_proba") and not hasattr(PoissonNLL(), "predict_proba")


# ----------------------------------------------------------------- dtypes and buffers

@pytest.mark.parametrize("case", CASES)
def test_float32_agrees_with_float64(case):
    # Same (float32-representable) inputs in both dtypes.  Every row is computed in double for
    # either dtype, so the float32 loss is the float64 one and the float32 gradient is the
    # float64 one rounded once: we allow 1 ulp (contraction to FMA under -march=native may
    # differ between the two specializations).
    rng = np.random.default_rng(9)
    loss, Z, y, _ = make_case(case, rng)
    Z32, y32 = cast(Z, y, np.float32)
    w32 = rng.uniform(0.1, 2.0, N).astype(np.float32)
    Z64, y64 = cast(Z32, y32, np.float64)
    v32, G32 = loss.loss_and_grad(Z32, y32, w32)
    v64, G64 = loss.loss_and_grad(Z64, y64, w32.astype(np.float64))
    np.testing.assert_allclose(v32, v64, rtol=1e-14)
    np.testing.assert_array_max_ulp(G32, G64.astype(np.float32), maxulp=1)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", ["mse", "gaussian_learned", "bce", "ce_labels", "kl"])
def test_out_buffer_and_in_place(case, dtype):
    rng = np.random.default_rng(10)
    loss, Z, y, _ = make_case(case, rng)
    Z, y = cast(Z, y, dtype)
    value, G = loss.loss_and_grad(Z, y)
    buf = np.full_like(Z, np.nan)
    value_b, G_b = loss.loss_and_grad(Z, y, out=buf)
    assert G_b is buf and value_b == value
    np.testing.assert_array_equal(buf, G)
    Z_work = Z.copy()  # the training loop's aliasing: the gradient overwrites the logits
    value_z, G_z = loss.loss_and_grad(Z_work, y, out=Z_work)
    assert G_z is Z_work and value_z == value
    np.testing.assert_array_equal(Z_work, G)


def test_out_buffer_errors():
    rng = np.random.default_rng(11)
    Z, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    with pytest.raises(TypeError, match="out has dtype float32; expected float64"):
        MSE().loss_and_grad(Z, y, out=np.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"out has shape \(3, 4\); expected \(4, 3\)"):
        MSE().loss_and_grad(Z, y, out=np.empty((3, 4)))
    with pytest.raises(ValueError, match="out shares memory with y"):
        MSE().loss_and_grad(Z, y, out=y)
    with pytest.raises(ValueError, match="out shares memory with Z"):
        MSE().loss_and_grad(Z, y, out=Z[:, :].view())  # a view of Z is not Z itself
    ro = np.empty((4, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        MSE().loss_and_grad(Z, y, out=ro)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        MSE().loss_and_grad(Z, y, out=np.empty((4, 3), order="F"))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", ["gaussian_per_sample", "ce_labels", "ce_probs", "poisson"])
def test_read_only_and_noncontiguous_inputs(case, dtype):
    rng = np.random.default_rng(12)
    loss, Z, y, _ = make_case(case, rng)
    Z, y = cast(Z, y, dtype)
    w = rng.uniform(0.5, 1.5, N).astype(dtype)
    value, G = loss.loss_and_grad(Z, y, w)
    for a in (Z, y, w):
        a.flags.writeable = False
    value_ro, G_ro = loss.loss_and_grad(Z, y, w)
    assert value_ro == value
    np.testing.assert_array_equal(G_ro, G)
    value_f, G_f = loss.loss_and_grad(np.asfortranarray(Z), np.asfortranarray(y), w)
    assert value_f == value
    np.testing.assert_array_equal(G_f, G)


# ------------------------------------------------------------------ targets and interface

def test_prepare_targets_forms():
    Y, labels = MSE().prepare_targets([1.0, 2.0, 3.0], 1, np.float32)
    assert Y.shape == (3, 1) and Y.dtype == np.float32 and Y.flags.c_contiguous
    assert labels is None
    Y, _ = BinaryCrossEntropy().prepare_targets(np.array([True, False]), 1, np.float64)
    np.testing.assert_array_equal(Y, [[1.0], [0.0]])
    ce = CrossEntropy()
    for y in ([0, 2, 1], np.array([0.0, 2.0, 1.0]), np.array([0, 2, 1], np.uint8)):
        Y, labels = ce.prepare_targets(y, 3, np.float64)
        assert Y is None and labels.dtype == np.intp
        np.testing.assert_array_equal(labels, [0, 2, 1])
    assert ce.target_width([0, 4, 1]) == 5 and ce.target_width(np.eye(3)) == 3
    Y, labels = ce.prepare_targets(np.eye(3, dtype=np.int64), 3, np.float32)  # integer one-hot
    assert labels is None and Y.dtype == np.float32
    # rows normalised in float32 are accepted by a float64 model; a row off by 1e-3 is not
    rows32 = np.random.default_rng(13).dirichlet(np.ones(50), 4).astype(np.float32)
    ce.prepare_targets(rows32, 50, np.float64)
    with pytest.raises(ValueError, match=r"row 0 of y sums to 1.001; .*within 0.00035"):
        ce.prepare_targets(np.array([[0.5, 0.5 + 1e-3]]), 2, np.float64)
    learned = GaussianNLL("learned")
    Y, _ = learned.prepare_targets(np.zeros((4, 2)), 4, np.float64)
    assert Y.shape == (4, 2)


def test_interface_attributes():
    s = sigmas(4)
    table = [
        (MSE(), "mse", "identity", False, 3),
        (GaussianNLL(0.5, full=True), "gaussian", "identity", True, 3),
        (GaussianNLL(s), "gaussian", "identity", False, 3),
        (GaussianNLL("learned"), "gaussian_learned", "gaussian", False, 6),
        (BinaryCrossEntropy(), "bce", "sigmoid", False, 3),
        (CrossEntropy(), "cross_entropy", "softmax", False, 3),
        (KLDivergence(), "kl", "softmax", False, 3),
        (PoissonNLL(full=True), "poisson", "exp", True, 3),
    ]
    for loss, kind, output_name, full, n_out in table:
        assert isinstance(loss, Loss)
        assert loss.kind == KINDS[kind] == _losses.KINDS[kind]
        assert loss.output_name == output_name and loss.full is full
        assert loss.n_outputs(3) == n_out
    assert len(set(_losses.KINDS.values())) == 7
    assert GaussianNLL(0.5).scalar_sigma == 0.5 and GaussianNLL(0.5).sample_sigma is None
    g = GaussianNLL(s)
    assert g.scalar_sigma == 1.0 and not g.sample_sigma.flags.writeable
    np.testing.assert_array_equal(g.sample_sigma, s)
    assert MSE().scalar_sigma == 1.0 and MSE().sample_sigma is None
    sig32 = g.prepare_sigma(4, np.float32)
    assert sig32.dtype == np.float32 and sig32.flags.c_contiguous
    assert GaussianNLL(2.0).prepare_sigma(4, np.float64) is None
    assert repr(GaussianNLL(0.5)) == "GaussianNLL(sigma=0.5, full=False)"
    assert repr(PoissonNLL()) == "PoissonNLL(full=False)" and repr(MSE()) == "MSE()"


def test_get_loss_names():
    for name, cls in LOSS_NAMES.items():
        assert type(get_loss(name)) is cls
    for name in ("mse", "squared_error", "gaussian_nll", "bce", "binary_crossentropy",
                 "cross_entropy", "crossentropy", "kl", "poisson"):
        assert name in LOSS_NAMES
    loss = GaussianNLL(3.0)
    assert get_loss(loss) is loss
    with pytest.raises(ValueError, match=r"loss='hinge' is not supported; expected one of "
                                         r"'mse', 'squared_error'.*'poisson'"):
        get_loss("hinge")
    with pytest.raises(TypeError, match="loss must be a name or a fastnn.nn.losses.Loss"):
        get_loss(3)


def test_config_round_trip():
    for loss in (MSE(), GaussianNLL(0.25, full=True), GaussianNLL("learned"),
                 BinaryCrossEntropy(), CrossEntropy(), KLDivergence(), PoissonNLL(full=True)):
        config = json.loads(json.dumps(loss.get_config()))
        rebuilt = Loss.from_config(config)
        assert type(rebuilt) is type(loss) and rebuilt.get_config() == loss.get_config()
        assert rebuilt.kind == loss.kind and rebuilt.full == loss.full
        assert rebuilt.scalar_sigma == loss.scalar_sigma
    config = GaussianNLL(sigmas(3), full=True).get_config()
    assert config == {"name": "gaussian_nll", "sigma": "per_sample", "full": True}
    with pytest.warns(UserWarning, match="per-sample sigma array .* was not serialized"):
        rebuilt = Loss.from_config(config)
    assert rebuilt.sample_sigma is None and rebuilt.scalar_sigma == 1.0 and rebuilt.full
    with pytest.raises(ValueError, match="config name 'hinge' is not a loss"):
        Loss.from_config({"name": "hinge"})
    with pytest.raises(ValueError, match="has parameters that MSE does not take"):
        Loss.from_config({"name": "mse", "full": True})
    with pytest.raises(TypeError, match="config must be a dict with a 'name' key"):
        Loss.from_config(["mse"])


Z4 = np.zeros((4, 3))
Y4 = np.zeros((4, 3))
P4 = np.full((4, 3), 1 / 3)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: MSE()(np.full((4, 3), np.nan), Y4), ValueError, "Z contains NaN or infinity"),
    (lambda: MSE()(np.zeros(4), Y4), ValueError, "Z must be 2-dimensional; got shape"),
    (lambda: MSE()(np.zeros((4, 3), int), Y4), TypeError, "Z has dtype int64; expected float"),
    (lambda: MSE()(Z4, np.zeros((5, 3))), ValueError, "y has 5 rows; expected 4"),
    (lambda: MSE()(Z4, np.zeros((4, 2))), ValueError,
     r"y has shape \(4, 2\); MSE expects \(n_samples, 3\)"),
    (lambda: MSE()(Z4, np.zeros(4)), ValueError,
     r"y has shape \(4,\); MSE expects y of shape \(n_samples, 3\)"),
    (lambda: MSE()(Z4, np.full((4, 3), np.inf)), ValueError, "y contains NaN or infinity"),
    (lambda: MSE()(Z4, np.full((4, 3), "a")), TypeError, "y has dtype <U1; expected real"),
    (lambda: MSE()(Z4.astype(np.float32), np.full((4, 3), 1e300)), ValueError,
     "y has values too large for float32"),
    (lambda: BinaryCrossEntropy()(Z4, Y4 + 1.5), ValueError,
     r"y has values in \[1.5, 1.5\]; BinaryCrossEntropy expects targets in \[0, 1\]"),
    (lambda: CrossEntropy()(Z4, [0, 1, 5, 2]), ValueError,
     r"y has class labels in \[0, 5\]; expected labels in \[0, 3\)"),
    (lambda: CrossEntropy()(Z4, [0, -1, 1, 2]), ValueError, r"class labels in \[-1, 2\]"),
    (lambda: CrossEntropy()(Z4, [0, 1.5, 1, 2]), ValueError,
     "non-integer value 1.5 at index 1; CrossEntropy expects integer class labels"),
    (lambda: CrossEntropy()(Z4, P4 * 1.1), ValueError,
     "row 0 of y sums to 1.1.*; pass integer class labels as a 1-D array"),
    (lambda: CrossEntropy()(Z4, np.tile([1.5, -0.5, 0.0], (4, 1))), ValueError,
     r"y has negative entries \(min -0.5\); CrossEntropy expects probability rows"),
    (lambda: CrossEntropy()(Z4, np.zeros((4, 2))), ValueError,
     r"CrossEntropy expects probability rows of shape \(n_samples, 3\)"),
    (lambda: KLDivergence()(Z4, [0, 1, 2, 0]), ValueError,
     "for integer class labels use CrossEntropy"),
    (lambda: PoissonNLL()(Z4, Y4 - 1), ValueError, "PoissonNLL expects counts >= 0"),
    (lambda: MSE()(Z4, Y4, [1, -1, 1, 1]), ValueError, "sample_weight has negative entries"),
    (lambda: MSE()(Z4, Y4, [0, 0, 0, 0]), ValueError, "sample_weight is all zeros"),
    (lambda: MSE()(Z4, Y4, [1, 1, 1]), ValueError,
     r"sample_weight has 3 entries; expected 4 \(one per sample\)"),
    (lambda: MSE()(Z4, Y4, np.ones((4, 1))), ValueError,
     "sample_weight must be 1-dimensional"),
    (lambda: MSE()(Z4, Y4, [1, np.nan, 1, 1]), ValueError, "sample_weight contains NaN"),
    (lambda: MSE()(Z4.astype(np.float32), Y4, [1e300, 1, 1, 1]), ValueError,
     "sample_weight has entries too large for float32"),
    (lambda: GaussianNLL(0.0), ValueError, "sigma=0.0; expected sigma > 0"),
    (lambda: GaussianNLL(-1), ValueError, "sigma=-1; expected sigma > 0"),
    (lambda: GaussianNLL("fixed"), ValueError, "sigma='fixed' is not supported"),
    (lambda: GaussianNLL([1.0, 0.0]), ValueError, r"sigma has entries <= 0 \(min 0.0\)"),
    (lambda: GaussianNLL([1.0, np.nan]), ValueError, "sigma contains NaN or infinity"),
    (lambda: GaussianNLL(np.ones((2, 2))), ValueError, r"sigma has shape \(2, 2\)"),
    (lambda: GaussianNLL([1.0, 2.0, 3.0])(Z4, Y4), ValueError,
     "sigma has 3 entries; expected 4, one per sample"),
    (lambda: GaussianNLL("learned")(Z4, np.zeros((4, 1))), ValueError,
     "needs an even number of outputs"),
    (lambda: GaussianNLL("learned").predict_std(Z4), ValueError,
     "needs an even number of outputs"),
    (lambda: GaussianNLL(1.0).predict_std(Z4), ValueError, "predict_std needs"),
    (lambda: GaussianNLL(full="yes"), TypeError, "full must be True or False"),
    (lambda: PoissonNLL(full=1), TypeError, "full must be True or False"),
    (lambda: MSE().prepare_targets(Y4, 3, np.int32), TypeError, "dtype is"),
    (lambda: MSE()(Z4, 1.0), ValueError, "y is a scalar"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_compiled_wrapper_checks_shapes_and_never_reads_out_of_bounds():
    Z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="unknown loss code 9"):
        _losses.loss_grad_into(9, False, 1.0, Z, Z, None, None, None, 1.0, None)
    with pytest.raises(ValueError, match=r"Y has shape \(2, 2\); expected \(2, 3\)"):
        _losses.loss_grad_into(KINDS["mse"], False, 1.0, Z, np.zeros((2, 2)), None, None,
                               None, 1.0, None)
    with pytest.raises(ValueError, match="either Y or labels is required"):
        _losses.loss_grad_into(KINDS["mse"], False, 1.0, Z, None, None, None, None, 1.0, None)
    with pytest.raises(ValueError, match=r"G has shape \(3, 2\); expected \(2, 3\)"):
        _losses.loss_grad_into(KINDS["mse"], False, 1.0, Z, Z, None, None, None, 1.0,
                               np.zeros((3, 2)))
    # labels are validated in Python; the kernel turns a bad one into NaN, not a wild read
    G = np.zeros_like(Z)
    total = _losses.loss_grad_into(KINDS["cross_entropy"], False, 1.0, Z, None,
                                   np.array([0, 7], np.intp), None, None, 1.0, G)
    assert np.isnan(total) and np.isnan(G[1]).all() and np.isfinite(G[0]).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("width", [1, 2, 3, 10, 85, 256, 257, 300, 600])
def test_the_softmax_link_over_widths_and_row_blocks(dtype, width):
    """The softmax link works on blocks of rows (256 // width at a time; rows wider than 256
    in pieces of 256): every block boundary, a huge logit, and a row of NaN that must stay
    confined to its row."""
    rng = np.random.default_rng(width)
    n = 2 * (256 // width) + 3
    Z = (4 * rng.standard_normal((n, width))).astype(dtype)
    Z[1] += np.asarray(1e30 if dtype == np.float32 else 1e300, dtype)   # a shifted row
    Z[2, -1] = np.nan
    out = CrossEntropy().output(Z)
    finite = np.where(np.isnan(Z), 0, Z).astype(np.float64)
    # (shifted by the row maximum first: exact, and ref's log-sum-exp of 1e30 loses the rest)
    expected = ref.output_link(finite - finite.max(axis=1, keepdims=True), "softmax")
    assert np.isnan(out[2]).all()
    keep = np.arange(n) != 2
    eps = np.finfo(dtype).eps
    # float64: the exponentials are a few ulp of double; float32: each probability is the
    # double one rounded once
    np.testing.assert_allclose(out[keep], expected[keep], rtol=8 * eps, atol=8 * eps)
    for i in range(n):
        np.testing.assert_array_equal(CrossEntropy().output(Z[i:i + 1]), out[i:i + 1])
