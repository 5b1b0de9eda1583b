"""fastnn's thread count, and the BLAS thread count around it.

Two counts, two owners:

* **fastnn's threads** (``n_threads`` of ``fit``, the estimators and ``MLPEnsemble``; the
  prediction methods use all of them): fastnn's compiled training and prediction cut every
  product and pass into tiles whose boundaries depend on the shapes only (fastnn._core._network)
  and hand the tiles to its own worker threads (fastnn._core._pool).  The default
  (``default_threads()``) follows scikit-learn's compiled code: a threadpoolctl limit
  (``threadpool_limits(n)``), else ``FASTNN_NUM_THREADS`` or ``OMP_NUM_THREADS`` (which
  joblib's loky workers set to their share of the cores), else every core this process may
  run on (``available_cores()``), shared out among the MPI ranks on the node when the
  launcher did not bind them to cores.  **Results are the same bits whatever this count
  is**: only which thread computes which tile changes.
* **scipy's OpenBLAS threads** (this module's ``set_num_threads``, ``blas_threads``,
  ``get_num_threads``): while fastnn's compiled code runs, OpenBLAS is held at 1 thread
  (``compiled_threads`` below), so that each tile is one single-threaded BLAS call and the two
  pools never compete for cores.  The setting below is what OpenBLAS uses outside those calls
  (scipy's own linear algebra, for example).

The rest of this docstring is about the BLAS count.

fastnn's products go through scipy's BLAS (scipy.linalg.cython_blas), which is OpenBLAS in
scipy's wheels.  That is a different library, with its own thread pool, from NumPy's BLAS, so
``OPENBLAS_NUM_THREADS`` set before start-up or ``threadpoolctl.threadpool_limits(n)`` (which
controls every OpenBLAS it finds) work, and so does this module, which needs no extra package:

    fastnn.runtime.threads.set_num_threads(1)          # from now on
    with fastnn.runtime.threads.blas_threads(1):       # for a block

fastnn's own calls (fit, predict) take it to 1 for their duration and restore it after.

The count is process-wide (OpenBLAS has one pool), so fastnn gives it one owner at a time.
``blas_threads(n)`` blocks (and so every fit and predict, which ask for 1) share the
setting: any number of them, in any threads, may run at once when they ask for the same
count; a block asking for another count waits until those have ended, and when the last
block ends the count it found is restored.  While a block runs, ``set_num_threads`` raises
RuntimeError, and so does a nested block of the same thread that asks for another count
(waiting would never end).  Code outside fastnn that changes the count (threadpoolctl,
another library) is not covered by this lock.
"""
import contextvars
import ctypes
import os
import threading
import time

from fastnn._core import _pool
from fastnn._validation import MAX_DIM, check_number
from fastnn._version import __version__

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


def _require(functions):
    if functions is None:
        raise RuntimeError("scipy's BLAS is not an OpenBLAS that fastnn can control; use "
                           "threadpoolctl.threadpool_limits(n) instead")
    return functions


# The owner of the process-wide count: the blas_threads blocks running now (all asking for
# _owner_n), the count they found, and each thread's nesting depth.
_condition = threading.Condition()
_n_blocks = 0
_owner_n = None
_found = None
_depth = threading.local()
# compiled calls holding the count at 1 inside blocks of another count (compiled_threads),
# and the count to put back when the last ends
_n_held = 0
_held_restore = None


