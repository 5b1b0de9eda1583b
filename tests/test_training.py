"""fastnn/training/engine.py: configuration errors are raised before the first step,
and epochs are numbered from 1 wherever a user sees them."""
import math

import numpy as np
import pytest

import fastnn
from fastnn import MLP, EarlyStopping, fit
from fastnn.optim.optimizers import SGD, Adam, Cosine, Schedule
from tests._helpers import classification_data


def _data(n=40):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3))
    return X, (X[:, 0] > 0).astype(int)


class _NaNAfter(Schedule):
    """A user schedule whose rate becomes NaN from epoch index `bad` on."""

    def __init__(self, bad):
        self.bad = bad

    def lr(self, epoch, base_lr):
        return math.nan if epoch >= self.bad else base_lr


def _unchanged_after(error, match, **kwargs):
    """fit raises `error` and neither the model nor the optimizer has changed."""
    X, y = _data()
    model = MLP([3, 4, 2], seed=0)
    start = model.get_flat_params()
    opt = kwargs.pop("optimizer", Adam(lr=0.01))
    kwargs.setdefault("X", X)
    kwargs.setdefault("y", y)
    with pytest.raises(error, match=match):
        fit(model, kwargs.pop("X"), kwargs.pop("y"), "cross_entropy", opt, seed=0, **kwargs)
    assert model.params.tobytes() == start.tobytes()
    assert opt.t == 0 and opt.completed_epochs == 0 and opt.state == (None, None)
    assert getattr(model, "history_", None) is None  # no run was recorded


def test_val_metric_without_validation_data_fails_before_training():
    _unchanged_after(ValueError, "monitor='val_metric'.*needs validation data",
                     epochs=3, early_stopping=EarlyStopping(monitor="val_metric"))


@pytest.mark.parametrize("optimizer, epochs, match", [
    # Cosine(total_epochs=2, min_lr=0) gives lr=0 from epoch 3 on
    (SGD(lr=0.1, schedule=Cosine(total_epochs=2)), 5, "lr=0.0 for epoch 3"),
    (SGD(lr=0.1, schedule=_NaNAfter(3)), 5, "lr=nan for epoch 4"),
], ids=["cosine-past-its-end", "user-schedule-nan"])
def test_a_schedule_that_fails_within_the_planned_epochs_fails_before_training(optimizer,
                                                                                 epochs, match):
    _unchanged_after(ValueError, match, epochs=epochs, optimizer=optimizer)


def test_a_schedule_is_checked_over_the_epochs_of_a_continued_run():
    X, y = _data()
    model, opt = MLP([3, 4, 2], seed=0), SGD(lr=0.1, schedule=Cosine(total_epochs=3))
    fit(model, X, y, "cross_entropy", opt, epochs=2, seed=0)
    start = model.get_flat_params()
    with pytest.raises(ValueError, match="epoch 4 of this run"):
        fit(model, X, y, "cross_entropy", opt, epochs=2, seed=0)
    assert model.params.tobytes() == start.tobytes() and opt.completed_epochs == 2


def _split_rows(n, fraction, seed):
    """(training rows, validation rows) of fit's validation_split, drawn as fit draws them."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fraction * n))
    return perm[n_val:], perm[:n_val]


def test_sample_weights_summing_to_zero_after_the_split_fail_before_training():
    X, y = _data()
    train, val = _split_rows(len(X), 0.25, 0)
    only_val = np.zeros(len(X))
    only_val[val[0]] = 1.0  # every training row has weight 0
    _unchanged_after(ValueError, "training rows sum to 0", epochs=2, sample_weight=only_val,
                     validation_split=0.25)
    only_train = np.zeros(len(X))
    only_train[train[0]] = 1.0  # every validation row has weight 0
    _unchanged_after(ValueError, "validation rows sum to 0", epochs=2,
                     sample_weight=only_train, validation_split=0.25)


def test_epochs_are_numbered_from_one_everywhere(capsys):
    X, y = _data()
    seen = []
    model, opt = MLP([3, 4, 2], seed=0), SGD(lr=0.1)
    history = fit(model, X, y, "cross_entropy", opt, epochs=3, seed=0, verbose=1,
                  validation_data=(X, y), early_stopping=EarlyStopping(patience=5),
                  callbacks=[lambda epoch, logs: seen.append((epoch, logs["epoch"]))])
    assert history.epoch == [1, 2, 3]
    assert seen == [(1, 1), (2, 2), (3, 3)]
    assert history.best_epoch in (1, 2, 3)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    # a continued run goes on counting; a new optimizer is a new run
    more = fit(model, X, y, "cross_entropy", opt, epochs=2, seed=0, verbose=1)
    assert more.epoch == [4, 5] and opt.completed_epochs == 5
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["4/5", "5/5"]
    assert fit(model, X, y, "cross_entropy", SGD(lr=0.1), epochs=1, seed=0).epoch == [1]


def test_divergence_names_the_epoch_from_one():
    X = np.full((8, 3), 2e38)  # the first minibatch's loss overflows float32
    with pytest.raises(fastnn.TrainingDiverged, match="at epoch 1, step 1 "):
        fit(MLP([3, 1], init=fastnn.nn.init.constant(1.0), seed=0), X, np.zeros(8), "mse",
            epochs=2)


def test_the_planned_rates_check_is_bounded_for_any_number_of_epochs():
    # a built-in schedule is monotone: its first and last planned epochs bound the rest, so a
    # billion planned epochs are checked at once (Cosine past its end gives 0)
    opt = SGD(lr=0.1, schedule=Cosine(total_epochs=10))
    with pytest.raises(ValueError, match="lr=0.0 for epoch 11 of this run"):
        opt.check_planned_rates(10 ** 9)
    # StepDecay's rate underflows to 0.0 after about 3,240 epochs: found without evaluating
    # every one (0.1 * 0.1 ** 323 is 1e-324, a subnormal; 0.1 ** 324 is 0 in float64)
    with pytest.raises(ValueError, match=r"lr=0.0 for epoch 32\d1 "):
        SGD(lr=0.1, schedule="step").check_planned_rates(10 ** 9)

    class Counting(Schedule):  # a user's schedule: each epoch is evaluated, up to a bound
        calls = 0

        def lr(self, epoch, base_lr):
            Counting.calls += 1
            return base_lr

    SGD(lr=0.1, schedule=Counting()).check_planned_rates(10 ** 9)
    assert Counting.calls == fastnn.optim.optimizers.PLANNED_RATES_CHECKED


def test_a_batch_larger_than_the_data_even_beyond_32_bits_is_one_full_batch():
    X, y = classification_data(n=30)
    a, b = MLP([3, 4, 3], seed=0), MLP([3, 4, 3], seed=0)
    fit(a, X, y, "cross_entropy", SGD(lr=0.1), epochs=2, batch_size=30, seed=0)
    fit(b, X, y, "cross_entropy", SGD(lr=0.1), epochs=2, batch_size=2**40, seed=0)
    np.testing.assert_array_equal(a.params, b.params)
