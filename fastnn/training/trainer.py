"""``fit``: check the arguments, prepare the data, and hand them to a training run; and
``Trainer``, the methods ``fastnn.MLP`` inherits to train (``fit``, ``evaluate``, ``score``,
``loss_and_grad``).

Python does, once per fit: validation and conversion of the data (fastnn/training/data.py),
then the workspace and the optimizer state (fastnn/training/engine.py, ``TrainingRun``).  Once
per epoch: the sample order, one call into the compiled epoch (``fastnn._core._epoch``) that runs every
minibatch without the GIL, then validation metrics, the schedule, early stopping and
callbacks.  Nothing is allocated per minibatch and nothing grows with the number of steps.

Continuing is the default: the epoch and step counts, the schedule's progress and the
optimizer's state live in the optimizer, so a second fit with it goes on where the first
stopped; ``optimizer.reset()`` starts afresh (see fastnn/training/engine.py for where each piece of a
run's state lives).

Determinism: the sample order of each epoch is a function of ``seed`` and the epoch's index
alone, the compiled loop is sequential, and BLAS is deterministic for a fixed thread count, so
the same seed, data and thread count give bitwise-identical weights, and with an int seed
``fit(3 epochs)`` then ``fit(3 epochs)`` with the same optimizer equals ``fit(6 epochs)``.
Without a seed, fit uses the model's own (``MLP.seed``, the int its weights were drawn from),
so one seed fixes the whole run, as in scikit-learn and Keras.
"""
import numbers

import numpy as np

from fastnn.runtime import fpmode
from fastnn._validation import (MAX_DIM, check_bool, check_number, check_random_state,
                                check_writeable, weight_total)
from fastnn.runtime import boundary
from fastnn.nn.network import Network
from fastnn.optim.lbfgs import LBFGS
from fastnn.optim.optimizers import get_optimizer
from fastnn.training.data import DataPreparation, _prepare_fit_data, _split_validation
from fastnn.training.distributed import MPIContext, agreed
# the public classes of a run are defined beside it and re-exported here (fastnn.training.trainer.X)
from fastnn.training.engine import (SIGNAL_CHECK_INTERVAL, EarlyStopping, History,  # noqa: F401
                                    TrainingDiverged, TrainingRun, evaluate)
from fastnn.training.full_batch import FullBatchRun

#: seeds of the sample order drawn when `seed` is not an int
_SEED_KEY_BOUND = 2 ** 63


