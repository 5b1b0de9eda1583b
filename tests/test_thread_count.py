"""The same bits whatever fastnn's thread count.

Every product and pass of training and prediction is cut into tiles fixed by the shapes
(fastnn._core._network), so training and prediction with 1, 2, 3 or 4 threads (more than this
machine's cores included) must give identical parameters and predictions.  The tiled path at
one thread is also compared with the untiled sequential path it replaced (n_threads=0, kept
for this purpose), bitwise where the decomposition allows.
"""
import platform

import numpy as np
import pytest

import fastnn
from fastnn._core import _epoch, _network, _sgd, _tiling
from fastnn.runtime import fpmode, threads
from fastnn._core import _reference as ref
from tests._helpers import epoch_call_kwargs

THREAD_COUNTS = (1, 2, 3, 4)
CE = fastnn.nn.losses.KINDS["cross_entropy"]

# the benchmark's networks, on data small enough for the suite; batch sizes large enough that
# the products of A and D are cut into several tiles (C: batch 256 for the same reason)
NETWORKS = {
    "A": dict(sizes=[784, 256, 128, 10], activation="relu", loss="cross_entropy",
              n=192, batch=64, dtype=np.float32),
    "B": dict(sizes=[64, 32, 10], activation="relu", loss="cross_entropy",
              n=256, batch=32, dtype=np.float32),
    "C": dict(sizes=[8, 64, 64, 1], activation="tanh", loss="mse",
              n=512, batch=256, dtype=np.float32),
    "D": dict(sizes=[784, 256, 128, 10], activation="relu", loss="cross_entropy",
              n=192, batch=64, dtype=np.float64),
}

OPTIMIZERS = {
    "sgd": lambda: fastnn.SGD(lr=0.05),                     # fused into the dW GEMM
    "momentum": lambda: fastnn.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda: fastnn.SGD(lr=0.05, momentum=0.9, nesterov=True, clip_norm=0.5),
    "adam": lambda: fastnn.Adam(lr=0.01, weight_decay=1e-3, clip_norm=1.0),
    "adamw": lambda: fastnn.AdamW(lr=0.01, weight_decay=0.1, clip_norm=1.0),
}


