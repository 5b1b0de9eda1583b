"""MLPEnsemble's lockstep epochs (fastnn/training/lockstep.py): members stopping or failing
alone, Ctrl-C, prepared epochs that run once and share no written buffer, the run step by step,
sparse X and bootstrap members, and fits refused before training."""
import numpy as np
import pytest

import fastnn
from fastnn.ensemble import MLPEnsemble
from tests._ensemble_data import _lone_member, _regression


# ------------------------------------------------------------------ lockstep epochs


def _stop_at(epochs_by_member):
    """A callback stopping member k after epoch epochs_by_member[k] (absent: never), and the
    (member, epoch) sequence of its calls."""
    seen = []

    def cb(epoch, logs):
        seen.append((logs["member"], epoch))
        return epoch == epochs_by_member.get(logs["member"])
    return cb, seen


@pytest.mark.parametrize("n_threads", [1, 2, 3, 4])
def test_lockstep_members_stop_early_others_continue_each_equal_to_its_lone_fit(n_threads):
    # early stopping and callbacks stop some members while the others go on; every member is
    # still bitwise its lone fit with the same stops, at any thread count, and the callbacks
    # run epoch by epoch, members in order within an epoch (one round per epoch)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 3))
    y = X[:, :1] - X[:, 1:2] ** 2 + 0.5 * rng.standard_normal((300, 1))
    X, Xv, y, yv = X[:240], X[240:], y[:240], y[240:]
    stops = {1: 2, 3: 5}
    cb, seen = _stop_at(stops)
    kwargs = dict(epochs=12, batch_size=16, validation_data=(Xv, yv))
    ens = MLPEnsemble([3, 16, 1], 5, activation="tanh", seed=4)
    ens.fit(X, y, "mse", fastnn.Adam(lr=0.1), n_threads=n_threads,
            early_stopping=fastnn.EarlyStopping(patience=2), callbacks=[cb], **kwargs)
    lengths = [len(h.epoch) for h in ens.histories_]
    # these seeds and data make members 0, 2 and 4 stop early by themselves, at different
    # epochs, before member 3 runs all 12 (the callback stops 1 and 3 earlier)
    assert [ens.histories_[k].stopped_early for k in (0, 2, 4)] == [True] * 3
    assert len({lengths[0], lengths[2], lengths[4], 12}) >= 3, lengths
    assert lengths[1] == 2 and lengths[3] == 5
    for k, seed in enumerate(ens.member_seeds):
        lone_cb, _ = _stop_at({0: stops.get(k)})
        alone = fastnn.MLP([3, 16, 1], activation="tanh", seed=seed)
        h = fastnn.fit(alone, X, y, "mse", fastnn.Adam(lr=0.1), seed=seed, n_threads=1,
                       early_stopping=fastnn.EarlyStopping(patience=2),
                       callbacks=[lambda e, logs, c=lone_cb: c(e, dict(logs, member=0))],
                       **kwargs)
        assert ens.histories_[k].epoch == h.epoch
        assert ens.histories_[k].loss == h.loss
        assert ens.histories_[k].best_epoch == h.best_epoch
        assert ens.members[k].params.tobytes() == alone.params.tobytes(), k
    expected = [(k, e) for e in range(1, 13) for k in range(5) if e <= lengths[k]]
    assert seen == expected


def test_a_diverging_member_leaves_the_others_train_on():
    X, y = _regression(96)
    cb_seen = []

    def blow_up(epoch, logs):
        cb_seen.append((logs["member"], epoch))
        if logs["member"] == 1 and epoch == 2:
            ens.members[1].params[...] = 1e30     # its next epoch's loss overflows

    ens = MLPEnsemble([3, 8, 1], 3, seed=1, dtype=np.float64)
    with pytest.raises(fastnn.TrainingDiverged) as info:
        ens.fit(X, y, "mse", fastnn.SGD(lr=0.05), epochs=4, n_threads=2, callbacks=[blow_up])
    if hasattr(info.value, "__notes__"):
        assert "member 1" in info.value.__notes__[0]
    assert [len(h.epoch) for h in ens.histories_] == [4, 2, 4]
    assert info.value.history is ens.histories_[1]
    # the diverged member keeps finite weights (the start of the epoch before, its last known
    # to give a finite loss); the others are their lone fits
    assert np.all(np.isfinite(ens.members[1].params))
    for k in (0, 2):
        alone = _lone_member(ens, k, X, y, "mse", fastnn.SGD(lr=0.05), epochs=4)
        assert ens.members[k].params.tobytes() == alone.params.tobytes()
    assert (1, 3) not in cb_seen and (0, 4) in cb_seen and (2, 4) in cb_seen


