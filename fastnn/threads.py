"""The number of BLAS threads fastnn's compiled code uses.

fastnn's products go through scipy's BLAS (scipy.linalg.cython_blas), which is OpenBLAS in
scipy's wheels.  That is a different library, with its own thread pool, from NumPy's BLAS, so
``OPENBLAS_NUM_THREADS`` set before start-up or ``threadpoolctl.threadpool_limits(n)`` (which
controls every OpenBLAS it finds) work, and so does this module, which needs no extra package:

    fastnn.threads.set_num_threads(1)          # from now on
    with fastnn.threads.blas_threads(1):       # for a block
        model.fit(...)
    model.fit(..., n_threads=1)                # for one fit

One thread is usually fastest for small layers (handing a small product to a second thread
costs more than it saves) and makes timings reproducible.  Results are deterministic for a
given thread count.
"""
import ctypes
from contextlib import contextmanager

from fastnn._validation import MAX_DIM, check_number

# symbol prefixes of OpenBLAS builds: scipy's wheels rename theirs, a system OpenBLAS does not
_PREFIXES = ("scipy_openblas_", "scipy_openblas64_", "openblas_", "openblas64_")
_functions = None


def _openblas():
    """(get, set) C functions of the OpenBLAS behind scipy.linalg.cython_blas, or None."""
    global _functions
    if _functions is None:
        from scipy.linalg import cython_blas
        # dlsym through the extension's handle searches the libraries it links: its BLAS
        lib = ctypes.CDLL(cython_blas.__file__)
        _functions = ()
        for prefix in _PREFIXES:
            get = getattr(lib, prefix + "get_num_threads", None)
            set_ = getattr(lib, prefix + "set_num_threads", None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                _functions = (get, set_)
                break
    return _functions or None


def get_num_threads():
    """Threads scipy's OpenBLAS uses now, or None when scipy's BLAS is not OpenBLAS."""
    functions = _openblas()
    return None if functions is None else int(functions[0]())


def set_num_threads(n):
    """Use `n` BLAS threads in fastnn's products from now on; returns the previous count.

    Raises RuntimeError when scipy's BLAS is not an OpenBLAS this module can control (use
    threadpoolctl then).
    """
    # (the C setter takes an int: a larger count would wrap around silently)
    n = check_number(n, "n_threads", low=1, high=MAX_DIM, integer=True)
    functions = _openblas()
    if functions is None:
        raise RuntimeError("scipy's BLAS is not an OpenBLAS that fastnn can control; use "
                           "threadpoolctl.threadpool_limits(n) instead")
    previous = int(functions[0]())
    functions[1](int(n))
    return previous


@contextmanager
def blas_threads(n):
    """Within the block, fastnn's products use `n` BLAS threads (None: leave as is)."""
    if n is None:
        yield
        return
    previous = set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(previous)
