"""Faults during training: a diverging fit stops with TrainingDiverged, keeps the last
weights known to give a finite loss and leaves a usable model; a KeyboardInterrupt in a
callback leaves the model consistent (fastnn/training)."""
import numpy as np
import pytest

import fastnn
from fastnn.nn import init
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import SGD, Adam
from fastnn.training.trainer import TrainingDiverged, fit
from tests._helpers import check_error, classification_data


def test_adam_divergence_stops_and_keeps_finite_weights_and_a_usable_model():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4)) * 1e3
    y = rng.standard_normal(200) * 1e6
    model = MLP([4, 32, 1], seed=0)
    opt = Adam(lr=1e30)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at epoch \d+, step \d+ "
                                               r"\(lr=1e\+30\)") as info:
        fit(model, X, y, "mse", opt, epochs=20, batch_size=10, seed=0)
    assert np.isfinite(model.params).all()
    assert np.isfinite(model.predict(X)).all()
    assert isinstance(info.value.history, fastnn.History)
    # its moments belonged to the diverging steps: the optimizer starts afresh if reused
    assert opt.state == (None, None) and opt.t == 0
    fit(model, X / 1e3, y / 1e6, "mse", Adam(lr=1e-3), epochs=2)  # still trains
    assert np.isfinite(model.params).all()


@pytest.mark.parametrize("epochs", [1, 3])
def test_weights_that_became_non_finite_are_restored_from_the_last_finite_ones(epochs):
    # one batch per epoch with an absurd rate: the first update itself overflows the float32
    # weights to inf while its loss was finite, so the divergence shows only afterwards
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 3)) * 100
    y = rng.standard_normal(16) * 100
    model = MLP([3, 4, 1], seed=0)
    start = model.get_flat_params()
    with pytest.raises(TrainingDiverged, match="at epoch 1,") as info:  # numbered from 1
        fit(model, X, y, "mse", SGD(lr=1e38), epochs=epochs, batch_size=16, seed=0)
    assert "start of epoch 1," in str(info.value)
    np.testing.assert_array_equal(model.params, start)
    assert np.isfinite(model.predict(X)).all()


@pytest.mark.parametrize("batch_size, lr, what, failed, kept", [
    # (epoch, step) and kept epoch as the message numbers them: from 1
    # a later step of the first epoch: back to the initial weights
    (8, 0.005, "the training loss", (1, 7), 1),
    # a later step of epoch 4: back to the start of epoch 4
    (16, 0.003, "the training loss", (4, 2), 4),
    # the first step of epoch 6 (one step per epoch): its start is suspect, so epoch 5's
    (64, 0.01, "the training loss", (6, 1), 5),
    # the last update of epoch 4 overflowed the weights while its loss was finite
    (64, 0.1, "the weights", (4, 1), 4),
], ids=["epoch-0", "later-step", "first-step", "weights"])
def test_divergence_keeps_the_last_weights_known_to_give_a_finite_loss(batch_size, lr, what,
                                                                       failed, kept):
    # The parameters entering the failing step are what overflowed the loss, even when they
    # are finite (a model that predicts NaN); the start of an epoch is known good once the
    # epoch's first step had a finite loss.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)) * 10
    y = rng.standard_normal((64, 2)) * 10
    model = MLP([4, 16, 2], activation="relu", seed=0)
    starts = [model.get_flat_params()]  # the parameters at the start of each epoch
    with pytest.raises(TrainingDiverged) as info:
        fit(model, X, y, "mse", SGD(lr=lr, momentum=0.9), epochs=200, batch_size=batch_size,
            seed=0, callbacks=[lambda epoch, logs: starts.append(model.get_flat_params())])
    message = str(info.value)
    assert message.startswith(f"{what} became NaN or infinite at epoch {failed[0]}, step "
                              f"{failed[1]} ")
    assert f"keeps the parameters at the start of epoch {kept}, the last known to give a " \
           "finite loss" in message
    np.testing.assert_array_equal(model.params, starts[kept - 1])
    assert np.isfinite(model.loss_and_grad(X, y, "mse")) and np.isfinite(model.predict(X)).all()


def test_divergence_on_the_first_step_keeps_the_initial_weights_and_says_why():
    X = np.full((8, 3), 2e38)  # fits float32, but X @ W overflows it
    model = MLP([3, 1], init=init.constant(1.0), seed=0)
    start = model.get_flat_params()
    message = check_error(lambda: fit(model, X, np.zeros(8), "mse", epochs=3),
                          TrainingDiverged, "at epoch 1, step 1",
                          "the parameters it started this fit with", "scale of the inputs")
    np.testing.assert_array_equal(model.params, start)
    assert "lr=" in message


def test_keyboard_interrupt_in_a_callback_leaves_the_model_consistent_and_usable():
    X, y = classification_data(n=100)
    model = MLP([3, 8, 3], seed=0)
    opt = Adam(lr=0.01)
    seen = []

    def interrupt(epoch, logs):
        seen.append(model.get_flat_params())
        if epoch == 3:  # epochs are numbered from 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(model, X, y, "cross_entropy", opt, epochs=10, callbacks=[interrupt])
    assert len(model.history_) == 3
    np.testing.assert_array_equal(model.params, seen[-1])  # the weights after epoch 3
    assert opt.t > 0 and all(np.isfinite(s).all() for s in opt.state)
    fit(model, X, y, "cross_entropy", opt, epochs=1)  # continues from there
    assert np.isfinite(model.predict(X)).all()
