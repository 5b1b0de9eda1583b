"""The optimizers: each update rule step by step against the NumPy reference and torch.optim;
schedules and gradient clipping where a plain formula overflows but the answer does not.

A schedule whose power is large raised OverflowError (``t ** power`` overflows, ``lr / t **
power`` is a number or 0); the float64 clipping norm summed squares, so gradients above about
1e154 gave an infinite norm and a silently zero step (float32 gradients near 1e38 gave a
clipping factor below float32's smallest normal number, which flushing subnormals made 0: a
zero step too).  The references are closed forms, in exact decimal arithmetic where it
matters, and scipy's BLAS dnrm2 (``scipy.linalg.norm``; NumPy's ``linalg.norm`` sums the
squares, so it overflows too).
"""
from decimal import Decimal, getcontext

import numpy as np
import pytest
import scipy.linalg

import fastnn
from fastnn._core import _sgd
from fastnn.optim.optimizers import SGD, Adam, InverseScaling, StepDecay

getcontext().prec = 50


def _exact(base, t, power):
    """base * t ** power in 50-digit decimal arithmetic, rounded to a float."""
    return float(Decimal(base) * Decimal(t) ** Decimal(power))


@pytest.mark.parametrize("base, power, epoch", [(1.0, 400.0, 9), (1e300, 400.0, 9),
                                                (1e10, 150.0, 99), (1e-3, 400.0, 5),
                                                (2.0, 1e308, 1)])
def test_inverse_scaling_with_a_large_power_is_its_closed_form(base, power, epoch):
    got = InverseScaling(power).lr(epoch, base)     # raised OverflowError before
    want = _exact(base, epoch + 1, -power)
    assert got == pytest.approx(want, rel=1e-12, abs=0.0), (got, want)


@pytest.mark.parametrize("base, gamma, k", [(1e30, 1e-5, 64), (1e10, 1e-5, 62),
                                            (1.0, 0.5, 1100)])
def test_step_decay_past_underflow_is_its_closed_form(base, gamma, k):
    # gamma ** k alone is subnormal (digits lost) or 0 while base * gamma ** k is a number
    got = StepDecay(step_size=1, gamma=gamma).lr(k, base)
    want = _exact(base, gamma, k)
    assert got == pytest.approx(want, rel=1e-12, abs=0.0), (got, want)