def test_ctrl_c_during_the_compiled_epochs_leaves_every_member_consistent(monkeypatch):
    # a SIGINT while the second epoch's job runs: every member stops after its running
    # minibatch (the signal handlers run on the calling thread, the job's stop flag reaches
    # the others; members not started do not start), each member's optimizer counts the
    # steps its weights took, and a later fit continues
    import _thread
    import threading
    from fastnn._core import _epoch
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 3)).astype(np.float32)
    y = X[:, :1] * X[:, 1:2]
    ens = MLPEnsemble([3, 256, 256, 1], 4, seed=0, activation="tanh")
    jobs, timers = [], []
    real = _epoch.train_epochs

    def train_epochs(calls, n_threads):
        jobs.append(len(calls))
        if len(jobs) == 2:   # Ctrl-C 50 ms into the second epoch's job
            timers.append(threading.Timer(0.05, _thread.interrupt_main))
            timers[-1].start()
        return real(calls, n_threads)

    monkeypatch.setattr(_epoch, "train_epochs", train_epochs)
    try:
        with pytest.raises(KeyboardInterrupt):
            ens.fit(X, y, "mse", fastnn.SGD(lr=0.01, momentum=0.9), epochs=50, batch_size=8,
                    n_threads=2)
    finally:
        for t in timers:
            t.cancel()
    assert len(jobs) == 2
    steps_per_epoch = 20000 // 8
    for k, opt in enumerate(ens.optimizers_):
        assert opt.completed_epochs == 1 and len(ens.histories_[k].epoch) == 1
        assert steps_per_epoch <= opt.t < 2 * steps_per_epoch
        assert np.all(np.isfinite(ens.members[k].params))
    # the members running when the signal came stopped mid-epoch
    assert any(opt.t > steps_per_epoch for opt in ens.optimizers_)
    # the run goes on: a further fit with the same optimizers continues each member
    t_before = [opt.t for opt in ens.optimizers_]
    ens.fit(X[:64], y[:64], "mse", epochs=1, batch_size=8, n_threads=2)
    assert [opt.t - t for opt, t in zip(ens.optimizers_, t_before)] == [8] * 4


def _first_epoch_of_a_run(epochs):
    """(the run's steps, its first prepared epoch call) for a 3-4-1 model on 64 rows."""
    X, y = _regression(64)
    model = fastnn.MLP([3, 4, 1], seed=0)
    run, n_epochs = fastnn.training.trainer.prepare_run(model, X, y, "mse", epochs=epochs)
    steps = run.epochs(n_epochs)
    return steps, next(steps)


def test_prepared_epochs_run_once_and_never_share_written_buffers():
    # the compiled job's own checks, whatever Python passes: two tasks writing one model's
    # buffers would race; an epoch run twice would repeat itself from a stale step count
    from fastnn._core import _epoch
    from fastnn.runtime.boundary import run_epochs
    steps, call = _first_epoch_of_a_run(epochs=2)
    with pytest.raises(ValueError, match="use overlapping buffers"):
        run_epochs([call, call], 2)
    with pytest.raises(TypeError, match="Epoch objects"):
        run_epochs([call, "not a call"], 2)
    with pytest.raises(TypeError, match="EpochCall"):
        _epoch.train_epochs([call._call, "not a call"], 2)
    with pytest.raises(ValueError, match="n_threads"):
        run_epochs([call], 0)
    assert not call.ran
    assert run_epochs([call], 2) is None and call.ran
    with pytest.raises(RuntimeError, match="already run"):
        call.run()
    with pytest.raises(ValueError, match="prepare_epoch"):
        _epoch.EpochCall().run()
    with pytest.raises(RuntimeError, match="has not run"):
        _epoch.EpochCall().result
    steps.close()


