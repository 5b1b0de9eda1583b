"""Reading an object while it trains: the one rule for every fit, save, predict and export.

The rule
--------
What ``save``, ``predict`` and the exports read of an object (a model's parameters, loss and
output link; its optimizer's state, step and epoch counts, the schedule's progress, the
early-stopping record; an ensemble's members and optimizers; an estimator's network, classes
and records) changes only while its locks (its own and its models') are held, and a fit
moves it from one epoch boundary to the next inside ONE hold of its models' locks: the compiled epoch and the recording of
that epoch happen under the same acquisition (``TrainingRun.commit``, fastnn/training/engine.py).
A fit with nothing to do between short epochs runs a few in one compiled call (about
``GROUP_SECONDS``, 5 ms, there): one hold covers them and their records, and a reader sees the
boundary before or after them.
So a reader inside ``consistent(obj)`` sees one epoch boundary of the object, of every model
in it (an ensemble's members all at the same one), never a mix of two.

Who takes what:

* Fits.  ``hold(models)`` around each epoch and its commit (``TrainingRun.run``;
  ``fastnn.training.lockstep.train_in_lockstep`` holds every member's lock for a round).  What a fit
  changes before its first epoch or after its last (the loss a model takes, an ensemble's
  optimizers, an estimator's network, classes and records) changes inside ``consistent(obj)``.
  Between two epochs the fit calls ``let_readers_in``: Python's locks are not fair, and a loop
  that releases a lock and takes it again at once would keep a waiting reader out for the
  whole fit; so a reader waits for the running epoch (or group of short epochs) at most.  L-BFGS
  evaluates its trial points in buffers of its own and publishes each accepted iterate.
* Readers.  ``save``, ``predict`` (and ``predict_std``, ``forward``, the estimators'
  prediction methods), the ONNX and torch exports and pickling read inside
  ``consistent(obj)``.
* Callbacks run outside the locks: a callback may wait for a thread that saves or predicts.

An object's state lock (``state_lock``) guards its own attributes, among them which parts it
has; its ``_state_parts()`` lists those parts, whose state is part of its own (an ensemble's
members, an estimator's ``model_``, a scikit-learn ensemble's estimators).  A model is a leaf:
its lock guards its parameters, loss and link.  ``consistent`` takes the object's lock, then
its parts' locks, then theirs, level by level down to the models.  The locks of one level are
taken in one global order (their creation), and a thread that holds a lower level's lock never
asks for a higher one's (a fit's driver holds models' locks only, and what it records under
them never takes an estimator's), so two holders never wait for each other in a cycle.
"""
import _signal
import itertools
import signal
import threading
import weakref

_SIGINT = int(signal.SIGINT)

__all__ = ["StateLock", "state_lock", "hold", "consistent", "let_readers_in"]

_ORDER = itertools.count()


class StateLock:
    """A reentrant lock that lets the threads waiting for it in between a fit's epochs.

    Used as ``threading.RLock`` (``with lock:``, ``acquire``, ``release``).  A fit calls
    ``let_readers_in()`` between two epochs, holding no lock: it returns once as many waiting
    acquisitions have ended as had begun when it was called.
    """

    __slots__ = ("_lock", "order", "_guard", "_begun", "_ended", "__weakref__")

    def __init__(self):
        self._lock = threading.RLock()
        self.order = next(_ORDER)   # the global order in which hold() takes several locks
        self._guard = threading.Condition(threading.Lock())
        self._begun = 0             # acquisitions that had to wait
        self._ended = 0             # of those, the ones that got the lock or gave up

    def acquire(self, blocking=True, timeout=-1):
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        with self._guard:
            self._begun += 1
        try:
            return self._lock.acquire(True, timeout)
        finally:  # also when interrupted: a fit waiting in let_readers_in goes on
            with self._guard:
                self._ended += 1
                self._guard.notify_all()

    def release(self):
        self._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def _is_owned(self):
        return self._lock._is_owned()

    def let_readers_in(self):
        """Return once every acquisition waiting now has had its turn.

        A no-op when this thread holds the lock (nobody could get in).  The waiters may be
        served in any order: one that arrived later may be counted instead of one that arrived
        earlier, which then gets in at the next call (after one more epoch at most).
        """
        if self._lock._is_owned():
            return
        with self._guard:
            target = self._begun
            self._guard.wait_for(lambda: self._ended >= target)

    def __repr__(self):
        return f"<fastnn StateLock {self.order}, owned by this thread: {self._is_owned()}>"


# the state locks of objects that are not models (ensembles, estimators): kept outside their
# __dict__, so that pickling, cloning and scikit-learn's checks of __dict__ never see them
_LOCKS = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def state_lock(obj):
    """The StateLock guarding `obj`'s attributes: a model's own ``_lock``; for any other
    object (an ensemble, an estimator) one made on first use and kept while `obj` lives."""
    lock = getattr(obj, "_lock", None)
    if isinstance(lock, StateLock):
        return lock
    with _LOCKS_GUARD:
        lock = _LOCKS.get(obj)
        if lock is None:
            lock = _LOCKS[obj] = StateLock()
        return lock


