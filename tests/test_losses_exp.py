"""The exponentials of the training losses: softmax cross-entropy and KL are one C kernel per
block of rows (fnn_*_softmax_xent in src_c/fastnn_kernels.h: row maxima, the vectorized exp of
the prediction softmax, t, log1p, the gradient rows), BCE takes exp(-|z|) from the same exp
once per logit.  Checked here against an extended-precision NumPy reference (np.longdouble)
over logits up to +-1e4, row widths on both sides of the kernel's 512-double stack buffer and
across its blocks of rows, integer labels and probability targets, ties, NaN logits, weights
0, a gradient written over its logits, and bad labels."""
import numpy as np
import pytest

import fastnn  # noqa: F401  (fails early with a build hint if the extension is missing)
from fastnn._core import _losses
from fastnn.nn.losses import KINDS

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]
WIDTHS = [1, 2, 3, 7, 10, 64, 255, 256, 257, 511, 512, 513, 1000, 1025]
CACHE, MAX_ROWS = 512, 64     # src_c/fastnn_kernels.h FNN_XENT_CACHE, FNN_XENT_ROWS
TARGETS = ["labels", "probs", "kl"]
RTOL = 1e-12                  # float64 results, and every loss value (a double in both dtypes)
TINY = 1e-300                 # below this a double exp is subnormal: few significant bits


