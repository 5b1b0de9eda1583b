"""fit: the compiled epoch loop against a plain NumPy reimplementation, and its behaviour."""
import os
import signal
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn._core import _reference as ref
from fastnn.datasets import make_regression, make_spirals, train_test_split
from fastnn.nn.losses import BinaryCrossEntropy, CrossEntropy, GaussianNLL, MSE
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import (SGD, Adam, AdamW, Constant, Cosine, InverseScaling,
                                     ReduceOnPlateau, StepDecay)
from fastnn.training.trainer import EarlyStopping, TrainingDiverged, fit


def _spec(model):
    return (model.layer_sizes, [layer.activation for layer in model.layers],
            [layer._activation_parameter() for layer in model.layers])


def _opt_dict(opt, kind):
    return dict(kind=kind, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov,
                weight_decay=opt.weight_decay, clip_norm=opt.clip_norm, beta1=opt.beta1,
                beta2=opt.beta2, eps=opt.eps)


OPTIMIZERS = {
    "sgd": lambda: SGD(lr=0.1),
    "momentum": lambda: SGD(lr=0.05, momentum=0.9),
    "nesterov": lambda: SGD(lr=0.05, momentum=0.9, nesterov=True),
    "weight-decay": lambda: SGD(lr=0.05, momentum=0.5, weight_decay=0.01),
    "clipping": lambda: SGD(lr=0.5, clip_norm=0.05),
    "adam": lambda: Adam(lr=0.01, weight_decay=0.001),
    "adam-clipped": lambda: Adam(lr=0.01, clip_norm=0.1),
    "adamw-clipped": lambda: AdamW(lr=0.01, weight_decay=0.1, clip_norm=0.1),
}


def _kind(opt):
    """The reference's name of an optimizer (fastnn._core._reference.optimizer_step)."""
    return {SGD: "sgd", Adam: "adam", AdamW: "adamw"}[type(opt)]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_compiled_loop_equals_numpy_reference_in_float64(name):
    # 103 samples in batches of 16: six full batches and a last one of 7
    rng = np.random.default_rng(0)
    X = rng.standard_normal((103, 5))
    labels = rng.integers(0, 4, 103)
    model = MLP([5, 8, 6, 4], activation=["tanh", "relu"], dtype=np.float64, seed=1,
                bias_init=0.1)
    start = model.get_flat_params()
    opt = OPTIMIZERS[name]()
    fit(model, X, labels, "cross_entropy", opt, epochs=4, batch_size=16, seed=3)
    want = ref.train(start, *_spec(model), X, 4,
                     _opt_dict(opt, _kind(opt)),
                     epochs=4, batch_size=16, seed=3, labels=labels)
    np.testing.assert_allclose(model.params, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss, kind, target", [
    (MSE(), 0, "values"), (GaussianNLL(sigma=0.5, full=True), 1, "values"),
    (BinaryCrossEntropy(), 3, "binary"), (CrossEntropy(), 4, "probabilities"),
    (GaussianNLL(sigma="learned"), 2, "values"),
], ids=["mse", "gaussian", "bce", "ce-probabilities", "learned-variance"])
def test_every_loss_trains_like_the_reference_with_sample_weights(loss, kind, target):
    rng = np.random.default_rng(4)
    n, n_targets = 50, 2
    X = rng.standard_normal((n, 3))
    if target == "values":
        Y = rng.standard_normal((n, n_targets))
    elif target == "binary":
        Y = (rng.random((n, n_targets)) < 0.5).astype(float)
    else:
        Y = rng.dirichlet(np.ones(n_targets), n)
    sw = rng.uniform(0.0, 2.0, n)
    sw[:7] = 0.0  # a zero-weight minibatch (rows 0..6 after a no-shuffle split) is skipped
    n_out = loss.n_outputs(n_targets)
    model = MLP([3, 7, n_out], activation="sigmoid", dtype=np.float64, seed=2)
    start = model.get_flat_params()
    opt = SGD(lr=0.05, momentum=0.9)
    fit(model, X, Y, loss, opt, epochs=3, batch_size=7, shuffle=False, sample_weight=sw,
        drop_last=True)
    want = ref.train(start, *_spec(model), X, kind, _opt_dict(opt, "sgd"), epochs=3,
                     batch_size=7, seed=None, Y=Y, sample_weight=sw,
                     sigma=None if kind != 1 else np.full(n, 0.5), full=loss.full,
                     shuffle=False, drop_last=True)
    np.testing.assert_allclose(model.params, want, rtol=1e-10, atol=1e-12)


