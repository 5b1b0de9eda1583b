"""Epochs run several to a compiled call give the run one epoch per call gives, bit for bit.

A fit with nothing to do between its epochs (fastnn.training.engine._nothing_between_epochs)
runs short epochs in groups (``EpochCall.run_group``: the sample order, the snapshots, the
rate and the dropout key of each epoch set in C).  The reference is the same fit with groups
of one epoch (``GROUP_EPOCHS = 1``): parameters, optimizer state and counters, the History,
warnings and errors must be equal, over every kind of row source, optimizer, schedule,
dropout, and the ways a run ends early (divergence, Ctrl-C).
"""
import signal
import threading

import numpy as np
import pytest
import scipy.sparse as sp

import fastnn
from fastnn import MLP, fit
from fastnn.optim.optimizers import SGD, Adam, AdamW, Constant, Cosine, InverseScaling, \
    ReduceOnPlateau, StepDecay
from fastnn.runtime import boundary
from fastnn.training import engine

SCHEDULES = {
    "constant": Constant,
    "step": lambda: StepDecay(step_size=3, gamma=0.5),
    "invscaling": lambda: InverseScaling(power=0.5),
    "cosine": lambda: Cosine(total_epochs=9, min_lr=0.001),
}
OPTIMIZERS = {
    "sgd": lambda s: SGD(lr=0.1, schedule=s),
    "nesterov": lambda s: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3,
                              clip_norm=1.0, schedule=s),
    "adam": lambda s: Adam(lr=0.01, schedule=s),
    "adamw": lambda s: AdamW(lr=0.01, weight_decay=0.01, schedule=s),
}


@pytest.fixture
def groups(monkeypatch):
    """Count the grouped calls; groups as large as the run allows (a long GROUP_SECONDS)."""
    seen = []
    original = boundary.Epoch.group

    def group(self, rates, *args):
        seen.append(len(rates))
        return original(self, rates, *args)

    monkeypatch.setattr(boundary.Epoch, "group", group)
    monkeypatch.setattr(engine, "GROUP_SECONDS", 60.0)
    return seen


def _data(n=60, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5)).astype(dtype)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1)
    return X, y


def _outcome(model, opt):
    h = model.history_
    state = [None if s is None else s.copy() for s in opt.state]
    return (model.params.copy(), state, opt.t, opt.completed_epochs, list(h.epoch),
            list(h.loss), list(h.lr))