def test_ordinary_rates_are_the_same_bits():
    for e in range(0, 1000, 7):
        assert InverseScaling(0.5).lr(e, 0.1) == 0.1 / (e + 1) ** 0.5
        assert InverseScaling(3.0).lr(e, 0.1) == 0.1 / (e + 1) ** 3.0
        assert StepDecay(3, 0.5).lr(e, 0.1) == 0.1 * 0.5 ** (e // 3)


def test_a_schedule_that_decays_to_zero_is_a_value_error_before_training():
    X = np.random.default_rng(0).normal(size=(20, 3))
    model = fastnn.MLP([3, 4, 1], seed=0)
    before = model.get_flat_params()
    opt = SGD(lr=0.01, schedule=InverseScaling(power=400))
    with pytest.raises(ValueError, match="InverseScaling.*gives lr=.* for epoch"):
        fastnn.fit(model, X, X[:, :1], "mse", opt, epochs=10)   # was OverflowError
    np.testing.assert_array_equal(model.params, before)


# ------------------------------------------------------------------ the clipping norm

def _clip_case(dtype, value):
    """A model with every gradient entry +-value (two signs, two sizes), params 0."""
    model = fastnn.MLP([3, 5, 2], dtype=dtype, seed=0)
    g = np.full(model.n_params, value, dtype=dtype)
    g[::3] *= -0.5
    model.params = np.zeros(model.n_params)
    model.grads = g
    return model, g.astype(np.float64)


def _step(model, opt, n_threads):
    s1, s2 = opt.init_state(model.n_params, model.dtype)
    _sgd.update_params(model._spec, model.params, model.grads, s1, s2,
                       *opt.compiled_args(opt.lr), opt.t + 1, True, n_threads)


@pytest.mark.parametrize("n_threads", [0, 1, 2], ids=["sequential", "1-thread", "2-threads"])
@pytest.mark.parametrize("dtype, value, clip", [
    (np.float64, 1e200, 1.0),      # squares overflow: norm inf, step 0 before
    (np.float64, 1e-170, 1e-200),  # squares underflow: norm 0, the clip ignored before
    (np.float32, 3e38, 1.0),       # clip factor below FLT_MIN: flushed to 0, step 0 before
], ids=["float64-huge", "float64-tiny", "float32-huge"])
def test_clipping_scales_the_gradient_to_clip_norm(dtype, value, clip, n_threads):
    model, g = _clip_case(dtype, value)
    opt = SGD(lr=1.0, clip_norm=clip)
    _step(model, opt, n_threads)
    norm = scipy.linalg.norm(g)             # BLAS dnrm2: scaled, never overflows
    want = -g * (clip / norm)
    rtol = {np.float32: 1e-6, np.float64: 1e-14}[dtype]
    np.testing.assert_allclose(model.params, want.astype(dtype), rtol=rtol, atol=0)
    assert np.linalg.norm(model.params.astype(np.float64) / clip) == pytest.approx(1.0,
                                                                                 rel=rtol)


@pytest.mark.parametrize("kind", ["momentum", "nesterov", "adam"])
@pytest.mark.parametrize("dtype, value", [(np.float64, 1e200), (np.float32, 3e38)])
def test_clipping_huge_gradients_moves_every_optimizer(kind, dtype, value):
    model, g = _clip_case(dtype, value)
    opt = {"momentum": lambda: SGD(lr=0.5, momentum=0.9, clip_norm=1.0),
           "nesterov": lambda: SGD(lr=0.5, momentum=0.9, nesterov=True, clip_norm=1.0),
           "adam": lambda: Adam(lr=0.5, clip_norm=1.0)}[kind]()
    opt.step(model)
    clipped = g / scipy.linalg.norm(g)
    if kind == "adam":        # the first Adam step is lr * sign(g) for |g| >> eps
        want = -0.5 * np.sign(clipped)
    else:
        want = -0.5 * clipped * (1.9 if kind == "nesterov" else 1.0)
    np.testing.assert_allclose(model.params, want.astype(dtype), rtol=1e-5)


def test_a_fit_with_huge_gradients_and_clipping_trains():
    # an input column near 1e160 with weights near 1e-160: finite activations and loss,
    # weight gradients near 1e160.  With clipping every step moves the weights (before,
    # each step was silently zero and the weights never changed)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    X[:, 0] *= 1e160
    y = rng.normal(size=(64, 1))
    model = fastnn.MLP([3, 4, 1], activation="tanh", dtype=np.float64, seed=0)
    model.layers[0].W[0] *= 1e-160
    before = model.get_flat_params()
    fastnn.fit(model, X, y, "mse", SGD(lr=1e-3, clip_norm=1.0), epochs=1, batch_size=16,
               seed=0)
    moved = np.abs(model.params - before)
    assert moved.max() > 1e-4 and np.isfinite(model.params).all()


def test_ordinary_clipping_is_its_closed_form():
    # equal entries 3: ||g|| = 3 sqrt(n), the clipped step is -c / sqrt(n) in every entry
    model, g = _clip_case(np.float64, 3.0)
    model.grads = np.full(model.n_params, 3.0)
    SGD(lr=1.0, clip_norm=2.0).step(model)
    np.testing.assert_allclose(model.params, -2.0 / np.sqrt(model.n_params), rtol=1e-15)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e10), (np.float64, 1e100)])