def test_per_sample_sigma_is_gathered_with_its_rows():
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((40, 2)), rng.standard_normal((40, 1))
    sigma = rng.uniform(0.5, 2.0, 40)
    model = MLP([2, 5, 1], dtype=np.float64, seed=0)
    start = model.get_flat_params()
    fit(model, X, Y, GaussianNLL(sigma=sigma), SGD(lr=0.05), epochs=3, batch_size=8, seed=9)
    want = ref.train(start, *_spec(model), X, 1, _opt_dict(SGD(lr=0.05), "sgd"), epochs=3,
                     batch_size=8, seed=9, Y=Y, sigma=sigma)
    np.testing.assert_allclose(model.params, want, rtol=1e-10, atol=1e-12)


def test_schedules_give_the_documented_sequences():
    lr = 0.1
    assert [Constant().lr(e, lr) for e in range(3)] == [0.1, 0.1, 0.1]
    assert np.allclose([StepDecay(2, 0.5).lr(e, lr) for e in range(5)],
                       [0.1, 0.1, 0.05, 0.05, 0.025])
    assert np.allclose([InverseScaling(0.5).lr(e, lr) for e in range(3)],
                       [0.1, 0.1 / np.sqrt(2), 0.1 / np.sqrt(3)])
    assert np.allclose([Cosine(4, min_lr=0.02).lr(e, lr) for e in range(6)],
                       [0.1, 0.02 + 0.08 * (1 + np.cos(np.pi / 4)) / 2, 0.06,
                        0.02 + 0.08 * (1 + np.cos(3 * np.pi / 4)) / 2, 0.02, 0.02])
    plateau = ReduceOnPlateau(factor=0.2, patience=2, min_delta=0.01)
    seen = []
    for e, value in enumerate([1.0, 0.5, 0.495, 0.494, 0.3, 0.3, 0.3, 0.3]):
        seen.append(plateau.lr(e, lr))
        plateau.on_epoch_end(e, value)
    # no improvement > 0.01 after epochs 2 and 3 -> divided by 5 from epoch 4; again after 6
    assert np.allclose(seen, [0.1, 0.1, 0.1, 0.1, 0.02, 0.02, 0.02, 0.004])


def test_the_schedule_reaches_the_compiled_loop():
    rng = np.random.default_rng(0)
    X, labels = rng.standard_normal((30, 3)), rng.integers(0, 2, 30)
    model = MLP([3, 4, 2], dtype=np.float64, seed=0)
    start = model.get_flat_params()
    opt = SGD(lr=0.2, schedule=StepDecay(1, 0.5))
    history = fit(model, X, labels, "cross_entropy", opt, epochs=3, batch_size=10, seed=1)
    assert history.lr == [0.2, 0.1, 0.05]
    want = ref.train(start, *_spec(model), X, 4, _opt_dict(opt, "sgd"), epochs=3,
                     batch_size=10, seed=1, labels=labels, lrs=[0.2, 0.1, 0.05])
    np.testing.assert_allclose(model.params, want, rtol=1e-10, atol=1e-12)


def test_spirals_reach_95_percent_training_accuracy():
    X, y = make_spirals(1500, n_classes=3, seed=0)
    model = MLP([2, 64, 64, 3], seed=0)
    fit(model, X, y, "cross_entropy", Adam(lr=0.01), epochs=60, batch_size=32, seed=0)
    assert np.mean(model.predict(X).argmax(axis=1) == y) >= 0.95


def test_digits_reach_95_percent_test_accuracy():
    datasets = pytest.importorskip("sklearn.datasets")  # scikit-learn is in the test extra
    digits = datasets.load_digits()
    X_train, X_test, y_train, y_test = train_test_split(digits.data / 16.0, digits.target,
                                                        0.25, seed=0)
    model = MLP([64, 64, 10], seed=0)
    fit(model, X_train, y_train, "cross_entropy", SGD(lr=0.1, momentum=0.9), epochs=40,
        batch_size=32, seed=0)
    assert np.mean(model.predict(X_test).argmax(axis=1) == y_test) >= 0.95


