"""fastnn.optim.lbfgs: the full-batch objective against a float64 NumPy reference, the whole L-BFGS run
against scipy's minimizer driven by that reference, and the scikit-learn estimators' lbfgs
solver against scikit-learn's own."""
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize

import fastnn
from fastnn._core import _reference as ref
from fastnn.optim.lbfgs import LBFGS, LBFGSObjective
from fastnn.nn.losses import get_loss


def _problem(loss_name, n=40, sizes=(5, 7, 3), acts=("tanh", "identity"), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]))
    k = sizes[-1]
    if loss_name == "cross_entropy":
        y = rng.integers(0, k, n)
    elif loss_name == "bce":
        y = (rng.random((n, k)) < 0.5).astype(float)
    elif loss_name == "poisson":
        y = rng.poisson(2.0, (n, k)).astype(float)
    else:
        y = rng.standard_normal((n, k))
    model = fastnn.MLP(list(sizes), activation=list(acts[:-1]), dtype=np.float64, seed=seed)
    sw = rng.uniform(0.1, 2.0, n)
    return model, X, y, sw


def _reference_objective(model, X, y, loss, sw, weight_decay):
    """F(theta) and its gradient in plain float64 NumPy (fastnn._core._reference)."""
    sizes = model.layer_sizes
    acts = [layer.activation for layer in model.layers]
    alphas = [layer.alpha for layer in model.layers]
    loss = get_loss(loss)
    labels = np.asarray(y) if loss.name == "cross_entropy" else None
    Y = None if labels is not None else np.asarray(y, np.float64).reshape(len(X), -1)

    def f(theta):
        value, grad = ref.network_loss_grad(theta, sizes, acts, alphas, X, loss.kind, Y=Y,
                                            labels=labels, sample_weight=sw)
        for W, _ in ref.unpack(theta, sizes):
            value += 0.5 * weight_decay * float(np.sum(W * W))
        for (W, _), (gW, _) in zip(ref.unpack(theta, sizes), ref.unpack(grad, sizes)):
            gW += weight_decay * W
        return value, grad
    return f


@pytest.mark.parametrize("loss", ["cross_entropy", "bce", "mse", "poisson"])
@pytest.mark.parametrize("weighted", [False, True])
def test_objective_and_gradient_match_the_numpy_reference(loss, weighted):
    model, X, y, sw = _problem(loss)
    sw = sw if weighted else None
    objective = LBFGSObjective(model, X, y, loss, sw, weight_decay=0.03)
    reference = _reference_objective(model, X, y, loss, sw, 0.03)
    rng = np.random.default_rng(1)
    for _ in range(3):
        theta = rng.standard_normal(model.n_params) * 0.5
        value, grad = objective(theta)
        want_value, want_grad = reference(theta)
        assert value == pytest.approx(want_value, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)


def test_biases_are_not_penalised():
    model, X, y, _ = _problem("mse")
    objective = LBFGSObjective(model, X, y, "mse", weight_decay=1.0)
    free = LBFGSObjective(model, X, y, "mse", weight_decay=0.0)
    theta = np.zeros(model.n_params)
    theta[~objective.is_weight] = 3.0  # biases only
    assert objective(theta)[0] == free(theta)[0]
    assert objective.is_weight.sum() == sum(W.size for W in model.coefs)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_the_run_equals_scipys_minimizer_on_the_reference(loss):
    model, X, y, sw = _problem(loss)
    theta0 = model.params.copy()
    reference = _reference_objective(model, X, y, loss, sw, 0.01)
    want = minimize(reference, theta0, method="L-BFGS-B", jac=True,
                    options={"maxiter": 60, "maxfun": 15000, "gtol": 1e-6, "maxcor": 10})
    result = LBFGS(max_iter=60, tol=1e-6, weight_decay=0.01).fit(model, X, y, loss,
                                                                 sample_weight=sw)
    assert result.nit == want.nit and result.nfev == want.nfev
    np.testing.assert_allclose(model.params, want.x, rtol=1e-7, atol=1e-9)
    assert result.fun == pytest.approx(want.fun, rel=1e-10)


def test_limits_callback_and_link():
    model, X, y, _ = _problem("poisson")
    seen = []
    result = LBFGS(max_iter=3).fit(model, X, y, "poisson", callback=lambda i, v: seen.append(i))
    assert result.nit == 3 and seen == [1, 2, 3] and result.status == 1
    assert np.all(model.predict(X) > 0)  # the exp link of the Poisson loss
    result = LBFGS(max_fun=5).fit(model, X, y, "poisson")
    assert result.nfev <= 6 and result.status == 1  # scipy may finish the line search
    for kwargs, name in [({"max_iter": 0}, "max_iter"), ({"tol": -1}, "tol"),
                         ({"weight_decay": -0.1}, "weight_decay"), ({"max_fun": 1.5}, "max_fun")]:
        with pytest.raises((ValueError, TypeError), match=name):
            LBFGS(**kwargs)


