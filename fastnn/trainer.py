"""``fit``: minibatch training with whole epochs in compiled code.

Python does, once per fit: validation and conversion of the data, the workspace (sized by the
batch and the layer widths), the optimizer state.  Once per epoch: the shuffle (in place, no
allocation), one call into ``fastnn._sgd.train_epoch`` that runs every minibatch without the
GIL, then validation metrics, the schedule, early stopping and callbacks.  Nothing is
allocated per minibatch and nothing grows with the number of steps.

Determinism: the sample order comes from ``seed`` alone, the compiled loop is sequential, and
BLAS is deterministic for a fixed thread count, so the same seed, data and thread count give
bitwise-identical weights.
"""
import numbers
import time
import warnings

import numpy as np

from fastnn import _losses, _network, _sgd, fpmode
from fastnn._validation import (MAX_DIM, all_finite, check_bool, check_number,
                                check_random_state, check_writeable)
from fastnn.model import MLP
from fastnn.optim import get_optimizer
from fastnn.threads import blas_threads

#: seconds between two checks for Ctrl-C inside the compiled loop
SIGNAL_CHECK_INTERVAL = 0.1
_CLASSIFIER_LINKS = ("sigmoid", "softmax")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite.  ``history`` holds the epochs completed before."""

    def __init__(self, message, history=None):
        super().__init__(message)
        self.history = history


class History:
    """Per-epoch records of a fit.

    Attributes
    ----------
    epoch : list of int
    loss : list of float
        Weighted mean training loss over the epoch's minibatches (as they were trained).
    val_loss : list of float or None
    val_metric : list of float or None
        Validation accuracy (classification) or R^2 (regression); see ``metric_name``.
    lr : list of float
    time : list of float
        Wall time of the epoch's training, seconds.
    samples_per_s : list of float
    stopped_early : bool
    best_epoch : int or None
        Epoch whose weights early stopping restored (if it did).
    """

    def __init__(self, metric_name):
        self.metric_name = metric_name
        self.epoch, self.loss, self.val_loss, self.val_metric = [], [], [], []
        self.lr, self.time, self.samples_per_s = [], [], []
        self.stopped_early = False
        self.best_epoch = None

    def _append(self, logs):
        for key in ("epoch", "loss", "val_loss", "val_metric", "lr", "time", "samples_per_s"):
            getattr(self, key).append(logs[key])

    def __len__(self):
        return len(self.epoch)

    def as_dict(self):
        return {key: list(getattr(self, key)) for key in
                ("epoch", "loss", "val_loss", "val_metric", "lr", "time", "samples_per_s")}

    def __repr__(self):
        last = f", last loss={self.loss[-1]:.6g}" if self.loss else ""
        return f"History({len(self)} epochs{last})"

    def plot(self, ax=None):
        """Learning curves (training and validation loss per epoch); needs matplotlib."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib "
                              "(or fastnn[plot])") from None
        if ax is None:
            _, ax = plt.subplots()
        ax.plot(self.epoch, self.loss, label="training loss")
        if any(v is not None for v in self.val_loss):
            ax.plot(self.epoch, self.val_loss, label="validation loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        return ax


class EarlyStopping:
    """Stop when the monitored loss has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int, default 5
        Epochs without an improvement larger than ``min_delta`` before stopping.
    min_delta : float, default 0.0
    monitor : {"val_loss", "loss", "val_metric"}, default "val_loss"
        "val_loss" falls back to "loss" when there is no validation data; "val_metric" is
        maximized (accuracy, R^2), the losses minimized.
    restore_best_weights : bool, default True
        On stopping (or at the end of fit), put back the parameters of the best epoch.
    """

    def __init__(self, patience=5, min_delta=0.0, monitor="val_loss",
                 restore_best_weights=True):
        self.patience = check_number(patience, "patience", low=1, integer=True)
        self.min_delta = float(check_number(min_delta, "min_delta", low=0.0))
        if monitor not in ("val_loss", "loss", "val_metric"):
            raise ValueError(f"monitor={monitor!r}; expected 'val_loss', 'loss' or "
                             "'val_metric'")
        self.monitor = monitor
        self.restore_best_weights = bool(restore_best_weights)

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"monitor={self.monitor!r}, restore_best_weights={self.restore_best_weights})")