def test_training_run_step_by_step_is_fit():
    # the hook the ensemble drives (TrainingRun.epochs): running its calls one by one is
    # fit, bitwise; send(True) stops after the epoch that ran; closing the generator before
    # its call ran ends the run after the last recorded epoch (early stopping's best weights
    # put back, as at the end of a fit)
    X, y = _regression(128)
    kwargs = dict(epochs=4, batch_size=16, seed=3, validation_split=0.25, early_stopping=2)
    ref = fastnn.MLP([3, 8, 1], seed=1)
    h_ref = fastnn.fit(ref, X, y, "mse", fastnn.Adam(lr=0.02), **kwargs)

    model = fastnn.MLP([3, 8, 1], seed=1)
    run, epochs = fastnn.training.trainer.prepare_run(model, X, y, "mse", fastnn.Adam(lr=0.02), **kwargs)
    steps = run.epochs(epochs)
    calls = 0
    try:
        call = next(steps)
        while True:
            call.run()
            calls += 1
            call = next(steps)
    except StopIteration as end:
        history = end.value
    assert calls == len(h_ref.epoch) and history.loss == h_ref.loss
    assert model.params.tobytes() == ref.params.tobytes()

    model = fastnn.MLP([3, 8, 1], seed=1)
    run, epochs = fastnn.training.trainer.prepare_run(model, X, y, "mse", fastnn.Adam(lr=0.02),
                                             epochs=4, batch_size=16, seed=3)
    steps = run.epochs(epochs)
    next(steps).run()
    call = steps.send(None)
    call.run()
    with pytest.raises(StopIteration) as stopped:
        steps.send(True)
    assert stopped.value.value.epoch == [1, 2] and run.optimizer.completed_epochs == 2
    two = fastnn.MLP([3, 8, 1], seed=1)
    fastnn.fit(two, X, y, "mse", fastnn.Adam(lr=0.02), epochs=2, batch_size=16, seed=3)
    assert model.params.tobytes() == two.params.tobytes()

    model = fastnn.MLP([3, 8, 1], seed=1)
    es = fastnn.EarlyStopping(patience=5, monitor="loss")
    run, epochs = fastnn.training.trainer.prepare_run(model, X, y, "mse", fastnn.SGD(lr=0.5),
                                             epochs=6, batch_size=16, seed=3,
                                             early_stopping=es)
    steps = run.epochs(epochs)
    for _ in range(3):
        call = next(steps)
        call.run()
    next(steps)            # the 4th epoch is prepared, not run
    steps.close()
    assert run.optimizer.completed_epochs == 3 and len(run.history.epoch) == 3
    assert run.history.best_epoch == es.best_epoch
    assert model.params.tobytes() == es._best_params.tobytes()


