"""A full-batch run: L-BFGS (``fastnn.LBFGS``) as a run of the one engine.

``fastnn.fit(model, X, y, loss, optimizer=fastnn.LBFGS(...))``, ``MLP.fit(...,
optimizer=LBFGS(...))``, ``LBFGS.fit`` and the estimators' ``solver="lbfgs"`` all come here
through ``fastnn.training.trainer.prepare_run``, so that the data are prepared and checked as
for a minibatch run (fastnn/training/data.py: dtype, labels, dense or sparse X, sample weights,
the validation split) and the run is checked by ``TrainingRun.check`` (the weight totals of
the training and validation rows, the early-stopping monitor).  What differs is the loop:
scipy's ``minimize(method="L-BFGS-B")`` runs it, over the compiled full-batch objective
(``fastnn.optim.lbfgs.LBFGSObjective``), and each accepted iterate is one entry of the run:

* the model takes the iterate (the objective evaluates trial points of the line search in
  buffers of its own, so a reader never sees one), and the entry is recorded (History, the
  validation figures, early stopping, the recorders) under the model's lock, one step for a
  save or predict in another thread (fastnn/runtime/state.py);
* then, outside the lock, the verbose line or progress bar and the callbacks; a callback (or
  early stopping) returning True stops the run after that iteration;
* Ctrl-C propagates from the evaluation that was running: the model holds the last accepted
  iterate, ``model.history_`` the iterations before it;
* an objective that is not finite where the run ends (it started there: no iterate is
  accepted from a NaN or infinite value) is a ``TrainingDiverged``; the model keeps the
  parameters it started with or the last accepted iterate, both of them finite.

History fields of an iteration: ``loss`` is the objective (weighted mean loss plus the L2
term), ``lr`` None (L-BFGS chooses its steps), ``samples_per_s`` the rows evaluated (one pass
per evaluation of the objective) per second.
"""
import math
import time

import numpy as np
from scipy.optimize import minimize

from fastnn._validation import all_finite
from fastnn.optim.lbfgs import LBFGSObjective
from fastnn.runtime.state import hold, let_readers_in, sigint_deferred
from fastnn.runtime.threads import compiled_threads
from fastnn.training.callbacks import History, TrainingDiverged
from fastnn.training.engine import TrainingRun, _progress_bar
from fastnn.training.evaluation import evaluate

__all__ = ["FullBatchRun"]


