"""Which run is training with an optimizer: one at a time.

An optimizer keeps one run's step count, state and schedule; two fits updating them at once
(two threads, or a fit started from a callback of another with the same optimizer) would
race, silently.  The training engine (``TrainingRun``) asks ``check_free`` before its
``check`` touches anything, and takes the optimizer (``claim``) when its epochs start; a
claim ends when the run sets its cell to False, one store with no call in it, so that an
interrupt cannot land half way and leave the optimizer taken.  Nothing here keeps an optimizer or a
run alive, or travels in a pickle; a forked child has none of its parent's runs.
"""
import os
import threading
import weakref

# id(optimizer) -> (weak reference to the optimizer, the run's cell [running])
_IN_USE = {}
_GUARD = threading.Lock()


def _after_fork_in_child():
    # the parent's runs are not the child's, and the guard may have been held by a thread
    # that does not exist here: a new one (as fastnn.runtime.threads does for its lock)
    global _GUARD
    _IN_USE.clear()
    _GUARD = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def check_free(optimizer):
    """RuntimeError while a run is training with `optimizer`."""
    held = _IN_USE.get(id(optimizer))
    if held is not None and held[0]() is optimizer and held[1][0]:
        raise RuntimeError(
            f"this optimizer (a {type(optimizer).__name__}) is training another model, or the "
            "same one, in a fit that has not ended (another thread's, or the fit whose "
            "callback started this one); one optimizer keeps one run's step count and "
            "state: give each concurrent fit its own (e.g. copy.deepcopy(optimizer))")


def claim(optimizer, cell):
    """Mark `optimizer` as a run's while ``cell[0]`` is true (the run sets it to False when
    it ends).  Raises RuntimeError while another run holds it (``check_free``)."""
    with _GUARD:
        check_free(optimizer)
        key = id(optimizer)
        held = _IN_USE.get(key)
        # one entry per optimizer, dropped when the optimizer goes (its id can then be
        # another object's): nothing grows with the number of fits
        ref = held[0] if held is not None and held[0]() is optimizer else \
            weakref.ref(optimizer, lambda _, key=key: _IN_USE.pop(key, None))
        _IN_USE[key] = (ref, cell)