def fit(model, X, y, loss, optimizer=None, *, epochs=None, batch_size=32, shuffle=True,
        seed=None, sample_weight=None, validation_data=None, validation_split=0.0,
        early_stopping=None, callbacks=(), verbose=0, drop_last=False, comm=None,
        n_threads=None, flush_denormals=None):
    """Train `model` by minibatch SGD (or Adam, AdamW), or full-batch L-BFGS, on (X, y).

    Parameters
    ----------
    model : fastnn.MLP
    X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
        Converted once to the model's dtype (float32 or float64).  A sparse X (any format)
        is converted once to CSR (``fastnn.nn.sparse.as_csr``: O(nnz) memory) and kept sparse:
        the compiled sparse epoch loop (fastnn/_core/_sparse.pyx) reads each minibatch's rows in
        place.  Not with ``comm``, nor layer normalization of the first layer.
    y : array-like
        Targets as the loss accepts them (labels, one-hot/probability rows, values).
    loss : str or fastnn.nn.losses.Loss
    optimizer : fastnn.SGD, Adam, AdamW, LBFGS, "sgd", "adam", "adamw" or None
        None: SGD(lr=0.01).  ``fastnn.LBFGS`` runs full-batch L-BFGS (scipy's L-BFGS-B,
        fastnn/training/full_batch.py): one History entry per iteration, up to its
        ``max_iter``; ``epochs`` and ``comm`` are refused, batch_size, shuffle and drop_last
        ignored, and the objective has no dropout; every other argument works as below.
        A minibatch optimizer keeps the run's state between fits: velocity/moments, the
        step count ``t``, the epoch count ``completed_epochs`` that its schedule is a function
        of, and a ReduceOnPlateau's progress.  A second fit with it continues the run (epoch 4 of a run
        continued after 3 epochs gets the rate and, with an int seed, the sample order of an
        uninterrupted run's epoch 4); call ``optimizer.reset()`` to start afresh.
    epochs : int or None, default None
        Epochs to train in this call (more epochs of the same run when continuing); None: 10.
        Not with LBFGS (a TypeError: its iterations are ``LBFGS(max_iter=...)``).
    batch_size : int, default 32
        Samples per minibatch (one optimizer step each), clipped to n_samples.  The last,
        smaller batch of an epoch is used unless drop_last.
    shuffle : bool, default True
        Reshuffle the samples every epoch: the order of the epoch after e completed ones is
        ``default_rng([seed, e]).permutation(n_samples)``.
    seed : int, numpy.random.Generator or None
        Shuffling, validation split and dropout.  Same seed and data: bitwise identical
        weights, for any ``n_threads``.  None: the model's seed (``model.seed``, the int its
        weights were drawn from), so ``MLP(..., seed=0)`` fitted twice gives the same bits
        and ``fit(epochs=3)`` then ``fit(epochs=2)`` with the same optimizer equals
        ``fit(epochs=5)``; a model without one (built from a Generator or fresh entropy,
        or loaded from a file) draws fresh entropy.  A Generator (or that entropy) draws the
        shuffling seed from it at the start of each fit, so only an int seed continues a
        run's sample order bitwise.
    sample_weight : array-like of shape (n_samples,), optional
        Each minibatch minimizes sum_i w_i l_i / sum_i w_i; a batch of zero weight is skipped.
    validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
    validation_split : float in [0, 1), default 0.0
        Hold out this random fraction of (X, y) for validation (ignored when
        validation_data is given).
    early_stopping : EarlyStopping, int or None
        An int is the patience of ``EarlyStopping(patience)``.  The same instance passed to a
        fit that continues the run continues its record.  An EarlyStopping placed in
        `callbacks` (the Keras habit) is used as this argument.
    callbacks : sequence of callables ``cb(epoch, logs)``
        Called after every epoch with its 1-based number over the run and the logs dict (the
        History fields of that epoch); returning True stops training (with comm: on every
        rank, when any rank's callback asks).  An exception raised by a callback propagates; the
        model keeps the weights of the finished epochs.
    verbose : int, default 0
        1 prints one line per epoch to stdout (its mean training loss, learning rate,
        samples per second and validation figures); 2 shows a progress bar (tqdm, on
        stderr) if tqdm is installed.
    drop_last : bool, default False
    comm : mpi4py.MPI.Intracomm, optional
        Data-parallel training over MPI (see fastnn.training.distributed): X, y, sample_weight and
        validation data are this rank's shard, every other argument must be the same on all
        ranks, and `seed` an int or None (None: rank 0's model seed, or entropy rank 0 draws).
        The result equals one process training on the concatenated shards with the same
        global minibatches.
    n_threads : int or None, default None
        fastnn's threads for this fit; None: ``fastnn.runtime.threads.default_threads()``, a
        threadpoolctl limit, else FASTNN_NUM_THREADS or OMP_NUM_THREADS (set by joblib's
        loky workers), else every core the process may run on, shared out among the MPI
        ranks of the node when they are not bound to cores.  The trained parameters are the
        same bits for every count: each product and pass is cut into tiles fixed by the
        shapes, and the threads only share them out (layers too small to gain run on one
        thread).
        scipy's OpenBLAS runs single-threaded inside (see fastnn.runtime.threads).
    flush_denormals : bool or None, default None
        Flush subnormal floats (below 1.2e-38 in float32) to zero in the compiled training
        and evaluation, which keeps late epochs as fast as early ones; False leaves the
        floating-point mode alone (IEEE subnormals, bitwise the results from before the
        switch existed).  None: the process-wide setting, True unless changed (see
        fastnn.runtime.fpmode).  The caller's floating-point mode is unchanged after fit, also when
        it raises or is interrupted.

    Returns
    -------
    History (also stored as ``model.history_``)
        Per epoch (numbered from 1 over the run): mean training loss, validation loss and
        metric, learning rate, seconds and samples per second.

    Raises
    ------
    ValueError, TypeError
        Bad arguments or data, and every configuration error that can be known before the
        first step (EarlyStopping(monitor="val_metric") without validation data, a schedule
        giving a rate that is not finite and positive within the planned epochs, sample
        weights summing to zero after the validation split, MPI ranks disagreeing on the
        model, loss, validation or stopping setup): raised before any parameter changes.
    TrainingDiverged
        The loss or the parameters became NaN/inf; raised with the epoch and step.  The model
        keeps the last parameters known to give a finite loss: those at the start of that
        epoch (of the epoch before when its first step failed), so that it never predicts
        NaN from weights that merely happen to be finite.  The optimizer's state (velocity,
        moments, step count) is reset; its epoch count and schedule are kept.
    KeyboardInterrupt
        Re-raised after the minibatch that was running when Ctrl-C arrived; the model holds
        the weights after that minibatch and ``model.history_`` the completed epochs.
    """
    run, epochs = prepare_run(
        model, X, y, loss, optimizer, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
        seed=seed, sample_weight=sample_weight, validation_data=validation_data,
        validation_split=validation_split, early_stopping=early_stopping, callbacks=callbacks,
        verbose=verbose, drop_last=drop_last, comm=comm, n_threads=n_threads,
        flush_denormals=flush_denormals)
    return run.run(epochs, n_threads)


