"""Synchronous data-parallel training over MPI, through mpi4py.

Every rank holds the same model and a shard of the data: rank r holds rows
``offset_r .. offset_r + n_r - 1`` of the global data set, the shards concatenated in rank
order (any sizes of at least one row, uneven ones included).  ``fastnn.fit(model, X_shard,
y_shard, ..., comm=MPI.COMM_WORLD)`` then trains exactly as one process would on the global data:

* rank 0's parameters are broadcast at the start;
* every epoch, all ranks draw the same permutation of the GLOBAL indices from ``seed`` and cut
  it into the same global minibatches;
* every minibatch's weight over all ranks is known before its step: its row count, or with
  sample weights one all-reduce of the ranks' per-batch partial sums (float64) when the
  epoch starts;
* for each minibatch, each rank computes the gradient of sum_i (w_i / W) l_i over its own
  rows of it, W the minibatch's global weight: the terms of the weighted mean, scaled inside
  the loss gradient exactly as one process scales them; ONE ``MPI_Allreduce`` (called from
  the compiled loop through a C function pointer, no Python per minibatch) adds the gradient
  vector and the loss over ranks, and every rank applies the identical update.

So 2 ranks reproduce 1 process on the same global batches (to rounding: the per-rank partial
sums are added in another order) for every input one process accepts: sample weights, uneven
shards, a shard whose weights are all zero (the weights are checked element by element on
each rank, their total over the ranks once: ``TrainingRun.check``), and float32 weights whose
unscaled sums would overflow float32 (near 1e37); all ranks end with bitwise-identical
parameters.  Rows drawn at random are drawn over the GLOBAL rows, from the same stream on
every rank, each rank keeping its own: the rows ``validation_split`` holds out (so a rank may
hold no training or no held-out row) and ``MLPEnsemble``'s bootstrap resamples (a resample
that draws none of a rank's rows is refused on every rank, with the rank named: give it more
rows).  History,
validation metrics and early stopping use values summed over ranks, identical everywhere;
only rank 0 prints.

fastnn does not link against MPI: this module finds ``MPI_Allreduce`` in the MPI library that
mpi4py loaded, and reads the handles (communicator, MPI_SUM, MPI_FLOAT/MPI_DOUBLE,
MPI_IN_PLACE) from mpi4py, for MPICH-style (int) and Open MPI-style (pointer) handles alike.
Install with ``pip install "fastnn[mpi]"`` (mpi4py and the ``mpich`` wheel, so no system MPI
is needed; a system MPI that mpi4py was built against works too).

Agreement and failure: before the first step the ranks compare everything that decides which
collectives run and what they mean (dtype, layer sizes, activations, output, loss and its
parameters, validation data present or not, early stopping, the optimizer with its counters;
``TrainingRun.configuration``), and every check that can fail before training runs on every
rank: a difference or an invalid input on any rank makes every rank raise the same
ValueError.  During training, stop requests are combined (a callback returning True on one
rank stops every rank after the same epoch), divergence is decided on summed values (so every
rank raises TrainingDiverged), and any other exception on one rank calls ``MPI_Abort`` on the
communicator, so the other ranks do not wait forever.  Evaluation statistics are gathered as
float64.
"""
import contextlib
import ctypes
import ctypes.util
import sys
import time
import traceback

import numpy as np

from fastnn.runtime import boundary
from fastnn._validation import check_number


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("distributed training needs mpi4py and an MPI library: "
                          'pip install "fastnn[mpi]" (mpi4py + mpich)') from None
    return MPI


def _allreduce_address(MPI):
    """Address of MPI_Allreduce in the library mpi4py uses (its dependency tree first)."""
    candidates = [getattr(MPI, "__file__", None), ctypes.util.find_library("mpi")]
    for path in candidates:
        if not path:
            continue
        try:
            fn = ctypes.CDLL(path).MPI_Allreduce
        except (OSError, AttributeError):
            continue
        return ctypes.cast(fn, ctypes.c_void_p).value
    raise RuntimeError("could not find MPI_Allreduce in the MPI library mpi4py loaded "
                       f"(tried {candidates})")


