"""fastnn's own worker threads: the one pool every compiled module hands its tasks to.

The C code is src_c/fastnn_pool.h (it says why a pool of our own rather than OpenMP); this
module is the only one that includes it, so the process has one pool, and other modules call
it through ``from fastnn._core._pool cimport parallel_for``.
"""
from fastnn._core._fpmode cimport fnn_fpmode_enter, fnn_fpmode_get, fnn_fpmode_leave

import numpy as np

cdef extern from "fastnn_pool.h" nogil:
    ctypedef void (*fnn_task_fn)(void *ctx, long task) noexcept nogil
    int fnn_parallel_for(int n_threads, long n_tasks, fnn_task_fn fn, void *ctx) noexcept
    int fnn_pool_size() noexcept
    int FNN_POOL_MAX_THREADS
    int fastnn_pool_get_thread_limit() noexcept
    void fastnn_pool_set_thread_limit(int n) noexcept


cdef int parallel_for(int n_threads, long n_tasks, task_fn fn, void *ctx) noexcept nogil:
    return fnn_parallel_for(n_threads, n_tasks, <fnn_task_fn> fn, ctx)


MAX_THREADS = FNN_POOL_MAX_THREADS


def pool_size():
    """Worker threads started so far (the callers' threads are not counted)."""
    return fnn_pool_size()


def thread_limit():
    """The limit threadpoolctl set on this pool (``threadpool_limits``), or 0 for none.

    The C functions behind it are exported (``fastnn_pool_get_thread_limit``,
    ``fastnn_pool_set_thread_limit``) for the controller fastnn.runtime.threads registers with
    threadpoolctl; fastnn.runtime.threads.default_threads applies the limit.
    """
    return fastnn_pool_get_thread_limit()


def set_thread_limit(int n):
    """Set the limit (n <= 0: none); what threadpoolctl's controller does through ctypes."""
    fastnn_pool_set_thread_limit(n)


cdef struct _Probe:
    unsigned long long *modes
    long *values


cdef void _probe_task(void *ctx, long task) noexcept nogil:
    cdef _Probe *p = <_Probe *> ctx
    cdef long i, acc = 0
    for i in range(1000 * (task % 7 + 1)):      # uneven work, so that threads interleave
        acc += i % (task + 3)
    p.values[task] = acc
    p.modes[task] = fnn_fpmode_get()


def _probe(long n_tasks, int n_threads, bint flush=False):
    """(per-task results, per-task floating-point control register, threads that took part)
    of a job of `n_tasks` small tasks, run with subnormals flushed when `flush`: for the
    pool's own tests."""
    if n_tasks < 0 or n_threads < 1:
        raise ValueError(f"n_tasks={n_tasks} and n_threads={n_threads}: expected >= 0, >= 1")
    values = np.zeros(n_tasks, dtype=np.int64)
    modes = np.zeros(n_tasks, dtype=np.uint64)
    cdef long[::1] v = values
    cdef unsigned long long[::1] m = modes
    cdef _Probe probe
    cdef int used
    cdef unsigned long long saved
    probe.values = &v[0] if n_tasks else NULL
    probe.modes = &m[0] if n_tasks else NULL
    with nogil:
        saved = fnn_fpmode_enter(flush)
        used = fnn_parallel_for(n_threads, n_tasks, _probe_task, &probe)
        fnn_fpmode_leave(flush, saved)
    return values, modes, used
