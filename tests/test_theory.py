"""docs/theory.md's identities, each checked on whole models against a closed form or plain NumPy."""
import numpy as np
import pytest

import fastnn
from fastnn._core import _reference as ref
from fastnn.nn.gradcheck import check_gradients
from fastnn.nn.losses import (BinaryCrossEntropy, CrossEntropy, GaussianNLL, KLDivergence, MSE,
                              PoissonNLL)
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import SGD, Adam
from fastnn.training.trainer import fit


def _bias_only(n_targets):
    """Z = b: a one-layer model fed a zero input, so only the bias can move."""
    model = MLP([1, n_targets], dtype=np.float64, init="zeros", seed=0)
    return model, np.zeros((1, 1))


def test_gaussian_nll_over_a_bias_only_model_converges_to_the_sample_mean():
    # NLL = sum_i |y_i - mu|^2 / (2 sigma^2) + const; d/dmu = 0  =>  mu_ML = mean_i y_i
    rng = np.random.default_rng(0)
    y = rng.normal([3.0, -1.0, 0.5], [2.0, 0.1, 1.0], size=(200, 3))
    model, _ = _bias_only(3)
    X = np.zeros((200, 1))
    # full batch; the gradient is (mu - mean)/sigma^2, so lr = 0.5 contracts the error by half
    fit(model, X, y, GaussianNLL(sigma=1.0), SGD(lr=0.5), epochs=100, batch_size=200,
        shuffle=False)
    np.testing.assert_allclose(model.layers[0].b, y.mean(axis=0), rtol=0, atol=1e-12)


def test_mse_and_fixed_sigma_gaussian_nll_differ_by_a_factor_and_a_constant():
    # Gaussian NLL (full) = k MSE / (2 sigma^2) + k (log sigma + log(2 pi) / 2) for k outputs
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 2))
    model = MLP([4, 6, 2], activation="tanh", dtype=np.float64, seed=0)
    sigma, k = 0.7, 2
    mse = model.loss_and_grad(X, Y, MSE())
    g_mse = model.grads.copy()
    nll = model.loss_and_grad(X, Y, GaussianNLL(sigma=sigma, full=True))
    g_nll = model.grads.copy()
    factor = k / (2 * sigma ** 2)
    const = k * (np.log(sigma) + 0.5 * np.log(2 * np.pi))
    assert nll == pytest.approx(factor * mse + const, rel=1e-13)
    np.testing.assert_allclose(g_nll, factor * g_mse, rtol=1e-12, atol=1e-15)


def test_mse_and_gaussian_nll_have_the_same_minimizer_the_least_squares_fit():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((80, 3))
    y = X @ np.array([1.5, -0.5, 2.0]) + 0.3 + 0.1 * rng.standard_normal(80)
    A = np.hstack([X, np.ones((80, 1))])
    w_ls = np.linalg.lstsq(A, y, rcond=None)[0]  # closed form: the MLE for Gaussian noise
    for loss, lr in ((MSE(), 0.2), (GaussianNLL(sigma=2.0), 0.8)):  # same step after the 1/4
        model = MLP([3, 1], dtype=np.float64, init="zeros", seed=0)
        fit(model, X, y, loss, SGD(lr=lr, momentum=0.5), epochs=500, batch_size=80,
            shuffle=False)
        np.testing.assert_allclose(np.append(model.layers[0].W[:, 0], model.layers[0].b),
                                   w_ls, rtol=0, atol=1e-9)


def test_a_sample_with_huge_sigma_has_vanishing_influence():
    # Per-sample sigma weights sample i by 1/sigma_i^2: an outlier with sigma = 1e6 must leave
    # the fit where it is without that sample at all.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((41, 2))
    y = X @ np.array([2.0, -1.0]) + 0.5 + 0.05 * rng.standard_normal(41)
    y[-1] = 1e3  # the outlier
    A = np.hstack([X, np.ones((41, 1))])
    w_without = np.linalg.lstsq(A[:-1], y[:-1], rcond=None)[0]
    w_with = np.linalg.lstsq(A, y, rcond=None)[0]
    sigma = np.ones(41)
    sigma[-1] = 1e6
    model = MLP([2, 1], dtype=np.float64, init="zeros", seed=0)
    fit(model, X, y, GaussianNLL(sigma=sigma), SGD(lr=0.5, momentum=0.5), epochs=400,
        batch_size=41, shuffle=False)
    fitted = np.append(model.layers[0].W[:, 0], model.layers[0].b)
    np.testing.assert_allclose(fitted, w_without, atol=1e-6)
    assert np.abs(w_with - w_without).max() > 1.0  # the outlier matters with sigma = 1