def test_smooth_regression_reaches_r2_of_0_95():
    X, y = make_regression(4000, n_features=8, noise=0.05, seed=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, 0.25, seed=0)
    model = MLP([8, 64, 64, 1], activation="tanh", seed=0)
    fit(model, X_train, y_train, "mse", Adam(lr=3e-3), epochs=100, batch_size=64, seed=0)
    pred = model.predict(X_test)[:, 0]
    r2 = 1 - np.sum((y_test - pred) ** 2) / np.sum((y_test - y_test.mean()) ** 2)
    assert r2 >= 0.95, r2


def test_validation_split_reports_loss_and_metric_per_epoch():
    X, y = make_spirals(600, n_classes=3, seed=1)
    model = MLP([2, 32, 3], seed=0)
    history = fit(model, X, y, "cross_entropy", Adam(lr=0.01), epochs=5, seed=0,
                  validation_split=0.25)
    assert len(history) == 5 and history.metric_name == "accuracy"
    assert all(v is not None and 0 <= m <= 1
               for v, m in zip(history.val_loss, history.val_metric))
    assert all(s > 0 for s in history.samples_per_s) and all(t > 0 for t in history.time)
    assert model.history_ is history


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_weights():
    # Validation targets are the negation of the training targets: as training improves the
    # training loss, the validation loss gets worse from the first epoch on, so the best
    # validation epoch is the first (epochs are numbered from 1) and, with patience 2, training
    # stops after epoch 3.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    model = MLP([3, 1], dtype=np.float64, seed=0)
    saved = []
    history = fit(model, X, y, "mse", SGD(lr=0.05), epochs=20, batch_size=8, seed=0,
                  validation_data=(X, -y), early_stopping=EarlyStopping(patience=2),
                  callbacks=[lambda epoch, logs: saved.append(model.get_flat_params())])
    assert history.epoch == [1, 2, 3]
    assert history.stopped_early and history.best_epoch == 1
    assert np.all(np.diff(history.val_loss) > 0)
    np.testing.assert_array_equal(model.params, saved[0])


def test_callbacks_can_stop_training():
    X, y = make_spirals(200, seed=0)
    model = MLP([2, 8, 3], seed=0)
    history = fit(model, X, y, "cross_entropy", epochs=50,
                  callbacks=[lambda epoch, logs: epoch == 4])  # epochs are numbered from 1
    assert len(history) == 4


def test_same_seed_gives_bitwise_identical_weights():
    X, y = make_spirals(500, seed=0)
    runs = []
    for _ in range(2):
        model = MLP([2, 16, 16, 3], seed=4)
        fit(model, X, y, "cross_entropy", Adam(lr=0.01), epochs=5, seed=11)
        runs.append(model.params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    other = MLP([2, 16, 16, 3], seed=4)
    fit(other, X, y, "cross_entropy", Adam(lr=0.01), epochs=5, seed=12)
    assert not np.array_equal(other.params, runs[0])


def test_divergence_stops_with_a_clear_error_and_keeps_finite_weights():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4)) * 100
    y = rng.standard_normal(200) * 1e3
    model = MLP([4, 32, 1], seed=0)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at epoch \d+, step \d+ "
                                               r"\(lr=1e\+06\)") as info:
        fit(model, X, y, "mse", SGD(lr=1e6), epochs=50, batch_size=10, seed=0)
    assert np.isfinite(model.params).all()
    assert isinstance(info.value.history, fastnn.training.trainer.History)


def test_exception_in_a_callback_leaves_the_model_usable():
    X, y = make_spirals(200, seed=0)
    model = MLP([2, 8, 3], seed=0)

    def boom(epoch, logs):
        if epoch == 2:  # epochs are numbered from 1
            raise RuntimeError("user callback failed")

    with pytest.raises(RuntimeError, match="user callback failed"):
        fit(model, X, y, "cross_entropy", epochs=5, callbacks=[boom])
    assert len(model.history_) == 2 and np.isfinite(model.params).all()
    fit(model, X, y, "cross_entropy", epochs=1)  # still trains


