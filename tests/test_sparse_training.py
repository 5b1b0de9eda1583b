"""The compiled epoch loop over a CSR row source (fastnn/_core/_loop.pyx with the sparse first
layer of fastnn/_core/_sparse.pyx) against the same loop over the dense X on the same data: the
dense epoch is the reference."""
import os
import platform
import signal
import threading
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fastnn
from fastnn._core import _epoch, _sgd, _sparse
from fastnn.nn.sparse import as_csr
from fastnn.training.engine import TrainingDiverged
from tests._helpers import epoch_call_kwargs

# parameters after several epochs, sparse vs dense loop (float32: products summed in
# another order, amplified over ~40 steps)
RTOL = {np.float64: 1e-10, np.float32: 2e-4}
ATOL = {np.float64: 1e-12, np.float32: 2e-5}


def _data(n=90, d=40, density=0.15, seed=0, n_classes=3):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, random_state=seed, format="csr",
                  data_rvs=lambda k: rng.normal(size=k))
    X = X.toarray()
    X[5] = 0.0                          # an empty row
    y = rng.integers(0, n_classes, n)
    return X, y


def _non_canonical(X, index_dtype):
    """X as a CSR with duplicate and unsorted entries (same values), indices of index_dtype."""
    coo = sp.coo_array(X)
    half = coo.data / 2
    rows = np.concatenate([coo.row, coo.row])
    cols = np.concatenate([coo.col, coo.col])
    order = np.random.default_rng(1).permutation(rows.size)
    dup = sp.coo_array((np.concatenate([half, coo.data - half])[order],
                        (rows[order], cols[order])), shape=X.shape)
    csr = sp.csr_array(dup)          # conversion sums duplicates: build the raw arrays instead
    indptr = np.zeros(X.shape[0] + 1, np.int64)
    np.add.at(indptr, rows[order] + 1, 1)
    indptr = np.cumsum(indptr)
    by_row = np.argsort(rows[order], kind="stable")
    raw = sp.csr_array((dup.data[by_row], cols[order][by_row].astype(index_dtype),
                        indptr.astype(index_dtype)), shape=X.shape)
    assert not raw.has_canonical_format and csr.shape == raw.shape
    return raw


OPTIMIZERS = {
    "sgd": lambda: fastnn.SGD(lr=0.05),
    "sgd-decay": lambda: fastnn.SGD(lr=0.05, weight_decay=1e-3),
    "momentum": lambda: fastnn.SGD(lr=0.05, momentum=0.9),
    "nesterov-clip": lambda: fastnn.SGD(lr=0.05, momentum=0.9, nesterov=True, clip_norm=0.5),
    "adam": lambda: fastnn.Adam(lr=0.01, weight_decay=1e-3),
    "adamw": lambda: fastnn.AdamW(lr=0.01, weight_decay=0.1),
}


def _fit_both(X, y, dtype, opt, sizes=(40, 16, 8, 3), activation="tanh", dropout=0.0,
              normalization=None, sample_weight=None, shuffle=True, drop_last=False,
              loss="cross_entropy", Xs=None, epochs=4, **kw):
    out = []
    for data in (X, sp.csr_array(X) if Xs is None else Xs):
        model = fastnn.MLP(list(sizes), activation=activation, dtype=dtype, seed=3,
                           dropout=dropout, normalization=normalization)
        hist = fastnn.fit(model, data, y, loss, OPTIMIZERS[opt](), epochs=epochs, batch_size=16,
                          seed=7, shuffle=shuffle, sample_weight=sample_weight,
                          drop_last=drop_last, **kw)
        out.append((model, hist))
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_sparse_loop_equals_dense_loop(dtype, opt):
    X, y = _data()
    (dense, hd), (sparse, hs) = _fit_both(X, y, dtype, opt)
    np.testing.assert_allclose(sparse.params, dense.params, rtol=RTOL[dtype], atol=ATOL[dtype])
    np.testing.assert_allclose(hs.loss, hd.loss, rtol=RTOL[dtype] * 10)
    assert sparse.params.dtype == dtype


@pytest.mark.parametrize("sizes", [(40, 3), (40, 16, 3), (40, 16, 8, 3), (40, 12, 10, 8, 3)],
                         ids=["1-layer", "2-layers", "3-layers", "4-layers"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "leaky_relu", "sigmoid", "elu"])