def test_kl_and_cross_entropy_differ_by_the_target_entropy_with_equal_gradients():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((25, 3))
    P = rng.dirichlet(np.ones(4), 25)
    model = MLP([3, 5, 4], dtype=np.float64, seed=0)
    ce = model.loss_and_grad(X, P, CrossEntropy())
    g_ce = model.grads.copy()
    kl = model.loss_and_grad(X, P, KLDivergence())
    assert ce - kl == pytest.approx(ref.entropy(P).mean(), rel=1e-12)
    np.testing.assert_allclose(model.grads, g_ce, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("loss_name", ["bce", "cross_entropy"])
def test_classification_losses_are_exact_at_huge_logits(loss_name):
    # A last layer with huge weights drives the logits to about +-1e4.
    X = np.array([[1.0], [-1.0]])
    model = MLP([1, 2], dtype=np.float64, init="zeros", seed=0, warn_symmetric=False)
    model.layers[0].W[0] = [1e4, -1e4]
    Z = model.forward(X)
    if loss_name == "bce":
        Y = np.array([[0.0, 1.0], [1.0, 1.0]])
        want, _ = ref.bce_loss(Z, Y)
    else:
        Y = np.array([1, 1])
        want, _ = ref.cross_entropy_loss(Z, labels=Y)
    value = model.loss_and_grad(X, Y, loss_name)
    assert np.isfinite(value) and np.isfinite(model.grads).all()
    assert value == pytest.approx(want.mean(), rel=1e-14)
    assert value > 1e3  # a confidently wrong prediction costs ~|z|, not inf or nan


@pytest.mark.parametrize("init", ["zeros", fastnn.nn.init.constant(0.3)], ids=["zeros", "const"])
def test_symmetric_initialization_keeps_hidden_units_identical(init):
    rng = np.random.default_rng(5)
    X, labels = rng.standard_normal((60, 3)), rng.integers(0, 3, 60)
    # bias 0.1: with tanh(0) = 0 everywhere nothing but the output bias would ever move
    model = MLP([3, 6, 6, 3], activation="tanh", init=init, bias_init=0.1, dtype=np.float64,
                seed=0, warn_symmetric=False)
    start = [layer.W.copy() for layer in model.layers]
    fit(model, X, labels, "cross_entropy", SGD(lr=0.2), epochs=10, batch_size=10, seed=0)
    for layer in model.layers[:-1]:  # every hidden unit (column of W) equals the first
        assert np.ptp(layer.W, axis=1).max() < 1e-12
        assert np.ptp(layer.b) < 1e-12
    for layer, W0 in zip(model.layers, start):  # and yet every weight matrix did move
        assert np.abs(layer.W - W0).max() > 1e-6  # a million times the symmetry tolerance


def test_random_initialization_breaks_the_symmetry():
    rng = np.random.default_rng(5)
    X, labels = rng.standard_normal((60, 3)), rng.integers(0, 3, 60)
    model = MLP([3, 6, 6, 3], activation="tanh", dtype=np.float64, seed=0)
    fit(model, X, labels, "cross_entropy", SGD(lr=0.2), epochs=10, batch_size=10, seed=0)
    for layer in model.layers[:-1]:
        assert np.ptp(layer.W, axis=1).min() > 1e-3


def test_learned_variance_recovers_the_true_input_dependent_noise():
    # y = sin(x) + N(0, s(x)^2), s(x) = 0.1 + 0.3 |x|, x ~ U(-3, 3).  With 20000 samples a
    # smooth network estimates s on a grid well inside the data to within ~10% (the standard
    # error of a local variance estimate from ~1000 neighbours is ~ s * sqrt(1/(2*1000)) ~ 2%
    # of s; the rest is the network's bias): we require 15% mean relative error.
    rng = np.random.default_rng(6)
    x = rng.uniform(-3, 3, (20000, 1))
    s_true = 0.1 + 0.3 * np.abs(x)
    y = np.sin(x) + s_true * rng.standard_normal(x.shape)
    model = MLP([1, 32, 32, 2], activation="tanh", dtype=np.float64, seed=0)
    fit(model, x, y, GaussianNLL(sigma="learned"), Adam(lr=3e-3), epochs=60, batch_size=128,
        seed=0)
    grid = np.linspace(-2.5, 2.5, 51)[:, None]
    std = model.predict_std(grid)
    mean = model.predict(grid)
    rel = np.abs(std - (0.1 + 0.3 * np.abs(grid))) / (0.1 + 0.3 * np.abs(grid))
    assert rel.mean() < 0.15, rel.mean()
    assert np.abs(mean - np.sin(grid)).mean() < 0.1


LOSSES = {
    "mse": (MSE(), "values"),
    "gaussian": (GaussianNLL(sigma=0.5, full=True), "values"),
    "gaussian-per-sample": (GaussianNLL(sigma=np.linspace(0.5, 2.0, 12)), "values"),
    "learned-variance": (GaussianNLL(sigma="learned", full=True), "values"),
    "bce": (BinaryCrossEntropy(), "binary"),
    "cross-entropy-labels": (CrossEntropy(), "labels"),
    "cross-entropy-probabilities": (CrossEntropy(), "probabilities"),
    "kl": (KLDivergence(), "probabilities"),
    "poisson": (PoissonNLL(full=True), "counts"),
}


@pytest.mark.parametrize("activation", list(fastnn.ACTIVATIONS))
@pytest.mark.parametrize("name", list(LOSSES))
def test_whole_network_gradient_matches_finite_differences(name, activation):
    loss, kind = LOSSES[name]
    rng = np.random.default_rng(7)
    n, n_targets = 12, 3
    X = rng.standard_normal((n, 4))
    y = {"values": lambda: rng.standard_normal((n, n_targets)),
         "binary": lambda: (rng.random((n, n_targets)) < 0.5).astype(float),
         "labels": lambda: rng.integers(0, n_targets, n),
         "probabilities": lambda: rng.dirichlet(np.ones(n_targets), n),
         "counts": lambda: rng.poisson(2.0, (n, n_targets)).astype(float)}[kind]()
    sw = rng.uniform(0.5, 2.0, n)
    n_out = loss.n_outputs(n_targets)
    # bias 0.1 and scaled inputs keep ReLU pre-activations away from the kink at 0 here
    model = MLP([4, 5, 6, n_out], activation=activation, dtype=np.float64, seed=3,
                bias_init=0.1)
    report = check_gradients(model, X, y, loss, sample_weight=sw)
    assert report.ok(1e-6), str(report)


def test_check_gradients_report_is_readable_and_catches_a_wrong_gradient(monkeypatch):
    rng = np.random.default_rng(8)
    X, labels = rng.standard_normal((8, 3)), rng.integers(0, 2, 8)
    model = MLP([3, 4, 2], activation="tanh", seed=0)  # float32: checked via float64
    report = check_gradients(model, X, labels, "cross_entropy", max_checks_per_block=5)
    text = str(report)
    assert "max rel err" in text and "(3, 4)" in text
    assert [row["checked"] for row in report.rows] == [5, 4, 5, 2]
    assert model.params.dtype == np.float32  # the user's model is untouched

    original = MLP.loss_and_grad

    def broken(self, *args, **kwargs):
        value = original(self, *args, **kwargs)
        self.grads[0] *= 1.01  # a 1% error in one weight's gradient
        return value

    monkeypatch.setattr(MLP, "loss_and_grad", broken)
    assert not check_gradients(model, X, labels, "cross_entropy").ok(1e-6)