def _after_fork_in_child():
    """A child of fork() has only the thread that forked: the blocks other threads held (a
    fit running in another thread) are gone with them, and would otherwise own the count
    forever (a blas_threads block of another count then waited for ever, set_num_threads
    raised).  Keep the forking thread's own open blocks; the lock may have been held by a
    thread that no longer exists, so it is new."""
    global _condition, _n_blocks, _owner_n, _found, _n_held
    _condition = threading.Condition()
    _n_held = getattr(_depth, "held", 0)
    mine = getattr(_depth, "value", 0)
    if _n_blocks and not mine:
        if _functions and _found is not None:
            _functions[1](_found)        # the count the parent's blocks found
        _owner_n = _found = None
    _n_blocks = mine


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_num_threads(n):
    """Use `n` BLAS threads in fastnn's products from now on; returns the previous count.

    Parameters
    ----------
    n : int >= 1
        Number of BLAS (OpenBLAS) threads, process-wide.

    Returns
    -------
    int
        The previous number of threads.

    Raises
    ------
    RuntimeError
        scipy's BLAS is not an OpenBLAS this module can control (use threadpoolctl then), or
        a ``blas_threads`` block (a fit with ``n_threads``) owns the count right now.
    """
    # (the C setter takes an int: a larger count would wrap around silently)
    n = check_number(n, "n_threads", low=1, high=MAX_DIM, integer=True)
    functions = _require(_openblas())
    with _condition:
        if _n_blocks:
            raise RuntimeError(f"set_num_threads({n}) while {_n_blocks} blas_threads block(s) "
                               f"(a fit with n_threads={_owner_n}) own the BLAS thread count; "
                               "call it after they end")
        previous = int(functions[0]())
        functions[1](int(n))
    return previous


def blas_threads(n):
    """Within the block, scipy's OpenBLAS uses `n` threads (None: leave as is).

    Blocks asking for the same count run together; one asking for another count waits
    until they end (see the module docstring).  The count found before the first block is
    restored after the last.  (fastnn's own compiled calls hold it at 1 while they run.)

    Parameters
    ----------
    n : int or None
        OpenBLAS threads in the block, >= 1; None leaves the count as it is.

    Raises
    ------
    ValueError
        `n` is not an integer >= 1.
    RuntimeError
        scipy's BLAS is not an OpenBLAS this module can control, or (on entering) this
        thread is already inside a block of another count.
    """
    return _BlasBlock(n)


class _BlasBlock:
    """The context manager behind blas_threads (a class: every predict enters one, and a
    generator-based block cost ~3 us of a ~20 us one-row prediction)."""
    __slots__ = ("n", "mine", "entered")

    def __init__(self, n):
        self.n = None
        if n is not None:
            # (an int in range, as every compiled call passes, skips the general check)
            self.n = n if type(n) is int and 1 <= n <= MAX_DIM else \
                int(check_number(n, "n_threads", low=1, high=MAX_DIM, integer=True))
            _require(_openblas())
        self.entered = False

    def __enter__(self):
        global _n_blocks, _owner_n, _found
        n = self.n
        if n is None:
            return None
        get, set_ = _functions
        mine = self.mine = getattr(_depth, "value", 0)
        with _condition:
            while _n_blocks and _owner_n != n:
                if mine:
                    raise RuntimeError(f"blas_threads({n}) inside this thread's "
                                       f"blas_threads({_owner_n}) block: the process has one "
                                       "BLAS thread count; nest blocks of the same count only")
                _condition.wait()
            if _n_blocks == 0:
                # (a compiled call still holding the count at 1, in a thread that outlived
                # the block it joined: the count to restore is the one the hold keeps)
                _found = _held_restore if _n_held else int(get())
                _owner_n = n
                set_(n)
            # (no call between these two lines: Ctrl-C cannot land between them and leave
            # a count that is never released)
            _n_blocks += 1
            self.entered = True
        _depth.value = mine + 1
        return None

    def __exit__(self, *exc_info):
        global _n_blocks, _owner_n, _found, _held_restore
        if self.n is None:
            return False
        _depth.value = self.mine
        if self.entered:
            self.entered = False
            with _condition:
                _n_blocks -= 1
                if _n_blocks == 0:
                    if _n_held:          # the last hold puts the count back
                        _held_restore = _found
                    else:
                        _functions[1](_found)
                    _owner_n = _found = None
                    _condition.notify_all()
        return False


# ------------------------------------------------------------------ fastnn's own threads