def check_callbacks(callbacks, allow=()):
    """The callbacks as a list: the one check of fit's and MLPEnsemble.fit's callbacks.

    Parameters
    ----------
    callbacks : sequence
        Each a callable ``cb(epoch, logs)``, or an instance of one of the classes `allow`.
    allow : tuple of type, default ()
        Classes whose instances may stand among the callbacks (the caller takes them out:
        fit's EarlyStopping).

    Returns
    -------
    list

    Raises
    ------
    TypeError
        `callbacks` is a single callable or not a sequence, or holds something else.
    """
    if callable(callbacks) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"callbacks must be a sequence of callables cb(epoch, logs); got "
                        f"{callbacks!r} (put a single callback in a list)")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb) and not isinstance(cb, allow):
            raise TypeError(f"callbacks must be callables cb(epoch, logs); got {cb!r}")
    return callbacks


def check_comm_seed(seed):
    """With MPI every rank must draw the same minibatches: the seed is an int or None.

    Parameters
    ----------
    seed : int, None or other
        The fit's seed.

    Raises
    ------
    TypeError
        Another seed (a Generator, a RandomState): it cannot be the same on every rank.
    """
    if seed is not None and not isinstance(seed, numbers.Integral):
        raise TypeError(f"with comm, seed must be an int or None (the same on every rank) "
                        f"so that all ranks draw the same minibatches; got {seed!r}")