def test_ctrl_c_stops_after_the_current_minibatch_and_keeps_history():
    X = np.random.default_rng(0).standard_normal((20000, 32))
    y = np.random.default_rng(1).integers(0, 10, 20000)
    model = MLP([32, 256, 256, 10], seed=0)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(model, X, y, "cross_entropy", epochs=10_000, batch_size=16, seed=0)
    finally:
        timer.cancel()
    assert time.perf_counter() - start < 30
    assert np.isfinite(model.params).all()
    assert isinstance(model.history_, fastnn.training.trainer.History)
    fit(model, X[:100], y[:100], "cross_entropy", epochs=1)  # consistent and usable


def test_fit_releases_the_gil():
    # 40000 rows, so that one epoch lasts tens of ms (4000 rows had become ~3 ms, too short
    # for the ticks below to tell a released GIL from a held one)
    X = np.random.default_rng(0).standard_normal((40000, 64)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, 40000)
    model = MLP([64, 128, 10], seed=0)
    done = threading.Event()
    ticks = 0

    def train():
        fit(model, X, y, "cross_entropy", epochs=3, batch_size=8, seed=0)
        done.set()

    worker = threading.Thread(target=train)
    worker.start()
    while not done.is_set():  # this loop needs the GIL; it runs while the epoch runs
        ticks += 1
        time.sleep(0.001)
    worker.join()
    # one epoch call takes far longer than a few ms; with the GIL held we would see ~0 ticks
    assert ticks > 10, ticks


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(epochs=0), ValueError, "epochs=0; expected epochs >= 1"),
    (dict(batch_size=0), ValueError, "batch_size=0; expected batch_size >= 1"),
    (dict(validation_split=1.0), ValueError, "validation_split=1.0; expected"),
    (dict(validation_split=0.001), ValueError, "leaves 40 training and 0 validation"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer='rmsprop' is not supported"),
    (dict(optimizer=SGD(lr=0.1), early_stopping="yes"), TypeError, "early_stopping must be"),
    (dict(callbacks=[1]), TypeError, "callbacks must be callables"),
    (dict(validation_data=(np.zeros((3, 2)),)), ValueError, "validation_data must be"),
], ids=["epochs", "batch", "split-high", "split-empty", "optimizer", "early", "callback",
        "valdata"])
def test_bad_fit_arguments_are_rejected_before_training(kwargs, exc, match):
    X, y = make_spirals(40, seed=0)
    model = MLP([2, 4, 3], seed=0)
    before = model.get_flat_params()
    with pytest.raises(exc, match=match):
        fit(model, X, y, "cross_entropy", **kwargs)
    np.testing.assert_array_equal(model.params, before)


def test_bad_data_is_rejected_before_training():
    X, y = make_spirals(40, seed=0)
    model = MLP([2, 4, 3], seed=0)
    with pytest.raises(ValueError, match="X has 40 samples but y has 39"):
        fit(model, X, y[:-1], "cross_entropy")
    X_bad = X.copy()
    X_bad[3, 0] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        fit(model, X_bad, y, "cross_entropy")
    with pytest.raises(ValueError, match="lr=0.0; expected lr > 0"):
        SGD(lr=0.0)
    with pytest.raises(ValueError, match="drop_last=True with batch_size=40 > n_samples"):
        fit(model, X[:30], y[:30], "cross_entropy", batch_size=40, drop_last=True)