class _Workspace:
    """Every buffer the compiled epoch needs, allocated once per fit."""

    def __init__(self, model, batch_size, n_targets, has_labels, has_sw, has_sigma):
        spec, dt = model._spec, model.dtype
        b = batch_size
        try:
            self.acts = np.empty(b * spec.act_width, dt)
            self.delta0 = np.empty(b * spec.max_width, dt)
            self.delta1 = np.empty(b * spec.max_width, dt)
            self.X = np.empty((b, model.n_inputs), dt)
            self.Y = np.empty((b, n_targets), dt) if n_targets else None
            self.labels = np.empty(b, np.intp) if has_labels else None
            self.sw = np.empty(b, dt) if has_sw else None
            self.sigma = np.empty(b, dt) if has_sigma else None
        except MemoryError:
            n_bytes = b * (spec.act_width + 2 * spec.max_width + model.n_inputs) * dt.itemsize
            raise MemoryError(f"could not allocate the training workspace for batch_size={b} "
                              f"(about {n_bytes} bytes); use a smaller batch_size") from None


def _split_validation(arrays, n, fraction, rng):
    """Hold out round(fraction * n) random rows of every array (None entries stay None)."""
    n_val = int(round(fraction * n))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split={fraction} leaves {n - n_val} training and "
                         f"{n_val} validation samples out of {n}; expected at least one of each")
    perm = rng.permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    take = lambda a, idx: None if a is None else np.ascontiguousarray(a[idx])  # noqa: E731
    return [take(a, train_idx) for a in arrays], [take(a, val_idx) for a in arrays]


def _evaluation_stats(model, loss, X, Y, labels, sw, sigma, flush_denormals=None):
    """Sufficient statistics of the loss and metric on prepared arrays (combinable over ranks).

    Keys: loss (sum_i w_i l_i), weight (sum_i w_i), and for classifiers hits (weighted count of
    correct predictions), for regression n, mean (per output), m2 (sum of squared deviations
    from the mean) and resid (sum of squared residuals), the inputs of R^2.
    """
    Z = np.empty((X.shape[0], model.n_outputs), model.dtype)
    _network.forward_into(model._spec, model.params, X, Z, 0, 4096,
                          fpmode.resolve(flush_denormals))
    stats = {"weight": X.shape[0] if sw is None else float(sw.sum(dtype=np.float64)),
             "loss": _losses.loss_grad_into(loss.kind, int(loss.full), loss.scalar_sigma, Z, Y,
                                            labels, sw, sigma, 1.0, None)}
    _losses.output_into(loss.kind, Z)
    if loss.output_name in _CLASSIFIER_LINKS:
        if loss.output_name == "softmax":
            truth = labels if labels is not None else Y.argmax(axis=1)
            hit = Z.argmax(axis=1) == truth
        else:
            hit = ((Z >= 0.5) == (Y >= 0.5)).mean(axis=1)
        stats["hits"] = float(np.dot(hit, sw) if sw is not None else hit.sum())
    else:
        Y64 = Y.astype(np.float64)
        mean = Y64.mean(axis=0)
        stats.update(n=Y.shape[0], mean=mean, m2=((Y64 - mean) ** 2).sum(axis=0),
                     resid=((Y64 - Z[:, : Y.shape[1]]) ** 2).sum(axis=0))
    return stats


def _combine_evaluations(parts):
    """(mean loss, metric) from the statistics of one or more shards.

    Variances combine by Chan et al.'s pairwise rule, so R^2 over shards equals R^2 over the
    concatenated data without the cancellation of sum-of-squares formulas.
    """
    weight = sum(p["weight"] for p in parts)
    mean_loss = sum(p["loss"] for p in parts) / weight
    if "hits" in parts[0]:
        return mean_loss, sum(p["hits"] for p in parts) / weight
    n = sum(p["n"] for p in parts)
    mean = sum(p["n"] * p["mean"] for p in parts) / n
    m2 = sum(p["m2"] + p["n"] * (p["mean"] - mean) ** 2 for p in parts)
    resid = sum(p["resid"] for p in parts)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(m2 > 0, 1 - resid / m2, 0.0)
    return mean_loss, float(r2.mean())