def prepare_run(model, X, y, loss, optimizer=None, *, epochs=None, batch_size=32, shuffle=True,
                seed=None, sample_weight=None, validation_data=None, validation_split=0.0,
                early_stopping=None, callbacks=(), verbose=0, drop_last=False, comm=None,
                n_threads=None, flush_denormals=None, recorders=()):
    """Everything ``fit`` does before the first epoch, without running any.

    For a driver that runs the epochs itself (fastnn.ensemble runs its members' runs in
    lockstep through ``TrainingRun.epochs``).

    Parameters
    ----------
    model, X, y, loss, optimizer, epochs, batch_size, shuffle, seed, sample_weight,
    validation_data, validation_split, early_stopping, callbacks, verbose, drop_last, comm,
    n_threads, flush_denormals
        As for ``fit``.
    recorders : sequence of callables ``rec(epoch, logs)``
        Callbacks that record each epoch into an object's state (a scikit-learn
        estimator's records): called as part of the epoch's commit, under the model's lock,
        before the callbacks; see ``TrainingRun``.

    Returns
    -------
    run : fastnn.training.engine.TrainingRun (a fastnn.training.full_batch.FullBatchRun for LBFGS)
        Checked (``TrainingRun.check``): every error knowable before a step has been raised.
    epochs : int
        The epochs to run.

    Raises
    ------
    ValueError, TypeError
        As ``fit`` raises them before its first step.
    """
    # with MPI, an argument refused on one rank is refused on every rank (the others would
    # wait in a collective): the checks run on every rank, then the ranks agree
    mpi = None
    if comm is not None:
        mpi = MPIContext(comm)
    with agreed(mpi):
        if not isinstance(model, Network):
            raise TypeError(f"model must be a fastnn.MLP; got {type(model).__name__}")
        check_writeable(model.params, "model.params")
        check_writeable(model.grads, "model.grads")
        full_batch = isinstance(optimizer, LBFGS)
        if full_batch and epochs is not None:
            raise TypeError(f"epochs={epochs!r} does not apply to L-BFGS, which runs up to its "
                            f"max_iter={optimizer.max_iter} iterations: set "
                            "fastnn.LBFGS(max_iter=...) and leave epochs out")
        if full_batch and comm is not None:
            raise ValueError("data-parallel training (comm) does not support L-BFGS; train with a "
                             "minibatch optimizer (SGD, Adam, AdamW), or without comm")
        epochs = optimizer.max_iter if full_batch else \
            check_number(10 if epochs is None else epochs, "epochs", low=1, integer=True)
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
        callbacks = check_callbacks(callbacks, allow=(EarlyStopping,))
        # Keras habit: callbacks=[EarlyStopping(...)] means early_stopping=EarlyStopping(...)
        stoppers = [cb for cb in callbacks if isinstance(cb, EarlyStopping)]
        if stoppers:
            if early_stopping is not None or len(stoppers) > 1:
                raise TypeError("got more than one EarlyStopping (in callbacks and/or "
                                "early_stopping=); pass one, as early_stopping=EarlyStopping(...)")
            early_stopping = stoppers[0]
            callbacks = [cb for cb in callbacks if not isinstance(cb, EarlyStopping)]
        if not full_batch:
            optimizer = get_optimizer(optimizer)
        if mpi is not None:
            check_comm_seed(seed)
    if seed is None and comm is None:
        # the model's seed: shuffling, validation split and dropout follow from it (and each
        # epoch's from the run's epoch count, fastnn.training.engine.epoch_order), so the same
        # script gives the same bits and a continued run equals one long run
        seed = model.seed
    if mpi is not None:
        # before any collective whose buffers depend on them (the dtype, above all)
        mpi.check_same({"epochs": epochs, "batch_size": batch_size, "shuffle": shuffle,
                        "drop_last": drop_last, "validation_split": fraction,
                        "seed": None if seed is None else int(seed),
                        "optimizer": repr(optimizer), "layer_sizes": model.layer_sizes,
                        "dtype": model.dtype.name}, "a fit argument")
        if seed is None:  # rank 0's model seed, else its fresh entropy: one seed everywhere
            seed = mpi.comm.bcast(model.seed if model.seed is not None else
                                  int(np.random.SeedSequence().entropy % 2**63), root=0)
        if verbose and not mpi.is_root:
            verbose = 0
    rng = check_random_state(seed)
    # the dropout masks' key, drawn first (so equal on every rank) and only with dropout
    dropout_seed = (int(rng.integers(2**63)) if not full_batch and
                    any(layer.dropout for layer in model.layers) else 0)

    if mpi is None:
        loss, data, val = _prepare_fit_data(model, X, y, loss, sample_weight, validation_data,
                                            fraction, rng)
    else:
        # every rank validates its shard; all ranks raise if any rank's input is bad.  A
        # shard's weights may all be zero, as some rows of one process's data may: their
        # total over the ranks is checked (TrainingRun.check).
        with agreed(mpi, (ValueError, TypeError, MemoryError)):
            loss, data, val = _prepare_fit_data(model, X, y, loss, sample_weight,
                                                validation_data, 0.0, rng, whole=False)
        if validation_data is None and fraction > 0:
            # the rows one process would hold out, drawn over the global rows from the same
            # stream on every rank (each keeps its own): the ranks together equal one process
            offset, n_global = mpi.shard_layout(data[0].shape[0])
            data, val = _split_validation(list(data), data[0].shape[0], fraction, rng,
                                          offset, n_global)
    if full_batch:
        run = FullBatchRun(model, loss, optimizer, data, val, early_stopping=early_stopping,
                           callbacks=callbacks, verbose=verbose, flush_denormals=flush_denormals,
                           recorders=recorders)
        run.check(epochs)
        return run, epochs
    seed_key = None
    if shuffle:
        seed_key = int(seed) if isinstance(seed, numbers.Integral) else \
            int(rng.integers(_SEED_KEY_BOUND))
    run = TrainingRun(model, loss, optimizer, data, val, batch_size=batch_size,
                      drop_last=drop_last, shuffle=shuffle, seed_key=seed_key,
                      early_stopping=early_stopping, callbacks=callbacks, verbose=verbose,
                      mpi=mpi, flush_denormals=flush_denormals, dropout_seed=dropout_seed,
                      recorders=recorders)
    run.check(epochs)
    return run, epochs