class MPIContext:
    """The communicator and the collective operations fastnn.fit needs.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        An intracommunicator; every rank of it must call fit with the same arguments
        (except the data shard).
    """

    def __init__(self, comm):
        MPI = _import_mpi()
        _check_comm(comm, MPI)
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.reducer = boundary.Allreduce(
            _allreduce_address(MPI), MPI._sizeof(comm) < ctypes.sizeof(ctypes.c_void_p),
            int(MPI.IN_PLACE), MPI._handleof(comm), MPI._handleof(MPI.SUM),
            MPI._handleof(MPI.FLOAT), MPI._handleof(MPI.DOUBLE))

    @property
    def is_root(self):
        return self.rank == 0

    def agree(self, error):
        """Collective: raise on every rank if any rank had an error (None: no error here).

        With more than one rank, every rank raises the same ValueError, naming each rank that
        failed and its error (chained from the local error where there is one); a single
        process raises its own error as it is.
        """
        errors = self.comm.allgather(None if error is None else
                                     f"{type(error).__name__}: {error}")
        failed = [(rank, msg) for rank, msg in enumerate(errors) if msg is not None]
        if not failed:
            return
        if error is not None and self.size == 1:
            raise error
        detail = "; ".join(f"rank {rank}: {msg}" for rank, msg in failed)
        raise ValueError(f"invalid input on {len(failed)} of {self.size} ranks "
                         f"({detail})") from error

    def shard_layout(self, n_local):
        """(offset of this rank's first row, global number of rows)."""
        counts = self.comm.allgather(int(n_local))
        return sum(counts[: self.rank]), sum(counts)

    def check_same(self, value, name):
        """Collective: every rank must pass the same value (a hyperparameter, a seed).

        `value` may be a dict: the error then names each entry that differs.  Values are
        compared by ``repr`` (so NaN equals NaN and 1 differs from 1.0).  Every rank sees
        the same gathered values, so every rank raises the same ValueError, or none does.
        """
        values = self.comm.allgather(value)
        if isinstance(value, dict) and all(isinstance(v, dict) for v in values):
            keys = sorted({k for v in values for k in v}, key=str)
            differ = [k for k in keys if len({repr(v.get(k)) for v in values}) > 1]
            if differ:
                detail = "; ".join(
                    f"{k}: " + ", ".join(f"rank {r} {v.get(k)!r}" for r, v in enumerate(values))
                    for k in differ)
                raise ValueError(f"{name} differs between ranks ({detail}); every rank must "
                                 "build the same model and call fit with the same arguments")
            return
        if len({repr(v) for v in values}) > 1:
            raise ValueError(f"{name} differs between ranks ({values}); every rank must call "
                             "fit with the same arguments")

    def any(self, flag):
        """Collective: True on every rank when `flag` is true on any rank (stop requests)."""
        return bool(self.comm.allreduce(1 if flag else 0, op=self.MPI.MAX))

    def broadcast(self, array):
        """Rank 0's array, in place on every rank."""
        self.comm.Bcast(array, root=0)

    def sum(self, values):
        """Element-wise sum over ranks of a float64 vector."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        out = np.empty_like(values)
        self.comm.Allreduce(values, out, op=self.MPI.SUM)
        return out

    def abort(self, exc):
        """Print the exception and abort every rank (a rank alone cannot leave a collective)."""
        print(f"fastnn: rank {self.rank} of {self.size} failed during distributed training; "
              "aborting all ranks:", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
        # MPI_Abort tears the job down at once: give the launcher a moment to forward the
        # message, or the user may never see why (seen with MPICH's Hydra under load)
        time.sleep(0.5)
        self.comm.Abort(1)


@contextlib.contextmanager
def agreed(mpi, errors=(ValueError, TypeError)):
    """``with agreed(mpi):`` around checks that may fail on one rank alone: with MPI (`mpi`, an
    MPIContext) the ranks then agree (``MPIContext.agree``: every rank raises the same
    ValueError when any rank raised one of `errors`, none waits alone in a collective);
    without (None) an error is raised as it is."""
    try:
        yield
    except errors as exc:
        if mpi is None:
            raise
        mpi.agree(exc)
    if mpi is not None:
        mpi.agree(None)


def _check_comm(comm, MPI):
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py.MPI.Intracomm (e.g. MPI.COMM_WORLD); got "
                        f"{type(comm).__name__}")
    return comm


def is_root(comm=None):
    """True on rank 0 of `comm` (MPI.COMM_WORLD by default): the rank that prints and saves."""
    MPI = _import_mpi()
    comm = MPI.COMM_WORLD if comm is None else _check_comm(comm, MPI)
    return comm.Get_rank() == 0


def shard(n_samples, comm=None):
    """The slice of ``range(n_samples)`` this rank holds when they are split evenly.

    The first ``n_samples % size`` ranks get one row more.  Use it as ``X[shard(len(X))]``
    when every rank can read the whole data set and should keep only its part.
    """
    n_samples = check_number(n_samples, "n_samples", low=0, integer=True)
    MPI = _import_mpi()
    comm = MPI.COMM_WORLD if comm is None else _check_comm(comm, MPI)
    size, rank = comm.Get_size(), comm.Get_rank()
    base, extra = divmod(int(n_samples), size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))
