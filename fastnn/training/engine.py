"""One training run: where an epoch starts, where the state of a run lives.

``fastnn.fit`` (fastnn/training/trainer.py) checks its arguments and prepares the data
(fastnn/training/data.py), then hands them to a ``TrainingRun``, which holds everything an epoch
needs and runs the epochs.  What a run records (``History``, ``EarlyStopping``) is in
fastnn/training/callbacks.py, how it scores data (``evaluate``) in fastnn/training/evaluation.py.

Where the state of a run lives (what survives between fits, saves and pickles):

=============================  ================================================================
state                          kept by
=============================  ================================================================
epoch count                    ``optimizer.completed_epochs`` (0-based count of finished
                               epochs; user-visible epoch numbers are 1-based: epoch
                               ``completed_epochs + 1`` is the next one)
step count                     ``optimizer.t``
schedule progress              ``optimizer.schedule`` (a function of the epoch count; a
                               ReduceOnPlateau also keeps its best value and scale)
velocity / moments             ``optimizer.state``
sample order                   a function of (seed, epoch count): ``epoch_order``
early-stopping record          the ``EarlyStopping`` instance (best value, its epoch and
                               weights, epochs without improvement), which the optimizer
                               carries for the run (saved with it: pickle, or
                               ``MLP.save(path, optimizer=...)``)
workspace, grads buffer        this object, allocated once per fit, never saved
=============================  ================================================================

So a second ``fit`` with the same optimizer, ``MLP.save(path, optimizer)`` +
``fastnn.load(path, with_optimizer=True)`` or a pickle of the optimizer continue the run, and
with an int seed the continued run is bitwise the uninterrupted one.  ``optimizer.reset()``
(and ``EarlyStopping.reset()``) start afresh.

Epoch numbers users see (``History.epoch``, ``best_epoch``, the callbacks' ``epoch``,
``logs["epoch"]``, messages, verbose lines) are 1-based and count over the whole run.
"""
import contextlib
import math
import warnings

import numpy as np

from fastnn.runtime.state import hold, let_readers_in, sigint_deferred
from fastnn._validation import all_finite, check_weight_total, weight_total
from fastnn.nn.sparse import CSRInput
from fastnn.optim.optimizers import MAX_STEPS, Constant, Cosine, InverseScaling, StepDecay
from fastnn.runtime import boundary
from fastnn.runtime.threads import compiled_threads
from fastnn.training import claims
# the records and the scoring of a run, defined beside it; re-exported (fastnn.training.engine.X)
from fastnn.training.callbacks import EarlyStopping, History, TrainingDiverged  # noqa: F401
from fastnn.training.evaluation import _CLASSIFIER_LINKS, evaluate  # noqa: F401

#: seconds between two checks for Ctrl-C inside the compiled loop
SIGNAL_CHECK_INTERVAL = 0.1
#: a fit with nothing to do between its epochs (no validation, early stopping, callbacks,
#: recorders, verbose output or MPI; a schedule that is a function of the epoch) runs short
#: epochs several to a compiled call, up to this long by the last epoch's time and this many
#: epochs: a small network's epoch (~0.5 ms) otherwise spends a fifth of its time in Python
#: between epochs.  A reader (predict, save in another thread) gets in between calls.
GROUP_SECONDS = 0.005
GROUP_EPOCHS = 64
#: the schedules whose rate is a function of the epoch index alone (their exact classes)
_PLANNED_SCHEDULES = (Constant, StepDecay, InverseScaling, Cosine)


class _Workspace:
    """Every buffer the compiled epoch needs, allocated once per fit."""

    def __init__(self, model, batch_size, n_targets, has_labels, has_sw, has_sigma,
                 sparse_input=False):
        spec, dt = model._spec, model.dtype
        b = batch_size
        try:
            self.acts = np.empty(b * spec.act_width, dt)
            self.delta0 = np.empty(b * spec.max_width, dt)
            self.delta1 = np.empty(b * spec.max_width, dt)
            # a sparse X is read in place (no dense batch of n_inputs columns)
            self.X = None if sparse_input else np.empty((b, model.n_inputs), dt)
            self.Y = np.empty((b, n_targets), dt) if n_targets else None
            self.labels = np.empty(b, np.intp) if has_labels else None
            self.sw = np.empty(b, dt) if has_sw else None
            self.sigma = np.empty(b, dt) if has_sigma else None
        except MemoryError:
            n_bytes = b * (spec.act_width + 2 * spec.max_width + model.n_inputs) * dt.itemsize
            raise MemoryError(f"could not allocate the training workspace for batch_size={b} "
                              f"(about {n_bytes} bytes); use a smaller batch_size") from None


def epoch_order(order, seed_key, completed_epochs):
    """Fill `order` with the sample order of the epoch after `completed_epochs` finished ones.

    ``default_rng([seed_key, completed_epochs]).permutation(n)``: a function of the seed and the
    epoch index alone (not of a stream that a new fit would restart), so a continued run
    shuffles as an uninterrupted one.  In place: no allocation beyond the generator's.  The
    permutation is compiled (fastnn.runtime.boundary.fill_permutation: NumPy's seeding, draws
    and shuffle, bit for bit, without NumPy's ~20 us of objects per epoch).
    """
    boundary.fill_permutation(order, (seed_key, completed_epochs))