def test_batch_larger_than_the_data_is_one_full_batch():
    rng = np.random.default_rng(0)
    X, labels = rng.standard_normal((12, 3)), rng.integers(0, 2, 12)
    model = MLP([3, 2], dtype=np.float64, seed=0)
    start = model.get_flat_params()
    fit(model, X, labels, "cross_entropy", SGD(lr=0.1), epochs=2, batch_size=1000, seed=0)
    want = ref.train(start, *_spec(model), X, 4, _opt_dict(SGD(lr=0.1), "sgd"), epochs=2,
                     batch_size=12, seed=0, labels=labels)
    np.testing.assert_allclose(model.params, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("beta2", [0.999, 0.99])
def test_float32_adam_first_step_matches_float64_to_float32_rounding(beta2):
    # Adam's first step is lr * g / (|g| + eps * sqrt(1 - beta2)) per weight: float32 must
    # give float64's step to a few ulp; 1 - beta2 rounded in float32 (1 - 0.999f =
    # 0.0010000467) biased every second moment, and this step, by 2.3e-5 relative
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5))
    y = X @ rng.standard_normal(5)
    steps = {}
    for dtype in (np.float64, np.float32):
        model = fastnn.MLP([5, 1], activation="identity", dtype=np.float64, seed=0).astype(dtype)
        before = model.params.astype(np.float64)
        fastnn.fit(model, X.astype(dtype), y.astype(dtype)[:, None], "mse",
                   fastnn.Adam(lr=0.01, beta2=beta2, eps=1e-12), epochs=1, batch_size=64,
                   shuffle=False)
        steps[dtype] = model.params.astype(np.float64) - before
    np.testing.assert_allclose(steps[np.float32], steps[np.float64], rtol=1e-6)


@pytest.mark.parametrize("dtype, factor", [(np.float32, 1e-10), (np.float64, 1e-100)])
def test_a_plateau_schedule_that_decays_below_the_normal_range_stops_the_fit(dtype, factor):
    # ReduceOnPlateau multiplies the rate on every plateau: with a tiny factor it fell to
    # 1e-41 (float32) and then exactly 0, where every step is flushed and the fit went on
    # training nothing, silently.  It now stops before such an epoch, with a warning
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)), rng.integers(0, 2, size=64)
    model = MLP([4, 2], dtype=dtype, seed=0)
    opt = SGD(lr=0.1, schedule=ReduceOnPlateau(factor=factor, patience=1, min_delta=10))
    with pytest.warns(RuntimeWarning, match="smallest normal number.*training stopped after"):
        history = model.fit(X, y, "cross_entropy", opt, epochs=40, seed=0)
    tiny = np.finfo(dtype).tiny
    assert 0 < len(history) < 40
    assert min(history.lr) >= tiny
    assert opt.lr_at(opt.completed_epochs) < tiny   # the epoch it refused
    assert opt.completed_epochs == len(history)


def test_cosine_rates_are_finite_for_a_base_near_the_float64_limit_and_exact_at_the_end():
    # (base - min) * (1 + cos) overflowed for a base near 1e308; 1 + cos cancelled to 0 on
    # the last epochs of a long schedule, where the rate is small but not 0
    import math
    sched = Cosine(5)
    for epoch in range(5):
        want = 0.5 * (1 + math.cos(math.pi * epoch / 5))
        assert sched.lr(epoch, 1.5e308) == pytest.approx(1.5e308 * want, rel=1e-15)
    long = Cosine(10**9)
    last = long.lr(10**9 - 1, 1.0)
    exact = math.sin(math.pi / 2 / 10**9) ** 2          # (1 + cos(pi - d)) / 2 = sin^2(d/2)
    assert last == pytest.approx(exact, rel=1e-12) and last > 0
    # the short schedules keep their rates bit for bit
    assert [Cosine(3).lr(e, 0.1) for e in range(3)] == \
        [0.1 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]


def test_an_epoch_count_past_what_the_compiled_epoch_counts_is_refused_before_training():
    # the compiled epoch takes its index as 32 bits: a count near 2**32 (a crafted file, a
    # callback) failed after 2 epochs with a bare OverflowError
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 3)), rng.integers(0, 2, size=16)
    model, opt = MLP([3, 2], seed=0), SGD(lr=0.1)
    opt.completed_epochs = 2**32 - 3
    before = model.params.copy()
    with pytest.raises(ValueError, match=r"epochs=3 after completed_epochs=4294967293"):
        model.fit(X, y, "cross_entropy", opt, epochs=3)
    np.testing.assert_array_equal(model.params, before)
    opt.completed_epochs = 2**40
    with pytest.raises(ValueError, match="completed_epochs"):
        model.fit(X, y, "cross_entropy", opt, epochs=1)
    opt.completed_epochs = 2**32 - 3
    model.fit(X, y, "cross_entropy", opt, epochs=2)    # up to the limit: trains
    assert opt.completed_epochs == 2**32 - 1