def _assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    for s, t in zip(a[1], b[1]):
        assert (s is None) == (t is None)
        if s is not None:
            np.testing.assert_array_equal(s, t)
    assert a[2:] == b[2:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_groups_keep_the_bits(groups, monkeypatch, dtype, shuffle, opt_name, schedule):
    X, y = _data(dtype=dtype)

    def run():
        model = MLP([5, 8, 3], activation="tanh", dtype=dtype, seed=0)
        opt = OPTIMIZERS[opt_name](SCHEDULES[schedule]())
        fit(model, X, y, "cross_entropy", opt, epochs=5, batch_size=16, shuffle=shuffle,
            seed=3)
        fit(model, X, y, "cross_entropy", opt, epochs=4, batch_size=16, shuffle=shuffle,
            seed=3)   # a continued run: groups start at epoch 6
        return _outcome(model, opt)

    grouped = run()
    assert groups and max(groups) > 1     # (the first epoch of each fit runs alone)
    monkeypatch.setattr(engine, "GROUP_EPOCHS", 1)
    _assert_same(grouped, run())


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("source", ["dense", "csr", "weights", "drop_last", "dropout",
                                    "mse", "big_seed"])
def test_groups_keep_the_bits_for_every_source(groups, monkeypatch, source, n_threads):
    X, y = _data(n=70)
    kwargs = dict(epochs=8, batch_size=16, seed=11, n_threads=n_threads)
    loss, sizes, model_kw = "cross_entropy", [5, 8, 3], {}
    if source == "csr":
        X = sp.csr_matrix(np.where(np.abs(X) > 0.7, X, 0.0))
    if source == "weights":
        kwargs["sample_weight"] = np.random.default_rng(1).uniform(0.1, 2.0, len(y))
    if source == "drop_last":
        kwargs["drop_last"] = True
    if source == "dropout":
        model_kw["dropout"] = 0.3
    if source == "mse":
        loss, sizes, y = "mse", [5, 8, 2], np.stack([X[:, 0], X[:, 1] * X[:, 2]], 1)
    if source == "big_seed":
        kwargs["seed"] = 2 ** 70 + 5      # a key of three 32-bit words

    def run():
        model = MLP(sizes, activation="relu", seed=0, **model_kw)
        opt = SGD(lr=0.05, momentum=0.5)
        fit(model, X, y, loss, opt, **kwargs)
        return _outcome(model, opt)

    grouped = run()
    assert groups and max(groups) > 1
    monkeypatch.setattr(engine, "GROUP_EPOCHS", 1)
    _assert_same(grouped, run())


@pytest.mark.parametrize("what", ["validation", "early_stopping", "callback", "verbose",
                                  "plateau", "user_schedule"])
def test_no_groups_when_something_happens_between_epochs(groups, what, capsys):
    X, y = _data()
    kwargs, opt = dict(epochs=6, batch_size=16), SGD(lr=0.05)
    if what == "validation":
        kwargs["validation_split"] = 0.2
    if what == "early_stopping":
        kwargs["early_stopping"] = 3
    if what == "callback":
        kwargs["callbacks"] = [lambda epoch, logs: None]
    if what == "verbose":
        kwargs["verbose"] = 1
    if what == "plateau":
        opt = SGD(lr=0.05, schedule=ReduceOnPlateau(patience=1))
    if what == "user_schedule":
        class Halving(StepDecay):          # a subclass may keep state in lr()
            def lr(self, epoch, base_lr):
                return base_lr / (1 + epoch)
        opt = SGD(lr=0.05, schedule=Halving(step_size=1, gamma=0.5))
    model = MLP([5, 8, 3], seed=0)
    fit(model, X, y, "cross_entropy", opt, **kwargs)
    assert groups == []
    assert len(model.history_) == 6


@pytest.mark.parametrize("lr, momentum", [
    (0.02, 0.9),      # the loss, at epoch 8, step 4: the group's snapshot is put back
    (0.05, 0.9),      # the loss at epoch 3, step 1: the epoch before's start (previous)
    (0.08, 0.9),      # the weights after epoch 2's last step: the group stops after it
    (0.06, 0.0),
])
def test_divergence_inside_a_group_is_reported_as_alone(groups, monkeypatch, lr, momentum):
    """The epoch that diverges is named, earlier epochs of its group are recorded, and the
    model falls back to the same parameters."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((64, 4))
    y = X @ rng.standard_normal((4, 1)) * 10

    def run():
        model = MLP([4, 16, 1], activation="relu", seed=0)
        opt = SGD(lr=lr, momentum=momentum)
        with pytest.raises(fastnn.TrainingDiverged) as info:
            fit(model, X, y, "mse", opt, epochs=200, batch_size=16)
        return _outcome(model, opt), str(info.value)

    grouped, message = run()
    assert groups and max(groups) > 1
    monkeypatch.setattr(engine, "GROUP_EPOCHS", 1)
    single, message_single = run()
    _assert_same(grouped, single)
    assert message == message_single


def test_ctrl_c_inside_a_group_keeps_a_consistent_run(groups):
    """An interrupt during a group: the epochs before it recorded, the model and optimizer
    consistent (a continued fit runs), KeyboardInterrupt raised."""
    X, y = _data(n=20000)
    model = MLP([5, 64, 3], seed=0)
    opt = SGD(lr=0.01, momentum=0.9)
    stop = threading.Event()

    def interrupt():      # Ctrl-C 0.3 s in, and again every 2 s while the fit runs on
        wait = 0.3
        while not stop.wait(wait):
            signal.raise_signal(signal.SIGINT)
            wait = 2.0

    thread = threading.Thread(target=interrupt)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(model, X, y, "cross_entropy", opt, epochs=100000, batch_size=2000)
    finally:
        stop.set()
        thread.join()
    assert groups
    assert opt.completed_epochs == len(model.history_) >= 1
    assert np.isfinite(model.params).all()
    done = opt.completed_epochs
    fit(model, X, y, "cross_entropy", opt, epochs=2, batch_size=2000)
    assert opt.completed_epochs == done + 2 and len(model.history_) == 2


def _losses_kind():
    from fastnn.nn.losses import get_loss
    return get_loss("cross_entropy").kind


def _prepare(model, order, lr=0.05, epoch=0, t0=0):
    """A prepared epoch of `model` (5 inputs, 3 classes) over _data's rows in `order`."""
    from fastnn._core import _epoch, _sgd
    from tests._helpers import epoch_call_kwargs
    spec, batch, dtype = model._spec, 16, model.dtype
    X, y = _data(n=order.shape[0], dtype=dtype)
    flat = dict(spec=spec, params=model.params, grads=model.grads, X=X,
                labels=y.astype(np.intp), order=order, batch_size=batch, drop_last=False,
                loss_kind=_losses_kind(), loss_full=0, sigma_scalar=1.0,
                opt_kind=_sgd.OPT_SGD, lr=lr, momentum=0.0, nesterov=False, weight_decay=0.0,
                clip_norm=0.0, beta1=0.9, beta2=0.999, eps=1e-8, epoch=epoch, t0=t0,
                acts=np.empty(batch * spec.act_width, dtype),
                delta0=np.empty(batch * spec.max_width, dtype),
                delta1=np.empty(batch * spec.max_width, dtype),
                X_batch=np.empty((batch, 5), dtype), labels_batch=np.empty(batch, np.intp))
    return _epoch.prepare_epoch(**epoch_call_kwargs(flat))


def _group_setup(n=40, epoch=0):
    model = MLP([5, 8, 3], dtype=np.float32, seed=0)
    order = np.arange(n, dtype=np.intp)
    copies = dict(previous=np.empty_like(model.params), snapshot=np.empty_like(model.params))
    return _prepare(model, order, epoch=epoch), model, order, copies


def test_run_group_runs_the_epochs_the_engine_would_prepare():
    """Three epochs in one call equal three prepared one by one (each later order from
    epoch_order, the step count carried on), and the copies hold the starting parameters of
    the last two epochs."""
    rates = [0.05, 0.03, 0.02]
    call, model, order, copies = _group_setup()
    call.run_group(rates, (9,), order, copies["previous"], copies["snapshot"])
    assert [result[4] for result, _ in call.results] == [0, 0, 0]
    assert [result[3] for result, _ in call.results] == [3, 6, 9]   # 40 rows, batch 16

    model_1 = MLP([5, 8, 3], dtype=np.float32, seed=0)
    order_1, starts = np.arange(40, dtype=np.intp), []
    for e, lr in enumerate(rates):
        if e:
            engine.epoch_order(order_1, 9, e)
        starts.append(model_1.params.copy())
        result = _prepare(model_1, order_1, lr=lr, epoch=e, t0=3 * e).run()
        assert result[:5] == call.results[e][0][:5]
    np.testing.assert_array_equal(model.params, model_1.params)
    np.testing.assert_array_equal(order, order_1)
    np.testing.assert_array_equal(copies["previous"], starts[1])
    np.testing.assert_array_equal(copies["snapshot"], starts[2])


@pytest.mark.parametrize("bad, match", [
    (dict(rates=[]), "rates is empty"),
    (dict(rates=[0.1, float("nan")]), r"rates\[1\]"),
    (dict(rates=[0.1, -1.0]), r"rates\[1\]"),
    (dict(order="copy"), "the buffer the epoch was prepared with"),
    (dict(order=None), "exactly when"),
    (dict(order_key=None), "exactly when"),
    (dict(previous="short"), "previous has 10 entries"),
    (dict(snapshot="float64"), "dtype mismatch"),
    (dict(snapshot="params"), "snapshot overlaps the epoch's params"),
    (dict(previous="snapshot"), "previous and snapshot overlap"),
    (dict(order_key=(-1,)), "non-negative"),
    (dict(rates=None), "rates is None"),
])
def test_run_group_refuses_what_does_not_fit(bad, match):
    call, model, order, copies = _group_setup()
    args = dict(rates=[0.1, 0.1], order_key=(1,), order=order, **copies)
    replace = {"copy": order.copy(), "short": np.empty(10, np.float32),
               "float64": np.empty(model.n_params, np.float64), "params": model.params,
               "snapshot": copies["snapshot"]}
    args.update({k: replace[v] if isinstance(v, str) else v for k, v in bad.items()})
    before = model.params.copy()
    with pytest.raises((ValueError, TypeError), match=match):
        call.run_group(**args)
    np.testing.assert_array_equal(model.params, before)
    call.run()      # a refused group leaves the epoch to run
    with pytest.raises(RuntimeError, match="already run"):
        call.run_group([0.1], (1,), order, **copies)


def test_run_group_refuses_an_epoch_index_past_32_bits():
    call, model, order, copies = _group_setup(epoch=2 ** 32 - 2)
    with pytest.raises(ValueError, match="epoch index"):
        call.run_group([0.1, 0.1, 0.1], (1,), order, **copies)
    call.run_group([0.1, 0.1], (1,), order, **copies)     # indices 2**32 - 2, 2**32 - 1
    assert len(call.results) == 2


def test_run_group_refuses_an_order_that_shares_memory_with_what_it_reads():
    """The group writes each epoch's order: an order inside the labels (which prepare_epoch
    accepts: both are only read by one epoch) would rewrite them."""
    from fastnn._core import _epoch, _sgd
    from tests._helpers import epoch_call_kwargs
    model = MLP([5, 8, 3], dtype=np.float32, seed=0)
    X, y = _data(n=40, dtype=np.float32)
    store = np.zeros(80, np.intp)
    store[40:] = y
    labels, order = store[40:], store[40:]     # the order is the labels' memory
    spec, batch = model._spec, 16
    flat = dict(spec=spec, params=model.params, grads=model.grads, X=X, labels=labels,
                order=order, batch_size=batch, drop_last=False, loss_kind=_losses_kind(),
                loss_full=0, sigma_scalar=1.0, opt_kind=_sgd.OPT_SGD, lr=0.05, momentum=0.0,
                nesterov=False, weight_decay=0.0, clip_norm=0.0, beta1=0.9, beta2=0.999,
                eps=1e-8, acts=np.empty(batch * spec.act_width, np.float32),
                delta0=np.empty(batch * spec.max_width, np.float32),
                delta1=np.empty(batch * spec.max_width, np.float32),
                X_batch=np.empty((batch, 5), np.float32),
                labels_batch=np.empty(batch, np.intp))
    call = _epoch.prepare_epoch(**epoch_call_kwargs(flat))
    before = store.copy()
    with pytest.raises(ValueError, match="order overlaps the epoch's labels"):
        call.run_group([0.1, 0.1], (1,), order, np.empty_like(model.params),
                       np.empty_like(model.params))
    np.testing.assert_array_equal(store, before)


def test_run_group_keeps_its_copies_exported_and_its_rates_private():
    """Another thread cannot resize a copy's buffer while the group writes it, and a rate
    list that is a view of a copy is read as it was checked."""
    import array
    import time
    call, model, order, copies = _group_setup(n=4000)
    previous = array.array("f", bytes(4 * model.n_params))
    attempts = []

    def resize():
        time.sleep(0.05)
        moment = time.perf_counter()
        try:
            previous.extend([0.0] * 10 ** 6)
            attempts.append((moment, "resized"))
        except BufferError:
            attempts.append((moment, "refused"))

    thread = threading.Thread(target=resize)
    thread.start()
    began = time.perf_counter()
    call.run_group(np.full(400, 0.05), (1,), order, previous, copies["snapshot"])
    ended = time.perf_counter()
    thread.join()
    assert len(call.results) == 400
    (moment, what), = attempts
    assert began < moment < ended, "the group ended before the resize: make it longer"
    assert what == "refused"

    call, model, order, copies = _group_setup()
    rates = copies["snapshot"][:6].view(np.float64)     # the snapshot's memory
    rates[:] = 0.05
    call.run_group(rates, (1,), order, copies["previous"], copies["snapshot"])
    call_ref, model_ref, order_ref, copies_ref = _group_setup()
    call_ref.run_group([0.05, 0.05, 0.05], (1,), order_ref, copies_ref["previous"],
                       copies_ref["snapshot"])
    np.testing.assert_array_equal(model.params, model_ref.params)


def test_ctrl_c_while_a_group_is_recorded_waits_for_the_record(groups, monkeypatch):
    """A SIGINT arriving while the engine records a group's epochs (Python, after the
    compiled call) is raised once the record is complete: the model, the optimizer's counts
    and the History name the same epoch boundary, that of the group's last epoch."""
    from tests._helpers import sigint_during_record
    X, y = _data(n=64)
    restore = sigint_during_record(monkeypatch, 3)   # the third epoch's record, in a group
    model, opt = MLP([5, 8, 3], seed=0), SGD(lr=0.1, momentum=0.9)
    with pytest.raises(KeyboardInterrupt):
        fit(model, X, y, "cross_entropy", opt, epochs=10, batch_size=16, seed=1)
    restore()
    assert max(groups) > 1
    done = opt.completed_epochs
    assert done > 3 and len(model.history_) == done and opt.t == 4 * done
    reference, ref_opt = MLP([5, 8, 3], seed=0), SGD(lr=0.1, momentum=0.9)
    fit(reference, X, y, "cross_entropy", ref_opt, epochs=done, batch_size=16, seed=1)
    np.testing.assert_array_equal(model.params, reference.params)


def test_a_programs_own_sigint_handler_gets_the_held_back_signal(groups, monkeypatch):
    """With a program's own SIGINT handler installed, Ctrl-C during a group's record is
    held back as with Python's default one, then handed to that handler; the handler is
    in place afterwards."""
    from tests._helpers import sigint_during_record
    X, y = _data(n=64)
    calls = []

    def handler(signum, frame):
        calls.append(signum)
        raise KeyboardInterrupt("the program's own")

    restore = sigint_during_record(monkeypatch, 3)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        model, opt = MLP([5, 8, 3], seed=0), SGD(lr=0.1, momentum=0.9)
        with pytest.raises(KeyboardInterrupt, match="the program's own"):
            fit(model, X, y, "cross_entropy", opt, epochs=10, batch_size=16, seed=1)
        assert signal.getsignal(signal.SIGINT) is handler and calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)
    restore()
    done = opt.completed_epochs
    assert done > 3 and len(model.history_) == done and opt.t == 4 * done
    reference, ref_opt = MLP([5, 8, 3], seed=0), SGD(lr=0.1, momentum=0.9)
    fit(reference, X, y, "cross_entropy", ref_opt, epochs=done, batch_size=16, seed=1)
    np.testing.assert_array_equal(model.params, reference.params)