# ------------------------------------------------------------------ the run


class TrainingRun:
    """Everything one fit needs, and the epoch loop.

    Built by ``fastnn.fit`` from validated, converted arrays; the persistent state lives in
    the optimizer and the EarlyStopping instance (see the module docstring), so that a new
    TrainingRun over the same optimizer continues where the last one stopped.

    Parameters
    ----------
    model : fastnn.MLP
    loss : fastnn.nn.losses.Loss
    optimizer : fastnn.optim.optimizers.Optimizer
    data : (X, Y, labels, sw, sigma)
        This process's (or rank's) training arrays, prepared by ``MLP.prepare_data``.
    val : tuple of prepared arrays or None
    batch_size, drop_last, shuffle : as fastnn.fit
    seed_key : int or None
        The key of the sample order (``epoch_order``); None when shuffle is off.
    early_stopping : EarlyStopping or None
    callbacks : list of callables
        Called after each epoch's commit, outside the model's lock (user code).
    recorders : list of callables
        Like callbacks (``rec(epoch, logs)``, True to stop), but part of the epoch's commit:
        called under the model's lock with the rest of the epoch's record, so that a reader
        never sees the epoch without what they record (a scikit-learn estimator's records).
        They must not wait for another thread.
    verbose : int
    mpi : fastnn.training.distributed.MPIContext or None
    flush_denormals : bool
        Flush subnormals to zero in the compiled training and evaluation (fastnn.runtime.fpmode).
    dropout_seed : int
        The key of the dropout masks (0 without dropout).
    """

    #: what one entry of the History is (the verbose line's word): full-batch runs say
    #: "iteration" (fastnn.training.full_batch)
    unit = "epoch"

    def __init__(self, model, loss, optimizer, data, val, *, batch_size, drop_last, shuffle,
                 seed_key, early_stopping, callbacks, verbose, mpi=None,
                 flush_denormals=True, dropout_seed=0, recorders=()):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.data, self.val = data, val
        self.drop_last, self.shuffle, self.seed_key = drop_last, shuffle, seed_key
        self.early_stopping, self.callbacks = early_stopping, callbacks
        self.recorders = list(recorders)
        # (the epoch call last committed, (logs, stop) or None, the error it raised or None)
        self._commit = (None, None, None)
        self.verbose, self.mpi = verbose, mpi
        self.flush_denormals = flush_denormals  # the compiled calls' floating-point mode
        # the dropout masks are a function of (dropout_seed, epoch index, step), so a
        # continued run draws the masks an uninterrupted one would
        self.dropout_seed = dropout_seed
        # fastnn's threads of each compiled call: run() sets it from fit's n_threads; a driver
        # of TrainingRun.epochs (fastnn.ensemble: one member's epoch per pool task) keeps 1
        self.n_threads = 1
        # run() sets it: epochs may run several to a compiled call (_group_rates) when the
        # driver is run() itself, which does nothing between them
        self._may_group = False
        X = data[0]
        self.offset, self.n_global = (0, X.shape[0]) if mpi is None else \
            mpi.shard_layout(X.shape[0])
        if drop_last and batch_size > self.n_global:
            raise ValueError(f"drop_last=True with batch_size={batch_size} > "
                             f"n_samples={self.n_global} leaves no batch")
        self.batch_size = min(batch_size, self.n_global)
        self.metric_name = "accuracy" if loss.output_name in _CLASSIFIER_LINKS else "r2"

    # -------------------------------------------------------------- before the first step

    def configuration(self):
        """Everything that decides which collectives run and what they mean (MPI ranks must
        agree on all of it)."""
        model, opt, es = self.model, self.optimizer, self.early_stopping
        s1, s2 = opt.state
        return {
            "dtype": model.dtype.name, "layer_sizes": list(model.layer_sizes),
            "activations": [(layer.activation, layer.negative_slope, layer.alpha)
                            for layer in model.layers],
            "dropout and normalization": [(getattr(layer, "dropout", 0.0),
                                           getattr(layer, "normalization", None))
                                          for layer in model.layers],
            "output": model.output, "loss": self.loss.get_config(),
            "validation data": self.val is not None,
            "early_stopping": repr(es),
            "optimizer": repr(opt),
            "schedule progress": repr(sorted(vars(opt.schedule).items())),
            "optimizer counters (completed_epochs, t)": (opt.completed_epochs, opt.t),
            "optimizer state sizes": (None if s1 is None else s1.shape[0],
                                      None if s2 is None else s2.shape[0]),
            "early-stopping record": None if es is None else
            (es.best_value, es.best_epoch, es.wait, es._at_epoch),
        }

    def check(self, epochs):
        """Raise, before any step, every error that can be known before one, so that a
        configuration error never surfaces after epoch 1 has changed the weights.  With MPI
        the ranks first agree on ``configuration()``, then every rank raises the same error
        when any rank has one.
        """
        mpi, es, opt = self.mpi, self.early_stopping, self.optimizer
        claims.check_free(opt)  # (before anything changes: another run is training with it)
        # a refused fit leaves the early-stopping record as it found it: the optimizer's
        # record and the given EarlyStopping's state are put back when a check raises
        # (an L-BFGS optimizer carries no record: fastnn.training.full_batch)
        kept = (getattr(opt, "_early_stopping", None), None if es is None else dict(vars(es)))
        try:
            self._continue_early_stopping_record()  # before the comparison: it is compared
            if mpi is not None:
                mpi.check_same(self.configuration(), "the training configuration")
            error = None
            try:
                self._check_local(epochs)
            except (ValueError, TypeError) as exc:
                error = exc
            if mpi is not None:
                mpi.agree(error)
            elif error is not None:
                raise error
        except BaseException:
            self._kept_record = kept
            self.abandon()
            raise
        self._kept_record = kept

    def abandon(self):
        """Undo what ``check`` did to the early-stopping record (the optimizer's record, the
        given EarlyStopping's state): for a run checked but never run, as when a later
        member of an ensemble is refused (fastnn.MLPEnsemble.fit)."""
        kept, self._kept_record = getattr(self, "_kept_record", None), None
        if kept is None:
            return
        if hasattr(self.optimizer, "_early_stopping"):
            self.optimizer._early_stopping = kept[0]
        es = self.early_stopping
        if es is not None:
            vars(es).clear()
            vars(es).update(kept[1])

    def _check_local(self, epochs):
        # the collectives first, on every rank alike (whether validation data is present was
        # agreed on), then checks that no longer call into MPI, so that one rank raising
        # cannot leave another waiting in a collective
        if self.mpi is not None and self.mpi.any(self.data[3] is not None) and \
                self.data[3] is None:
            # the compiled loop sums each minibatch's weight over the ranks when any rank
            # has sample weights: a rank without them weighs its rows 1, as before
            X = self.data[0]
            self.data = tuple(self.data[:3]) + (np.ones(X.shape[0], self.model.dtype),) + \
                tuple(self.data[4:])
        totals = [weight_total(self.data[3], self.data[0].shape[0])]
        if self.val is not None:
            totals.append(weight_total(self.val[3], self.val[0].shape[0]))
        if self.mpi is not None:
            totals = [float(t) for t in self.mpi.sum(totals)]
        if self.mpi is not None and isinstance(self.data[0], CSRInput):
            raise ValueError("data-parallel training (comm) does not support a sparse X: pass "
                             "each rank's shard dense (X.toarray()), or train without comm")
        es = self.early_stopping
        if es is not None and es.monitor == "val_metric" and self.val is None:
            raise ValueError("EarlyStopping(monitor='val_metric') needs validation data: pass "
                             "validation_data or validation_split > 0, or monitor 'val_loss' "
                             "or 'loss'")
        self._check_optimizer(epochs)
        where = "" if self.mpi is None else ", summed over every rank's shard"
        check_weight_total(totals[0], "the sample weights of the training rows",
                           f"there is nothing to train on (after the validation split{where}); "
                           "check sample_weight or change validation_split/seed")
        if self.val is not None:
            check_weight_total(totals[1], "the sample weights of the validation rows",
                               f"the validation loss is undefined{where}; check the validation "
                               "weights or change validation_split/seed")

    def _check_optimizer(self, epochs):
        """The minibatch optimizer's part of ``check``: its planned rates and clip_norm."""
        tiny = float(np.finfo(self.model.dtype).tiny)
        self.optimizer.check_planned_rates(epochs, tiny=tiny)
        self._check_clip_norm(tiny)
        self._check_steps(epochs)

    def _check_steps(self, epochs):
        """ValueError when `epochs` more epochs would take the optimizer's step count past
        MAX_STEPS (before the run, and before every epoch: a callback may set t)."""
        per_epoch = self._steps_per_epoch()
        t = self.optimizer.t
        if type(t) is int and t + epochs * per_epoch > MAX_STEPS:   # (a bad t: _recheck's)
            raise ValueError(f"t={t} (the optimizer's step count) with {epochs} more epoch(s) "
                             f"of {per_epoch} step(s) would count past {MAX_STEPS}, the most "
                             "steps a run can count; call optimizer.reset() to start afresh")

    def _steps_per_epoch(self):
        return (self.n_global // self.batch_size if self.drop_last else
                -(-self.n_global // self.batch_size))

    def _check_clip_norm(self, tiny):
        """ValueError when clip_norm is below `tiny`, the model dtype's smallest normal number
        (before the run, and before every epoch: a callback may set it)."""
        clip = self.optimizer.clip_norm
        if clip is not None and clip < tiny:  # every clipped step would flush to zero
            raise ValueError(f"clip_norm={clip!r} is below {tiny:.3g}, the smallest normal "
                             f"number of the model's dtype {self.model.dtype}: every clipped "
                             "step would be flushed to zero; expected a larger clip_norm")

    # -------------------------------------------------------------- the epochs

    def run(self, epochs, n_threads=None):
        """Train `epochs` more epochs; returns the History (also ``model.history_``)."""
        # fastnn's threads take the compiled epoch's tiles.  Each compiled call holds OpenBLAS
        # at 1 while it runs (fastnn.runtime.boundary); this hold keeps it there for the
        # whole fit, callbacks included, as fastnn.runtime.threads documents
        # (closed on the way out: an interrupted epoch's run ends here, before the exception
        # reaches the caller, not whenever the garbage collector closes the generator)
        try:
            self._may_group = True
            with compiled_threads(n_threads) as self.n_threads, \
                    contextlib.closing(self.epochs(epochs)) as steps:
                for call in steps:
                    # the epoch and its record, one step for a save or predict in another
                    # thread (fastnn/runtime/state.py), which gets in before the next epoch
                    # starts
                    with hold([self.model]):
                        try:
                            call.run()
                        finally:  # a Ctrl-C landing as the call returns: its epochs are
                            interrupts = []   # recorded first (commit itself holds one
                            while True:       # back once it has begun)
                                try:
                                    if call.ran:
                                        self.commit(call)
                                    break
                                except KeyboardInterrupt as exc:
                                    interrupts.append(exc)
                            if interrupts:
                                raise interrupts[0]
                    let_readers_in([self.model])
        except BaseException as exc:
            abort_ranks([self], exc)
            raise
        return self.history

    def epochs(self, epochs):
        """The run, step by step, for a driver that runs the compiled epochs itself.

        A generator: it prepares each epoch (schedule, sample order, snapshot) and yields its
        compiled call (a ``fastnn.runtime.boundary.Epoch``); the driver runs it holding the model's
        lock (``call.run()``, or with other models' epochs in one ``boundary.run_epochs`` job,
        as fastnn.ensemble does), calls ``commit(call)`` before releasing the lock, lets
        waiting readers in (``fastnn.runtime.state.let_readers_in``) and resumes the generator,
        which raises the epoch's error if it had one, calls the callbacks and yields the
        next epoch.  A driver that does not commit leaves it to the generator (which then
        takes the lock for it).  ``send(True)`` instead of ``next`` also stops the
        run after that epoch, as a callback returning True does.  It returns (as
        StopIteration.value) the History, and raises what ``fastnn.fit`` raises.  Closed
        (or an exception thrown in) before its yielded call ran, the run ends after the last
        epoch that did (closed: early stopping's best weights put back) and the call is
        dropped (it can no longer run); resumed before it ran: the same, with a
        RuntimeError.  Closed or thrown into after the call ran, the model keeps that epoch's
        weights and the optimizer its step count, as after Ctrl-C (a diverged epoch falls
        back to the last parameters known to be good, as fit does, without raising).
        ``run`` is this loop with one model; under it alone a call may hold several short
        epochs (``_group_rates``: nothing happens between them), which ``commit`` records
        one by one.
        """
        model = self.model
        self.bar = None
        running = [True]      # this run's claim on the optimizer while running[0]
        try:
            try:
                claims.claim(self.optimizer, running)
            except RuntimeError:
                self.abandon()    # (check() prepared this run's early-stopping record)
                raise
            with model._lock:  # the run's start is one step for a reader too
                if self.early_stopping is not None:
                    # a continued record: go on from the parameters the run reached, not from
                    # the best ones the last fit put back (before the broadcast of rank 0's)
                    self.early_stopping._resume(model.params)
                self._allocate()
                self.history = History(self.metric_name)
                model.history_ = self.history
                model.loss_ = self.loss
            self.last_epoch = self.optimizer.completed_epochs + epochs
            self.bar = _progress_bar(epochs) if self.verbose >= 2 else None
            tiny = float(np.finfo(model.dtype).tiny)
            self._rate_inputs = None
            self._grouped = self._nothing_between_epochs()
            left = epochs
            while left > 0:
                lr = self._next_rate(tiny)
                if lr is None:
                    break
                call = self._prepare_epoch(lr)
                self.rates = self._group_rates(lr, left)
                if len(self.rates) > 1:
                    call.group(self.rates, (self.seed_key,) if self.shuffle else None,
                               self.order if self.shuffle else None, self.previous,
                               self.snapshot)
                try:
                    stop_asked = yield call
                except BaseException as exc:
                    # closed, or an exception thrown in: the run ends here, consistent
                    committed, _, error = self._commit
                    if call.ran and committed is not call:
                        self._settle(call)
                    elif not call.ran:
                        call.drop()
                        if isinstance(exc, GeneratorExit):
                            self._finish()
                    elif isinstance(exc, GeneratorExit) and error is None:
                        self._finish()  # the driver recorded the epoch: as after it
                    raise
                if not call.ran:
                    call.drop()
                    raise RuntimeError("TrainingRun.epochs was resumed before the epoch it "
                                       "yielded ran (call.run() or run_epochs); the "
                                       "run ends after its last recorded epoch")
                self.commit(call)   # (a no-op when the driver committed it)
                _, recorded, error = self._commit
                if error is not None:
                    raise error
                left -= len(call.results)
                if self._report(*recorded) or stop_asked:
                    break
            self._finish()
            return self.history
        except BaseException as exc:
            # (the driver closing the run: the driver decides, abort_ranks)
            if not isinstance(exc, GeneratorExit):
                abort_ranks([self], exc)
            raise
        finally:
            running[0] = False    # (first, and one store: an interrupt cannot skip it)
            if self.bar is not None:
                self.bar.close()

    def _next_rate(self, tiny):
        """The next epoch's learning rate (the schedule and epoch count checked once, as a
        callback may have set them), or None (with a RuntimeWarning) when a schedule driven by
        the training itself (ReduceOnPlateau, a user's) has taken it below `tiny`, the
        smallest normal number of the model's dtype, where every step is flushed to zero: the
        run stops there, as scikit-learn's adaptive rate stops once it is too small.  (The
        planned rates were checked before the first step; every rank computes the same
        rate.)"""
        opt = self.optimizer
        # what a callback may have set since the last epoch, checked as a fresh fit checks
        # it: the hyperparameters, the schedule and the epoch count, clip_norm for the dtype,
        # the step count with this epoch's steps
        opt._recheck()
        opt._check_progress()
        self._check_clip_norm(tiny)
        self._check_steps(1)
        # a rate below `tiny` ends the run with a warning when the training took it there
        # (ReduceOnPlateau); when a callback set lr or the schedule, a fresh fit would refuse
        # it, and so does the run
        inputs = (opt.lr, id(opt.schedule))
        set_by_callback = self._rate_inputs is not None and inputs != self._rate_inputs
        self._rate_inputs = inputs
        done = opt.completed_epochs
        lr = opt._rate(done)
        if opt.completed_epochs is not done:   # (a user's schedule set it in lr())
            opt._check_progress()
        if not (math.isfinite(lr) and 0 <= lr < tiny):
            return lr
        if set_by_callback:
            raise ValueError(f"the schedule {opt.schedule!r} gives lr={lr!r} for epoch "
                             f"{opt.completed_epochs + 1}, after a callback set the optimizer's "
                             f"lr or schedule; expected a rate >= {tiny:.3g}, the smallest "
                             "normal number of the model's dtype (a smaller rate's steps are "
                             "flushed to zero)")
        warnings.warn(f"the schedule {opt.schedule!r} has taken the learning rate to {lr!r} "
                      f"for epoch {opt.completed_epochs + 1}, below {tiny:.3g}, the smallest "
                      f"normal number of the model's dtype {np.dtype(self.model.dtype).name} "
                      "(every step would be flushed to zero): training stopped after epoch "
                      f"{opt.completed_epochs}; set the schedule's min_lr to keep training",
                      RuntimeWarning, stacklevel=2)
        return None

    def _nothing_between_epochs(self):
        """Whether this run's epochs may follow one another in one compiled call: its driver
        is run(), and nothing looks at an epoch before the next (validation, early stopping,
        callbacks, recorders, verbose output, MPI ranks) or sets the next one's rate from it
        (a schedule that is not a function of the epoch index alone)."""
        return (self._may_group and self.mpi is None and self.val is None and
                self.early_stopping is None and not self.callbacks and not self.recorders and
                self.verbose == 0 and type(self.optimizer.schedule) in _PLANNED_SCHEDULES)

    def _group_rates(self, lr, left):
        """The rates of the epochs the next compiled call runs: [lr] for one epoch, or,
        when nothing happens between epochs (_nothing_between_epochs), as many as take about
        GROUP_SECONDS by the last epoch's time (at most GROUP_EPOCHS and the `left` epochs
        of the run), each the schedule's rate for its epoch (a planned schedule's rates for
        every epoch of the fit were checked before its first step: check_planned_rates)."""
        history = self.history
        if not self._grouped or left < 2 or not len(history) or not history.time[-1] > 0:
            return [lr]
        opt = self.optimizer
        done, per_epoch = opt.completed_epochs, self._steps_per_epoch()
        k = min(left, GROUP_EPOCHS, int(GROUP_SECONDS / history.time[-1]),
                2 ** 32 - done)   # (the epoch index is 32 bits in the compiled call)
        if type(opt.t) is not int or opt.t + k * per_epoch > MAX_STEPS:
            return [lr]
        return [lr] + [opt._rate(epoch) for epoch in range(done + 1, done + k)]

    def _continue_early_stopping_record(self):
        """Continue the run's early-stopping record, or start one.

        The optimizer carries the EarlyStopping of the run's last fit; a fit that continues
        the run with an equal configuration (the same instance, another equal one, or the same
        int patience) takes its record over, so re-supplying the same setting never resets it.
        """
        es, opt, params = self.early_stopping, self.optimizer, self.model.params
        previous = opt._early_stopping
        if es is None:
            return
        if previous is not None and previous is not es and repr(previous) == repr(es) and \
                previous._continues(opt.completed_epochs, params):
            es._take_record(previous)
        elif not es._continues(opt.completed_epochs, params):
            es.reset()
        opt._early_stopping = es

    def _allocate(self):
        """The workspace, the optimizer's state and the sample order, once per fit; with MPI,
        rank 0's parameters on every rank."""
        model, mpi = self.model, self.mpi
        X, Y, labels, sw, sigma = self.data
        self.ws = _Workspace(model, self.batch_size, 0 if Y is None else Y.shape[1],
                             labels is not None, sw is not None, sigma is not None,
                             isinstance(X, CSRInput))
        self.state = self.optimizer.init_state(model.n_params, model.dtype)
        self.grads = model.grads
        if mpi is not None:
            mpi.broadcast(model.params)
            # [gradient | loss | spare]: what one all-reduce per minibatch adds over ranks
            self.grads = np.zeros(model.n_params + 2, dtype=model.dtype)
        self._epoch_setup()
        # the epoch's order of global sample indices (None: storage order, read in place)
        self.order = (np.arange(self.n_global, dtype=np.intp)
                      if self.shuffle or mpi is not None else None)
        self.snapshot = np.empty_like(model.params)
        self.previous = np.empty_like(model.params)  # parameters at the previous epoch's start

    def _epoch_setup(self):
        """The compiled epoch's configuration and row source, once per fit: what every epoch
        shares (loss, batch, workspace, floating-point mode, threads, dropout seed, the MPI
        rank's rows) and the training data, dense or CSR (read in place)."""
        model, ws, (X, Y, labels, sw, sigma) = self.model, self.ws, self.data
        self.epoch_config = boundary.epoch_config(
            model._spec, self.batch_size, self.drop_last, self.loss.kind, int(self.loss.full),
            self.loss.scalar_sigma, ws.acts, ws.delta0, ws.delta1, ws.X, ws.Y, ws.labels,
            ws.sw, ws.sigma, check_every=SIGNAL_CHECK_INTERVAL, row_offset=self.offset,
            reducer=None if self.mpi is None else self.mpi.reducer,
            flush_denormals=self.flush_denormals, dropout_seed=self.dropout_seed,
            n_threads=self.n_threads)
        self.rows = (boundary.CSRRows(X.data, X.indices, X.indptr, X.shape[1], Y, labels, sw,
                                      sigma)
                     if isinstance(X, CSRInput) else
                     boundary.DenseRows(X, Y, labels, sw, sigma))

    def _prepare_epoch(self, lr):
        """The next epoch's compiled call at rate `lr` (``_next_rate``): sample order,
        snapshot, optimizer arguments."""
        opt, model = self.optimizer, self.model
        done = opt.completed_epochs
        if not (math.isfinite(lr) and lr >= 0):
            # the planned rates were checked before the first step; only a schedule driven by
            # the training itself (ReduceOnPlateau, a user's) can get here, and one that has
            # decayed to exactly 0 merely stops moving the weights
            raise ValueError(f"the schedule {opt.schedule!r} gives lr={lr!r} for epoch "
                             f"{done + 1}; expected a finite rate >= 0")
        if self.shuffle:
            epoch_order(self.order, self.seed_key, done)
        self.snapshot, self.previous = self.previous, self.snapshot
        self.snapshot[...] = model.params
        # hyperparameters and state as they are now (a callback may have changed momentum)
        opt_args = opt._compiled_args(lr)     # (_next_rate checked the schedule)
        with model._lock:
            state1, state2 = opt.init_state(model.n_params, model.dtype)
            return boundary.prepare_epoch(self.epoch_config, self.rows, model.params,
                                          self.grads, state1, state2, self.order, opt_args,
                                          opt.t, done)

    def _settle(self, call):
        """A run that ends after `call` ran, without recording it: the optimizer takes the
        step count, and a diverged epoch falls back to the last good parameters (as
        _check_status does, without raising)."""
        results = call.results
        if len(results) > 1:
            # a group: its epochs before the last ran and were checked (run_group): they are
            # recorded, and the last settles as a lone epoch would (the driver of a group is
            # run(), which records every call; this is for a Ctrl-C before its record)
            with self.model._lock:
                for (result, seconds), lr in zip(results[:-1], self.rates):
                    self._record_one(result, seconds, lr, last=False)
        with self.model._lock:
            loss_sum, weight_sum, steps, status, failed_step, pending = \
                self._take_result(call.result)
            if status == boundary.STATUS_OK and not all_finite(self.model.params):
                self._restore_last_good(self.optimizer.completed_epochs + 1, None)
            elif status == boundary.STATUS_DIVERGED:
                self._restore_last_good(self.optimizer.completed_epochs + 1, failed_step)

    def _take_result(self, result):
        """An epoch's figures (its ``result``); the optimizer takes its step count.  After an
        interrupted epoch, non-finite weights go back to the epoch's start and a non-finite
        optimizer state is reset (a diverged epoch is _restore_last_good's)."""
        loss_sum, weight_sum, steps, t, status, failed_step, pending = result
        opt, model = self.optimizer, self.model
        opt.t = t
        if status == boundary.STATUS_INTERRUPTED:
            if not all_finite(model.params):
                model.params[...] = self.snapshot
            if not all(s is None or all_finite(s) for s in opt.state):
                opt._reset_state()
        return loss_sum, weight_sum, steps, status, failed_step, pending

    def commit(self, call):
        """Record the epoch `call` ran into the run's state, under the model's lock.

        The step and epoch counts, the status checks (a diverged epoch puts the last good
        parameters back), the validation figures, the history, the schedule's progress, the
        early-stopping record and the recorders: everything a reader (save, predict) sees of
        the epoch besides the weights.  The driver that ran the epoch calls this before it
        releases the model's lock, so that the epoch and its record are one step for readers
        (fastnn/runtime/state.py); the run calls it itself when the driver did not.  Called again for
        the same call, it does nothing.  Never raises: the epoch's error (divergence, Ctrl-C
        during the epoch or its record, a recorder's) is kept and raised where the run
        resumes.
        """
        # (a Ctrl-C landing in the record would leave the weights of the call's last epoch
        # with the counts and History of an earlier one: it waits for the record's end and
        # is then the call's error; one landing before the record began, a signal that
        # arrived as the compiled call returned, is caught and the record made)
        held = []
        while self._commit[0] is not call:
            deferral = None
            try:
                deferral = sigint_deferred(raise_at_end=False)
                with deferral:
                    try:
                        with self.model._lock:
                            self._commit = (call, self._record_epoch(call), None)
                    except BaseException as exc:
                        self._commit = (call, None, exc)
            except KeyboardInterrupt as exc:
                held.append(exc)
            if deferral is not None and deferral.received:
                held.append(deferral)
        for what in held:
            try:
                if isinstance(what, BaseException):
                    raise what
                what.deliver()   # the program's SIGINT handler (the default's KeyboardInterrupt)
            except BaseException as exc:
                if self._commit[2] is None:
                    self._commit = (call, self._commit[1], exc)

    def _record_epoch(self, call):
        """After the compiled call ran: each epoch it ran recorded in turn (a group's: the
        rates it ran at, self.rates).  Returns the last one's (logs, stop)."""
        results = call.results
        recorded = None
        for k, ((result, seconds), lr) in enumerate(zip(results, self.rates)):
            recorded = self._record_one(result, seconds, lr, k == len(results) - 1)
        return recorded

    def _record_one(self, result, elapsed, lr, last=True):
        """One epoch's record (its `result`, own wall time `elapsed`, rate `lr`): checks,
        metrics, schedule, stopping, recorders.  Returns (logs, stop).  An epoch of a group
        before its `last` was followed by another: the compiled call found its parameters
        and optimizer state finite then (the model holds the group's last epoch's now)."""
        opt, model = self.optimizer, self.model
        loss_sum, weight_sum, steps, status, failed_step, pending = self._take_result(result)
        epoch = opt.completed_epochs + 1  # the 1-based number users see
        self._check_status(status, failed_step, pending, steps, epoch, lr, last)
        opt.completed_epochs = epoch
        train_loss = loss_sum / weight_sum if weight_sum > 0 else float("nan")
        val_loss = val_metric = None
        if self.val is not None:
            val_loss, val_metric = evaluate(model, self.loss, *self.val, mpi=self.mpi,
                                            flush_denormals=self.flush_denormals,
                                            n_threads=self.n_threads)
        logs = {"epoch": epoch, "loss": train_loss, "val_loss": val_loss,
                "val_metric": val_metric, "lr": lr, "time": elapsed,
                "samples_per_s": (steps * self.batch_size if self.drop_last else self.n_global)
                / elapsed if elapsed > 0 else float("inf")}
        self.history._append(logs)
        opt.schedule.on_epoch_end(epoch - 1, val_loss if val_loss is not None else train_loss)
        return logs, self._verdict(epoch, logs)

    def _verdict(self, epoch, logs):
        """Early stopping's and the recorders' word on the epoch just recorded: True to stop
        (every recorder is called, whatever the others say)."""
        stop = False
        es = self.early_stopping
        if es is not None:
            stop = es._update(_monitored(es.monitor, logs), epoch, self.model.params)
            self.history.stopped_early = stop
        for rec in self.recorders:
            stop = bool(rec(epoch, logs)) or stop
        return stop

    def _report(self, logs, stop):
        """After the epoch's commit, outside the model's lock: the verbose line or progress
        bar, the callbacks, and (MPI) the ranks' agreement to stop.  Returns True to stop."""
        if self.verbose == 1 or (self.verbose >= 2 and self.bar is None):
            print(_epoch_line(logs, self.last_epoch, self.metric_name, self.unit), flush=True)
        elif self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{logs['loss']:.4g}")
        epoch = logs["epoch"]
        for cb in self.callbacks:
            stop = bool(cb(epoch, logs)) or stop
        if self.mpi is not None:
            # a callback may ask one rank to stop: every rank stops when any asks
            stop = self.mpi.any(stop)
        return stop

    def _check_status(self, status, failed_step, pending, steps, epoch, lr, current=True):
        """Raise for an epoch that did not end well (`current`: the model holds its
        parameters and state now; False for a group's epoch that another followed, whose
        compiled call checked them)."""
        model = self.model
        loss_failed = status == boundary.STATUS_DIVERGED
        if status == boundary.STATUS_OK and current and not all_finite(model.params):
            # the epoch's last update overflowed the weights; its loss, computed before the
            # update, was finite, so the loop could not see it
            status, failed_step = boundary.STATUS_DIVERGED, steps - 1
        # Adam's second moment (the squared gradients) overflows first: beyond about 1.8e19
        # in float32 (1.3e154 in float64) its steps become 0 and the weights stop moving,
        # silently; that is a divergence too
        state_overflowed = status == boundary.STATUS_OK and current and not all(
            s is None or all_finite(s) for s in self.optimizer.state)
        if state_overflowed:
            status, failed_step = boundary.STATUS_DIVERGED, steps - 1
        if status == boundary.STATUS_DIVERGED:
            kept = self._restore_last_good(epoch, failed_step if loss_failed else None)
            what = ("the training loss" if loss_failed else
                    "the optimizer's state (squared gradients)" if state_overflowed else
                    "the weights")
            raise TrainingDiverged(
                f"{what} became NaN or infinite at epoch {epoch}, step {failed_step + 1} "
                f"(lr={lr:g}). The model keeps {kept}. Try a smaller learning rate, gradient "
                "clipping (clip_norm), or scaling the inputs.", self.history)
        if status == boundary.STATUS_INTERRUPTED:
            raise pending  # the model and optimizer were made consistent by _take_result
        if status != boundary.STATUS_OK:
            raise RuntimeError(f"compiled training step failed at epoch {epoch}, step "
                               f"{failed_step + 1} (status {status})")

    def _restore_last_good(self, epoch, loss_step):
        """After a divergence in (1-based) `epoch`, put back the last parameters known to give
        a finite loss.

        A minibatch's loss is computed from the parameters entering its step.  When the loss of
        step `loss_step` is not finite, those parameters are the culprit even if they are
        finite (they overflowed the logits: a model that predicts NaN), so the last good ones
        are older: the snapshot from the start of this epoch when loss_step > 0 (its step 0 had
        a finite loss); the one from the start of the previous epoch when loss_step == 0.
        loss_step=None: every loss was finite and only the epoch's last update overflowed the
        weights, so the start of this epoch is good.  The optimizer's state (velocity,
        moments, step count) belonged to the diverging steps and is reset; its epoch count and
        schedule are not.  Returns what the model keeps.
        """
        model = self.model
        self.optimizer._reset_state()
        first_of_fit = len(self.history) == 0
        if loss_step == 0 and first_of_fit:
            model.params[...] = self.snapshot
            return ("the parameters it started this fit with, whose loss on the first "
                    "minibatch was already not finite (check the scale of the inputs and "
                    "targets)")
        if loss_step == 0:
            model.params[...] = self.previous
            return (f"the parameters at the start of epoch {epoch - 1}, the last known to give "
                    "a finite loss")
        model.params[...] = self.snapshot
        return (f"the parameters at the start of epoch {epoch}, the last known to give a "
                "finite loss")

    def _finish(self):
        es = self.early_stopping
        if es is not None and es.restore_best_weights and es.best_epoch is not None:
            with self.model._lock:
                es._restore_best(self.model.params)
            self.history.best_epoch = es.best_epoch


def abort_ranks(runs, exc):
    """The one rule for a distributed run that ends on an exception: one rank alone cannot
    leave the collectives (a Ctrl-C on one rank, a callback's error, a failed allocation), so
    the run aborts every rank (MPIContext.abort), unless every rank raises the same error:
    divergence is decided on values summed over the ranks, so it happens everywhere.  Called
    by the run's own loop and by every driver (TrainingRun.run, the ensemble's lockstep)."""
    for run in runs:
        mpi = getattr(run, "mpi", None)
        if mpi is not None and mpi.size > 1 and not isinstance(exc, TrainingDiverged):
            mpi.abort(exc)


def _monitored(monitor, logs):
    if monitor == "val_loss" and logs["val_loss"] is None:
        return logs["loss"]
    return logs[monitor]


def _epoch_line(logs, last_epoch, metric_name, unit="epoch"):
    # (lr is None for a run without a learning rate: L-BFGS chooses its steps itself)
    rate = "" if logs["lr"] is None else f"lr {logs['lr']:.3g}  "
    line = (f"{unit} {logs['epoch']}/{last_epoch}  loss {logs['loss']:.5g}  "
            f"{rate}{logs['samples_per_s']:,.0f} samples/s")
    if logs["val_loss"] is not None:
        metric = logs["val_metric"]   # an R^2 far below 0 in 4 significant digits, not 40
        shown = f"{metric:.4f}" if abs(metric) < 1e4 else f"{metric:.4g}"
        line += f"  val_loss {logs['val_loss']:.5g}  val_{metric_name} {shown}"
    return line


def _progress_bar(total):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("verbose=2 shows a progress bar when tqdm is installed (pip install "
                      "tqdm); printing one line per epoch instead", stacklevel=4)
        return None
    return tqdm(total=total, unit="epoch")
