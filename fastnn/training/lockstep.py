"""Training runs in lockstep epochs: the driver of an ensemble's members.

Each member of an ensemble (``fastnn.MLPEnsemble``, or the scikit-learn face's
``EnsembleRegressor`` / ``EnsembleClassifier``) is an ordinary ``fastnn.MLP`` with its own
training run (a ``TrainingRun``, fastnn/training/engine.py), and the runs advance in
lockstep epochs.  Each round, every active member's run prepares its epoch (the schedule's
rate, the sample order, the snapshot a divergence falls back to), then ONE compiled job runs
all those epochs without the GIL as the tasks of fastnn's thread pool
(``boundary.run_epochs``), then each member's run records its epoch, in member order, on the
calling thread (loss, validation, schedule, early stopping, callbacks).  A member whose run
stops (its epochs done, early stopping, a callback) or fails (divergence) leaves; the others
go on.  The caller holds BLAS at ONE thread meanwhile, so fastnn's threads and BLAS's never
oversubscribe the cores.  A task is a member's whole epoch on one thread, so a member's
arithmetic does not depend on which thread runs it or on how many threads there are.
"""
from fastnn.runtime import boundary
from fastnn.runtime.state import hold, let_readers_in
from fastnn.training.engine import abort_ranks

__all__ = ["train_in_lockstep"]


def train_in_lockstep(runs, workers, histories, errors):
    """Train fastnn training runs (the members of an ensemble) in lockstep epochs.

    Used by fastnn.MLPEnsemble.fit and fastnn.interop.sklearn_ensemble.

    Parameters
    ----------
    runs : list of (TrainingRun, int)
        Checked runs and their epoch counts (``fastnn.training.trainer.prepare_run``), each
        of its own model.
    workers : int >= 1
        Threads of fastnn's pool running a round's epochs.
    histories : list of len(runs)
        Filled: each run's History (also after a failure: the epochs it recorded).
    errors : list of len(runs)
        Filled: each run's exception, or None.

    Each round: every active member's run prepares its epoch (TrainingRun.epochs: rate,
    sample order, snapshot), ONE compiled job runs those epochs as tasks on fastnn's
    pool (boundary.run_epochs, `workers` threads) and each run commits its epoch
    (TrainingRun.commit: loss, checks, validation, schedule, early stopping), all with
    every member's lock held, so that a reader sees every member at the same epoch boundary
    (fastnn/runtime/state.py); then, the locks released and a waiting reader let in, each member's
    run calls its callbacks, in member order.  A member that stops (its epochs done, early
    stopping, a callback) or fails (divergence: kept in errors[k]) leaves; the others go on.  On
    KeyboardInterrupt every member records the epoch that ran, then all stop.
    """
    steps = {k: run.epochs(epochs) for k, (run, epochs) in enumerate(runs)}
    calls = {}       # member -> its prepared epoch
    interrupted = False

    def advance(k):
        """Resume member k: record the epoch that ran (if any), prepare the next."""
        nonlocal interrupted
        try:
            calls[k] = next(steps[k])
            return
        except StopIteration as end:
            histories[k] = end.value
        except BaseException as exc:  # kept, raised once every member has stopped
            errors[k] = exc
            histories[k] = getattr(runs[k][0], "history", None)
            interrupted = interrupted or isinstance(exc, KeyboardInterrupt)
        calls.pop(k, None)
        del steps[k]

    try:   # (an exception from here itself, e.g. Ctrl-C between two jobs, propagates)
        with hold([run.model for run, _ in runs]):  # every run starts in one step
            for k in list(steps):
                advance(k)
        while calls and not interrupted:
            members = list(calls)
            models = [runs[k][0].model for k in members]
            # the round's epochs and their records, one step for a save or predict in
            # another thread (fastnn/runtime/state.py): every member at the same epoch
            # boundary.  The dense epochs run as one job on the pool, then a sparse X's
            # epochs (fastnn/_core/_sparse.pyx, not pool tasks) one after another on this
            # thread (boundary.run_epochs)
            with hold(models):
                try:
                    boundary.run_epochs([calls[k] for k in members], workers)
                finally:  # a Ctrl-C landing as the job returns: the epochs that ran are
                    # recorded first, so the records match the weights (commit is a no-op
                    # for a call it recorded; as TrainingRun.run's driver loop)
                    interrupts, i = [], 0
                    while True:
                        try:
                            while i < len(members):
                                if calls[members[i]].ran:
                                    runs[members[i]][0].commit(calls[members[i]])
                                i += 1
                            break
                        except KeyboardInterrupt as exc:
                            interrupts.append(exc)
                    if interrupts:
                        raise interrupts[0]
            let_readers_in(models)   # a reader waits for one round at most
            for k in members:
                if calls[k].ran:
                    advance(k)
                else:       # Ctrl-C came before its epoch: it ends after its last one
                    interrupted = True
    except BaseException as exc:
        abort_ranks([run for run, _ in runs], exc)
        raise
    finally:
        # runs still open: end each after its last recorded epoch (GeneratorExit; a
        # prepared epoch that did not run is dropped, see TrainingRun.epochs)
        for k, gen in steps.items():
            try:
                gen.close()
            except Exception as exc:
                errors[k] = errors[k] or exc
            histories[k] = getattr(runs[k][0], "history", None)
