"""What a run records and how it stops early: ``History`` (one entry per epoch),
``EarlyStopping`` (the best record, its patience, the weights to restore) and
``TrainingDiverged`` (the error of a run whose loss or weights stopped being finite).  The run
itself, which updates them, is ``TrainingRun`` in fastnn/training/engine.py.
"""
import numpy as np

from fastnn._validation import check_number


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite.  ``history`` holds the epochs completed before.

    Parameters
    ----------
    message : str
        Names the epoch (numbered from 1), the step and a remedy.
    history : History or None
        The records of the epochs completed before the divergence.
    """

    def __init__(self, message, history=None):
        super().__init__(message)
        self.history = history


class History:
    """Per-epoch records of a fit (per iteration for L-BFGS, fastnn/training/full_batch.py:
    ``epoch`` numbers the iterations, ``loss`` is the objective at the iterate, ``lr`` None).

    Parameters
    ----------
    metric_name : {"accuracy", "r2"}
        What ``val_metric`` holds.

    Attributes
    ----------
    epoch : list of int
        1-based epoch numbers, counted over the whole run: a fit that continues a 3-epoch run
        records [4, 5, ...].
    loss : list of float
        Weighted mean training loss over the epoch's minibatches (as they were trained).
    val_loss : list of float or None
        Weighted mean loss over the validation samples after the epoch.
    val_metric : list of float or None
        Validation accuracy (classification, a fraction in [0, 1]) or R^2 (regression); see
        ``metric_name``.
    lr : list of float (None for L-BFGS)
        The learning rate of the epoch: the step size of each optimizer step (minibatch).
    time : list of float
        Wall time of the epoch's training, seconds.
    samples_per_s : list of float
        Training throughput of the epoch: samples per second of wall time.
    stopped_early : bool
    best_epoch : int or None
        1-based number of the epoch whose weights early stopping restored (if it did).
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
        """Learning curves (training and validation loss per epoch); needs matplotlib.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Drawn into; default a new figure's axes.

        Returns
        -------
        matplotlib.axes.Axes

        Raises
        ------
        ImportError
            matplotlib is not installed (``pip install matplotlib`` or ``fastnn[plot]``).
        """
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
        maximized (accuracy, R^2), the losses minimized.  "val_metric" without validation
        data is a ValueError raised before training.
    restore_best_weights : bool, default True
        On stopping (or at the end of fit), put back the parameters of the best epoch.  A
        fit that continues the run (with this record) goes on from the parameters the run
        had reached, as an uninterrupted run does, unless the model's parameters were
        changed in between.  (Keras' default is False, which keeps the last epoch's
        weights.)

    Attributes
    ----------
    best_value : float or None
        Best monitored value so far (None before the first epoch).
    best_epoch : int or None
        Its 1-based epoch number.
    wait : int
        Epochs since then without an improvement.

    The record continues when a fit continues the run (the same optimizer, whose
    ``completed_epochs`` is where the record stopped) with this instance or an equal
    configuration (another EarlyStopping with the same parameters, or the same int patience
    passed to fit); otherwise, after ``reset()`` or ``optimizer.reset()``, it starts afresh.
    """

    _run_params = None  # also the value for an instance pickled before it existed

    def __init__(self, patience=5, min_delta=0.0, monitor="val_loss",
                 restore_best_weights=True):
        self.patience = check_number(patience, "patience", low=1, integer=True)
        self.min_delta = float(check_number(min_delta, "min_delta", low=0.0))
        if monitor not in ("val_loss", "loss", "val_metric"):
            raise ValueError(f"monitor={monitor!r}; expected 'val_loss', 'loss' or "
                             "'val_metric' (the validation accuracy for classifiers, R^2 "
                             "otherwise: Keras' 'val_accuracy' is monitor='val_metric')")
        self.monitor = monitor
        self.restore_best_weights = bool(restore_best_weights)
        self.reset()

    def reset(self):
        """Forget the record (best value, its epoch and weights, epochs without improvement)."""
        self.best_value = None
        self.best_epoch = None
        self.wait = 0
        self._best_params = None
        self._at_epoch = 0  # the run's completed_epochs when the record was last updated
        # the parameters the run had reached at _at_epoch when the end of a fit put the best
        # ones back (restore_best_weights): a fit that continues the run goes on from them,
        # as the uninterrupted run does (None: the model holds them)
        self._run_params = None

    def _take_record(self, other):
        self.best_value, self.best_epoch, self.wait = other.best_value, other.best_epoch, \
            other.wait
        self._best_params = other._best_params.copy()
        self._at_epoch = other._at_epoch
        self._run_params = None if other._run_params is None else other._run_params.copy()

    def _continues(self, completed_epochs, params):
        return (self._at_epoch == completed_epochs and self.best_value is not None and
                self._best_params is not None and self._best_params.shape == params.shape and
                self._best_params.dtype == params.dtype)

    def _resume(self, params):
        """Before a fit that continues the run: when the last fit ended by putting the best
        epoch's parameters back and the model still holds them (nobody changed them since),
        put back the parameters the run had reached, so that the run goes on from where it
        stopped, bitwise as an uninterrupted one.  Parameters changed since are kept."""
        run, self._run_params = self._run_params, None
        if (run is not None and self._best_params is not None and run.shape == params.shape
                and run.dtype == params.dtype
                and self._best_params.tobytes() == params.tobytes()):
            params[...] = run

    def _restore_best(self, params):
        """Put the best epoch's parameters back at the end of a fit, keeping the ones the
        run reached for a fit that continues it (``_resume``)."""
        if self._best_params.tobytes() != params.tobytes():
            self._run_params = params.copy()
        params[...] = self._best_params

    def _update(self, value, epoch, params):
        """Record epoch `epoch` (1-based) with monitored `value`; True when it is time to stop."""
        self._at_epoch = epoch
        self._run_params = None
        if self.best_value is None:
            improved = True
        elif self.monitor == "val_metric":
            improved = value > self.best_value + self.min_delta
        else:
            improved = value < self.best_value - self.min_delta
        if improved:
            self.best_value, self.best_epoch, self.wait = value, epoch, 0
            if self._best_params is None or self._best_params.shape != params.shape or \
                    self._best_params.dtype != params.dtype:
                self._best_params = np.empty_like(params)
            self._best_params[...] = params
            return False
        self.wait += 1
        return self.wait >= self.patience

    def _update_tolerance(self, value, epoch, params, tol):
        """Record epoch `epoch` by scikit-learn's rule (its MLP's
        ``_update_no_improvement_count``), which the estimators keep
        (fastnn.interop.sklearn_stopping); returns the epochs without improvement, which
        scikit-learn lets reach ``n_iter_no_change`` before it stops.

        An epoch is no improvement unless `value` is below the best by more than `tol` (a NaN
        never improves); the best value, and its parameters when `params` is not None, follow
        every decrease, by `tol` or not.  Values are minimised (the estimators pass minus a
        score); ``patience`` and ``min_delta`` are not used (the estimator's current
        ``n_iter_no_change`` and ``tol`` are).
        """
        best = np.inf if self.best_value is None else self.best_value
        if not np.isfinite(value) or value > best - tol:
            self.wait += 1
        else:
            self.wait = 0
        if value < best:
            self.best_value, self.best_epoch = value, epoch
            if params is not None:
                if self._best_params is None or self._best_params.shape != params.shape or \
                        self._best_params.dtype != params.dtype:
                    self._best_params = np.empty_like(params)
                self._best_params[...] = params
        return self.wait

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"monitor={self.monitor!r}, restore_best_weights={self.restore_best_weights})")