def test_every_depth_and_first_layer_activation(sizes, activation):
    # 1 layer: no dense part; 2, 3, 4: the view of layers 2..L has an odd/even number of
    # layers (where net_backward leaves dl/dZ_2); GELU/SiLU keep the pre-activation
    X, y = _data(seed=2)
    (dense, _), (sparse, _) = _fit_both(X, y, np.float64, "adam", sizes=sizes,
                                        activation=activation)
    np.testing.assert_allclose(sparse.params, dense.params, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_dropout_and_sample_weights_and_later_normalization(dtype, activation):
    X, y = _data(seed=4)
    sw = np.random.default_rng(0).uniform(0, 2, X.shape[0])
    sw[:20] = 0.0                        # with batch_size 16 and no shuffle: a zero-weight batch
    for shuffle in (True, False):
        (dense, _), (sparse, _) = _fit_both(
            X, y, dtype, "momentum", activation=activation, dropout=[0.3, 0.2],
            normalization=[None, "layer"], sample_weight=sw, shuffle=shuffle, drop_last=True)
        np.testing.assert_allclose(sparse.params, dense.params, rtol=RTOL[dtype],
                                   atol=ATOL[dtype])


@pytest.mark.parametrize("loss", ["mse", "poisson", "bce"])
def test_other_losses_and_targets(loss):
    X, y = _data(seed=5)
    rng = np.random.default_rng(0)
    targets = {"mse": rng.normal(size=(X.shape[0], 3)),
               "poisson": rng.poisson(1.0, size=(X.shape[0], 3)).astype(float),
               "bce": rng.integers(0, 2, (X.shape[0], 3)).astype(float)}
    (dense, _), (sparse, _) = _fit_both(X, targets[loss], np.float64, "adam", loss=loss,
                                        validation_split=0.2)
    np.testing.assert_allclose(sparse.params, dense.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse.history_.val_loss, dense.history_.val_loss, rtol=1e-10)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_array", "coo_matrix", "raw"])
def test_formats_index_types_duplicates_unsorted(fmt, index_dtype):
    X, y = _data(seed=6)
    if fmt == "raw":
        Xs = _non_canonical(X, index_dtype)
    else:
        Xs = getattr(sp, fmt)(X)
        if hasattr(Xs, "indices"):
            Xs.indices = Xs.indices.astype(index_dtype)
            Xs.indptr = Xs.indptr.astype(index_dtype)
    (dense, _), (sparse, _) = _fit_both(X, y, np.float64, "adam", Xs=Xs,
                                        validation_data=(Xs, y))
    np.testing.assert_allclose(sparse.params, dense.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse.predict(Xs), dense.predict(X), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(sparse.forward(Xs), dense.forward(X), rtol=1e-10, atol=1e-14)


def test_continued_run_is_the_uninterrupted_one():
    X, y = _data(seed=8)
    Xs = sp.csr_array(X)
    a = fastnn.MLP([40, 16, 3], dtype=np.float64, seed=0)
    b = fastnn.MLP([40, 16, 3], dtype=np.float64, seed=0)
    opt_a, opt_b = fastnn.Adam(lr=0.01), fastnn.Adam(lr=0.01)
    fastnn.fit(a, Xs, y, "cross_entropy", opt_a, epochs=4, seed=1)
    fastnn.fit(b, Xs, y, "cross_entropy", opt_b, epochs=2, seed=1)
    fastnn.fit(b, Xs, y, "cross_entropy", opt_b, epochs=2, seed=1)
    np.testing.assert_array_equal(a.params, b.params)
    assert opt_a.t == opt_b.t


def test_divergence_is_reported_as_for_dense_input():
    X, y = _data(seed=9)
    X *= 1e6
    errors = []
    for data in (X, sp.csr_array(X)):
        model = fastnn.MLP([40, 16, 3], dtype=np.float32, seed=0)
        with pytest.raises(TrainingDiverged) as info:
            fastnn.fit(model, data, y, "cross_entropy", fastnn.SGD(lr=10.0), epochs=5,
                       seed=0)
        errors.append(str(info.value))
        assert np.all(np.isfinite(model.params))
    assert errors[0] == errors[1]


def test_a_signal_stops_the_compiled_loop_with_the_model_consistent():
    # a Python signal handler raising inside the nogil sparse loop (as Ctrl-C does): the fit
    # stops after the running minibatch, re-raises, and the caller's FP mode is back
    from fastnn._core import _network
    rng = np.random.default_rng(12)
    X = sp.random(4000, 500, density=0.02, format="csr", random_state=0)
    labels = rng.integers(0, 10, 4000)
    model = fastnn.MLP([500, 64, 10], seed=0)
    opt = fastnn.Adam()
    mode = _network._get_fpmode()
    old = signal.signal(signal.SIGUSR1, _raise_interrupt)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            fastnn.fit(model, X, labels, "cross_entropy", opt, epochs=100_000, batch_size=16,
                       seed=0)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, old)
    assert _control(_network._get_fpmode()) == _control(mode)
    assert opt.t > 0 and np.all(np.isfinite(model.params))
    assert all(np.isfinite(st).all() for st in opt.state)


def _control(mode):
    # x86: MXCSR's bits 0-5 are sticky exception flags any float operation may raise (as
    # tests/test_fpmode.py): the mode is the rest
    return mode & ~0x3F if platform.machine().lower() in ("x86_64", "amd64", "i686", "i386") \
        else mode


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def test_first_layer_normalization_is_a_clear_error():
    X, y = _data()
    model = fastnn.MLP([40, 16, 3], dtype=np.float64, seed=0, normalization="layer")
    before = model.params.copy()
    Xs = sp.csr_array(X)
    for call in (lambda: fastnn.fit(model, Xs, y, "cross_entropy", epochs=1),
                 lambda: fastnn.LBFGS(max_iter=2).fit(model, Xs, y, "cross_entropy"),
                 lambda: model.predict(Xs), lambda: model.evaluate(Xs, y, "cross_entropy"),
                 lambda: model.loss_and_grad(Xs, y, "cross_entropy")):
        with pytest.raises(ValueError, match=r"X is sparse, and sparse input does not support "
                                             r"layer normalization of the first layer"):
            call()
    np.testing.assert_array_equal(model.params, before)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_a_first_fit_refused_for_first_layer_normalization_leaves_no_fitted_estimator(solver):
    """The check ran inside the compiled epoch, after the estimator had built model_: a fit
    that raised left an estimator that predicted with untrained weights."""
    sk = pytest.importorskip("fastnn.interop.sklearn")
    from sklearn.exceptions import NotFittedError
    X, y = _data()
    est = sk.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, solver=solver,
                           normalization="layer")
    with pytest.raises(ValueError, match="layer normalization of the first layer"):
        est.fit(sp.csr_array(X), y)
    with pytest.raises(NotFittedError):
        est.predict(X)


