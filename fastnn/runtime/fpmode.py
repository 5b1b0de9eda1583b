"""Whether fastnn's compiled code flushes subnormal floats to zero (on by default).

A subnormal ("denormal") float is one below the smallest normal number: 1.2e-38 in float32,
2.2e-308 in float64.  Late in training, Adam's moments, momentum buffers and the gradients of
well-fitted samples fall into that range, and on x86 every operation that reads or produces
one takes a slow path.  A float32 Adam fit then ran at about half its early speed in its last
epochs (bench/RESULTS.md, section 7; 8x slower on another machine).
Flushing them to zero is what
TensorFlow and XLA do on the CPU; the values lost are below 1.2e-38 and change no result
visibly (the flushed fit stays within the tolerances the tests state against the NumPy
reference).

fastnn sets the CPU's flush bits (x86-64: MXCSR FTZ and DAZ; aarch64: FPCR FZ) only inside
its own compiled calls -- every one of them goes through fastnn.runtime.boundary, which hands
this setting to the kernel: training epochs, ``predict``/``forward``, ``loss_and_grad``, the
input derivatives, the single layers and losses, ``Optimizer.step`` -- and puts the caller's
floating-point mode back before each call returns (also when it stops on an error or
Ctrl-C), so NumPy and everything else in the process keep IEEE subnormals.  Unlike ``torch.set_flush_denormal``, which changes the calling
thread's mode for all code, this setting only decides what fastnn's calls do::

    fastnn.set_flush_denormals(False)            # from now on: keep subnormals (IEEE)
    with fastnn.runtime.fpmode.flush_denormals(False):   # for a block (of this thread)
        model.fit(...)
    model.fit(..., flush_denormals=False)        # for one fit

The block's setting lives in a ``contextvars.ContextVar``: it applies to the thread (or
asyncio task) that entered the block and overrides the process-wide setting there, so blocks
entered and left by several threads at once neither see nor undo each other's setting (a
process-wide flag saved and restored by each block could be left flipped for good by two
overlapping blocks).  ``MLPEnsemble.fit`` and the scikit-learn ensembles hand the setting of
the calling thread to their worker threads; other thread pools (joblib's threading backend, a
ThreadPoolExecutor of your own) start from the process-wide setting.  As with
``numpy.errstate``, a block left open across a generator's ``yield`` applies to the code that
resumed the generator until the generator continues past the block.

Threads: the mode is a per-thread register.  fastnn's own worker threads (fastnn._core._pool) take
the calling thread's mode for every job and put theirs back afterwards, and scipy's OpenBLAS
is held at one thread while fastnn's compiled code runs (fastnn.runtime.threads), so every thread that
does fastnn's arithmetic flushes.  Inside a ``fastnn.runtime.threads.blas_threads(n)`` block of
another count, OpenBLAS's own worker threads may compute a share of the products, and those
do not inherit the mode (bench/RESULTS.md, section 7, measured that share at the same speed
on subnormals on its CPU).  On CPUs other than x86-64 and aarch64 there is no switch:
``supported()`` is False and the setting has no effect.
"""
from contextlib import contextmanager
from contextvars import ContextVar

# the one compiled name imported outside fastnn.runtime.boundary: a capability query that runs
# no arithmetic (the boundary reads this module's setting, so this module sits below it)
from fastnn._core._network import _fpmode_supported
from fastnn._validation import check_bool

_flush = True
#: the setting of the innermost ``flush_denormals`` block of this thread/context (None: none)
_block = ContextVar("fastnn_flush_denormals", default=None)


def supported():
    """True when this build can flush subnormals (x86-64 or aarch64), False when the setting
    has no effect."""
    return _fpmode_supported()


def get_flush_denormals():
    """Whether fastnn's compiled calls flush subnormals to zero now, in this thread (default
    True): the innermost ``flush_denormals`` block's setting, else the process-wide one."""
    block = _block.get()
    return _flush if block is None else block


def set_flush_denormals(enabled):
    """Flush subnormals to zero in fastnn's compiled calls from now on (True, the default), or
    keep them as IEEE 754 prescribes (False).  Returns the previous setting.

    Applies to the whole process; a ``flush_denormals`` block overrides it in the thread
    that entered the block, and ``fit(..., flush_denormals=...)`` for one fit.

    Parameters
    ----------
    enabled : bool
        True flushes subnormal inputs and results to zero; False keeps them.

    Returns
    -------
    bool
        The process-wide setting it replaces.

    Raises
    ------
    TypeError
        `enabled` is not True or False.
    """
    global _flush
    enabled = check_bool(enabled, "enabled")
    previous, _flush = _flush, enabled
    return previous


@contextmanager
def flush_denormals(enabled=True):
    """Within the block, fastnn's compiled calls made by this thread flush subnormals (True)
    or keep them (False); leaving the block restores what applied before.  Other threads,
    and the process-wide setting, are not affected.

    Parameters
    ----------
    enabled : bool, default True
        Flush subnormal floats (magnitudes below 1.2e-38 in float32, 2.2e-308 in float64)
        to zero, or keep them (IEEE).
    """
    token = _block.set(check_bool(enabled, "enabled"))
    try:
        yield
    finally:
        _block.reset(token)


def resolve(flush_denormals):
    """The setting a call uses: `flush_denormals` (True/False), or this thread's when None.

    Parameters
    ----------
    flush_denormals : bool or None
    """
    if flush_denormals is None:
        return get_flush_denormals()
    return check_bool(flush_denormals, "flush_denormals")