class Trainer(DataPreparation):
    """The training methods of ``fastnn.MLP``: ``fit``, ``evaluate``, ``score`` and
    ``loss_and_grad`` (a mixin over ``fastnn.nn.network.Network``).

    As Keras' ``Model`` inherits its ``Trainer``, the MLP inherits this class, which sits
    below it and imports nothing above it: ``model.fit`` reaches the training run without
    the model importing a higher layer.
    """

    def fit(self, X, y, loss=None, optimizer=None, **kwargs):
        """Train with minibatch SGD (Adam, AdamW) or L-BFGS; see ``fastnn.fit`` for every
        argument.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
        y : array-like
            Targets in the form the loss accepts.
        loss : str or fastnn.nn.losses.Loss, optional
            Any name of ``fastnn.nn.losses.LOSS_NAMES`` (Keras and PyTorch spellings included).
            Omitted: the loss of the previous fit (or of a loaded model), else the loss that
            an explicit ``output`` link implies; otherwise a TypeError that names the
            candidates, since guessing between classification and regression from y alone
            would be a guess.
        optimizer : SGD, Adam, AdamW, LBFGS (fastnn's), "sgd", "adam", "adamw" or None
            ``fastnn.LBFGS``: full-batch L-BFGS, one History entry per iteration.
        **kwargs
            epochs, batch_size, validation_split, early_stopping, callbacks, verbose, ...:
            see ``fastnn.fit``.

        Returns
        -------
        fastnn.History
        """
        return fit(self, X, y, self._default_loss(loss, y, "fit"), optimizer, **kwargs)

    def _default_loss(self, loss, y, method):
        if loss is not None:
            return loss
        if self.loss_ is not None:
            return self.loss_
        by_link = {"softmax": "cross_entropy", "sigmoid": "bce", "exp": "poisson",
                   "identity": "mse"}
        if self.output != "auto":
            return by_link[self.output]
        raise TypeError(f"{method}() needs a loss; fastnn does not guess classification versus "
                        f"regression from y.{_loss_hint(y, self.n_outputs)} Pass e.g. "
                        "loss=\"cross_entropy\" (class labels 0..k-1 or one-hot rows, softmax "
                        "output), loss=\"bce\" (0/1 targets, sigmoid), loss=\"mse\" "
                        "(regression); fastnn.nn.losses.LOSS_NAMES lists every name, including "
                        "the Keras and PyTorch spellings (\"sparse_categorical_crossentropy\", "
                        "\"mean_squared_error\", \"CrossEntropyLoss\", ...)")

    def evaluate(self, X, y, loss=None, sample_weight=None):
        """The mean loss and the metric on (X, y), as ``fit`` reports them for validation.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
            A sparse X is kept sparse (fastnn.nn.sparse).
        y : array-like
            Targets in the form the loss accepts.
        loss : str or fastnn.nn.losses.Loss, optional
            Default: the loss the model was trained with (see ``fit``).
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the weighted mean loss (sum_i w_i l_i / sum_i w_i) and of the metric.

        Returns
        -------
        loss : float
            The (weighted) mean loss, in the units of the loss (nats per sample for the
            likelihood losses).
        metric : float
            Accuracy (sigmoid or softmax output: the fraction of correct predictions) or the
            coefficient of determination R^2 (averaged over outputs) otherwise.

        Raises
        ------
        TypeError, ValueError
            As ``fit`` for malformed X, y or sample_weight, or no loss known.
        """
        loss = self._default_loss(loss, y, "evaluate")
        loss, X, Y, labels, sw, sigma = self._prepare_any(X, y, loss, sample_weight)
        self.loss_ = loss
        # the same code that scores validation data
        return evaluate(self, loss, X, Y, labels, sw, sigma)

    def score(self, X, y, sample_weight=None):
        """The metric of ``evaluate``: accuracy for classifiers, R^2 otherwise (as scikit-learn).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
        y : array-like
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the weighted mean (as ``evaluate``).

        Returns
        -------
        float
            Accuracy as a fraction in [0, 1] (not a percentage), or R^2 (at most 1).
        """
        return self.evaluate(X, y, sample_weight=sample_weight)[1]

    def loss_and_grad(self, X, y, loss, sample_weight=None):
        """Mean loss over the samples, and its gradient into ``self.grads``.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
            A sparse X is kept sparse (fastnn.nn.sparse: the first layer over its stored
            entries).
        y : array-like
            Targets in the form the loss accepts (see fastnn.nn.losses).
        loss : str or fastnn.nn.losses.Loss
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights; the loss is then sum_i w_i l_i / sum_i w_i.

        Returns
        -------
        loss : float
            The (weighted) mean loss.  ``self.grads`` holds its gradient w.r.t. ``params``.
        """
        check_writeable(self.grads, "model.grads")
        loss, X, Y, labels, sw, sigma = self._prepare_any(X, y, loss, sample_weight)
        weight_sum = weight_total(sw, X.shape[0])
        with self._lock:  # fit uses grads meanwhile
            if isinstance(X, np.ndarray):
                total = boundary.net_loss_grad(
                    self._spec, self.params, self.grads, X, loss.kind, int(loss.full),
                    loss.scalar_sigma, Y, labels, sw, sigma, 1.0 / weight_sum)
            else:  # a fastnn.nn.sparse.CSRInput: the compiled sparse first layer
                total = boundary.csr_loss_grad(
                    self._spec, self.params, self.grads, X.data, X.indices, X.indptr,
                    X.shape[1], loss.kind, int(loss.full), loss.scalar_sigma, Y, labels, sw,
                    sigma, 1.0 / weight_sum)
        self.loss_ = loss
        return total / weight_sum


def _loss_hint(y, n_outputs):
    """A sentence on what y looks like, to help choose a loss (never used to choose it)."""
    try:
        y = np.asarray(y)
    except Exception:  # noqa: BLE001 - a hint only; the loss reports bad y itself
        return ""
    if y.ndim == 1 and y.dtype.kind in "biu" and y.size:
        return (f" y holds integers {y.min()}..{y.max()} and the model has {n_outputs} "
                "outputs: for class labels that is loss=\"cross_entropy\".")
    if y.dtype.kind == "f":
        return " y holds floating-point values: for a regression that is loss=\"mse\"."
    return ""