CROSS_ENTROPY = fastnn.nn.losses.get_loss("cross_entropy").kind


def _epoch_args(model, csr, order, batch=8):
    ws_rows = batch
    dt = model.dtype
    spec = model._spec
    labels = np.zeros(csr.shape[0], np.intp)
    return dict(spec=spec, params=model.params, grads=model.grads, state1=None, state2=None,
                data=csr.data, indices=csr.indices, indptr=csr.indptr,
                n_features=csr.shape[1], Y=None, labels=labels, sample_weight=None,
                sigma=None, order=order, batch_size=batch, drop_last=False, loss_kind=CROSS_ENTROPY,
                loss_full=0, sigma_scalar=1.0, opt_kind=_sgd.OPT_SGD, lr=0.1, momentum=0.0,
                nesterov=False, weight_decay=0.0, clip_norm=0.0, beta1=0.9, beta2=0.999,
                eps=1e-8, t0=0, acts=np.empty(ws_rows * spec.act_width, dt),
                delta0=np.empty(ws_rows * spec.max_width, dt),
                delta1=np.empty(ws_rows * spec.max_width, dt), Y_batch=None,
                labels_batch=np.empty(ws_rows, np.intp), sw_batch=None, sigma_batch=None,
                check_every=0.1)


def _train_csr(flat):
    """One epoch of _epoch.train_epoch over the CSR row source of the flat values."""
    flat = dict(flat, csr=(flat["data"], flat["indices"], flat["indptr"], flat["n_features"]))
    return _epoch.train_epoch(**epoch_call_kwargs(flat))