@pytest.mark.parametrize("sparse_input", [False, True], ids=["dense", "sparse"])
def test_adams_overflowing_second_moment_is_a_divergence_not_a_frozen_model(dtype, scale,
                                                                            sparse_input):
    # gradients beyond ~1.8e19 (float32) / ~1.3e154 (float64) overflow Adam's squared-gradient
    # average to inf: every step was 0 and the loss stayed flat, silently
    import scipy.sparse
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((200, 3)) * scale).astype(dtype)
    y = X @ np.array([[1.0], [2.0], [3.0]], dtype)
    model = fastnn.MLP([3, 4, 1], activation="identity", dtype=dtype, seed=0)
    before = model.params.copy()
    with pytest.raises(fastnn.TrainingDiverged, match="optimizer's state"):
        model.fit(scipy.sparse.csr_matrix(X) if sparse_input else X, y, "mse",
                  fastnn.Adam(lr=1e-3), epochs=3, seed=0)
    np.testing.assert_array_equal(model.params, before)  # the start of the epoch, kept


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_rate_below_the_smallest_normal_is_refused_before_any_step(dtype):
    # lr = 1e-310 (float64) or 1e-39 (float32) trained nothing, silently: every step flushed
    tiny = float(np.finfo(dtype).tiny)
    X = np.random.default_rng(0).standard_normal((20, 2))
    y = X[:, :1]
    for optimizer in (SGD(lr=tiny / 10), SGD(lr=1.0, schedule=InverseScaling(1026.4))):
        model = fastnn.MLP([2, 3, 1], dtype=dtype, seed=0)
        before = model.params.copy()
        with pytest.raises(ValueError, match="smallest normal number"):
            model.fit(X, y, "mse", optimizer, epochs=400 if optimizer.lr >= 1.0 else 1)
        np.testing.assert_array_equal(model.params, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_clip_norm_below_the_smallest_normal_is_refused_before_any_step(dtype):
    X = np.random.default_rng(0).standard_normal((20, 2))
    model = fastnn.MLP([2, 3, 1], dtype=dtype, seed=0)
    with pytest.raises(ValueError, match="clip_norm=.*smallest normal"):
        model.fit(X, X[:, :1], "mse", SGD(lr=0.1, clip_norm=float(np.finfo(dtype).tiny) / 4),
                  epochs=1)


# ------------------------------------------------------------------ one step of each optimizer

#: (optimizer, the reference's settings): every update rule, with weight decay and clipping
STEP_CASES = {
    "sgd": (lambda: SGD(lr=0.1), dict(kind="sgd", lr=0.1)),
    "momentum": (lambda: SGD(lr=0.1, momentum=0.9, weight_decay=0.01),
                 dict(kind="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)),
    "nesterov": (lambda: SGD(lr=0.1, momentum=0.9, nesterov=True, clip_norm=0.5),
                 dict(kind="sgd", lr=0.1, momentum=0.9, nesterov=True, clip_norm=0.5)),
    "adam": (lambda: Adam(lr=0.01, weight_decay=0.01),
             dict(kind="adam", lr=0.01, weight_decay=0.01, beta1=0.9, beta2=0.999, eps=1e-8)),
    "adamw": (lambda: fastnn.AdamW(lr=0.01, weight_decay=0.1, beta1=0.8, clip_norm=1.0),
              dict(kind="adamw", lr=0.01, weight_decay=0.1, beta1=0.8, beta2=0.999, eps=1e-8,
                   clip_norm=1.0)),
}


def _steps(optimizer, n_steps=4):
    """(the parameters after each Optimizer.step of a float64 model, the gradients fed)."""
    model = fastnn.MLP([3, 5, 2], dtype=np.float64, seed=0, bias_init=0.1)
    rng = np.random.default_rng(1)
    start, grads, after = model.get_flat_params(), [], []
    for _ in range(n_steps):
        grads.append(rng.standard_normal(model.n_params))
        model.grads = grads[-1]
        optimizer.step(model)
        after.append(model.get_flat_params())
    return model, start, grads, after


@pytest.mark.parametrize("name", list(STEP_CASES))
def test_each_step_equals_the_numpy_reference(name):
    # Optimizer.step (the update of a hand-written loop) against
    # fastnn._core._reference.optimizer_step, step by step, in float64
    from fastnn._core import _reference as ref
    make, settings = STEP_CASES[name]
    model, params, grads, after = _steps(make())
    state = {}
    for t, (g, got) in enumerate(zip(grads, after), start=1):
        params = ref.optimizer_step(params, g, state, t, model.layer_sizes, settings)
        np.testing.assert_allclose(got, params, rtol=1e-13, atol=1e-15)
    assert not np.array_equal(after[0], after[-1])


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_each_step_equals_torch_optim(name):
    # torch.optim as an independent reference (its weight decay reaches every parameter, so
    # these cases compare without it: fastnn decays weight matrices only)
    torch = pytest.importorskip("torch")
    make = {"sgd": (lambda: SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
            "momentum": (lambda: SGD(lr=0.1, momentum=0.9),
                         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
            "nesterov": (lambda: SGD(lr=0.1, momentum=0.9, nesterov=True),
                         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
            "adam": (lambda: Adam(lr=0.01),
                     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8))}
    ours, theirs = make[name]
    _, start, grads, after = _steps(ours())
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = theirs([p])
    for g, got in zip(grads, after):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        np.testing.assert_allclose(got, p.detach().numpy(), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ settings changed mid-run

def _small_regression():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)).astype(np.float32)
    return X, (X @ np.array([[1.0], [-2.0], [0.5]], np.float32))


@pytest.mark.parametrize("name, value, error, match", [
    ("lr", None, TypeError, "lr must be a real number"),
    ("lr", [0.1], TypeError, "lr must be a real number"),
    ("lr", -1.0, ValueError, "lr=-1"),
    ("lr", float("nan"), ValueError, "lr=nan"),
    ("lr", 0.0, ValueError, "lr=0"),
    ("lr", 1e-320, ValueError, "smallest normal number"),     # as a fresh fit's planned rates
    ("clip_norm", 1e-40, ValueError, "clip_norm=1e-40 is below"),
    ("t", 2**63 - 1, ValueError, r"t \(the optimizer's step count\)"),
    ("t", 2**70, ValueError, r"t \(the optimizer's step count\)"),
    ("momentum", 1.5, ValueError, "momentum"),
    ("completed_epochs", -5, ValueError, "completed_epochs"),
    ("completed_epochs", 1.5, TypeError, "completed_epochs"),
])
def test_a_setting_a_callback_changes_is_checked_before_the_next_epoch(name, value, error,
                                                                        match):
    # the engine re-checks, before every epoch, whatever a callback set since the last one,
    # as a fresh fit checks it: the error names the setting and no step uses the bad value
    X, y = _small_regression()
    model, opt = fastnn.MLP([3, 8, 1], seed=0), SGD(lr=0.01)

    def change(epoch, logs):
        if epoch == 1:
            setattr(opt, name, value)
    with pytest.raises(error, match=match):
        model.fit(X, y, "mse", opt, epochs=3, batch_size=16, seed=0, callbacks=[change])
    assert model.history_.epoch == [1]                # the epoch before the change, only


def test_a_schedule_that_sets_the_epoch_count_is_checked_too():
    from fastnn.optim.optimizers import Schedule
    X, y = _small_regression()

    class SetsTheCount(Schedule):
        calls = 0

        def lr(self, epoch, base_lr):
            SetsTheCount.calls += 1
            if SetsTheCount.calls > 3:
                opt.completed_epochs = -5
            return base_lr
    opt = SGD(lr=0.01, schedule=SetsTheCount())
    with pytest.raises(ValueError, match=r"completed_epochs \(the optimizer's epoch count\)"):
        fastnn.MLP([3, 8, 1], seed=0).fit(X, y, "mse", opt, epochs=4, batch_size=16, seed=0)


def test_one_optimizer_trains_one_run_at_a_time():
    import threading
    X, y = _small_regression()
    X, y = np.repeat(X, 200, axis=0), np.repeat(y, 200, axis=0)
    a, b = fastnn.MLP([3, 8, 1], seed=0), fastnn.MLP([3, 8, 1], seed=1)
    # from a callback of a fit with the same optimizer: refused before any step
    opt = SGD(lr=0.01, momentum=0.9)

    def nested(epoch, logs):
        b.fit(X, y, "mse", opt, epochs=1, seed=0)
    before = b.params.copy()
    with pytest.raises(RuntimeError, match="is training another model"):
        a.fit(X, y, "mse", opt, epochs=2, seed=0, callbacks=[nested])
    assert np.array_equal(b.params, before)
    # the refused fit left the optimizer usable; one after another is a continued run
    t0 = opt.t
    a.fit(X, y, "mse", opt, epochs=1, seed=0)
    t1 = opt.t
    b.fit(X, y, "mse", opt, epochs=1, seed=0)
    assert opt.t - t1 == t1 - t0 > 0
    # two threads at once: one of them is refused, the other trains as it would alone
    opt, errors = SGD(lr=0.01, momentum=0.9), []
    started = threading.Barrier(2)

    def train(model):
        started.wait()
        try:
            model.fit(X, y, "mse", opt, epochs=3, batch_size=8, seed=0)
        except RuntimeError as exc:
            errors.append(exc)
    threads = [threading.Thread(target=train, args=(m,)) for m in (a.copy(), b.copy())]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    steps_alone = 3 * (X.shape[0] // 8)
    assert (len(errors), opt.t) in ((1, steps_alone), (0, 2 * steps_alone))


def test_a_refused_fit_leaves_the_running_fits_early_stopping_record_alone():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=5)
    opt, es = SGD(lr=1e-2), fastnn.EarlyStopping(patience=2)
    model, other = fastnn.MLP([5, 8, 1], seed=0), fastnn.MLP([5, 3, 1], seed=0)
    seen = []

    def start_another(epoch, logs):
        if epoch == 3:
            before = (es.best_value, es.best_epoch, opt._early_stopping)
            with pytest.raises(RuntimeError, match="is training another model"):
                other.fit(X, y, "mse", opt, epochs=1, early_stopping=es,
                          validation_split=0.2)
            seen.append(before == (es.best_value, es.best_epoch, opt._early_stopping))
    model.fit(X, y, "mse", opt, epochs=5, early_stopping=es, validation_split=0.2,
              callbacks=[start_another])
    assert seen == [True]


def test_the_step_count_cannot_pass_its_bound_and_a_forked_child_has_no_claims():
    import os
    from fastnn.optim.optimizers import MAX_STEPS
    X, y = _small_regression()
    model, opt = fastnn.MLP([3, 8, 1], seed=0), fastnn.Adam()
    model.fit(X, y, "mse", opt, epochs=1, batch_size=16, seed=0)
    opt.t = MAX_STEPS - 3                      # fewer steps left than an epoch has (4)
    with pytest.raises(ValueError, match="would count past"):
        model.fit(X, y, "mse", opt, epochs=1, batch_size=16, seed=0)
    assert opt.t == MAX_STEPS - 3              # refused before any step
    opt.t = MAX_STEPS - 4
    model.fit(X, y, "mse", opt, epochs=1, batch_size=16, seed=0)
    assert opt.t == MAX_STEPS
    # a child forked while a run holds the optimizer has none of its parent's runs
    opt = SGD(lr=0.01)

    def fork(epoch, logs):
        pid = os.fork()
        if pid == 0:
            try:
                fastnn.MLP([3, 8, 1], seed=0).fit(X, y, "mse", opt, epochs=1, seed=0)
                os._exit(0)
            except BaseException:
                os._exit(1)
        assert os.waitpid(pid, 0)[1] == 0
    model.fit(X, y, "mse", opt, epochs=1, seed=0, callbacks=[fork])


def test_a_callback_that_sets_nothing_new_keeps_reduce_on_plateaus_stop():
    # ReduceOnPlateau taking the rate below the smallest normal number stops the run with a
    # warning; a callback re-setting a hyperparameter to its value changes nothing of that
    from fastnn.optim.optimizers import ReduceOnPlateau
    X, y = _small_regression()
    for callbacks in ([], [lambda epoch, logs: setattr(opt, "weight_decay", opt.weight_decay)]):
        opt = SGD(lr=1e-30, schedule=ReduceOnPlateau(factor=1e-5, patience=1, min_delta=1e9))
        with pytest.warns(RuntimeWarning, match="training stopped after epoch"):
            history = fastnn.MLP([3, 8, 1], seed=0).fit(X, y, "mse", opt, epochs=10,
                                                         callbacks=callbacks)
        assert len(history.epoch) < 10


def test_a_child_forked_while_another_thread_claims_an_optimizer_can_train():
    # the registry's lock may be held by a thread that does not exist in the child: the
    # child gets a new one (it hung in its first fit)
    import os
    import threading
    from fastnn.training import claims
    X, y = _small_regression()
    inside, leave = threading.Event(), threading.Event()

    def hold_the_guard():
        with claims._GUARD:
            inside.set()
            leave.wait()
    holder = threading.Thread(target=hold_the_guard)
    holder.start()
    inside.wait()
    try:
        pid = os.fork()
        if pid == 0:
            import faulthandler
            faulthandler.dump_traceback_later(20, exit=True)   # a hang fails, it never blocks
            try:
                fastnn.MLP([3, 4, 1], seed=0).fit(X, y, "mse", SGD(lr=0.01), epochs=1)
                os._exit(0)
            except BaseException:
                os._exit(1)
    finally:
        leave.set()
        holder.join()
    assert os.waitpid(pid, 0)[1] == 0