def _data(c, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((c["n"], c["sizes"][0])).astype(c["dtype"])
    if c["loss"] == "cross_entropy":
        y = rng.integers(0, c["sizes"][-1], c["n"])
    else:
        y = rng.standard_normal(c["n"]).astype(c["dtype"])
    return X, y


def _train(c, opt, n_threads, epochs=2, **model_kwargs):
    X, y = _data(c)
    model = fastnn.MLP(c["sizes"], activation=c["activation"], dtype=c["dtype"], seed=0,
                       **model_kwargs)
    fastnn.fit(model, X, y, c["loss"], opt, epochs=epochs, batch_size=c["batch"], seed=1,
               n_threads=n_threads)
    return model


def _predict(model, X, n_threads):
    """The compiled prediction on n_threads, with OpenBLAS at 1 thread as predict holds it
    (OpenBLAS's own results depend on its thread count)."""
    out = np.empty((X.shape[0], model.n_outputs), model.dtype)
    with threads.blas_threads(1):
        _network.forward_into(model._spec, model.params, X, out, 0, 4096, True, n_threads)
    return out


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_training_and_prediction_are_the_same_bits_for_any_thread_count(name, optimizer):
    c = NETWORKS[name]
    X, _ = _data(c, seed=5)
    first = None
    for n in THREAD_COUNTS:
        model = _train(c, OPTIMIZERS[optimizer](), n)
        pred = _predict(model, X, n)
        if first is None:
            first = model.params.copy(), pred
            continue
        np.testing.assert_array_equal(model.params, first[0], err_msg=f"{n} threads")
        np.testing.assert_array_equal(pred, first[1], err_msg=f"{n} threads")
        # and the public prediction (every core) gives the same bits
        np.testing.assert_array_equal(model.forward(X), first[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [dict(dropout=0.3), dict(normalization="layer"),
                                    dict(dropout=0.2, normalization="layer",
                                         activation="gelu")],
                         ids=["dropout", "layer_norm", "both_gelu"])
def test_dropout_and_layer_norm_are_the_same_bits_for_any_thread_count(kwargs, dtype,
                                                                       monkeypatch):
    """C widened to 8-256-256-1 at batch 256, so that the products are cut into tiles and the
    dropout and layer-norm passes into row blocks; against the untiled path too."""
    c = dict(NETWORKS["C"], dtype=dtype, sizes=[8, 256, 256, 1])
    kwargs = dict(kwargs)
    c["activation"] = kwargs.pop("activation", c["activation"])
    results = [_train(c, fastnn.Adam(lr=0.01, clip_norm=1.0), n, **kwargs).params
               for n in THREAD_COUNTS]
    for n, params in zip(THREAD_COUNTS[1:], results[1:]):
        np.testing.assert_array_equal(params, results[0], err_msg=f"{n} threads")
    with monkeypatch.context() as m:
        _untiled(m)
        untiled = _train(c, fastnn.Adam(lr=0.01, clip_norm=1.0), None, **kwargs).params
    # a tile's elements may round differently from the whole product's (see the next test)
    np.testing.assert_allclose(results[0], untiled, rtol=0,
                               atol=1e-12 if dtype == np.float64 else 1e-4)


def _one_tile_each(c):
    """Whether every product of c's training step is one tile and its parameters one chunk
    of the update (16384)."""
    sizes, m = c["sizes"], c["batch"]
    shapes = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(m, n_out, n_in), (n_in, n_out, m), (m, n_in, n_out)]
    n_params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    return n_params <= 16384 and all(_tiling.gemm_tiles(*s)[0] == 1 for s in shapes)


def test_the_bitwise_comparison_with_the_untiled_path_covers_a_network():
    # (so that a change of the tiling constants cannot turn the test above into rounding
    # comparisons only)
    assert _one_tile_each(NETWORKS["B"])
    assert not _one_tile_each(NETWORKS["A"]) and not _one_tile_each(NETWORKS["D"])


def _untiled(monkeypatch):
    """fit/predict take the untiled sequential path (n_threads=0), from before fastnn had its own threads."""
    monkeypatch.setattr(threads, "resolve_threads", lambda n=None: 0)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_one_thread_against_the_untiled_sequential_path(name, optimizer, monkeypatch):
    """The tiled path at one thread against the untiled one it replaced (n_threads=0).

    Bitwise equal where the decomposition allows it: networks whose products are one tile
    each (asked of _tiling.gemm_tiles, so that the claim follows the tiling constants: B at
    batch 32), and whose parameter vectors are one chunk of the update.  Where a product is
    cut (A, D, and C at batch 256), OpenBLAS computes a tile's elements with the same k but may block and round them
    differently from the whole product's (its blocking of k and small-matrix kernels depend
    on the call's shape; seen in sgemm, and in dgemm for 256 x 256 products, not for D's):
    there the paths agree to rounding, propagated through two epochs.  The clip norm summed
    over more than one chunk of 16384 parameters (A, D) agrees to rounding of the norm."""
    c = NETWORKS[name]
    tiled = _train(c, OPTIMIZERS[optimizer](), 1).params
    with monkeypatch.context() as m:
        _untiled(m)
        untiled = _train(c, OPTIMIZERS[optimizer](), None).params
    if _one_tile_each(c):
        np.testing.assert_array_equal(tiled, untiled)
    else:
        np.testing.assert_allclose(tiled, untiled, rtol=0,
                                   atol=1e-12 if c["dtype"] == np.float64 else 2e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_prediction_against_the_untiled_path(dtype):
    model = fastnn.MLP(NETWORKS["A"]["sizes"], dtype=dtype, seed=3)
    for rows in (1, 7, 64, 300, 1024):
        X = np.random.default_rng(rows).standard_normal((rows, 784)).astype(dtype)
        untiled = _predict(model, X, 0)
        for n in (1, 3):      # rounding may differ per tile (see the test above)
            np.testing.assert_allclose(_predict(model, X, n), untiled,
                                       rtol=1e-12 if dtype == np.float64 else 1e-5,
                                       atol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("n_threads", [1, 3])
def test_the_float64_gradient_still_matches_the_numpy_reference(n_threads):
    """The tiled loss gradient (model.loss_and_grad on every core, and the compiled call on
    n_threads) against fastnn._core._reference (plain NumPy, float64), to 1e-10."""
    rng = np.random.default_rng(0)
    model = fastnn.MLP([784, 256, 128, 10], dtype=np.float64, seed=0)
    X = rng.standard_normal((300, 784))
    y = rng.integers(0, 10, 300)
    acts = [layer.activation for layer in model.layers]
    alphas = [layer._activation_parameter() for layer in model.layers]
    want_loss, want = ref.network_loss_grad(model.params, model.layer_sizes, acts, alphas, X,
                                            CE, labels=y)
    loss = model.loss_and_grad(X, y, "cross_entropy")
    np.testing.assert_allclose(loss, want_loss, rtol=1e-10)
    np.testing.assert_allclose(model.grads, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
    grads = np.empty_like(model.params)
    with threads.blas_threads(1):
        total = _network.loss_grad_into(model._spec, model.params, grads, X, CE, 0, 1.0,
                                        None, y.astype(np.intp), None, None, 1.0 / 300, True,
                                        n_threads=n_threads)
    np.testing.assert_allclose(total / 300, want_loss, rtol=1e-10)
    np.testing.assert_array_equal(grads, model.grads)


def test_update_params_is_the_same_bits_for_any_thread_count():
    model = fastnn.MLP([784, 256, 128, 10], seed=0)
    rng = np.random.default_rng(1)
    grads = rng.standard_normal(model.n_params).astype(np.float32)
    out = []
    for n in (0,) + THREAD_COUNTS:
        params = model.params.copy()
        s1 = np.zeros_like(params)
        s2 = np.zeros_like(params)
        _sgd.update_params(model._spec, params, grads, s1, s2, _sgd.OPT_ADAM, 0.01, 0.0,
                           False, 1e-3, 0.0, 0.9, 0.999, 1e-8, 0, True, n_threads=n)
        out.append(params)
    for params in out[1:]:
        np.testing.assert_array_equal(params, out[0])


def test_n_threads_is_checked():
    with pytest.raises(ValueError, match="n_threads=-1"):
        _network.forward_into(fastnn.MLP([2, 3])._spec, np.zeros(9, np.float32),
                              np.zeros((1, 2), np.float32), np.zeros((1, 3), np.float32), 0,
                              16, True, -1)
    X = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="n_threads=0"):
        fastnn.fit(fastnn.MLP([2, 3]), X, [0, 1, 2, 0], "cross_entropy", n_threads=0)
    assert threads.resolve_threads(None) == threads.available_cores() >= 1


FLUSHABLE = fpmode.supported() and platform.machine().lower() in ("x86_64", "amd64",
                                                                    "aarch64", "arm64")


@pytest.mark.skipif(not FLUSHABLE, reason="no flush-to-zero control on this platform")
def test_the_pools_workers_flush_subnormals_as_the_caller_does():
    """Subnormal weights (1e-39 in float32) times inputs of 1: flushed (DAZ), every tile of
    the product is exactly 0 whichever thread computed it; not flushed, none is."""
    model = fastnn.MLP([784, 256], activation="identity", seed=0)
    W = model.layers[0].W
    W[...] = np.float32(1e-39)
    model.layers[0].b[...] = 0
    X = np.ones((64, 784), np.float32)
    out = np.empty((64, 256), np.float32)
    for flush, n in ((True, 4), (True, 1), (False, 4)):
        with threads.blas_threads(1):
            _network.forward_into(model._spec, model.params, X, out, 0, 4096, flush, n)
        if flush:
            assert np.all(out == 0), (n, np.unique(out)[:5])
        else:
            assert np.all(out > 0), out.min()


@pytest.mark.skipif(not FLUSHABLE, reason="no flush-to-zero control on this platform")
def test_training_that_meets_subnormals_is_the_same_bits_on_any_thread_count():
    """Network A with subnormal first-layer weights (~1e-39): flushed, its ReLUs see 0 on
    every thread, so every thread count gives the bits of one thread; the run does meet
    subnormals (without flushing the ReLUs open and the result differs)."""
    c = NETWORKS["A"]
    X, y = _data(c)
    X = np.abs(X)
    results = {}
    for n, flush in ((1, True), (2, True), (4, True), (1, False)):
        model = fastnn.MLP(c["sizes"], seed=0)
        model.layers[0].W[...] = np.abs(model.layers[0].W) * np.float32(1e-38)
        fastnn.fit(model, X, y, "cross_entropy", fastnn.SGD(lr=1e-2, momentum=0.9),
                   epochs=1, batch_size=64, seed=1, n_threads=n, flush_denormals=flush)
        results[n, flush] = model.params.copy()
    np.testing.assert_array_equal(results[2, True], results[1, True])
    np.testing.assert_array_equal(results[4, True], results[1, True])
    assert not np.array_equal(results[1, False], results[1, True])


def test_fit_and_predict_inside_a_blas_threads_block_of_another_count():
    """A caller's blas_threads(n) block owns the BLAS count: fit and predict inside it run
    (they do not raise or wait), and they hold OpenBLAS at 1 for their compiled calls as
    outside a block (fastnn.runtime.threads.compiled_threads), so they give the same bits as outside
    it: OpenBLAS's products at 2 or 3 threads are other bits than at 1 (network A's were)."""
    c = NETWORKS["A"]
    X, y = _data(c)
    expected = _train(c, fastnn.Adam(lr=0.01), 2)
    expected_proba = expected.predict(X)
    for blas in (2, 3):
        with threads.blas_threads(blas):
            for n_threads in (1, 3):
                model = _train(c, fastnn.Adam(lr=0.01), n_threads)
                assert threads.get_num_threads() == blas
                np.testing.assert_array_equal(model.params, expected.params)
                np.testing.assert_array_equal(model.predict(X), expected_proba)
                assert threads.get_num_threads() == blas
    assert threads._n_held == 0 and threads._n_blocks == 0


def test_a_fit_inside_a_block_shared_with_another_thread_runs():
    """Another thread's block of the same count is open: that count is shared, so a fit
    leaves it as it is (no wait, no error) and still gives the same bits for any n_threads
    where OpenBLAS's result does not depend on its count (network B's small products)."""
    import threading
    c = NETWORKS["B"]
    X, _ = _data(c)
    entered, release = threading.Event(), threading.Event()

    def hold():
        with threads.blas_threads(2):
            entered.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(30)
        with threads.blas_threads(2):
            a = _train(c, fastnn.SGD(lr=0.05), 1)
            b = _train(c, fastnn.SGD(lr=0.05), 3)
            assert threads.get_num_threads() == 2
            np.testing.assert_array_equal(a.params, b.params)
            np.testing.assert_array_equal(a.predict(X), b.predict(X))
    finally:
        release.set()
        holder.join(30)


def test_ensembles_fit_inside_a_blas_threads_block_of_another_count():
    """MLPEnsemble.fit and the scikit-learn ensembles inside a caller's blas_threads(2) block
    run (their blas_threads(1) block raised RuntimeError there, where MLP.fit runs) and give
    the bits they give outside it; the members' fits in the worker threads join the caller's
    hold of the count at 1 rather than wait for its block to end."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 20))
    y = X.sum(axis=1)

    def mlp_ensemble():
        ens = fastnn.MLPEnsemble([20, 300, 1], n_members=3, seed=0)
        ens.fit(X, y, "mse", epochs=2, n_threads=2)
        return [m.params for m in ens.members]

    def sklearn_ensemble():
        pytest.importorskip("sklearn")
        from fastnn.interop.sklearn_ensemble import EnsembleRegressor
        return [EnsembleRegressor(n_estimators=2, n_jobs=2, random_state=0).fit(X, y).predict(X)]

    for train in (mlp_ensemble, sklearn_ensemble):
        outside = train()
        with threads.blas_threads(2):
            inside = train()
            assert threads.get_num_threads() == 2
        assert threads._n_held == 0 and threads._n_blocks == 0
        for a, b in zip(outside, inside):
            np.testing.assert_array_equal(a, b)


def test_the_estimators_n_threads_is_their_compiled_calls_count(monkeypatch):
    pytest.importorskip("sklearn")
    from fastnn.interop.sklearn import MLPClassifier, MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 40))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    results = {}
    for n in (1, 3):
        clf = MLPClassifier((64,), max_iter=5, random_state=0, n_threads=n).fit(X, y)
        reg = MLPRegressor(hidden_layer_sizes=(64,), max_iter=5, random_state=0,
                           n_threads=n).fit(X, X[:, 0])
        results[n] = (clf.model_.params.copy(), clf.predict_proba(X), reg.predict(X))
    for a, b in zip(results[1], results[3]):
        assert np.array_equal(a, b)

    # with n_threads set, no compiled call falls back to "every core"
    def every_core():
        raise AssertionError("a compiled call ignored the estimator's n_threads")

    monkeypatch.setattr(threads, "available_cores", every_core)
    for solver in ("adam", "lbfgs"):
        clf = MLPClassifier((8,), max_iter=3, solver=solver, n_threads=2).fit(X, y)
        clf.predict(X)
        clf.score(X, y)
    with pytest.raises(AssertionError, match="ignored"):
        MLPClassifier((8,), max_iter=3).fit(X, y)
    with pytest.raises(ValueError, match="n_threads"):
        MLPRegressor(n_threads=0).fit(X, X[:, 0])


@pytest.mark.parametrize("loss", ["cross_entropy", "gaussian_nll"])
def test_the_minibatch_gather_over_threads_gives_the_same_bits(loss):
    """A batch of 192 rows of 784 features (600 kB) is gathered by 2 or more of the pool's
    threads, over row blocks; with sample weights, and per-sample sigma or labels."""
    c = dict(NETWORKS["A"], batch=192, n=576, dtype=np.float64)
    X, y = _data(c)
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 2.0, c["n"])
    if loss != "cross_entropy":
        y = rng.standard_normal((c["n"], 10))
        loss = fastnn.nn.losses.GaussianNLL(sigma=rng.uniform(0.5, 1.5, c["n"]))
    results = []
    for n in THREAD_COUNTS:
        model = fastnn.MLP(c["sizes"], dtype=c["dtype"], seed=0)
        fastnn.fit(model, X, y, loss, fastnn.Adam(lr=1e-3), epochs=2, batch_size=c["batch"],
                   seed=1, sample_weight=w, n_threads=n)
        results.append(model.params)
    for n, params in zip(THREAD_COUNTS[1:], results[1:]):
        np.testing.assert_array_equal(params, results[0], err_msg=f"{n} threads")


def _epoch_args(model, X, labels, batch, **change):
    """_epoch.prepare_epoch's arguments for a plain SGD epoch of cross-entropy on labels."""
    spec, dt = model._spec, model.dtype
    args = dict(spec=spec, params=model.params, grads=model.grads,
                state1=np.zeros(0, dt), state2=np.zeros(0, dt), X=X, Y=None, labels=labels,
                sample_weight=None, sigma=None, order=None, batch_size=batch, drop_last=False,
                loss_kind=CE, loss_full=0, sigma_scalar=1.0, opt_kind=_sgd.OPT_SGD, lr=0.01,
                momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=0.0, beta1=0.0,
                beta2=0.0, eps=0.0, t0=0, acts=np.empty(batch * spec.act_width, dt),
                delta0=np.empty(batch * spec.max_width, dt),
                delta1=np.empty(batch * spec.max_width, dt),
                X_batch=np.empty((batch, X.shape[1]), dt), Y_batch=None,
                labels_batch=np.empty(batch, np.intp), sw_batch=np.empty(batch, dt),
                sigma_batch=None, check_every=-1.0)
    args.update(change)
    return epoch_call_kwargs(args)


def _gather_case(n=300, n_in=784, batch=128):
    """float64 rows of 6 kB: a batch of 128 is 800 kB, gathered by up to 6 tasks."""
    rng = np.random.default_rng(7)
    return (rng.standard_normal((n, n_in)), rng.integers(0, 10, n).astype(np.intp),
            rng.uniform(0.1, 2.0, n), batch)


def _gather_epoch(X, labels, w, batch, n_threads, order, mutate=None, **change):
    model = fastnn.MLP([X.shape[1], 32, 10], dtype=np.float64, seed=0, **change)
    with threads.blas_threads(1):
        call = _epoch.prepare_epoch(**_epoch_args(model, X, labels, batch, order=order,
                                                sample_weight=w, n_threads=n_threads))
        if mutate is not None:
            mutate(order)
        result = call.run()
    return model.params, result


@pytest.mark.parametrize("kind", ["duplicates", "one_row_repeated", "last_row", "short",
                                  "longer_than_X"])
def test_a_gathered_order_is_the_same_bits_as_reading_the_gathered_rows_in_place(kind):
    """Any order of X's rows (not only a permutation), gathered on 1-8 threads, trains as
    the same rows stored in that order and read in place."""
    X, labels, w, batch = _gather_case()
    rng = np.random.default_rng(1)
    n = X.shape[0]
    order = {"duplicates": rng.integers(0, n, n), "one_row_repeated": np.full(250, 7),
             "last_row": np.full(200, n - 1), "short": rng.permutation(n)[:5],
             "longer_than_X": rng.integers(0, n, 2 * n + 3)}[kind].astype(np.intp)
    want, want_result = _gather_epoch(np.ascontiguousarray(X[order]),
                                      np.ascontiguousarray(labels[order]), w[order], batch, 1,
                                      None)
    for n_threads in (1, 2, 3, 8):
        params, result = _gather_epoch(X, labels, w, batch, n_threads, order.copy())
        assert result[4] == _epoch.STATUS_OK
        np.testing.assert_array_equal(params, want, err_msg=f"{n_threads} threads")
        assert result[:4] == want_result[:4]


@pytest.mark.parametrize("bad", [300, 10**12, -1, -(2**63)])
def test_an_order_changed_after_prepare_epoch_is_never_read_outside_X(bad):
    """prepare_epoch checks the order once; an index the caller changes afterwards (to one
    that is no row of X) used to be copied from outside X by the parallel gather (a segfault,
    or ASan's heap-buffer-overflow).  The batch holding it is gathered serially instead,
    skipping it: the same bits as that order without the entry (it is in the last batch, so
    the other batches are unchanged)."""
    X, labels, w, batch = _gather_case()
    n = X.shape[0]
    order = np.random.default_rng(2).permutation(n).astype(np.intp)
    where = n - 10                                  # in the last batch (rows 256 .. 299)
    without = np.delete(order, where)
    want, want_result = _gather_epoch(X, labels, w, batch, 1, without)

    def mutate(o):
        o[where] = bad

    for n_threads in (1, 2, 3):
        params, result = _gather_epoch(X, labels, w, batch, n_threads, order.copy(), mutate)
        assert result[4] == _epoch.STATUS_OK
        np.testing.assert_array_equal(params, want, err_msg=f"{n_threads} threads")
        assert result[:4] == want_result[:4]


def test_an_order_index_that_is_no_row_of_X_is_refused_without_ranks():
    """Without a reducer there are no other ranks' samples: an index past X's rows (or below
    row_offset) would have been dropped silently from its batch."""
    X, labels, w, batch = _gather_case()
    n = X.shape[0]
    order = np.arange(n + 1, dtype=np.intp)
    with pytest.raises(ValueError, match=r"order\[300\] is 300; expected the indices of X's "
                                         r"300 rows, 0 \.\. 299"):
        _gather_epoch(X, labels, w, batch, 2, order)
    with pytest.raises(ValueError, match=r"order\[0\] is 4; expected .* 5 \.\. 304"):
        model = fastnn.MLP([X.shape[1], 32, 10], dtype=np.float64, seed=0)
        _epoch.prepare_epoch(**_epoch_args(model, X, labels, batch, row_offset=5,
                                         order=np.arange(4, n + 4, dtype=np.intp),
                                         sample_weight=w))
    model = fastnn.MLP([X.shape[1], 32, 10], dtype=np.float64, seed=0)
    with pytest.raises(ValueError, match=r"order\[0\] is 0; expected none: X has no rows"):
        _epoch.prepare_epoch(**_epoch_args(model, X[:0], labels[:0], batch, sample_weight=w[:0],
                                         order=np.zeros(1, np.intp)))
    # in range with an offset: accepted, and the same bits as without it
    model = fastnn.MLP([X.shape[1], 32, 10], dtype=np.float64, seed=0)
    perm = np.random.default_rng(3).permutation(n).astype(np.intp)
    with threads.blas_threads(1):
        _epoch.prepare_epoch(**_epoch_args(model, X, labels, batch, row_offset=5,
                                         order=perm + 5, sample_weight=w, n_threads=2)).run()
    np.testing.assert_array_equal(model.params, _gather_epoch(X, labels, w, batch, 2, perm)[0])


def test_the_threads_guide_states_the_tiling_rule_the_code_follows():
    """The threads guide's figures for the tiles (they drifted once: 'a tile does at least
    2 MFLOP' stayed after tiles of 1 MFLOP came in), checked at each boundary with
    gemm_tiles."""
    import pathlib
    import re
    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide" / "threads.md"
    if not page.exists():
        pytest.skip("the documentation is not beside the tests")
    text = " ".join(page.read_text().split())
    m = re.search(r"cut in two from (\d+) MFLOP and into more tiles \(up to (\d+)\) only "
                  r"while each stays at least (\d+) MFLOP", text)
    assert m, "docs/guide/threads.md no longer states the tiling rule in the words this test reads"
    two, most, big = (int(g) for g in m.groups())

    def tiles(m_, n_, k_):
        return _tiling.gemm_tiles(m_, n_, k_)[0]

    # 2 tiles from `two` MFLOP: 256 x 256 products of 2 * 65536 * k flops
    k = -(-two * 10**6 // (2 * 256 * 256))
    assert tiles(256, 256, k - 1) == 1 and tiles(256, 256, k) == 2
    # 4 once each quarter keeps `big` MFLOP: 1024 x 1024 products
    k = -(-4 * big * 10**6 // (2 * 1024 * 1024))
    assert tiles(1024, 1024, k - 1) == 2 and tiles(1024, 1024, k) == 4
    # never more than `most`
    assert tiles(8192, 8192, 8192) == most


def test_a_tile_side_near_int_max_does_not_wrap_the_tiling():
    # 2 * side was an int product: side = 2**31 - 1 wrapped negative and every product was
    # cut into tiles smaller than the side asked for
    old = _tiling._set_tiling(2**31 - 1, 0.0, 64, 0.0)
    try:
        assert _tiling.gemm_tiles(1000, 1000, 1000) == (1, 1000, 1000)
        assert _tiling.gemm_tiles(2**31 - 1, 2**31 - 1, 1) == (1, 2**31 - 1, 2**31 - 1)
    finally:
        _tiling._set_tiling(*old)
    assert _tiling.gemm_tiles(2**31 - 1, 2**31 - 1, 2**31 - 1)[0] == 64