def test_the_compiled_entry_point_checks_what_it_follows():
    X, _ = _data()
    model = fastnn.MLP([40, 16, 3], dtype=np.float64, seed=0)
    csr = as_csr(sp.csr_array(X), "X", np.float64)
    order = np.arange(X.shape[0], dtype=np.intp)
    args = _epoch_args(model, csr, order)
    _train_csr(args)                                      # well-formed: runs
    bad = dict(args, order=np.array([0, X.shape[0]], np.intp))
    with pytest.raises(ValueError, match="order\\[1\\]"):
        _train_csr(bad)
    bad_idx = csr.indices.copy()
    bad_idx[3] = 40
    with pytest.raises(ValueError, match="outside"):
        _train_csr(dict(args, indices=bad_idx))
    with pytest.raises(ValueError, match="features"):
        _train_csr(dict(args, n_features=41))
    with pytest.raises(ValueError, match="workspace acts"):
        _train_csr(dict(args, acts=np.empty(3)))
    with pytest.raises(ValueError, match="labels_batch"):
        _train_csr(dict(args, labels_batch=np.empty(2, np.intp)))


def test_no_dense_copy_of_a_large_sparse_matrix():
    # 20000 x 20000 at 0.2% density: 800,000 stored values (~10 MB as CSR with int32
    # indices); the dense float32 matrix would be 1.6 GB
    n = d = 20000
    rng = np.random.default_rng(0)
    per_row = 40                        # 0.2% of 20000 (sp.random is slow at this size)
    X = sp.csr_array((rng.normal(size=n * per_row).astype(np.float32),
                      np.sort(rng.integers(0, d, (n, per_row)), axis=1).ravel(),
                      np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    X.sum_duplicates()
    y = rng.integers(0, 2, n)
    dense_bytes = n * d * 4
    model = fastnn.MLP([d, 8, 2], dtype=np.float32, seed=0)
    tracemalloc.start()
    try:
        fastnn.fit(model, X, y, "cross_entropy", fastnn.Adam(lr=1e-3), epochs=1,
                   batch_size=256, seed=0)
        model.predict(X[:1000])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the CSR copy in intp (~10 MB), the model (~1.3 MB) with its Adam state: far below
    assert peak < dense_bytes / 50, (peak, dense_bytes)


def test_estimators_keep_sparse_input_with_every_solver():
    from fastnn.interop.sklearn import MLPClassifier, MLPRegressor
    X, y = _data(n=150, seed=11)
    Xs = sp.csr_matrix(X)
    for solver in ("sgd", "adam"):
        params = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=15, random_state=0,
                      early_stopping=True, alpha=1e-3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dense = MLPClassifier(**params).fit(X, y)
            sparse = MLPClassifier(**params).fit(Xs, y)
            np.testing.assert_allclose(sparse.coefs_[0], dense.coefs_[0], rtol=1e-10,
                                       atol=1e-12)
            assert sparse.loss_curve_ == pytest.approx(dense.loss_curve_, rel=1e-10)
            dense.set_params(early_stopping=False)
            sparse.set_params(early_stopping=False)
            for _ in range(2):
                dense.partial_fit(X, y)
                sparse.partial_fit(Xs, y)
            np.testing.assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X),
                                       rtol=1e-10, atol=1e-14)
            reg_params = dict(params, early_stopping=False)
            target = X[:, :2] @ np.array([1.0, -2.0])
            dense_r = MLPRegressor(**reg_params).fit(X, target)
            sparse_r = MLPRegressor(**reg_params).fit(sp.csc_array(X), target)
            np.testing.assert_allclose(sparse_r.predict(Xs), dense_r.predict(X), rtol=1e-9,
                                       atol=1e-12)


class _OneRank:
    """The parts of fastnn.training.distributed.MPIContext a TrainingRun's checks call, for one rank
    (no MPI in the test process)."""
    size, rank, is_root = 1, 0, True

    def shard_layout(self, n):
        return 0, n

    def sum(self, values):
        return np.asarray(values, dtype=np.float64)

    def check_same(self, value, name):
        pass

    def any(self, flag):
        return bool(flag)

    def agree(self, error):
        if error is not None:
            raise error


def test_sparse_input_with_mpi_is_a_clear_error_before_any_step():
    from fastnn.training.trainer import _prepare_fit_data
    from fastnn.training.engine import TrainingRun
    X, y = _data()
    model = fastnn.MLP([40, 16, 3], dtype=np.float64, seed=0)
    start = model.params.copy()
    loss, data, val = _prepare_fit_data(model, sp.csr_array(X), y, "cross_entropy", None,
                                        None, 0.0, np.random.default_rng(0))
    run = TrainingRun(model, loss, fastnn.SGD(), data, val, batch_size=16, drop_last=False,
                      shuffle=True, seed_key=0, early_stopping=None, callbacks=[], verbose=0,
                      mpi=_OneRank())
    with pytest.raises(ValueError, match="does not support a sparse X"):
        run.check(1)
    np.testing.assert_array_equal(model.params, start)


