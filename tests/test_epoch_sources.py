"""The compiled epoch's guarantees over both row sources: a dense X and a CSR one.

One loop (fastnn/_core/_loop.pyx) serves both; each test runs its guarantee for each source:
the same bits at any thread count, Ctrl-C stopping after the running minibatch with the model
consistent, ensemble jobs (train_epochs) equal to each epoch run alone, the overlap refusal,
every buffer size checked with a ValueError, and the CSR epoch equal to the dense epoch on
X.toarray() up to rounding (float64).
"""
import signal

import numpy as np
import pytest
import scipy.sparse as sp

import fastnn
from fastnn._core import _epoch, _sgd
from fastnn.nn.sparse import as_csr
from fastnn.runtime import threads
from tests._helpers import epoch_call_kwargs

CE = fastnn.nn.losses.get_loss("cross_entropy").kind
SOURCES = ["dense", "csr"]


def _data(n=240, n_in=60, seed=0, density=0.3):
    """X with about 70% zeros (so the CSR source has real structure) and class labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)) * (rng.random((n, n_in)) < density)
    return X, rng.integers(0, 10, n).astype(np.intp)


def _flat(model, X, labels, batch, source, /, **change):  # (change may hold labels)
    """The flat values of one correct epoch of `model` on X (dense ndarray) read as `source`
    (tests/_helpers.epoch_call_kwargs turns them into the compiled call's arguments)."""
    spec, dt = model._spec, model.dtype
    X = X.astype(dt)
    flat = dict(spec=spec, params=model.params, grads=model.grads, state1=None, state2=None,
                X=None, csr=None, Y=None, labels=labels, sample_weight=None, sigma=None,
                order=np.random.default_rng(5).permutation(X.shape[0]).astype(np.intp),
                batch_size=batch, drop_last=False, loss_kind=CE, loss_full=0,
                sigma_scalar=1.0, opt_kind=_sgd.OPT_SGD, lr=0.05, momentum=0.0,
                nesterov=False, weight_decay=0.0, clip_norm=0.0, beta1=0.9, beta2=0.999,
                eps=1e-8, t0=0, acts=np.empty(batch * spec.act_width, dt),
                delta0=np.empty(batch * spec.max_width, dt),
                delta1=np.empty(batch * spec.max_width, dt), X_batch=None, Y_batch=None,
                labels_batch=np.empty(batch, np.intp), sw_batch=None, sigma_batch=None,
                check_every=-1.0)
    if source == "dense":
        flat.update(X=X, X_batch=np.empty((batch, X.shape[1]), dt))
    else:
        csr = as_csr(sp.csr_array(X), "X", dt, X.shape[1])
        flat.update(csr=(csr.data, csr.indices, csr.indptr, X.shape[1]))
    flat.update(change)
    return flat


def _adam(model):
    n, dt = model.n_params, model.dtype
    return dict(opt_kind=_sgd.OPT_ADAM, lr=1e-2, state1=np.zeros(n, dt),
                state2=np.zeros(n, dt))


def _run(flat):
    with threads.blas_threads(1):
        return _epoch.train_epoch(**epoch_call_kwargs(flat))


@pytest.mark.parametrize("source", SOURCES)
def test_the_same_bits_at_any_thread_count(source):
    X, labels = _data(n_in=60)
    want = None
    for n_threads in (1, 2, 3):
        model = fastnn.MLP([60, 256, 10], dtype=np.float64, seed=0, dropout=0.2)
        result = _run(_flat(model, X, labels, 64, source, n_threads=n_threads,
                            dropout_seed=9, **_adam(model)))
        assert result[4] == _epoch.STATUS_OK and result[2] == 4 and result[3] == 4
        if want is None:
            want = (model.params.copy(), result[:4])
        else:
            np.testing.assert_array_equal(model.params, want[0], err_msg=f"{n_threads}")
            assert result[:4] == want[1]


@pytest.mark.parametrize("source", SOURCES)
def test_a_signal_stops_the_epoch_after_its_minibatch_with_the_model_consistent(source):
    """A handler raising during the epoch (as Ctrl-C's does): the epoch stops after the
    running minibatch, the result carries the exception, and the parameters are exactly
    those of the steps it reports (the same bits as an epoch over those minibatches only)."""
    n, batch = 60_000, 2
    X, labels = _data(n=n, n_in=60, density=0.1)
    model = fastnn.MLP([60, 64, 10], dtype=np.float64, seed=0)
    flat = _flat(model, X, labels, batch, source, check_every=0.0, **_adam(model))
    call = _epoch.prepare_epoch(**epoch_call_kwargs(flat))

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with threads.blas_threads(1):
            loss_sum, weight_sum, steps, t, status, failed, pending = call.run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert status == _epoch.STATUS_INTERRUPTED and isinstance(pending, KeyboardInterrupt)
    assert 0 < steps < n // batch and t == steps and failed == -1
    assert weight_sum == steps * batch and np.all(np.isfinite(model.params))
    # the same steps alone, without a signal: the same bits
    again = fastnn.MLP([60, 64, 10], dtype=np.float64, seed=0)
    result = _run(_flat(again, X, labels, batch, source, order=flat["order"][:steps * batch],
                        **_adam(again)))
    assert result[2] == steps and result[0] == loss_sum
    np.testing.assert_array_equal(again.params, model.params)


@pytest.mark.parametrize("sources", [("csr", "csr", "csr"), ("dense", "csr", "csr")])
def test_a_job_of_several_members_equals_each_epoch_run_alone(sources):
    """train_epochs runs the members' epochs as pool tasks (sparse ones too, sharing the
    data they read); each equals its epoch run alone, bit for bit."""
    X, labels = _data()
    alone, flats = [], []
    for k, source in enumerate(sources):
        model = fastnn.MLP([60, 32, 10], dtype=np.float64, seed=k)
        _run(_flat(model, X, labels, 16, source, **_adam(model)))
        alone.append(model.params.copy())
        member = fastnn.MLP([60, 32, 10], dtype=np.float64, seed=k)
        flats.append(_flat(member, X, labels, 16, source, **_adam(member)))
    calls = [_epoch.prepare_epoch(**epoch_call_kwargs(f)) for f in flats]
    with threads.blas_threads(1):
        assert _epoch.train_epochs(calls, 2) is None
    for k, (call, flat) in enumerate(zip(calls, flats)):
        assert call.ran and call.result[4] == _epoch.STATUS_OK
        np.testing.assert_array_equal(flat["params"], alone[k], err_msg=f"member {k}")


@pytest.mark.parametrize("source", SOURCES)
def test_overlapping_buffers_are_refused(source):
    X, labels = _data()
    a = fastnn.MLP([60, 32, 10], dtype=np.float64, seed=0)
    b = fastnn.MLP([60, 32, 10], dtype=np.float64, seed=1)
    # its own workspace inside its parameters: refused by prepare_epoch itself
    with pytest.raises(ValueError, match="the epoch writes its (params|acts) in memory that "
                                         "the epoch writes as its (acts|params)"):
        _epoch.prepare_epoch(**epoch_call_kwargs(_flat(a, X, labels, 4, source,
                                                       acts=a.params)))
    # two members sharing one workspace: refused by the job, before either runs
    fa = _flat(a, X, labels, 8, source)
    fb = _flat(b, X, labels, 8, source, acts=fa["acts"])
    calls = [_epoch.prepare_epoch(**epoch_call_kwargs(f)) for f in (fa, fb)]
    with pytest.raises(ValueError, match=r"calls\[\d\] writes its acts in memory that "
                                         r"calls\[\d\] writes as its acts"):
        _epoch.train_epochs(calls, 2)
    assert not any(c.ran for c in calls)
    # a member whose parameters another member reads as its data
    what = "X" if source == "dense" else "data"
    reader = _flat(b, X[:4], labels[:4], 8, source, order=np.arange(4, dtype=np.intp))
    if source == "dense":
        reader["X"] = a.params[:4 * 60].reshape(4, 60)
    else:
        data, indices, indptr, n_features = reader["csr"]
        reader["csr"] = (a.params[:data.shape[0]], indices, indptr, n_features)
    calls = [_epoch.prepare_epoch(**epoch_call_kwargs(f)) for f in (fa, reader)]
    with pytest.raises(ValueError, match=rf"writes its params in memory that calls\[1\] "
                                         rf"reads as its {what}"):
        _epoch.train_epochs(calls, 2)


def _size_cases(model, source):
    """(a change to the flat values, what the ValueError names), for each source."""
    dt = model.dtype
    cases = [
        (dict(acts=np.empty(3, dt)), "the workspace acts has 3 entries"),
        (dict(delta0=np.empty(3, dt)), "the workspace delta0 has 3 entries"),
        (dict(labels_batch=np.empty(2, np.intp)), "labels_batch has shape (2,)"),
        (dict(labels_batch=None), "labels_batch is missing"),
        (dict(grads=np.zeros(3, dt)), "grads has 3 entries"),
        (dict(labels=np.zeros(5, np.intp)), "labels has 5 entries"),
        (dict(order=np.array([0, 240], np.intp)), "order[1] is 240"),
        (dict(momentum=0.9), "needs optimizer state 1"),
        (dict(state1=np.zeros(3, dt), momentum=0.9), "optimizer state 1 has 3 entries"),
        (dict(t0=-1), "step count is -1"),
        (dict(loss_kind=-1), "unknown loss code -1"),
        (dict(params=np.zeros(model.n_params, np.int64)), "params has dtype int64"),
    ]
    if source == "dense":
        cases += [(dict(X_batch=np.empty((2, 60), dt)), "X_batch has shape (2, 60)"),
                  (dict(X=np.ones((240, 5), dt)), "X has 5 features")]
    else:
        X, _ = _data()
        csr = as_csr(sp.csr_array(X.astype(dt)), "X", dt, 60)
        bad_indices = csr.indices.copy()
        bad_indices[3] = 60
        bad_indptr = csr.indptr.copy()
        bad_indptr[5] = bad_indptr[4] - 1
        cases += [(dict(csr=(csr.data, csr.indices, csr.indptr, 61)), "X has 61 features"),
                  (dict(csr=(csr.data, bad_indices, csr.indptr, 60)),
                   "indices[3] = 60 is outside [0, 60)"),
                  (dict(csr=(csr.data, csr.indices, bad_indptr, 60)),
                   "indptr decreases after row"),
                  (dict(csr=(csr.data[:-1], csr.indices, csr.indptr, 60)),
                   f"indices has {csr.indices.shape[0]} entries; data has"),
                  (dict(reducer=_epoch.Allreduce(1, True, 0, 0, 0, 0, 0)),
                   "a CSR row source cannot run with a reducer")]
    return cases


@pytest.mark.parametrize("source", SOURCES)
def test_every_buffer_size_is_checked_with_a_clear_error(source):
    X, labels = _data()
    model = fastnn.MLP([60, 32, 10], dtype=np.float64, seed=0)
    before = model.params.copy()
    for change, fragment in _size_cases(model, source):
        with pytest.raises(ValueError) as raised:
            _run(_flat(model, X, labels, 8, source, **change))
        assert fragment in str(raised.value), (change, str(raised.value))
    np.testing.assert_array_equal(model.params, before)
    assert _run(_flat(model, X, labels, 8, source))[4] == _epoch.STATUS_OK


def test_the_first_layer_normalization_is_refused_for_a_csr_source():
    X, labels = _data()
    model = fastnn.MLP([60, 32, 10], dtype=np.float64, seed=0, normalization="layer")
    with pytest.raises(ValueError, match="sparse input does not support layer normalization"):
        _run(_flat(model, X, labels, 8, "csr"))


@pytest.mark.parametrize("bad", [240, 10**12, -1])
def test_an_order_changed_after_prepare_is_never_followed_outside_a_csr_x(bad):
    """The CSR rows are read through the gathered row list, which is checked as it is
    gathered: an index changed after prepare_epoch drops out of its batch (the same bits as
    the order without it) instead of sending the kernels outside indptr."""
    X, labels = _data()
    order = np.random.default_rng(2).permutation(240).astype(np.intp)
    where = 235                             # in the last batch
    want = fastnn.MLP([60, 32, 10], dtype=np.float64, seed=0)
    _run(_flat(want, X, labels, 16, "csr", order=np.delete(order, where)))
    model = fastnn.MLP([60, 32, 10], dtype=np.float64, seed=0)
    call = _epoch.prepare_epoch(**epoch_call_kwargs(_flat(model, X, labels, 16, "csr",
                                                          order=order)))
    order[where] = bad
    with threads.blas_threads(1):
        assert call.run()[4] == _epoch.STATUS_OK
    np.testing.assert_array_equal(model.params, want.params)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("with_order", [True, False])
def test_a_csr_epoch_equals_the_dense_epoch_on_the_same_data(optimizer, with_order):
    """float64: the same steps, rounded in another order (the sparse first layer sums over
    the stored entries; plain SGD's dense step is fused into its GEMM), so equal to ~1e-12."""
    X, labels = _data()
    params = []
    for source in SOURCES:
        model = fastnn.MLP([60, 32, 16, 10], dtype=np.float64, seed=0, activation="tanh")
        opt = {"sgd": {}, "momentum": dict(momentum=0.9, nesterov=True,
                                           state1=np.zeros(model.n_params)),
               "adam": _adam(model)}[optimizer]
        t = 0
        for epoch in range(3):
            result = _run(_flat(model, X, labels, 16, source, t0=t, weight_decay=1e-3,
                                order=None if not with_order else
                                np.random.default_rng(epoch).permutation(240).astype(np.intp),
                                **opt))
            assert result[4] == _epoch.STATUS_OK
            t = result[3]
        params.append(model.params.copy())
    assert not np.array_equal(params[0], fastnn.MLP([60, 32, 16, 10], dtype=np.float64,
                                                    seed=0).params)
    np.testing.assert_allclose(params[1], params[0], rtol=1e-12, atol=1e-12)