def test_float32_model_is_optimised_in_float64_steps():
    model, X, y, _ = _problem("cross_entropy")
    model32 = model.astype(np.float32)
    before = model32.loss_and_grad(X, y, "cross_entropy")
    result = LBFGS(max_iter=50).fit(model32, X, y, "cross_entropy")
    assert model32.params.dtype == np.float32 and result.fun < before


# --------------------------------------------------------------- scikit-learn estimators

sklearn = pytest.importorskip("sklearn")


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_estimator_lbfgs_matches_scikit_learn(activation):
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier as SkClassifier

    from fastnn.interop.sklearn import MLPClassifier
    X, y = load_digits(n_class=3, return_X_y=True)
    X = X[:150] / 16.0
    y = y[:150]
    params = dict(solver="lbfgs", hidden_layer_sizes=(10,), activation=activation,
                  max_iter=30, random_state=0, alpha=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = MLPClassifier(**params).fit(X, y)
        theirs = SkClassifier(**params).fit(X, y)
    # the same start (scikit-learn's initialisation), objective, gradient and minimizer
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_estimator_lbfgs_semantics():
    from sklearn.exceptions import ConvergenceWarning

    from fastnn.interop.sklearn import MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.standard_normal(80)
    reg = MLPRegressor(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    assert not hasattr(reg, "partial_fit")
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        reg.fit(X, y)
    assert reg.n_iter_ == 5 and len(reg.loss_curve_) == 5
    assert reg.loss_ == pytest.approx(reg.loss_curve_[-1])
    # warm start continues from the current weights; n_iter_ counts this call
    warm = MLPRegressor(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                        warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
        first = warm.loss_
        warm.fit(X, y)
    assert warm.n_iter_ == 5 and warm.loss_ < first and len(warm.loss_curve_) == 10
    with pytest.warns(ConvergenceWarning, match="max_fun"):
        MLPRegressor(solver="lbfgs", max_fun=3, random_state=0).fit(X, y)


# ------------------------------------------------------------------------- sparse input

@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "csr_array", "coo_array"])
@pytest.mark.parametrize("loss, acts", [("cross_entropy", ("tanh", "relu")),
                                        ("mse", ("relu", "sigmoid")), ("bce", ("identity",
                                                                               "tanh"))])
def test_sparse_objective_equals_the_dense_one(fmt, loss, acts):
    import scipy.sparse as sp
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 25))
    X[np.abs(X) < 1.3] = 0.0  # ~80% zeros
    X[5] = 0.0  # an empty row
    model, _, y, sw = _problem(loss, n=60, sizes=(25, 9, 6, 3), acts=acts + ("identity",))
    dense = LBFGSObjective(model, X, y, loss, sw, weight_decay=0.05)
    sparse = LBFGSObjective(model, getattr(sp, fmt)(X), y, loss, sw, weight_decay=0.05)
    reference = _reference_objective(model, X, y, loss, sw, 0.05)
    for _ in range(3):
        theta = rng.standard_normal(model.n_params) * 0.5
        value, grad = sparse(theta)
        want_value, want_grad = reference(theta)
        assert value == pytest.approx(want_value, rel=1e-10)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grad, dense(theta)[1], rtol=1e-10, atol=1e-12)
    from fastnn.nn.sparse import forward
    np.testing.assert_allclose(forward(model, getattr(sp, fmt)(X)), model.forward(X),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(forward(model, getattr(sp, fmt)(X), link=True),
                               model.predict(X), rtol=1e-10, atol=1e-12)


def test_sparse_input_is_checked():
    import scipy.sparse as sp

    from fastnn.nn.sparse import as_csr
    X = sp.random(10, 5, density=0.5, random_state=0, format="csr")
    with pytest.raises(ValueError, match="X has 5 features"):
        as_csr(X, "X", np.float64, n_features=4)
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        as_csr(bad, "X", np.float64)
    big = X.copy()
    big.data[0] = 1e300
    with pytest.raises(ValueError, match="too large"):
        as_csr(big, "X", np.float32)
    with pytest.raises(TypeError, match="scipy.sparse"):
        as_csr(X.toarray(), "X", np.float64)
    with pytest.raises(ValueError, match="0 samples"):
        as_csr(sp.csr_matrix((0, 5)), "X", np.float64)
    dup = sp.csr_matrix((np.ones(3), np.array([1, 1, 2]), np.array([0, 3] + [3] * 9)),
                        shape=(10, 5))  # a duplicate entry is summed, as scipy means it
    assert as_csr(dup, "X", np.float64).data.tolist() == [2.0, 1.0]


def test_lbfgs_trains_on_sparse_input_like_on_dense():
    import scipy.sparse as sp
    model, X, y, sw = _problem("cross_entropy", n=80, sizes=(5, 7, 3))
    X[np.abs(X) < 0.8] = 0.0
    twin = fastnn.MLP([5, 7, 3], activation="tanh", dtype=np.float64, seed=0)
    twin.params[...] = model.params
    a = LBFGS(max_iter=30, weight_decay=1e-3).fit(model, X, y, "cross_entropy", sw)
    b = LBFGS(max_iter=30, weight_decay=1e-3).fit(twin, sp.csr_array(X), y, "cross_entropy",
                                                  sw)
    assert a.nit == b.nit
    np.testing.assert_allclose(twin.params, model.params, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("sparse_x", [False, True], ids=["dense", "sparse"])
def test_a_reused_workspace_gives_the_fresh_one_and_is_checked(sparse_x):
    import scipy.sparse as sp
    from fastnn._core import _network, _sparse
    from fastnn.nn.sparse import as_csr
    model, X, y, sw = _problem("cross_entropy")
    loss, Xp, Y, labels, swp, sigma = model.prepare_data(X, y, "cross_entropy", sw)
    spec, n = model._spec, X.shape[0]
    csr = as_csr(sp.csr_array(X), "X", np.float64)

    def evaluate(**kw):
        if sparse_x:
            return _sparse.loss_grad_csr_into(spec, model.params, model.grads, csr.data,
                                              csr.indices, csr.indptr, X.shape[1], loss.kind,
                                              0, 1.0, Y, labels, swp, sigma, 0.5, **kw)
        return _network.loss_grad_into(spec, model.params, model.grads, Xp, loss.kind, 0, 1.0,
                                       Y, labels, swp, sigma, 0.5, **kw)
    fresh = evaluate()
    g_fresh = model.grads.copy()
    # a workspace holding garbage: every entry is written before it is read
    ws = np.full(n * (spec.act_width + 2 * spec.max_width), np.nan)
    for _ in range(2):
        assert evaluate(workspace=ws) == fresh
        np.testing.assert_array_equal(model.grads, g_fresh)
    with pytest.raises(ValueError, match="workspace has"):
        evaluate(workspace=ws[:-1])


@pytest.mark.parametrize("case", ["converged", "max_iter", "abnormal line search"])
def test_fun_is_the_objective_at_the_returned_parameters(case):
    """result.fun and model.params describe one point.  After an abnormal line search (inputs
    so large that scipy's own update arithmetic overflows) scipy returned the last accepted x
    with the NaN value of its rejected trial point."""
    model, X, y, _ = _problem("cross_entropy", sizes=(5, 4, 2), acts=("relu", "identity"))
    if case == "abnormal line search":
        X = X.copy()
        X[0, 0] = 1e200     # relu passes it on: logits and gradients near 1e200
    max_iter = 3 if case == "max_iter" else 500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = LBFGS(max_iter=max_iter).fit(model, X, y, "cross_entropy")
    expected_status = {"converged": 0, "max_iter": 1, "abnormal line search": 2}[case]
    assert result.status == expected_status, result.message
    theta = model.params.copy()
    np.testing.assert_array_equal(theta, result.x)
    value = _reference_objective(model, X, y, "cross_entropy", None, 0.0)(theta)[0]
    assert np.isfinite(result.fun)
    np.testing.assert_allclose(result.fun, value, rtol=1e-10)


@pytest.mark.parametrize("max_fun", [1, 2, 5])
def test_max_fun_stops_the_run_as_documented(max_fun):
    """max_fun is checked between iterations (scipy's maxfun): the run stops with status 1
    once that many evaluations have run, the last line search perhaps a few over; the
    docstring said "most evaluations", which nfev contradicted."""
    model, X, y, _ = _problem("cross_entropy")
    result = LBFGS(max_iter=1000, max_fun=max_fun, tol=0.0).fit(model, X, y, "cross_entropy")
    assert result.status == 1 and "EVALUATIONS" in result.message, result.message
    assert max_fun <= result.nfev <= max_fun + 20


def test_ctrl_c_while_an_iteration_is_recorded_waits_for_the_record(monkeypatch):
    """A SIGINT arriving between an iterate's publication and its History entry is raised
    once both are done: the model holds iterate k and the History has k entries, as a run
    of k iterations leaves them (fastnn.runtime.state.sigint_deferred)."""
    from tests._helpers import sigint_during_record
    model, X, y, _ = _problem("cross_entropy")
    reference = _problem("cross_entropy")[0]
    restore = sigint_during_record(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        LBFGS(max_iter=20).fit(model, X, y, "cross_entropy")
    restore()
    assert len(model.history_) == 3
    LBFGS(max_iter=3).fit(reference, X, y, "cross_entropy")
    np.testing.assert_array_equal(model.params, reference.params)