@pytest.mark.parametrize("flush", [True, False])
def test_sparse_prediction_honours_the_flush_setting_and_restores_the_mode(flush):
    from fastnn._core import _network
    from fastnn.runtime import fpmode
    X, y = _data()
    model = fastnn.MLP([40, 16, 3], dtype=np.float32, seed=0)
    tiny = np.float32(1e-39)                  # subnormal in float32: flushed or kept
    Xs = sp.csr_array(X.astype(np.float32) * tiny)
    mode = _control(_network._get_fpmode())
    with fpmode.flush_denormals(flush):
        sparse_out = model.forward(Xs)
        dense_out = model.forward(Xs.toarray())
    assert _control(_network._get_fpmode()) == mode
    np.testing.assert_array_equal(sparse_out, dense_out)


def test_learned_variance_regressor_on_sparse_input():
    from fastnn.interop.sklearn import MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 10))
    X[X < 0.5] = 0.0
    y = X[:, 0] + 0.1 * rng.normal(size=100)
    params = dict(loss="gaussian_nll", hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense = MLPRegressor(**params).fit(X, y)
        sparse = MLPRegressor(**params).fit(sp.csr_matrix(X), y)
    mean_d, std_d = dense.predict(X, return_std=True)
    mean_s, std_s = sparse.predict(sp.csr_matrix(X), return_std=True)
    np.testing.assert_allclose(mean_s, mean_d, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(std_s, std_d, rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(sparse.predict(sp.csr_matrix(X)), mean_s)


def _crafted(kind):
    """A scipy.sparse matrix whose stored index arrays contradict its shape (as a user's code
    that mutates .indices/.indptr/.coords, or builds one field by field, leaves it), shape
    (3, 40); and the words the error must contain."""
    X = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([0, 1, 2]), np.array([0, 1, 2, 3])),
                      shape=(3, 40))
    if kind == "csr column too large":
        X.indices[1] = 10**6
        return X, "indices[1] = 1000000"
    if kind == "csr column negative":
        X.indices[1] = -5
        return X, "indices[1] = -5"
    if kind == "csr indptr decreasing":
        X.indices = np.array([3, 1, 2, 0])
        X.data = np.ones(4)
        X.indptr = np.array([0, 4, 1, 4])
        return X, "indptr decreases"
    if kind == "csr indptr past the data":
        X.indptr = np.array([0, 1, 2, 10**6])
        return X, "indptr runs from 0 to 1000000"
    if kind == "csr indptr of the wrong length":
        X.indptr = np.array([0, 1, 3])
        return X, "length 4"
    if kind == "csr fewer indices than values":
        X.indices = np.array([0, 1])
        return X, "over 2 indices and 3 stored values"
    if kind == "csc row negative":          # scipy's CSC -> CSR conversion wrote out of bounds
        X = X.tocsc()
        X.indices[2] = -100000
        return X, "CSC matrix: indices[2] = -100000"
    if kind == "coo row negative":          # scipy's COO -> CSR conversion: silent garbage
        X = X.tocoo()
        X.row[2] = -10**6
        return X, "coords[0][2] = -1000000"
    if kind == "coo column too large":
        X = sp.coo_array(X)
        X.col[0] = 40
        return X, "coords[1][0] = 40"
    if kind == "csr data of two dimensions":
        X.data = np.ones((3, 2))
        return X, "its data has shape (3, 2)"
    if kind == "lil row with more values than columns":   # heap corruption in scipy
        X = X.tolil()
        X.data[0] = [1.0] * 100000
        return X, "row 0 has 1 column indices and 100000 values"
    if kind == "lil column too large":
        X = X.tolil()
        X.rows[0] = [10**6]
        return X, "indices[0] = 1000000"
    if kind == "bsr block column too large":
        X = sp.bsr_matrix(X.toarray()[:, :40], blocksize=(1, 2))
        X.indices[0] = 20
        return X, "BSR matrix: indices[0] = 20"
    raise AssertionError(kind)


CRAFTED = ["csr column too large", "csr column negative", "csr indptr decreasing",
           "csr indptr past the data", "csr indptr of the wrong length",
           "csr fewer indices than values", "csc row negative", "coo row negative",
           "coo column too large", "bsr block column too large", "csr data of two dimensions",
           "lil row with more values than columns", "lil column too large"]


@pytest.mark.parametrize("kind", CRAFTED)
@pytest.mark.parametrize("entry", ["predict", "forward", "fit", "validation_data", "lbfgs",
                                   "estimator fit", "estimator predict"])
def test_a_matrix_whose_indices_contradict_its_shape_is_a_clear_error(kind, entry):
    """Every entry point checks X's stored structure before scipy converts it (scipy's C++
    conversions trust it: a crash, an out-of-bounds write or silent garbage before)."""
    X, words = _crafted(kind)
    y = np.array([0, 1, 0])
    model = fastnn.MLP([40, 5, 2], dtype=np.float64, seed=0)
    good = sp.csr_matrix(np.eye(3, 40))
    calls = {
        "predict": lambda: model.predict(X),
        "forward": lambda: model.forward(X),
        "fit": lambda: fastnn.fit(model, X, y, "cross_entropy", epochs=1),
        "validation_data": lambda: fastnn.fit(model, good, y, "cross_entropy", epochs=1,
                                              validation_data=(X, y)),
        "lbfgs": lambda: fastnn.LBFGS(max_iter=2).fit(model, X, y, "cross_entropy"),
    }
    if entry.startswith("estimator"):
        sk = pytest.importorskip("fastnn.interop.sklearn")
        est = sk.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, solver="lbfgs")
        if entry == "estimator predict":
            est.fit(good, y)
            calls[entry] = lambda: est.predict_proba(X)
        else:
            calls[entry] = lambda: est.fit(X, y)
    with pytest.raises(ValueError, match="is not a valid") as info:
        calls[entry]()
    name = "X_val" if entry == "validation_data" else "X"
    assert str(info.value).startswith(name + " ") and words in str(info.value)