def _affinity_cores():
    """The cores this process may run on: its CPU affinity where the OS reports it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_cores():
    """The cores this process may run on: its CPU affinity where the OS reports it, and no
    more than its CPU quota (``cpu_quota``; a container started with ``--cpus``)."""
    cores = _affinity_cores()
    quota = _recent_quota()
    return cores if quota is None else max(1, min(cores, quota))


# Linux control groups' CPU bandwidth limit, as a container sees its own group: v2, then v1
_CGROUP_V2_MAX = "/sys/fs/cgroup/cpu.max"
_CGROUP_V1_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
_CGROUP_V1_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"
# (the files hold a line of two numbers; a larger read is not a cgroup file)
_CGROUP_READ_LIMIT = 256


def _read_fields(path):
    """The whitespace-separated ASCII fields of a small text file; OSError or ValueError
    (a directory, no permission, not text, too long) where it is not one."""
    with open(path, "rb") as f:
        data = f.read(_CGROUP_READ_LIMIT + 1)
    if len(data) > _CGROUP_READ_LIMIT or not data.isascii():
        raise ValueError(f"{path} is not a cgroup setting")
    return data.decode("ascii").split()


def _limit(quota, period):
    """CPUs' worth of time per period, rounded up; None for "no limit" ('max', v1's -1)."""
    if quota == "max":
        return None
    quota, period = int(quota), int(period)     # ASCII only: _read_fields
    if quota <= 0 or period <= 0:       # v1 writes -1 for "no limit"
        return None
    return -(-quota // period)


def cpu_quota():
    """The CPUs' worth of time this process's control group may use, rounded up (Linux
    cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, read as
    joblib's loky reads them), or None where there is no limit or no such file.

    A container limited to 1.5 CPUs on an 8-core host sees 8 cores but gets 1.5 CPU-seconds
    per second: 8 threads would spend the quota in their polls and the process would be
    throttled, so ``default_threads`` takes 2.  A v2 file that cannot be read as two
    numbers (or 'max' and a number) does not hide a valid v1 limit; nothing here raises.
    """
    try:
        if os.path.exists(_CGROUP_V2_MAX):
            fields = _read_fields(_CGROUP_V2_MAX)
            if len(fields) == 2:
                return _limit(*fields)
            raise ValueError(f"{_CGROUP_V2_MAX}: {fields!r}")
    except (OSError, ValueError):
        pass                            # malformed or unreadable: try v1
    try:
        quota, = _read_fields(_CGROUP_V1_QUOTA)
        period, = _read_fields(_CGROUP_V1_PERIOD)
        return _limit(quota, period)
    except (OSError, ValueError):
        return None


# cpu_quota() as read at most _QUOTA_MAX_AGE seconds ago (a read costs ~25 us, and every
# call of fastnn without n_threads asks: a one-row predict took 39 us instead of 11): the
# paths it was read from, when, and the value
_QUOTA_MAX_AGE = 1.0
_quota_cache = (None, 0.0, None)


def _recent_quota():
    global _quota_cache
    paths = (_CGROUP_V2_MAX, _CGROUP_V1_QUOTA, _CGROUP_V1_PERIOD)
    now = time.monotonic()
    cached_paths, when, quota = _quota_cache
    if cached_paths != paths or not 0 <= now - when < _QUOTA_MAX_AGE:
        quota = cpu_quota()
        _quota_cache = (paths, now, quota)
    return quota


# fastnn's thread count where n_threads is None (None: available_cores()); set by a caller
# that runs several fits at once (fastnn.interop.sklearn_ensemble: n_jobs // workers per member), so
# fits reached through an API without n_threads (fastnn.interop.sklearn) stay within its count
_default_threads = contextvars.ContextVar("fastnn_default_threads", default=None)


# what MPI launchers tell each process about the ranks on its node: MPICH's Hydra, Open MPI,
# MVAPICH2 and Slurm's srun
_LOCAL_RANKS_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE",
                          "MV2_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")


def _local_ranks():
    """How many MPI ranks share this node, as the launcher says (1 outside a launcher)."""
    for name in _LOCAL_RANKS_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


#: the environment variables that set fastnn's default thread count, first found wins:
#: fastnn's own, then OpenMP's (joblib's loky sets it, with OPENBLAS_NUM_THREADS and the
#: like, to each worker's share of the cores: fastnn's pool plays OpenMP's part)
THREAD_VARIABLES = ("FASTNN_NUM_THREADS", "OMP_NUM_THREADS")


def _environment_threads():
    """The count FASTNN_NUM_THREADS or OMP_NUM_THREADS asks for, or None (unset or empty).

    FASTNN_NUM_THREADS must be an integer >= 1 (ValueError naming it otherwise).
    OMP_NUM_THREADS is OpenMP's: its first entry (it may list one count per nesting level,
    "4,2"); a value OpenMP would reject is ignored, as OpenMP runtimes ignore it."""
    text = os.environ.get("FASTNN_NUM_THREADS", "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not 1 <= value <= MAX_DIM:
            raise ValueError(f"the environment variable FASTNN_NUM_THREADS is {text!r}; "
                             f"expected an integer from 1 to {MAX_DIM} (or unset: the "
                             "default thread count)")
        return value
    text = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if text.isdigit() and 1 <= int(text) <= MAX_DIM:
        return int(text)
    return None


def _cores_for_this_process():
    """``available_cores()``, shared out among the MPI ranks of this node when the launcher
    did not bind each rank to its own cores (otherwise every rank would take every core: 2
    ranks on 2 cores ran 4 threads).  The ranks of a container share its CPU quota as well:
    whether the launcher bound a rank is read from its affinity, not from the quota (4 ranks
    under a 2-CPU quota on 8 cores took 2 threads each)."""
    cores = available_cores()
    ranks = _local_ranks()
    if ranks > 1 and _affinity_cores() >= (os.cpu_count() or 1):  # not bound: shared
        return max(1, cores // ranks)
    return cores


def _unlimited_threads():
    """default_threads() without a threadpoolctl limit."""
    requested = _environment_threads()
    return requested if requested is not None else _cores_for_this_process()


def default_threads():
    """fastnn's thread count where none is given, decided as scikit-learn's compiled code
    decides its OpenMP count (``sklearn.utils._openmp_helpers._openmp_effective_n_threads``):

    * ``FASTNN_NUM_THREADS``, else ``OMP_NUM_THREADS``, when set: that count, even above the
      cores (an explicit request; joblib's loky sets ``OMP_NUM_THREADS`` in its workers to
      their share of the cores, so ``GridSearchCV(n_jobs=2)`` on 2 cores gives each fit 1);
    * otherwise every core this process may run on (affinity and CPU quota,
      ``available_cores()``), shared out among the MPI ranks of this node when the launcher
      did not bind each rank to its own cores;
    * a threadpoolctl limit on fastnn's pool (``threadpool_limits(n)``, which limits every
      pool threadpoolctl knows, or ``threadpool_limits(n, user_api="fastnn")``) replaces
      the environment's count, and caps the cores, as ``omp_set_num_threads`` does for
      scikit-learn (see ``_PoolController``).

    Returns
    -------
    int >= 1
        Threads (the caller's included) of fastnn's compiled calls without ``n_threads``.

    Raises
    ------
    ValueError
        FASTNN_NUM_THREADS is set to something other than an integer >= 1.
    """
    limit = _pool.thread_limit()
    requested = _environment_threads()
    if requested is not None:
        return limit if limit > 0 else requested
    cores = _cores_for_this_process()
    return min(limit, cores) if limit > 0 else cores


# ------------------------------------------------------------------ threadpoolctl

try:
    import threadpoolctl as _threadpoolctl
except ImportError:  # optional: without it nothing can set a limit
    _threadpoolctl = None


if _threadpoolctl is not None and hasattr(_threadpoolctl, "register"):
    class _PoolController(_threadpoolctl.LibController):
        """threadpoolctl's controller of fastnn's pool: ``threadpool_limits(1)`` (every
        library, as scikit-learn users write it) or ``threadpool_limits(1, user_api=
        "fastnn")`` limits fastnn's default thread count (``default_threads``) in the block;
        ``threadpool_info()`` lists the pool with that count.

        threadpoolctl finds the pool's library (fastnn/_pool) among the loaded ones by its
        name and its two exported functions, and this controller sets the limit through
        them (ctypes).  Restoring, threadpoolctl sets back the count it found: a count equal
        to fastnn's default without a limit removes the limit, so that the default follows
        the environment and the cores again after the block.  The limit is process-wide
        (as OpenBLAS's), and an explicit ``n_threads`` is not limited.
        """

        user_api = "fastnn"
        internal_api = "fastnn"
        filename_prefixes = ("_pool",)
        check_symbols = ("fastnn_pool_get_thread_limit", "fastnn_pool_set_thread_limit")

        def get_num_threads(self):
            return default_threads()

        def set_num_threads(self, num_threads):
            n = max(1, int(num_threads))
            setter = getattr(self.dynlib, "fastnn_pool_set_thread_limit")
            setter.argtypes, setter.restype = [ctypes.c_int], None
            setter(0 if n == _unlimited_threads() else min(n, MAX_DIM))

        def get_version(self):
            return __version__

    _threadpoolctl.register(_PoolController)


def resolve_threads(n_threads):
    """fastnn's thread count for `n_threads` (None: ``default_threads()``, or the count a
    caller running several fits at once set for this context).

    Raises ValueError unless it is an integer >= 1 (counts above the machine's cores are
    allowed: they give the same results, only slower).
    """
    if n_threads is None:
        n_threads = _default_threads.get()
        return default_threads() if n_threads is None else n_threads
    if type(n_threads) is int and 1 <= n_threads <= MAX_DIM:
        return n_threads
    return int(check_number(n_threads, "n_threads", low=1, high=MAX_DIM, integer=True))


class compiled_threads:
    """``with compiled_threads(n_threads) as n:`` gives fastnn's thread count n
    (``resolve_threads``) for compiled calls in the block, with scipy's OpenBLAS held at 1
    thread meanwhile (a ``blas_threads(1)`` block).

    Inside a ``blas_threads(n)`` block of another count in the same thread (the process has
    one BLAS count, and that block owns it; a nested ``blas_threads(1)`` would raise), the
    count is still taken to 1 for the compiled call and put back to n after, provided the
    open blocks are this thread's (or other compiled calls hold it at 1 already, in this
    thread or another, as an ensemble's workers do within its caller's block): OpenBLAS's
    products at 2 threads are not the same bits as at 1, so a fit inside
    ``blas_threads(2)`` gave other weights than outside it.  While it is held, other
    threads' blocks of the same count n run with 1 BLAS thread (their results are OpenBLAS's
    at 1).  When other threads' blocks of count n are open, the count is theirs too and is
    left as it is (fastnn's tiles then run on OpenBLAS's n threads).  Where scipy's BLAS is
    not an OpenBLAS this module controls, set that BLAS to one thread yourself
    (MKL_NUM_THREADS=1, ...) for the same guarantee.
    """
    __slots__ = ("n", "_block", "_held")

    def __init__(self, n_threads=None):
        self.n = resolve_threads(n_threads)
        self._block = None
        self._held = False

    def __enter__(self):
        global _n_held, _held_restore
        blas = 1 if _openblas() is not None else None
        depth = getattr(_depth, "value", 0)
        if blas is not None and (depth or _n_held) and _owner_n != 1:
            with _condition:
                if _owner_n not in (None, 1) and (_n_held or (depth and _n_blocks == depth)):
                    # (another thread's compiled call in that block may hold it already: a
                    # member's fit in an ensemble's worker thread joins the hold, where a
                    # blas_threads(1) block would wait for the caller's block to end)
                    if not _n_held:
                        _held_restore = int(_functions[0]())
                        _functions[1](1)
                    # (no call between these two lines: see _BlasBlock.__enter__)
                    _n_held += 1
                    self._held = True
            if self._held or depth:
                blas = None
            if self._held:
                _depth.held = getattr(_depth, "held", 0) + 1
        self._block = _BlasBlock(blas)
        self._block.__enter__()
        return self.n

    def __exit__(self, *exc_info):
        global _n_held
        try:
            return self._block.__exit__(*exc_info)
        finally:
            if self._held:
                self._held = False
                _depth.held -= 1
                with _condition:
                    _n_held -= 1
                    if _n_held == 0:
                        _functions[1](_held_restore)