def _block(width):
    """Rows per block of the kernel: min(CACHE // width, MAX_ROWS); a wider row goes alone."""
    return min(CACHE // width, MAX_ROWS) if width <= CACHE else 1


def _logits(rng, n, k, dtype):
    """Rows at scales 1, 30, 1e3 and 1e4 (clipped to [-1e4, 1e4]), so rows whose softmax is
    smooth, peaked and one-hot (every other exp underflows) all occur."""
    scales = np.resize([1.0, 30.0, 1e3, 1e4], n)[:, None]
    return np.clip(scales * rng.standard_normal((n, k)), -1e4, 1e4).astype(dtype)


def _targets(rng, n, k, kind, dtype):
    """(Y, labels): probability rows (some with exact zeros) or integer labels."""
    if kind == "labels":
        return None, rng.integers(0, k, n).astype(np.intp)
    Y = rng.dirichlet(np.ones(k), size=n)
    Y[::3, : k // 2] = 0.0                     # 0 log 0 = 0 in KL, zero targets in CE
    Y /= Y.sum(axis=1, keepdims=True)
    return Y.astype(dtype), None


def _reference(Z, Y, labels, kl):
    """Per-row loss and gradient of softmax cross-entropy (or KL), in np.longdouble, from the
    values the kernel sees; also the two terms of each gradient component (ysum * p and y),
    whose size bounds the rounding of their difference."""
    Z = Z.astype(np.longdouble)
    n, k = Z.shape
    if labels is not None:
        Y = np.zeros((n, k), np.longdouble)
        Y[np.arange(n), labels] = 1
    else:
        Y = Y.astype(np.longdouble)
    shifted = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(shifted)
    s = E.sum(axis=1, keepdims=True)
    ysum = Y.sum(axis=1, keepdims=True)
    loss = -(Y * (shifted - np.log(s))).sum(axis=1)
    if kl:
        loss += np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0).sum(axis=1)
    P = ysum * E / s
    return loss, P - Y, P + Y


def _call(kind, Z, Y, labels, w, G, flush=False):
    return _losses.loss_grad_into(KINDS[kind], False, 1.0, Z, Y, labels, w, None, 0.5, G, flush)


def _assert_gradient(G, expected, terms, dtype, what):
    """float64: relative 1e-12, with the absolute floor of 1e-12 times the size of the two
    terms of softmax - y (a difference is only as exact as its terms) and of subnormal exps.
    float32: within 1 ulp of the extended reference rounded to float32."""
    expected = np.asarray(expected, np.float64)
    if dtype == np.float64:
        atol = RTOL * np.asarray(terms, np.float64) + TINY
        bad = np.abs(G - expected) > RTOL * np.abs(expected) + atol
    else:
        rounded = expected.astype(np.float32)
        bad = np.abs(G.astype(np.float64) - rounded) > np.spacing(np.abs(rounded))
        # a difference that cancels in double keeps 1e-16 of its terms, not 1 ulp of float32
        bad &= np.abs(G - expected) > 1e-15 * np.asarray(terms, np.float64)
    assert not bad.any(), (f"{what}: {bad.sum()} components off, e.g. got {G[bad][:3]} "
                           f"expected {expected[bad][:3]}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("width", WIDTHS)
def test_softmax_losses_against_extended_precision(width, target, dtype):
    rng = np.random.default_rng([width, TARGETS.index(target)])
    n = max(5, 2 * _block(width) + 3)               # crosses two block boundaries
    Z = _logits(rng, n, width, dtype)
    Y, labels = _targets(rng, n, width, "labels" if target == "labels" else "probs", dtype)
    w = rng.uniform(0.5, 2.0, n).astype(dtype)
    w[1] = 0.0
    Z[1, 0] = np.nan                                # a weight-0 row: no trace of its NaN
    kind = "kl" if target == "kl" else "cross_entropy"
    G = np.full_like(Z, 7.0)
    total = _call(kind, Z, Y, labels, w, G)
    loss, grad, terms = _reference(np.where(np.isnan(Z), 0, Z), Y, labels, target == "kl")
    keep = w > 0
    expected_total = float(np.sum(w[keep].astype(np.longdouble) * loss[keep]))
    assert total == pytest.approx(expected_total, rel=RTOL, abs=RTOL * float(np.abs(loss).max()))
    np.testing.assert_array_equal(G[1], 0.0)
    scale = 0.5 * w.astype(np.float64)[:, None]
    _assert_gradient(G[keep], (scale * grad)[keep], (scale * terms)[keep], dtype,
                     f"{kind}, {width} logits")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("width", WIDTHS)
def test_a_row_gives_the_same_bits_alone_in_a_block_and_over_its_logits(width, target, dtype):
    """Where a row sits in a block of exps (vector lanes or the scalar remainder), and whether
    the gradient goes to its own buffer or over the logits, changes no bit."""
    rng = np.random.default_rng([7, width, TARGETS.index(target)])
    n = max(4, _block(width) + 5)
    Z = _logits(rng, n, width, dtype)
    Y, labels = _targets(rng, n, width, "labels" if target == "labels" else "probs", dtype)
    kind = "kl" if target == "kl" else "cross_entropy"
    G = np.empty_like(Z)
    total = _call(kind, Z, Y, labels, None, G, flush=True)
    alone, running = np.empty_like(Z), 0.0
    for i in range(n):
        row_total = _call(kind, Z[i:i + 1], None if Y is None else Y[i:i + 1],
                          None if labels is None else labels[i:i + 1], None, alone[i:i + 1],
                          flush=True)
        running += row_total
    np.testing.assert_array_equal(G, alone)
    assert total == running
    in_place = Z.copy()
    assert _call(kind, in_place, Y, labels, None, in_place, flush=True) == total
    np.testing.assert_array_equal(in_place, G)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("width", [3, 10, 257, 513, 1000])
def test_a_bad_label_spoils_only_its_row(width, dtype):
    rng = np.random.default_rng(width)
    n = _block(width) + 4
    Z = _logits(rng, n, width, dtype)
    labels = rng.integers(0, width, n).astype(np.intp)
    labels[2] = width
    G = np.zeros_like(Z)
    assert np.isnan(_call("cross_entropy", Z, None, labels, None, G))
    assert np.isnan(G[2]).all()
    ok = np.arange(n) != 2
    G_ok = np.zeros_like(Z[ok])
    _call("cross_entropy", Z[ok], None, labels[ok], None, G_ok)
    np.testing.assert_array_equal(G[ok], G_ok)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_against_extended_precision(dtype):
    rng = np.random.default_rng(3)
    Z = _logits(rng, 64, 9, dtype)
    Z[0, :5] = [0.0, -0.0, 1e4, -1e4, 745.0]
    Y = rng.uniform(0, 1, Z.shape).astype(dtype)
    Y[1] = 0.0
    Y[2] = 1.0
    G = np.empty_like(Z)
    total = _call("bce", Z, Y, None, None, G)
    z, y = Z.astype(np.longdouble), Y.astype(np.longdouble)
    e = np.exp(-np.abs(z))
    loss = np.where(z > 0, (1 - y) * z, -y * z) + np.log1p(e)
    sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    sig_neg = np.where(z >= 0, e / (1 + e), 1 / (1 + e))
    assert total == pytest.approx(float(loss.sum()), rel=RTOL)
    # sigmoid(z) - y as (1 - y) sigmoid(z) - y sigmoid(-z): sigmoid(z) - 1 would keep only
    # 1e-19 of 1 in long double; its two terms bound the rounding of the difference
    pos, neg = (1 - y) * sig, y * sig_neg
    _assert_gradient(G, 0.5 * (pos - neg), 0.5 * (pos + neg), dtype, "bce")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_the_sigmoid_prediction_link_is_trainings_rounded_once(dtype):
    """BinaryCrossEntropy's output link (predict_proba of a sigmoid output) is the double
    sigmoid rounded once to the model's dtype: in float32 the value training's link gives
    (the gradient at y = 0 with weight 1), within half an ulp of the exact sigmoid.  The
    float kernel of the hidden layers was up to ~3 ulp off, and a third of the predictions
    differed from training's link."""
    from fastnn.nn.losses import BinaryCrossEntropy
    rng = np.random.default_rng(7)
    z = np.concatenate([5 * rng.standard_normal(20000),
                        rng.uniform(-80, 40, 20000)]).astype(dtype)   # normal floats
    p = BinaryCrossEntropy().output(z[:, None])[:, 0]
    zl = z.astype(np.longdouble)
    exact = np.where(zl >= 0, 1 / (1 + np.exp(-zl)), np.exp(zl) / (1 + np.exp(zl)))
    ulp = np.spacing(exact.astype(dtype)).astype(np.longdouble)
    bound = 0.5 + (0.0 if dtype == np.float32 else 4.0)   # float64: a few ulp of double
    assert (np.abs(p.astype(np.longdouble) - exact) / ulp).max() <= bound
    _, G = BinaryCrossEntropy().loss_and_grad(z[None, :], np.zeros((1, z.size), dtype))
    np.testing.assert_array_equal(G[0], p)   # one sample: G is the link itself


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("width", [2, 10, 600])
def test_ties_and_labels_at_the_largest_logit(width, target, dtype):
    """Rows whose largest logit is tied (the kernel takes the first; the component there is
    written (sum_{j != a} y_j - y_a t) / s), all-equal rows, and labels on, before and after
    the largest logit."""
    rng = np.random.default_rng([11, width, TARGETS.index(target)])
    n = 9
    Z = _logits(rng, n, width, dtype)
    Z[0] = 3.0                                          # all equal
    Z[1, [0, width - 1]] = Z[1].max() + 1.0             # tied at both ends
    Z[2, 1:] = Z[2, 0] - 50.0                           # one-hot at 0
    Y, labels = _targets(rng, n, width, "labels" if target == "labels" else "probs", dtype)
    if labels is not None:
        labels[:] = [0, 0, 0, width - 1, 1, 0, width - 1, 1, 0]
        labels[3:] = np.argmax(Z[3:], axis=1)           # labels at the largest logit
        labels[6] = (labels[6] + 1) % width             # and beside it
    kind = "kl" if target == "kl" else "cross_entropy"
    G = np.empty_like(Z)
    total = _call(kind, Z, Y, labels, None, G)
    loss, grad, terms = _reference(Z, Y, labels, target == "kl")
    assert total == pytest.approx(float(loss.sum()), rel=RTOL, abs=RTOL * float(np.abs(loss).max()))
    _assert_gradient(G, 0.5 * grad, 0.5 * terms, dtype, f"{kind}, ties, {width} logits")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("width", [1, 2, 10, 513])
def test_nan_logits_spoil_only_their_row(width, target, dtype):
    """A NaN logit (first, or later: the maximum skips it, its exp does not) makes its row's
    loss and gradient NaN, and every other row keeps its bits; the sum is NaN.  One logit:
    softmax is 1 whatever z is, and the gradient 1 - y is exactly 0 (the component at the
    largest logit, (sum_{j != a} y_j - y_a t) / s, with t = 0), NaN or not."""
    rng = np.random.default_rng([13, width, TARGETS.index(target)])
    n = 2 * _block(width) + 3 if width <= CACHE else 6
    Z = _logits(rng, n, width, dtype)
    Z[0, 0] = np.nan
    Z[n - 2, width // 2] = np.nan
    Y, labels = _targets(rng, n, width, "labels" if target == "labels" else "probs", dtype)
    kind = "kl" if target == "kl" else "cross_entropy"
    G = np.empty_like(Z)
    assert np.isnan(_call(kind, Z, Y, labels, None, G))
    if width == 1:
        np.testing.assert_array_equal(G[[0, n - 2]], 0.0)
    else:
        assert np.isnan(G[[0, n - 2]]).all()
    ok = np.ones(n, bool)
    ok[[0, n - 2]] = False
    G_ok = np.empty_like(Z[ok])
    total_ok = _call(kind, Z[ok], None if Y is None else Y[ok],
                     None if labels is None else labels[ok], None, G_ok)
    assert np.isfinite(total_ok)
    np.testing.assert_array_equal(G[ok], G_ok)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("width", [10, 513])
def test_weight_zero_rows_leave_no_trace_even_with_a_bad_label_or_nan(width, target, dtype):
    """Weight 0 beats everything: exact zero gradient rows, in place over the logits too, and
    a finite sum equal to that of the other rows, whatever the row holds (NaN, +-inf logits,
    a label out of range)."""
    rng = np.random.default_rng([17, width, TARGETS.index(target)])
    n = _block(width) + 5 if width <= CACHE else 5
    Z = _logits(rng, n, width, dtype)
    Y, labels = _targets(rng, n, width, "labels" if target == "labels" else "probs", dtype)
    w = rng.uniform(0.5, 2.0, n).astype(dtype)
    w[[0, 2, n - 1]] = 0.0
    Z[0, :] = np.nan
    Z[2, 0], Z[2, -1] = np.inf, -np.inf
    if labels is not None:
        labels[n - 1] = -1
    kind = "kl" if target == "kl" else "cross_entropy"
    in_place = Z.copy()
    total = _call(kind, in_place, Y, labels, w, in_place)
    np.testing.assert_array_equal(in_place[w == 0], 0.0)
    keep = w > 0
    G_keep = np.empty_like(Z[keep])
    expected = _call(kind, Z[keep], None if Y is None else Y[keep],
                     None if labels is None else labels[keep], w[keep], G_keep)
    assert total == expected and np.isfinite(total)
    np.testing.assert_array_equal(in_place[keep], G_keep)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("width", [10, 1025])
def test_the_loss_alone_equals_the_loss_with_its_gradient(width, target, dtype):
    """G = None (evaluation only) takes the same path to the same sum."""
    rng = np.random.default_rng([19, width, TARGETS.index(target)])
    n = 2 * _block(width) + 1
    Z = _logits(rng, n, width, dtype)
    Y, labels = _targets(rng, n, width, "labels" if target == "labels" else "probs", dtype)
    w = rng.uniform(0.0, 2.0, n).astype(dtype)
    kind = "kl" if target == "kl" else "cross_entropy"
    G = np.empty_like(Z)
    assert _call(kind, Z, Y, labels, w, None) == _call(kind, Z, Y, labels, w, G)