def test_a_sparse_vector_is_a_shape_error_not_a_structure_error():
    model = fastnn.MLP([30, 4, 2], dtype=np.float64, seed=0)
    with pytest.raises(ValueError, match=r"X must be 2-dimensional; got shape \(30,\)"):
        model.predict(sp.coo_array(np.ones(30)))
    sk = pytest.importorskip("fastnn.interop.sklearn")
    est = sk.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, solver="lbfgs")
    with pytest.raises(ValueError, match="2D|2-dimensional|dimension"):
        est.fit(sp.coo_array(np.ones(30)), [0] * 30)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_evaluate_score_and_loss_and_grad_keep_sparse_x_and_equal_the_dense_result(fmt):
    """They took X through numpy.asarray: a sparse X was "dtype object"."""
    X, y = _data(n=50, d=20)
    Xs = sp.csr_array(X).asformat(fmt)
    sw = np.random.default_rng(1).random(50)
    model = fastnn.MLP([20, 6, 3], activation="tanh", dtype=np.float64, seed=0)
    dense = model.loss_and_grad(X, y, "cross_entropy", sw)
    g_dense = model.grads.copy()
    sparse = model.loss_and_grad(Xs, y, "cross_entropy", sw)
    np.testing.assert_allclose(sparse, dense, rtol=1e-12)
    np.testing.assert_allclose(model.grads, g_dense, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(model.evaluate(Xs, y, "cross_entropy", sw),
                               model.evaluate(X, y, "cross_entropy", sw), rtol=1e-12)
    assert model.score(Xs, y) == model.score(X, y)
    with pytest.raises(ValueError, match="X has 19 features"):
        model.evaluate(Xs[:, :19], y)


def test_dense_only_entry_points_name_a_sparse_argument():
    """A sparse X where a dense array is needed (and a sparse y anywhere) is a TypeError that
    names the argument and says what to pass, not numpy's "dtype object" or scipy's "sparse
    array length is ambiguous"."""
    X, y = _data(n=20, d=8)
    Xs = sp.csr_matrix(X)
    model = fastnn.MLP([8, 4, 3], dtype=np.float64, seed=0)
    for call in (lambda: model.jacobian(Xs),
                 lambda: model.input_gradient(Xs, y, loss="cross_entropy"),
                 lambda: model.prepare_data(Xs, y, "cross_entropy")):
        with pytest.raises(TypeError, match=r"X is a scipy.sparse CSR csr_matrix of shape "
                                            r"\(20, 8\); this call needs a dense array "
                                            r"\(X.toarray\(\)\) \(fastnn.fit, "):
            call()
    Ys = sp.csr_matrix(np.eye(3)[y])
    for Xi in (X, Xs):
        with pytest.raises(TypeError, match=r"y is a scipy.sparse CSR csr_matrix of shape "
                                            r"\(20, 3\); this call needs a dense array "
                                            r"\(y.toarray\(\)\)$"):
            fastnn.fit(model, Xi, Ys, "cross_entropy", epochs=1)


def test_ctrl_c_before_the_sparse_epochs_compiled_call_closes_the_run_cleanly(monkeypatch):
    # Ctrl-C landing in the Python code before the compiled sparse epoch: the epoch did not
    # run, so closing the run must not read its (missing) result; it raised TypeError in
    # _take_result, reported as an unraisable exception, and skipped the run's finish
    import sys
    from fastnn.runtime import boundary
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(boundary.Epoch, "run", interrupted)
    X = sp.random(50, 6, density=0.3, format="csr", random_state=0)
    model = fastnn.MLP([6, 4, 2], seed=0)
    before = model.params.copy()
    with pytest.raises(KeyboardInterrupt):
        fastnn.fit(model, X, np.arange(50) % 2, "cross_entropy", epochs=2, seed=0)
    # (fit closes its run before re-raising: nothing is left for the garbage collector)
    assert seen == []
    np.testing.assert_array_equal(model.params, before)


@pytest.mark.parametrize("chunk_rows", [1, 3, 2**31, 2**62])
def test_sparse_prediction_chunks_are_capped_as_dense_ones(chunk_rows):
    # a chunk of 2**62 rows once sized its workspace with a product that wraps around
    # size_t (a few bytes allocated, then written past); now capped as forward_into does
    model = fastnn.MLP([20, 16, 3], seed=0, dtype=np.float64)
    X = sp.random(7, 20, density=0.3, format="csr", random_state=0, dtype=np.float64)
    csr = as_csr(X, "X", model.dtype, model.n_inputs)
    out = np.empty((7, 3), model.dtype)
    _sparse.forward_csr_into(model._spec, model.params, csr.data, csr.indices, csr.indptr,
                             out, 0, False, chunk_rows)
    np.testing.assert_allclose(out, model.forward(X.toarray()), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ the NumPy twins

@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
def test_the_compiled_sparse_first_layer_equals_its_numpy_twin(activation):
    # forward: the logits of a network whose first layer reads X's stored entries, against
    # _reference.csr_layer_forward (entry by entry) and the dense layers above it
    from fastnn._core import _reference as ref
    X, _ = _data(n=30, d=12, density=0.25, seed=4)
    X = sp.csr_matrix(X)
    model = fastnn.MLP([12, 6, 4], activation=activation, dtype=np.float64, seed=1,
                       bias_init=0.1)
    (W1, b1), (W2, b2) = ref.unpack(model.params, model.layer_sizes)
    expected = ref.activation(ref.csr_layer_forward(X.data, X.indices, X.indptr, W1, b1),
                              activation) @ W2 + b2
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(model.forward(X), expected, rtol=0, atol=1e-10 * scale)
    # backward: the first layer's weight gradient X^T D of a one-layer network (its logits
    # are the first layer), against _reference.csr_layer_weight_grad
    one = fastnn.MLP([12, 4], dtype=np.float64, seed=2, bias_init=0.1)
    y = np.random.default_rng(0).standard_normal((30, 4))
    one.loss_and_grad(X, y, "mse")
    W, b = ref.unpack(one.params, one.layer_sizes)[0]
    Z = ref.csr_layer_forward(X.data, X.indices, X.indptr, W, b)
    _, D = ref.weighted_mean_loss(*ref.per_sample_loss(0, Z, y))
    dW = ref.csr_layer_weight_grad(X.data, X.indices, X.indptr, D, 12)
    np.testing.assert_allclose(one.layers[0].dW, dW, rtol=0,
                               atol=1e-10 * float(np.abs(dW).max()))
    np.testing.assert_allclose(one.layers[0].db, D.sum(axis=0), rtol=0,
                               atol=1e-10 * float(np.abs(D.sum(axis=0)).max()))
    # and the twins themselves are X @ W and X^T D (scipy's, as an independent check)
    np.testing.assert_allclose(Z, X @ W + b, rtol=1e-12)
    np.testing.assert_allclose(dW, X.T @ D, rtol=1e-12, atol=1e-15)