def evaluate(model, loss, X, Y, labels, sw, sigma, mpi=None, flush_denormals=None):
    """(mean loss, metric) of prepared arrays: accuracy for classifiers, R^2 otherwise.

    With `mpi` (a fastnn.distributed.MPIContext) the arrays are this rank's shard and the
    result is that of all shards together, the same on every rank.
    """
    stats = _evaluation_stats(model, loss, X, Y, labels, sw, sigma, flush_denormals)
    return _combine_evaluations([stats] if mpi is None else mpi.comm.allgather(stats))


def fit(model, X, y, loss, optimizer=None, *, epochs=10, batch_size=32, shuffle=True,
        seed=None, sample_weight=None, validation_data=None, validation_split=0.0,
        early_stopping=None, callbacks=(), verbose=0, drop_last=False, comm=None,
        n_threads=None, flush_denormals=None):
    """Train `model` by minibatch SGD (or Adam) on (X, y).

    Parameters
    ----------
    model : fastnn.MLP
    X : array-like of shape (n_samples, n_inputs)
        Converted once to the model's dtype (float32 or float64).
    y : array-like
        Targets as the loss accepts them (labels, one-hot/probability rows, values).
    loss : str or fastnn.losses.Loss
    optimizer : fastnn.SGD, fastnn.Adam, "sgd", "adam" or None (SGD(lr=0.01))
        Its state (velocity, moments) is kept between fits: a second fit continues.
    epochs : int, default 10
    batch_size : int, default 32
        Clipped to n_samples.  The last, smaller batch of an epoch is used unless drop_last.
    shuffle : bool, default True
        Reshuffle the samples every epoch (from `seed`).
    seed : int, numpy.random.Generator or None
        Shuffling and validation split.  Same seed, data and BLAS thread count: bitwise
        identical weights.
    sample_weight : array-like of shape (n_samples,), optional
        Each minibatch minimizes sum_i w_i l_i / sum_i w_i; a batch of zero weight is skipped.
    validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
    validation_split : float in [0, 1), default 0.0
        Hold out this random fraction of (X, y) for validation (ignored when
        validation_data is given).
    early_stopping : EarlyStopping, int or None
        An int is the patience of ``EarlyStopping(patience)``.
    callbacks : sequence of callables ``cb(epoch, logs)``
        Called after every epoch with the logs dict (the History fields of that epoch);
        returning True stops training.  An exception raised by a callback propagates; the
        model keeps the weights of the finished epochs.
    verbose : int, default 0
        1 prints one line per epoch; 2 shows a progress bar if tqdm is installed.
    drop_last : bool, default False
    comm : mpi4py.MPI.Intracomm, optional
        Data-parallel training over MPI (see fastnn.distributed): X, y, sample_weight and
        validation data are this rank's shard, every other argument must be the same on all
        ranks, and `seed` an int or None.  The result equals one process training on the
        concatenated shards with the same global minibatches.
    n_threads : int or None, default None
        BLAS threads for this fit (restored afterwards); None leaves the setting as it is.
        The count is process-wide: a fit in another thread asking for a different count
        waits until this one ends (see fastnn.threads).  One thread is usually fastest for
        small layers.
    flush_denormals : bool or None, default None
        Flush subnormal floats (below 1.2e-38 in float32) to zero in the compiled training
        and evaluation, which keeps late epochs as fast as early ones; False leaves the
        floating-point mode alone (IEEE subnormals, bitwise the results from before the
        switch existed).  None: the process-wide setting, True unless changed (see
        fastnn.fpmode).  The caller's floating-point mode is unchanged after fit, also when
        it raises or is interrupted.

    Returns
    -------
    History (also stored as ``model.history_``)

    Raises
    ------
    TrainingDiverged
        The loss or the parameters became NaN/inf; raised with the epoch and step.  The model
        keeps the last parameters known to give a finite loss: those at the start of that
        epoch (of the epoch before when its first step failed), so that it never predicts
        NaN from weights that merely happen to be finite.  The optimizer's state is reset.
    KeyboardInterrupt
        Re-raised after the minibatch that was running when Ctrl-C arrived; the model holds
        the weights after that minibatch and ``model.history_`` the completed epochs.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a fastnn.MLP; got {type(model).__name__}")
    check_writeable(model.params, "model.params")
    check_writeable(model.grads, "model.grads")
    epochs = check_number(epochs, "epochs", low=1, integer=True)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True)
    fraction = float(check_number(validation_split, "validation_split", low=0.0, high=1.0,
                                  high_open=True))
    verbose = check_number(verbose, "verbose", low=0, integer=True)
    if n_threads is not None:
        check_number(n_threads, "n_threads", low=1, high=MAX_DIM, integer=True)
    shuffle = check_bool(shuffle, "shuffle")
    flush_denormals = fpmode.resolve(flush_denormals)
    drop_last = check_bool(drop_last, "drop_last")
    if isinstance(early_stopping, numbers.Integral) and not isinstance(early_stopping,
                                                                        (bool, np.bool_)):
        early_stopping = EarlyStopping(patience=early_stopping)
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be None, an int or fastnn.EarlyStopping; got "
                        f"{early_stopping!r}")
    if callable(callbacks) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"callbacks must be a sequence of callables cb(epoch, logs); got "
                        f"{callbacks!r} (put a single callback in a list)")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables cb(epoch, logs); got {cb!r}")
    optimizer = get_optimizer(optimizer)
    mpi = None
    if comm is not None:
        from fastnn.distributed import MPIContext
        mpi = MPIContext(comm)
        if seed is not None and not isinstance(seed, numbers.Integral):
            raise TypeError(f"with comm, seed must be an int or None (the same on every rank) "
                            f"so that all ranks draw the same minibatches; got {seed!r}")
        mpi.check_same((epochs, batch_size, shuffle, drop_last, fraction, seed,
                        repr(optimizer), model.layer_sizes), "a fit argument")
        if seed is None:
            seed = mpi.comm.bcast(int(np.random.SeedSequence().entropy % 2**63), root=0)
        if verbose and not mpi.is_root:
            verbose = 0
    rng = check_random_state(seed)
    # the dropout masks' key, drawn first (so equal on every rank) and only with dropout
    dropout_seed = (int(rng.integers(2**63)) if any(layer.dropout for layer in model.layers)
                    else 0)

    if mpi is None:
        loss, (X, Y, labels, sw, sigma), val = _prepare_fit_data(
            model, X, y, loss, sample_weight, validation_data, fraction, rng)
    else:
        # every rank validates its shard; all ranks raise if any rank's input is bad.  The
        # validation split draws from its own per-rank stream, so the shuffling stream (rng)
        # stays the same on every rank.
        error = None
        try:
            loss, (X, Y, labels, sw, sigma), val = _prepare_fit_data(
                model, X, y, loss, sample_weight, validation_data, fraction,
                np.random.default_rng([seed, mpi.rank]))
        except (ValueError, TypeError, MemoryError) as exc:
            error = exc
        mpi.agree(error)
    n = X.shape[0]
    offset, n_global = (0, n) if mpi is None else mpi.shard_layout(n)
    if drop_last and batch_size > n_global:
        raise ValueError(f"drop_last=True with batch_size={batch_size} > n_samples={n_global} "
                         "leaves no batch")
    batch_size = min(batch_size, n_global)

    ws = _Workspace(model, batch_size, 0 if Y is None else Y.shape[1], labels is not None,
                    sw is not None, sigma is not None)
    state1, state2 = optimizer.init_state(model.n_params, model.dtype)
    optimizer.schedule.reset()
    grads = model.grads
    if mpi is not None:
        mpi.broadcast(model.params)
        # [gradient | loss | weight]: what one all-reduce per minibatch adds over ranks
        grads = np.zeros(model.n_params + 2, dtype=model.dtype)
    # the epoch's order of global sample indices (None: storage order, read in place)
    order = np.arange(n_global, dtype=np.intp) if shuffle or mpi is not None else None
    snapshot = np.empty_like(model.params)
    best_params = np.empty_like(model.params) if early_stopping else None
    history = History("accuracy" if loss.output_name in _CLASSIFIER_LINKS else "r2")
    model.history_ = history
    model.loss_ = loss
    bar = _progress_bar(epochs) if verbose >= 2 else None
    try:
        with blas_threads(n_threads):
            return _epochs(model, loss, optimizer, (X, Y, labels, sw, sigma), val, ws, grads,
                           (state1, state2), order, rng, snapshot, best_params, history, bar,
                           epochs, batch_size, drop_last, n_global, offset, early_stopping,
                           callbacks, verbose, mpi, flush_denormals=flush_denormals,
                           dropout_seed=dropout_seed)
    except BaseException as exc:
        # one rank alone cannot leave the collectives: abort all, unless every rank raised the
        # same error (divergence is decided on summed values, so it happens everywhere)
        if mpi is not None and mpi.size > 1 and not isinstance(exc, TrainingDiverged):
            mpi.abort(exc)
        raise
    finally:
        if bar is not None:
            bar.close()


def _prepare_fit_data(model, X, y, loss, sample_weight, validation_data, fraction, rng):
    """(loss, (X, Y, labels, sw, sigma), validation arrays or None), all validated."""
    loss, X, Y, labels, sw, sigma = model.prepare_data(X, y, loss, sample_weight)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (X_val, y_val) or "
                             "(X_val, y_val, sample_weight_val)")
        X_val, y_val, *sw_val = validation_data
        if loss.sample_sigma is not None:
            raise ValueError("validation_data cannot be used with a per-sample sigma; use "
                             "validation_split, which splits sigma with the data")
        val = model.prepare_data(X_val, y_val, loss, sw_val[0] if sw_val else None)[1:]
    elif fraction > 0:
        (X, Y, labels, sw, sigma), val = _split_validation(
            [X, Y, labels, sw, sigma], X.shape[0], fraction, rng)
    return loss, (X, Y, labels, sw, sigma), val


def _epochs(model, loss, optimizer, data, val, ws, grads, state, order, rng, snapshot,
            best_params, history, bar, epochs, batch_size, drop_last, n_global, offset,
            early_stopping, callbacks, verbose, mpi, flush_denormals=True, dropout_seed=0):
    """The epoch loop of fit: one compiled call per epoch, then metrics and stopping."""
    X, Y, labels, sw, sigma = data
    state1, state2 = state
    metric_name = history.metric_name
    best_value, best_epoch, bad_epochs = np.inf, None, 0
    previous = np.empty_like(snapshot)  # the parameters at the start of the previous epoch
    for epoch in range(epochs):
        lr = optimizer.lr_at(epoch)
        if order is not None:
            rng.shuffle(order)
        snapshot, previous = previous, snapshot
        snapshot[...] = model.params
        start = time.perf_counter()
        # hyperparameters and state as they are now (a callback may have changed momentum);
        # the model's lock keeps a save in another thread out of the running epoch
        opt_args = optimizer.compiled_args(lr)
        with model._lock:
            state1, state2 = optimizer.init_state(model.n_params, model.dtype)
            loss_sum, weight_sum, steps, optimizer.t, status, failed_step, pending = \
                _sgd.train_epoch(
                    model._spec, model.params, grads, state1, state2, X, Y, labels, sw, sigma,
                    order, batch_size, drop_last, loss.kind, int(loss.full),
                    loss.scalar_sigma, *opt_args, optimizer.t, ws.acts, ws.delta0,
                    ws.delta1, ws.X if order is not None else None, ws.Y, ws.labels, ws.sw,
                    ws.sigma, SIGNAL_CHECK_INTERVAL, offset,
                    None if mpi is None else mpi.reducer, flush_denormals,
                    dropout_seed=dropout_seed, epoch=epoch)
        elapsed = time.perf_counter() - start
        loss_failed = status == _sgd.STATUS_DIVERGED
        if status == _sgd.STATUS_OK and not all_finite(model.params):
            # the epoch's last update overflowed the weights; its loss, computed before the
            # update, was finite, so the loop could not see it
            status, failed_step = _sgd.STATUS_DIVERGED, steps - 1
        if status == _sgd.STATUS_DIVERGED:
            kept = _restore_last_good(model, optimizer, snapshot, previous, epoch,
                                      failed_step if loss_failed else None)
            what = "the training loss" if loss_failed else "the weights"
            raise TrainingDiverged(
                f"{what} became NaN or infinite at epoch {epoch}, step {failed_step} "
                f"(lr={lr:g}). The model keeps {kept}. Try a smaller learning rate, gradient "
                "clipping (clip_norm), or scaling the inputs.", history)
        if status == _sgd.STATUS_INTERRUPTED:
            if not all_finite(model.params):
                model.params[...] = snapshot
            if not all(s is None or all_finite(s) for s in optimizer.state):
                optimizer.reset()
            raise pending
        if status != _sgd.STATUS_OK:
            raise RuntimeError(f"compiled training step failed at epoch {epoch}, step "
                               f"{failed_step} (status {status})")
        train_loss = loss_sum / weight_sum if weight_sum > 0 else float("nan")
        val_loss = val_metric = None
        if val is not None:
            val_loss, val_metric = evaluate(model, loss, *val, mpi=mpi,
                                            flush_denormals=flush_denormals)
        logs = {"epoch": epoch, "loss": train_loss, "val_loss": val_loss,
                "val_metric": val_metric, "lr": lr, "time": elapsed,
                "samples_per_s": (steps * batch_size if drop_last else n_global) / elapsed
                if elapsed > 0 else float("inf")}
        history._append(logs)
        optimizer.schedule.on_epoch_end(epoch, val_loss if val_loss is not None else train_loss)
        if verbose == 1 or (verbose >= 2 and bar is None):
            print(_epoch_line(logs, epochs, metric_name), flush=True)
        elif bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.4g}")

        stop = False
        if early_stopping is not None:
            value = _monitored(early_stopping.monitor, logs)
            improved = (value > best_value + early_stopping.min_delta
                        if early_stopping.monitor == "val_metric"
                        else value < best_value - early_stopping.min_delta)
            if best_epoch is None or improved:
                best_value, best_epoch, bad_epochs = value, epoch, 0
                best_params[...] = model.params
            else:
                bad_epochs += 1
                stop = bad_epochs >= early_stopping.patience
                history.stopped_early = stop
        for cb in callbacks:
            stop = bool(cb(epoch, logs)) or stop
        if stop:
            break
    if early_stopping is not None and early_stopping.restore_best_weights and \
            best_epoch is not None:
        model.params[...] = best_params
        history.best_epoch = best_epoch
    return history


def _restore_last_good(model, optimizer, snapshot, previous, epoch, loss_step):
    """After a divergence, put back the last parameters known to give a finite loss.

    A minibatch's loss is computed from the parameters entering its step.  When the loss of
    step `loss_step` is not finite, those parameters are the culprit even if they are finite
    (they overflowed the logits: a model that predicts NaN), so the last good ones are older:
    `snapshot`, from the start of this epoch, when loss_step > 0 (its step 0 had a finite
    loss); `previous`, from the start of the previous epoch, when loss_step == 0.
    loss_step=None: every loss was finite and only the epoch's last update overflowed the
    weights, so the start of this epoch is good.  The optimizer's state (velocity, moments)
    belonged to the diverging steps and is reset.  Returns what the model keeps.
    """
    optimizer.reset()
    if loss_step == 0 and epoch == 0:
        model.params[...] = snapshot
        return ("the parameters it started this fit with, whose loss on the first minibatch "
                "was already not finite (check the scale of the inputs and targets)")
    if loss_step == 0:
        model.params[...] = previous
        return (f"the parameters at the start of epoch {epoch - 1}, the last known to give a "
                "finite loss")
    model.params[...] = snapshot
    return f"the parameters at the start of epoch {epoch}, the last known to give a finite loss"


def _monitored(monitor, logs):
    if monitor == "val_loss" and logs["val_loss"] is None:
        return logs["loss"]
    if monitor == "val_metric":
        if logs["val_metric"] is None:
            raise ValueError("EarlyStopping(monitor='val_metric') needs validation data")
        return logs["val_metric"]
    return logs[monitor]


def _epoch_line(logs, epochs, metric_name):
    line = (f"epoch {logs['epoch'] + 1}/{epochs}  loss {logs['loss']:.5g}  "
            f"lr {logs['lr']:.3g}  {logs['samples_per_s']:,.0f} samples/s")
    if logs["val_loss"] is not None:
        line += f"  val_loss {logs['val_loss']:.5g}  val_{metric_name} {logs['val_metric']:.4f}"
    return line


def _progress_bar(total):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("verbose=2 shows a progress bar when tqdm is installed (pip install "
                      "tqdm); printing one line per epoch instead", stacklevel=3)
        return None
    return tqdm(total=total, unit="epoch")