def _parts(obj):
    """The objects whose state is part of `obj`'s (read under obj's own lock); none for a
    model."""
    parts = getattr(obj, "_state_parts", None)
    return [] if parts is None else list(parts())


class hold:
    """Hold the locks of `models` (fastnn.MLP, any object with a state lock, or StateLock;
    duplicates allowed), taken in the global order; released in the reverse order.  A
    context manager."""

    __slots__ = ("_locks",)

    def __init__(self, models):
        locks = {}
        for m in models:
            lock = m if isinstance(m, StateLock) else state_lock(m)
            locks[id(lock)] = lock
        self._locks = sorted(locks.values(), key=lambda lock: lock.order)

    def __enter__(self):
        taken = []
        try:
            for lock in self._locks:
                lock.acquire()
                taken.append(lock)
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise
        return self

    def __exit__(self, *exc):
        for lock in reversed(self._locks):
            lock.release()


class consistent:
    """A block in which `obj`'s state is one epoch boundary and does not change.

    Takes `obj`'s own lock, then its parts' locks level by level (see the module docstring):
    waits for a running epoch (of every model of `obj`) to end and keeps the next one from
    starting.  Reentrant: a fit's own thread (a callback) may read inside it, and readers may
    nest.  A context manager; ``with consistent(obj) as obj:``.  For a model it is its lock
    alone (a one-row predict pays one acquisition).
    """

    __slots__ = ("obj", "_held")

    def __init__(self, obj):
        self.obj = obj
        self._held = []

    def __enter__(self):
        obj = self.obj
        lock = state_lock(obj)
        lock.acquire()
        held = self._held = [lock]
        if getattr(obj, "_state_parts", None) is None:   # a model: a leaf
            return obj
        try:
            level, seen = [obj], {id(obj)}
            while level:
                parts = []
                for o in level:
                    for p in _parts(o):
                        if id(p) not in seen:
                            seen.add(id(p))
                            parts.append(p)
                if not parts:
                    break
                locks = hold(parts)
                locks.__enter__()
                held.append(locks)
                level = parts
        except BaseException:
            self.__exit__()
            raise
        return obj

    def __exit__(self, *exc):
        held, self._held = self._held, []
        for item in reversed(held):
            if isinstance(item, StateLock):
                item.release()
            else:
                item.__exit__()


def let_readers_in(models):
    """Between two epochs of a fit (holding none of the locks): let every thread waiting for
    one of the models' locks have it, so that a reader waits for one epoch at most."""
    for m in models:
        (m if isinstance(m, StateLock) else m._lock).let_readers_in()


class sigint_deferred:
    """Hold back Ctrl-C for a block that must finish once begun: the record of an epoch (or
    a group of epochs: ``TrainingRun.commit``, and L-BFGS's iteration), a resource created and
    stored (a file descriptor: fastnn.io.writer).  ``with sigint_deferred() as received:``.

    Python runs a signal's handler at the first check after the signal, which may fall
    inside the block and leave it half done.  In the main thread (the only one that runs
    Python's signal handlers), when the SIGINT handler is a Python callable (the default,
    which raises KeyboardInterrupt, or a program's own), a SIGINT inside the block is
    recorded (`received` gets its number) and handed to that handler at the block's end
    (with `raise_at_end`; otherwise the caller calls ``deliver()`` when it is ready); a
    handler installed inside the block is left in place.  Elsewhere (another thread, SIGINT
    ignored or left to the system) the block runs as it is and `received` stays empty.  (It
    calls _signal, the signal module's C core: the module's wrappers turn every handler into
    an enum member, ~20-40 us a call, which an epoch's record would pay twice.)
    """

    __slots__ = ("raise_at_end", "received", "_previous", "_ours")

    def __init__(self, raise_at_end=True):
        self.raise_at_end = raise_at_end
        self.received = []
        self._previous = self._ours = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            previous = _signal.getsignal(_SIGINT)
            if callable(previous):
                received = self.received
                ours = lambda signum, frame: received.append(signum)  # noqa: E731
                _signal.signal(_SIGINT, ours)
                self._previous, self._ours = previous, ours
        return self.received

    def __exit__(self, *exc):
        previous, ours = self._previous, self._ours
        if ours is not None:
            self._ours = None
            if _signal.getsignal(_SIGINT) is ours:   # (not one the block installed)
                _signal.signal(_SIGINT, previous)
            if self.raise_at_end:
                self.deliver()
        return False

    def deliver(self):
        """Hand the SIGINT the block held back (if any) to the handler it held it from."""
        if self.received and self._previous is not None:
            signum, previous = self.received[0], self._previous
            self.received.clear()
            previous(signum, None)