class FullBatchRun(TrainingRun):
    """A ``TrainingRun`` whose steps are L-BFGS iterations over the whole data set.

    Built by ``prepare_run`` when the optimizer is a ``fastnn.LBFGS``; parameters as for
    ``TrainingRun`` (there are no minibatches, sample order or dropout, and no MPI).  Nothing
    carries over between runs: each fit starts a new quasi-Newton memory, and an
    EarlyStopping record with it.  ``optimizer.result_`` is the last run's
    ``scipy.optimize.OptimizeResult``.
    """

    unit = "iteration"

    def __init__(self, model, loss, optimizer, data, val, *, early_stopping, callbacks,
                 verbose, flush_denormals=True, recorders=()):
        super().__init__(model, loss, optimizer, data, val, batch_size=data[0].shape[0],
                         drop_last=False, shuffle=False, seed_key=None,
                         early_stopping=early_stopping, callbacks=callbacks, verbose=verbose,
                         flush_denormals=flush_denormals, recorders=recorders)

    def _check_optimizer(self, epochs):
        """LBFGS checked its settings when it was built; nothing depends on the data."""

    def _continue_early_stopping_record(self):
        if self.early_stopping is not None:
            self.early_stopping.reset()

    def epochs(self, epochs):
        raise TypeError("an L-BFGS run has no epochs to step through (it is full-batch, driven "
                        "by scipy): call run(), or train the models one after another")

    def run(self, epochs=None, n_threads=None):
        """Run L-BFGS (at most ``optimizer.max_iter`` iterations); returns the History (also
        ``model.history_``).  ``epochs`` is ignored (the iterations are the optimizer's).

        Raises
        ------
        TrainingDiverged
            The objective is not finite where the run ended; ``exc.result`` is scipy's
            result, the model keeps the last finite point (see the module docstring).
        KeyboardInterrupt
            Re-raised after the evaluation that was running; the model holds the last
            accepted iterate.
        """
        model, opt = self.model, self.optimizer
        self.bar = None
        with compiled_threads(n_threads) as self.n_threads:
            with model._lock:  # the run's start is one step for a reader too
                self._continue_early_stopping_record()
                self.history = History(self.metric_name)
                model.history_ = self.history
                model.loss_ = self.loss
            objective = LBFGSObjective._over(model, self.loss, self.data, opt.weight_decay,
                                             flush_denormals=self.flush_denormals,
                                             n_threads=self.n_threads)
            self.last_epoch = opt.max_iter
            self.bar = _progress_bar(opt.max_iter) if self.verbose >= 2 else None
            self._stopped = False
            self._clock = (time.perf_counter(), 0)   # (when the iteration began, nfev then)
            options = {"maxfun": opt.max_fun, "maxiter": opt.max_iter, "gtol": opt.tol,
                       "maxcor": opt.history_size}
            def on_iteration(intermediate_result):  # (scipy passes the result by this name)
                self._iteration(objective, intermediate_result)

            try:
                # scipy's L-BFGS-B sums its dot products in scipy's OpenBLAS, which
                # compiled_threads holds at one thread, so the solution is the same bits on
                # any core count
                result = minimize(objective, model.params.astype(np.float64),
                                  method="L-BFGS-B", jac=True, options=options,
                                  callback=on_iteration)
            finally:
                if self.bar is not None:
                    self.bar.close()
            if result.status not in (0, 1) and not self._stopped:
                # after an abnormal line search scipy returns the last accepted x but the
                # value of its last (rejected, perhaps NaN) trial point: fun describes x
                # again (nfev stays scipy's count)
                result.fun = objective(result.x)[0]
            opt.result_ = result
            if not (math.isfinite(result.fun) and all_finite(result.x)):
                kept = ("the parameters it started this fit with" if not len(self.history)
                        else f"the iterate of iteration {len(self.history)}, the last accepted")
                error = TrainingDiverged(
                    f"the L-BFGS objective is {result.fun!r} at the point where the run ended "
                    f"(after {result.nit} iteration(s)). The model keeps {kept}. Try scaling "
                    "the inputs or the targets, or a larger weight_decay.", self.history)
                error.result = result
                raise error
            with model._lock:
                _publish(model, result.x)
            self._finish()
        return self.history

    def _iteration(self, objective, intermediate_result):
        """scipy's callback after each accepted iterate: publish and record it (one step
        for a reader), then report it; StopIteration ends scipy's loop when asked to stop."""
        model = self.model
        now, nfev = time.perf_counter(), objective.n_evaluations
        began, nfev_before = self._clock
        self._clock = (now, nfev)
        # (Ctrl-C waits for the iterate and its record, as for an epoch: TrainingRun.commit)
        with hold([model]), sigint_deferred():   # (waiting for a reader stays interruptible)
            _publish(model, intermediate_result.x)
            logs, stop = self._record(float(intermediate_result.fun), now - began,
                                      nfev - nfev_before)
        let_readers_in([model])
        if self._report(logs, stop):
            self._stopped = True
            raise StopIteration

    def _record(self, value, elapsed, evaluations):
        """History, validation figures, early stopping and recorders of one iteration."""
        model = self.model
        iteration = len(self.history) + 1
        val_loss = val_metric = None
        if self.val is not None:
            val_loss, val_metric = evaluate(model, self.loss, *self.val,
                                            flush_denormals=self.flush_denormals,
                                            n_threads=self.n_threads)
        logs = {"epoch": iteration, "loss": value, "val_loss": val_loss,
                "val_metric": val_metric, "lr": None, "time": elapsed,
                "samples_per_s": evaluations * self.n_global / elapsed if elapsed > 0
                else float("inf")}
        self.history._append(logs)
        return logs, self._verdict(iteration, logs)


def _publish(model, x):
    """An iterate (float64) into the model's parameters (the caller holds its lock)."""
    with np.errstate(over="ignore", invalid="ignore"):
        model.params[...] = x
        model.grads[...] = 0