def test_prepared_epochs_refuse_memory_one_writes_and_another_reads():
    # a crafted job: one epoch's X is another model's parameters (read while written: a
    # race), or an epoch whose own gather buffer is its X; both refused before any run,
    # while members that only share the data they read are accepted
    from fastnn._core import _epoch
    from fastnn.runtime.boundary import run_epochs
    from fastnn.training.trainer import prepare_run
    rng = np.random.default_rng(0)
    a = fastnn.MLP([3, 16, 1], seed=0)
    n = a.params.shape[0] // 3
    X = rng.standard_normal((64, 3)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    run_a, _ = prepare_run(a, X, y, "mse", epochs=1, batch_size=8)
    b = fastnn.MLP([3, 4, 1], seed=1)
    X_b = a.params[: 3 * n].reshape(n, 3)          # b reads what a writes
    run_b, _ = prepare_run(b, X_b, np.zeros((n, 1), np.float32), "mse", epochs=1,
                           batch_size=8)
    assert np.shares_memory(run_b.data[0], a.params)
    steps_a, steps_b = run_a.epochs(1), run_b.epochs(1)
    call_a, call_b = next(steps_a), next(steps_b)
    for calls in ([call_a, call_b], [call_b, call_a]):
        with pytest.raises(ValueError, match=r"writes its params in memory that calls\[\d\] "
                                             r"reads as its X"):
            run_epochs(calls, 2)
    assert not call_a.ran and not call_b.ran
    # members sharing X and y (read only) are fine
    c = fastnn.MLP([3, 16, 1], seed=2)
    run_c, _ = prepare_run(c, X, y, "mse", epochs=1, batch_size=8)
    steps_c = run_c.epochs(1)
    call_c = next(steps_c)
    assert run_epochs([call_a, call_c], 2) is None and call_a.ran and call_c.ran
    # one epoch whose gather buffer is its own X: refused by prepare_epoch itself
    ws = run_c.ws
    Xg = np.ascontiguousarray(X[:8])
    with pytest.raises(ValueError, match="the epoch writes its X_batch in memory that the "
                                         "epoch reads as its X"):
        config = _epoch.EpochConfig(c._spec, 8, False, 0, 0, 1.0, ws.acts, ws.delta0,
                                    ws.delta1, Xg, np.empty((8, 1), np.float32))
        _epoch.prepare_epoch(config, _epoch.DenseRows(Xg, y[:8]), c.params, c.grads, None,
                             None, np.arange(8, dtype=np.intp),
                             (0, 0.01, 0.0, False, 0.0, 0.0, 0.9, 0.999, 1e-8), 0, 0)
    for steps in (steps_a, steps_b, steps_c):
        steps.close()


def test_training_run_generator_misuse_leaves_the_run_consistent():
    # TrainingRun.epochs driven wrongly: whatever ends the run (close, throw, a resume before
    # the call ran), the optimizer's step count matches the weights, a diverged epoch falls
    # back to the parameters fit would keep, and a dropped call can never run later
    from fastnn._core import _epoch
    from fastnn.runtime.boundary import run_epochs
    from fastnn.training.trainer import prepare_run
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = rng.standard_normal((64, 1))

    def start(lr, scale=1.0):
        model = fastnn.MLP([3, 8, 1], seed=0, dtype=np.float64)
        opt = fastnn.SGD(lr=lr, momentum=0.9)
        run, epochs = prepare_run(model, X, y * scale, "mse", opt, epochs=3, batch_size=8,
                                  seed=0)
        return model, opt, run.epochs(epochs)

    # an exception thrown in after the call ran: the optimizer takes its 8 steps
    model, opt, steps = start(1e-3)
    start_params = model.params.copy()
    next(steps).run()
    with pytest.raises(KeyError):
        steps.throw(KeyError("the driver's own error"))
    assert opt.t == 8 and opt.completed_epochs == 0
    assert not np.array_equal(model.params, start_params)

    # closed after a diverged epoch ran: fit's fallback (the parameters it started with,
    # state reset), as TrainingDiverged leaves them, not the ones that gave a NaN loss
    model, opt, steps = start(1e3, scale=1e3)
    start_params = model.params.copy()
    call = next(steps)
    call.run()
    assert call.result[4] == _epoch.STATUS_DIVERGED
    steps.close()
    assert model.params.tobytes() == start_params.tobytes() and opt.t == 0
    ref = fastnn.MLP([3, 8, 1], seed=0, dtype=np.float64)
    with pytest.raises(fastnn.TrainingDiverged):
        fastnn.fit(ref, X, y * 1e3, "mse", fastnn.SGD(lr=1e3, momentum=0.9), epochs=3,
                   batch_size=8, seed=0)
    assert ref.params.tobytes() == model.params.tobytes()

    # closed, or thrown into, before the call ran: the call is dropped for good
    for end in ("close", "throw", "resume"):
        model, opt, steps = start(1e-3)
        before = model.params.copy()
        call = next(steps)
        if end == "close":
            steps.close()
        elif end == "throw":
            with pytest.raises(KeyError):
                steps.throw(KeyError("x"))
        else:
            with pytest.raises(RuntimeError, match="resumed before the epoch it yielded ran"):
                next(steps)
        with pytest.raises(RuntimeError, match="dropped"):
            call.run()
        with pytest.raises(RuntimeError, match="dropped"):
            run_epochs([call], 2)
        assert model.params.tobytes() == before.tobytes() and opt.t == 0


def test_a_fit_of_the_ensemble_inside_its_own_fit_is_refused():
    # a callback (or another thread) fitting the ensemble while its fit runs: the members
    # after the calling one have run an epoch not yet recorded, and a nested fit would
    # train them from stale step counts (Adam's t went backwards).  Refused, clearly; the
    # outer fit is unaffected and equals a fit without the callback; predict is fine.
    X, y = _regression(64)
    seen = []

    def refit(epoch, logs):
        if logs["member"] == 0 and epoch == 1:
            seen.append(ens.predict(X).shape)
            with pytest.raises(RuntimeError, match="already being fitted"):
                ens.fit(X, y, "mse", epochs=1)

    ens = MLPEnsemble([3, 8, 1], n_members=3, seed=0, dtype=np.float64)
    ens.fit(X, y, "mse", fastnn.Adam(lr=1e-2), epochs=3, batch_size=8, callbacks=[refit],
            n_threads=2)
    ref = MLPEnsemble([3, 8, 1], n_members=3, seed=0, dtype=np.float64)
    ref.fit(X, y, "mse", fastnn.Adam(lr=1e-2), epochs=3, batch_size=8, n_threads=1)
    assert seen == [(64, 1)]
    for a, b, oa, ob in zip(ens.members, ref.members, ens.optimizers_, ref.optimizers_):
        assert a.params.tobytes() == b.params.tobytes() and oa.t == ob.t == 24
    ens.fit(X, y, "mse", epochs=1, batch_size=8)   # free again afterwards
    assert all(opt.t == 32 for opt in ens.optimizers_)
    # a copy taken in a callback (a checkpoint) is an ensemble of its own, free to fit
    import copy
    import pickle
    copies = []
    ens.fit(X, y, "mse", epochs=1, batch_size=8,
            callbacks=[lambda epoch, logs: copies.extend(
                [copy.deepcopy(ens), pickle.loads(pickle.dumps(ens))])])
    for other in copies[-2:]:
        other.fit(X, y, "mse", epochs=1, batch_size=8)


@pytest.mark.parametrize("bootstrap", [False, True])
def test_a_sparse_x_trains_and_predicts_each_member_as_its_lone_sparse_fit(bootstrap):
    # a scipy.sparse X (any format) stays sparse, converted once for all members: each
    # member equals its lone fastnn.fit on the sparse rows, bitwise; predictions equal the
    # dense X's; the derivatives, which need a dense X, say so
    import scipy.sparse as sp
    rng = np.random.default_rng(0)
    X = sp.random(120, 10, density=0.2, format="csc", random_state=0)
    y = rng.standard_normal((120, 1))
    ens = MLPEnsemble([10, 8, 1], n_members=3, seed=0, dtype=np.float64, bootstrap=bootstrap)
    ens.fit(X, y, "mse", fastnn.Adam(lr=0.01), epochs=3, batch_size=16, n_threads=2)
    for k, member in enumerate(ens.members):
        rows = ens.bootstrap_indices(k, 120) if bootstrap else np.arange(120)
        ref = fastnn.MLP([10, 8, 1], seed=ens.member_seeds[k], dtype=np.float64)
        fastnn.fit(ref, X.tocsr()[rows], y[rows], "mse", fastnn.Adam(lr=0.01), epochs=3,
                   batch_size=16, seed=ens.member_seeds[k], n_threads=1)
        assert ref.params.tobytes() == member.params.tobytes()
    np.testing.assert_allclose(ens.predict(X), ens.predict(X.toarray()), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ens.predict_std(X), ens.predict_std(X.toarray()), rtol=1e-10,
                               atol=1e-12)
    with pytest.raises(TypeError, match="X is a scipy.sparse csc_matrix; jacobian needs a "
                                        "dense X"):
        ens.jacobian(X)
    with pytest.raises(ValueError, match="X has 9 features"):
        ens.fit(X[:, :9], y, "mse", epochs=1)


def test_train_epochs_thread_counts_beyond_a_c_int_are_capped_or_named():
    from fastnn._core import _epoch
    steps, call = _first_epoch_of_a_run(epochs=1)
    for bad in (True, 2.0, "2", 0):   # (the compiled job itself, below the boundary)
        with pytest.raises(ValueError, match=r"n_threads=.*expected an int >= 1"):
            _epoch.train_epochs([call._call], bad)
    assert _epoch.train_epochs([call._call], 2 ** 40) is None and call.ran
    steps.close()


def test_bootstrap_with_one_positive_weight_trains_every_member():
    # one row of positive weight in 30: a member's resample misses it with probability
    # (29/30)^30 = 0.36, and the fit failed with "sample_weight is all zeros" on valid input
    X, y = _regression(30)
    w = np.zeros(30)
    w[7] = 2.0
    ens = MLPEnsemble([3, 8, 1], n_members=6, seed=0, bootstrap=True)
    # (a resample is the draw, sorted: bootstrap_draw)
    first = [np.sort(np.random.default_rng([s, 0xB007]).integers(0, 30, 30))
             for s in ens.member_seeds]
    assert any(7 not in rows for rows in first)   # the case this test is about
    ens.fit(X, y, "mse", fastnn.SGD(lr=0.01), sample_weight=w, epochs=2)
    for k in range(6):
        rows = ens.bootstrap_indices(k, 30, w)
        assert 7 in rows
        if 7 in first[k]:   # a valid first draw is kept
            np.testing.assert_array_equal(rows, first[k])
        # each member is its lone fit on the resample it drew
        lone = _lone_member(ens, k, X, y, "mse", fastnn.SGD(lr=0.01), sample_weight=w,
                            epochs=2)
        np.testing.assert_array_equal(ens.members[k].params, lone.params)
    # without zero weights the resamples are the first draws, as before
    for k in range(6):
        np.testing.assert_array_equal(ens.bootstrap_indices(k, 30, np.ones(30)), first[k])
        np.testing.assert_array_equal(ens.bootstrap_indices(k, 30), first[k])


def test_bootstrap_without_any_positive_weight_is_the_fits_own_error():
    X, y = _regression(30)
    ens = MLPEnsemble([3, 8, 1], n_members=2, seed=0, bootstrap=True)
    with pytest.raises(ValueError, match="sample_weight is all zeros"):
        ens.fit(X, y, "mse", sample_weight=np.zeros(30), epochs=1)


@pytest.mark.parametrize("optimizer", [None, "sgd"])
def test_a_refused_fit_leaves_the_optimizers_and_histories_of_the_last_fit(optimizer):
    # the fit installed fresh optimizers and emptied histories_ before checking the
    # members' runs: a refused fit lost the state a later fit continues from
    X, y = _regression(40)
    ens = MLPEnsemble([3, 8, 1], n_members=3, seed=0)
    ens.fit(X, y, "mse", fastnn.Adam(lr=0.01), epochs=2)
    optimizers, histories = list(ens.optimizers_), list(ens.histories_)
    steps = [opt.t for opt in optimizers]
    params = [m.params.copy() for m in ens.members]
    with pytest.raises(ValueError, match="sample_weight"):   # refused by each member's run
        ens.fit(X, y, "mse", optimizer, epochs=2, sample_weight=np.zeros(40))
    assert all(a is b for a, b in zip(ens.optimizers_, optimizers))
    assert all(a is b for a, b in zip(ens.histories_, histories))
    assert [opt.t for opt in ens.optimizers_] == steps
    for member, before in zip(ens.members, params):
        np.testing.assert_array_equal(member.params, before)
    # and the next fit continues the first one, as a second fit of one model does
    ens.fit(X, y, "mse", epochs=1)
    assert all(a is b for a, b in zip(ens.optimizers_, optimizers))
    assert [opt.t for opt in ens.optimizers_] == [t + 2 for t in steps]  # 40 rows, batch 32


def test_a_member_refused_after_others_were_checked_leaves_their_records(monkeypatch):
    # each member's check attaches its early-stopping record to its (continuing) optimizer;
    # when a later member was refused, the members checked before kept the new records
    import fastnn.ensemble as ensemble_module
    X, y = _regression(60)
    ens = MLPEnsemble([3, 8, 1], n_members=3, seed=0)
    ens.fit(X, y, "mse", fastnn.Adam(lr=0.01), epochs=2, validation_split=0.2,
            early_stopping=fastnn.EarlyStopping(patience=3))
    records = [opt._early_stopping for opt in ens.optimizers_]
    states = [dict(vars(r)) for r in records]
    real, calls = ensemble_module.prepare_run, []

    def refuse_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("member refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(ensemble_module, "prepare_run", refuse_the_third)
    with pytest.raises(ValueError, match="member refused"):
        ens.fit(X, y, "mse", epochs=2, validation_split=0.2,
                early_stopping=fastnn.EarlyStopping(patience=5))
    assert [opt._early_stopping for opt in ens.optimizers_] == records
    for record, state in zip(records, states):
        assert vars(record).keys() == state.keys()
        for key, value in state.items():
            assert vars(record)[key] is value or np.array_equal(vars(record)[key], value)
