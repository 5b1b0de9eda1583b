"""Training epochs, prepared with the GIL and run without it: the Python face of _loop.pyx.

An epoch is prepared (every argument checked, pointers taken, the arrays kept alive) into an
EpochCall, then run without the GIL by _loop.run_epoch.  What it needs comes in three parts:

- ``EpochConfig``, built ONCE per fit: the network, the loss, batch_size / drop_last, the
  workspace buffers, the signal-check interval, the floating-point mode, fastnn's thread
  count, the dropout seed and (data-parallel training) the rank's row offset and reducer;
- a row source, also built once per fit: ``DenseRows`` (a dense X and the per-sample
  targets) or ``CSRRows`` (a CSR X, read in place, and the targets);
- per epoch: the model's parameter and gradient vectors, the optimizer's state and
  hyperparameters as they are now (a callback may change them between epochs), the sample
  order, the optimizer's step count and the epoch's index (``prepare_epoch``).

``train_epoch`` = prepare + run (one model's fit); ``train_epochs`` runs many prepared epochs,
e.g. an ensemble's members, dense or sparse, as the tasks of ONE job on fastnn's pool: one
task is one member's whole epoch, so a member's arithmetic is the same whichever thread runs
it and however many threads there are, and equal to its epoch run alone.

fastnn.training.engine validates the values and sizes every buffer; the sizes are checked
again here, in C (O(1), plus O(n) over the order and O(nnz) over a CSR structure), because
this module is importable from Python and the loop trusts them.
"""
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.math cimport isfinite
from libc.stdint cimport UINT32_MAX, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport PyObject, Py_XDECREF

from fastnn._core._arrays cimport entropy_words, permute
from fastnn._core._dropout cimport DropoutCtx
from fastnn._core._epoch_checks cimport check_apart, check_disjoint, check_epoch_buffers, span
from fastnn._core._kernels cimport all_finite
from fastnn._core._network cimport Net, NetSpec, with_threads
from fastnn._core._pool cimport parallel_for
from fastnn._core._sgd cimport _optimizer
from fastnn._core._sparse cimport check_csr, check_first_layer
from fastnn._core._loop cimport (_Epoch, _Interrupt, _Reducer, _SOURCE_CSR, _SOURCE_DENSE,
                                 _STATUS_DIVERGED, _STATUS_INTERRUPTED, _STATUS_KERNEL_ERROR,
                                 _STATUS_OK, _STATUS_REDUCE_ERROR, allreduce, local_row,
                                 pthread_self, run_epoch)

import numbers
from array import array

import numpy as np

# the codes of an epoch's status for fastnn/training (engine, trainer)
STATUS_OK, STATUS_DIVERGED = _STATUS_OK, _STATUS_DIVERGED
STATUS_INTERRUPTED, STATUS_KERNEL_ERROR = _STATUS_INTERRUPTED, _STATUS_KERNEL_ERROR
STATUS_REDUCE_ERROR = _STATUS_REDUCE_ERROR


cdef class Allreduce:
    """MPI_Allreduce(MPI_IN_PLACE, buf, count, <float or double>, MPI_SUM, comm), from C.

    Built by fastnn.training.distributed from mpi4py: the address of the MPI library's MPI_Allreduce,
    whether handles are ints (MPICH ABI) or pointers (Open MPI), and the handle values of
    MPI_IN_PLACE, the communicator, MPI_SUM, MPI_FLOAT and MPI_DOUBLE.
    """
    cdef _Reducer r   # a plain struct: an epoch prepared for a nogil run copies it

    def __cinit__(self, Py_ssize_t fn_address, bint int_handles, Py_ssize_t in_place,
                  Py_ssize_t comm, Py_ssize_t op, Py_ssize_t float_type,
                  Py_ssize_t double_type):
        if fn_address == 0:
            raise ValueError("fn_address is NULL; expected the address of MPI_Allreduce")
        self.r.fn = <void *> fn_address
        self.r.int_handles = int_handles
        self.r.in_place, self.r.comm, self.r.op = in_place, comm, op
        self.r.float_type, self.r.double_type = float_type, double_type

    def sum_inplace(self, floating[::1] buf):
        """Sum `buf` over all ranks in place (the call the training loop makes)."""
        cdef int err
        with nogil:
            err = allreduce(&self.r, &buf[0], <int> buf.shape[0])
        if err != 0:
            raise RuntimeError(f"MPI_Allreduce failed with error code {err}")



# ------------------------------------------------------------------ once per fit

cdef class EpochConfig:
    """What every epoch of one fit shares, built once per fit (fastnn.training.engine).

    Parameters
    ----------
    spec : NetSpec
        The network.
    batch_size : int, 1 .. 2**31 - 1
    drop_last : bool
        Skip the last minibatch when it has fewer than batch_size rows.
    loss_kind, loss_full, sigma_scalar : int, int, float
        The loss: its code (fastnn/_core/_losses.pxd), full (1: with its constant terms) and
        the scalar sigma of the Gaussian loss.
    acts, delta0, delta1 : ndarray of shape (>= batch_size * spec.act_width,) and
        (>= batch_size * spec.max_width,) x 2, float32 or float64 (the model's dtype)
        The workspace of the forward and backward passes.
    X_batch : ndarray of shape (>= batch_size, n_inputs) or None
        The gathered minibatch of a dense X (not used without an order, nor for a CSR X).
    Y_batch, labels_batch, sw_batch, sigma_batch : ndarray or None
        The gathered minibatch of each per-sample input the row source has: (>= batch_size,
        n_targets), (>= batch_size,) intp, (>= batch_size,) and (>= batch_size,).
    check_every : float
        Seconds between two runs of Python's signal handlers (on the thread that called run
        / train_epochs; < 0: never), so that Ctrl-C stops the epoch after its running
        minibatch with the model consistent.
    row_offset : int >= 0
        Data-parallel training: the global index of this rank's first row (0 otherwise).
    reducer : Allreduce or None
        Data-parallel training (a dense X only): the sum over ranks.
    flush_denormals : bool
        Flush subnormals to zero on the running thread for the epoch (fastnn.runtime.fpmode);
        the thread's floating-point mode is back in place when the epoch ends, and while
        Python's signal handlers run.
    dropout_seed : int, 0 .. 2**64 - 1
        The dropout masks' seed: the mask of a unit is a function of (dropout_seed, epoch,
        global sample index, layer, unit) only (src_c/fastnn_dropout.h), so it depends on
        neither the batching, the thread count nor the rank holding the sample.
    n_threads : int >= 0
        fastnn's threads taking the products' fixed tiles (the same bits for any count >= 1;
        0: the untiled sequential path, for tests).

    The buffers' sizes are checked when an epoch is prepared (``prepare_epoch``), against the
    row source and the order it gets.
    """
    cdef readonly NetSpec spec
    cdef readonly Py_ssize_t batch_size, row_offset
    cdef readonly bint drop_last, flush_denormals
    cdef readonly int loss_kind, loss_full, n_threads
    cdef readonly double sigma_scalar, check_every
    cdef readonly object acts, delta0, delta1, X_batch, Y_batch, labels_batch, sw_batch, \
        sigma_batch
    cdef readonly Allreduce reducer
    cdef readonly uint64_t dropout_seed

    def __init__(self, NetSpec spec not None, Py_ssize_t batch_size, bint drop_last,
                 int loss_kind, int loss_full, double sigma_scalar, acts, delta0, delta1,
                 X_batch=None, Y_batch=None, labels_batch=None, sw_batch=None,
                 sigma_batch=None, double check_every=-1.0, Py_ssize_t row_offset=0,
                 Allreduce reducer=None, bint flush_denormals=True, uint64_t dropout_seed=0,
                 int n_threads=1):
        if batch_size < 1 or batch_size > INT_MAX:
            raise ValueError(f"batch_size={batch_size}; expected 1 .. {INT_MAX}")
        if row_offset < 0:
            raise ValueError(f"row_offset={row_offset}; expected >= 0")
        if n_threads < 0:
            raise ValueError(f"n_threads={n_threads}; expected >= 0")
        self.spec, self.batch_size, self.drop_last = spec, batch_size, drop_last
        self.loss_kind, self.loss_full, self.sigma_scalar = loss_kind, loss_full, sigma_scalar
        self.acts, self.delta0, self.delta1 = acts, delta0, delta1
        self.X_batch, self.Y_batch, self.labels_batch = X_batch, Y_batch, labels_batch
        self.sw_batch, self.sigma_batch = sw_batch, sigma_batch
        self.check_every, self.row_offset, self.reducer = check_every, row_offset, reducer
        self.flush_denormals, self.dropout_seed = flush_denormals, dropout_seed
        self.n_threads = n_threads


cdef class DenseRows:
    """A dense row source: X (n, n_inputs), C order, and the per-sample inputs (each None
    when absent): Y (n, n_targets), labels (n,) intp, sample_weight (n,), sigma (n,); float
    arrays of the model's dtype.  A minibatch's rows are gathered into the workspace in the
    epoch's order, or read in place without one."""
    cdef readonly object X, Y, labels, sample_weight, sigma

    def __init__(self, X, Y=None, labels=None, sample_weight=None, sigma=None):
        self.X, self.Y, self.labels = X, Y, labels
        self.sample_weight, self.sigma = sample_weight, sigma


cdef class CSRRows:
    """A CSR row source: X as (data (nnz,), indices (nnz,) intp, indptr (n + 1,) intp) with
    n_features columns, read in place (a minibatch is a list of its row numbers; its
    first layer runs over the stored entries, fastnn/_core/_sparse.pyx), and the per-sample
    inputs as DenseRows'.  No layer normalization of the first layer; no reducer."""
    cdef readonly object data, indices, indptr, Y, labels, sample_weight, sigma
    cdef readonly Py_ssize_t n_features

    def __init__(self, data, indices, indptr, Py_ssize_t n_features, Y=None, labels=None,
                 sample_weight=None, sigma=None):
        self.data, self.indices, self.indptr, self.n_features = data, indices, indptr, \
            n_features
        self.Y, self.labels, self.sample_weight, self.sigma = Y, labels, sample_weight, sigma


# ------------------------------------------------------------------ epochs: prepared, then run

cdef struct _Outcome:
    # one epoch of a group: EpochCall.result's figures
    double loss_sum, weight_sum, seconds
    Py_ssize_t steps, failed_step
    long long t
    int status


cdef class EpochCall:
    """One prepared epoch of one model (``prepare_epoch``), run once by ``run`` or, with
    others, by ``train_epochs``.  Holds the arrays it points into until it is released.

    Attributes after the run: ``result`` (as train_epoch returns), ``seconds`` (the epoch's
    own wall time, whatever else ran beside it).
    """
    cdef _Epoch a
    cdef Net net
    cdef DropoutCtx dctx
    cdef object _keep            # the arrays and objects the pointers point into
    cdef object _spans           # (start, end, name) of every buffer the epoch writes
    cdef object _read_spans      # (start, end, name) of every buffer it only reads
    cdef bint _prepared, _ran, _dropped
    cdef object _pending
    cdef uint32_t _index         # the epoch's index (its order's and dropout masks' key)
    cdef Py_ssize_t _n_s1, _n_s2  # the optimizer state's lengths
    cdef list _results           # (result, seconds) of each epoch the call ran

    @property
    def ran(self):
        return self._ran

    @property
    def seconds(self):
        return self.a.seconds

    @property
    def result(self):
        """(loss_sum, weight_sum, steps, t, status, failed_step, pending_exception)."""
        if not self._ran:
            raise RuntimeError("this epoch has not run yet")
        return (self.a.loss_sum, self.a.weight_sum, self.a.steps, self.a.opt.t, self.a.status,
                self.a.failed_step, self._pending)

    @property
    def results(self):
        """(result, seconds) of each epoch the call ran, in turn: one after ``run``, one to
        len(rates) after ``run_group``; ``result`` is the last one's."""
        if not self._ran:
            raise RuntimeError("this epoch has not run yet")
        return self._results

    def drop(self):
        """Never run this epoch: its run ended before it ran (``run`` and ``train_epochs``
        refuse it from now on, so that it cannot change the model behind the run's back).
        No effect once it ran."""
        if not self._ran:
            self._dropped = True
            self._keep = None   # the arrays it pointed into are released

    def run(self):
        """Run the epoch on the calling thread; returns ``result``."""
        _claim([self])
        cdef _Interrupt intr
        intr.caller, intr.stop, intr.pending = pthread_self(), 0, NULL
        with nogil:
            run_epoch(&self.a, &intr)
        self._pending = _take_pending(&intr)
        self._results = [(self.result, self.a.seconds)]
        return self.result

    def run_group(self, rates, tuple order_key, order, previous, snapshot):
        """Run ``len(rates)`` epochs in turn on the calling thread, this prepared one first,
        each later one as if prepared after the last with nothing changed but its rate: one
        compiled call for epochs that need no Python between them (fastnn.training.engine
        groups a small network's epochs; the arithmetic of each epoch is the same).

        Before epoch e > 0 (index ``i = index + e``, `index` the prepared epoch's): previous
        := snapshot and snapshot := params (the engine's fallback after a divergence), the
        order := ``default_rng([*order_key, i]).permutation(n)`` (fastnn._core._arrays; the
        engine's epoch_order), the dropout masks' epoch key := i, the rate := rates[e].  The
        prepared epoch runs at rates[0] with its order and snapshots as they are.  The group
        stops after an epoch whose status is not STATUS_OK or that left a NaN or infinity in
        the parameters or the optimizer's state (the engine's divergence checks), or that a
        signal handler interrupted.

        Parameters
        ----------
        rates : sequence of float >= 0, finite, at least one
        order_key : tuple of int >= 0, or None
            The order's seed key without the epoch index (None: an epoch in storage order).
        order : ndarray of shape (n,), intp, writeable, or None
            The order the epoch was prepared with (the same buffer), which each later epoch
            overwrites; None with order_key None.
        previous, snapshot : ndarray of shape (n_params,), the model's dtype, C-contiguous
            The copies of the parameters, apart from every buffer of the epoch.

        Returns ``result`` (the last epoch's); ``results`` holds every epoch's.  ValueError
        for a distributed epoch (its ranks agree epoch by epoch), an index past 2**32 - 1,
        arguments that do not fit.
        """
        cdef const double[::1] lrs
        cdef Py_ssize_t k, e, ran = 0, n_words = 0, item
        cdef Py_ssize_t[::1] order_w = None
        cdef uint32_t[::1] words = None
        cdef _Interrupt intr
        cdef _Outcome *out
        cdef void *prev_p
        cdef void *snap_p
        cdef _Epoch *a = &self.a
        cdef uint64_t index
        cdef list held = []     # the copies' views: their buffers stay exported until the end
        if not self._prepared:
            raise ValueError("an EpochCall must come from prepare_epoch")
        if rates is None:
            raise TypeError("rates is None; expected a sequence of rates, one per epoch")
        # (a private copy: the caller's buffer could be one the epochs write)
        lrs = np.array(rates, dtype=np.float64, copy=True).reshape(-1)
        k = lrs.shape[0]
        if k < 1:
            raise ValueError("rates is empty; expected one rate per epoch")
        for e in range(k):
            if not (isfinite(lrs[e]) and lrs[e] >= 0):
                raise ValueError(f"rates[{e}] is {lrs[e]!r}; expected a finite rate >= 0")
        if a.distributed:
            raise ValueError("a distributed epoch runs alone: its ranks agree epoch by epoch")
        if <uint64_t> self._index + <uint64_t> (k - 1) > UINT32_MAX:
            raise ValueError(f"epochs {self._index} .. {self._index + k - 1}: the epoch "
                             f"index is at most {UINT32_MAX}")
        if (order is None) != (a.order == NULL) or (order_key is None) != (order is None):
            raise ValueError("order and order_key must be given exactly when the epoch was "
                             "prepared with an order")
        if order is not None:
            order_w = order
            if order_w.shape[0] != a.n_order or &order_w[0] != a.order or a.n_order != a.n:
                raise ValueError("order must be the buffer the epoch was prepared with, one "
                                 "index per row of X")
            # the group writes the order: it may share no byte with what the epochs read
            check_apart(self._spans + self._read_spans, <char *> a.order, a.n_order * sizeof(Py_ssize_t), "order")
            words = array("I", entropy_words(order_key) + [0])   # + the epoch index
            n_words = words.shape[0]
        item = sizeof(double) if a.is_double else sizeof(float)
        prev_p = _copy_target(self, previous, "previous", a.is_double, held)
        snap_p = _copy_target(self, snapshot, "snapshot", a.is_double, held)
        if prev_p != NULL and <char *> prev_p < <char *> snap_p + a.n_params * item and \
                <char *> snap_p < <char *> prev_p + a.n_params * item:
            raise ValueError("previous and snapshot overlap; expected two separate vectors")
        out = <_Outcome *> PyMem_Malloc(k * sizeof(_Outcome))
        if out == NULL:
            raise MemoryError()
        try:
            _claim([self])
        except BaseException:
            PyMem_Free(out)
            raise
        intr.caller, intr.stop, intr.pending = pthread_self(), 0, NULL
        with nogil:
            for e in range(k):
                if e > 0:
                    if a.n_params > 0:
                        memcpy(prev_p, snap_p, a.n_params * item)
                        memcpy(snap_p, a.params, a.n_params * item)
                    index = <uint64_t> self._index + <uint64_t> e
                    if a.order != NULL:
                        words[n_words - 1] = <uint32_t> index
                        permute(<Py_ssize_t *> a.order, a.n_order, &words[0], n_words)
                    self.dctx.epoch = <uint32_t> index
                a.opt.lr = lrs[e]
                run_epoch(a, &intr)
                out[e].loss_sum, out[e].weight_sum, out[e].seconds = \
                    a.loss_sum, a.weight_sum, a.seconds
                out[e].steps, out[e].failed_step, out[e].t, out[e].status = \
                    a.steps, a.failed_step, a.opt.t, a.status
                ran = e + 1
                if a.status != _STATUS_OK or not self._finite_after():
                    break
        self._pending = _take_pending(&intr)
        self._results = [((out[e].loss_sum, out[e].weight_sum, out[e].steps, out[e].t,
                           out[e].status, out[e].failed_step,
                           self._pending if e == ran - 1 else None), out[e].seconds)
                         for e in range(ran)]
        PyMem_Free(out)
        return self.result

    cdef bint _finite_after(self) noexcept nogil:
        """No NaN or infinity in the parameters and the optimizer's state."""
        cdef _Epoch *a = &self.a
        if a.is_double:
            return (all_finite(<double *> a.params, a.n_params) and
                    (a.s1 == NULL or all_finite(<double *> a.s1, self._n_s1)) and
                    (a.s2 == NULL or all_finite(<double *> a.s2, self._n_s2)))
        return (all_finite(<float *> a.params, a.n_params) and
                (a.s1 == NULL or all_finite(<float *> a.s1, self._n_s1)) and
                (a.s2 == NULL or all_finite(<float *> a.s2, self._n_s2)))


cdef void *_copy_target(EpochCall call, object vector, str name, bint is_double,
                        list held) except? NULL:
    """The address of a writeable C-contiguous vector of the model's dtype and n_params
    entries that no buffer of the call touches (ValueError otherwise); NULL for no params.
    Its typed view goes into `held`, which keeps the buffer exported (not resized or freed)
    while the caller uses the address."""
    cdef double[::1] vd
    cdef float[::1] vf
    cdef char *p
    cdef Py_ssize_t n, item
    if vector is None:
        raise ValueError(f"{name} is None; expected a vector of n_params={call.a.n_params}")
    if is_double:
        vd = vector
        n, item, p = vd.shape[0], sizeof(double), <char *> (&vd[0] if vd.shape[0] else NULL)
    else:
        vf = vector
        n, item, p = vf.shape[0], sizeof(float), <char *> (&vf[0] if vf.shape[0] else NULL)
    if n != call.a.n_params:
        raise ValueError(f"{name} has {n} entries; expected n_params={call.a.n_params}")
    if is_double:
        held.append(vd)
    else:
        held.append(vf)
    if p == NULL:
        return NULL
    check_apart(call._spans + call._read_spans, p, n * item, name)
    return p


cdef _claim(list calls):
    """Mark the calls as running (each runs once: it would repeat the epoch it was prepared
    for, from a stale optimizer step count)."""
    cdef EpochCall c
    for c in calls:
        if not c._prepared:
            raise ValueError("an EpochCall must come from prepare_epoch")
        if c._dropped:
            raise RuntimeError("this epoch was dropped (its run ended before it ran); it "
                               "can no longer run")
        if c._ran:
            raise RuntimeError("this epoch has already run; prepare the next one")
    for c in calls:
        c._ran = True


cdef object _take_pending(_Interrupt *intr):
    if intr.pending == NULL:
        return None
    exc = <object> intr.pending
    Py_XDECREF(intr.pending)
    intr.pending = NULL
    return exc


cdef struct _Job:
    _Epoch **epochs
    _Interrupt *intr


cdef void _epoch_task(void *ctx, long t) noexcept nogil:
    cdef _Job *job = <_Job *> ctx
    run_epoch(job.epochs[t], job.intr)


def train_epochs(calls, n_threads):
    """Run prepared epochs (``prepare_epoch``) as the tasks of one job on fastnn's pool.

    Parameters
    ----------
    calls : sequence of EpochCall
        Epochs of different models: no buffer one of them writes (parameters, gradients,
        optimizer state, workspace) may overlap any other buffer of any of them, written
        or read (ValueError otherwise); the data they only read may be shared.
    n_threads : int >= 1
        Threads of the pool (the caller included).  Epochs that all-reduce over MPI run one
        after another in the given order on the caller, whatever n_threads: every rank must
        issue its collectives in the same order, from the thread that initialized MPI.

    Returns
    -------
    The exception a signal handler raised (Ctrl-C: KeyboardInterrupt), or None.  Python's
    signal handlers run on the calling thread every ``check_every`` seconds of the epochs it
    runs; when one raises, every epoch of the job stops after its running minibatch (epochs
    not yet started do not start) with status STATUS_INTERRUPTED.  Each call's ``result``
    holds its own figures.
    """
    calls = list(calls)
    for obj in calls:
        if not isinstance(obj, EpochCall):
            raise TypeError(f"calls must be EpochCall objects (prepare_epoch); got "
                            f"{type(obj).__name__}")
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or \
            n_threads < 1:
        raise ValueError(f"n_threads={n_threads!r}; expected an int >= 1")
    cdef int threads = min(n_threads, INT_MAX)   # the pool caps it at its own maximum
    check_disjoint([(c._spans, c._read_spans) for c in calls])
    cdef Py_ssize_t i, k = len(calls)
    cdef bint serial = False
    cdef EpochCall c
    cdef _Interrupt intr
    cdef _Job job
    if k == 0:
        return None
    job.epochs = <_Epoch **> PyMem_Malloc(k * sizeof(_Epoch *))
    if job.epochs == NULL:
        raise MemoryError()
    try:
        _claim(calls)
    except BaseException:
        PyMem_Free(job.epochs)
        raise
    for i in range(k):
        c = calls[i]
        job.epochs[i] = &c.a
        serial = serial or c.a.distributed
    intr.caller, intr.stop, intr.pending = pthread_self(), 0, NULL
    job.intr = &intr
    try:
        with nogil:
            if serial:
                for i in range(k):
                    run_epoch(job.epochs[i], &intr)
            else:
                parallel_for(threads, k, _epoch_task, &job)
    finally:
        PyMem_Free(job.epochs)
    pending = _take_pending(&intr)
    for c in calls:
        c._pending = pending if c.a.status == _STATUS_INTERRUPTED else None
        c._results = [(c.result, c.a.seconds)]
    return pending


def prepare_epoch(EpochConfig config not None, source, params, grads, state1, state2,
                  order, optimizer, long long t0, uint32_t epoch):
    """Check and pack one epoch into an EpochCall (run it with ``.run()`` or, with other
    models' epochs, ``train_epochs``).

    Parameters
    ----------
    config : EpochConfig
        What every epoch of the fit shares (built once per fit).
    source : DenseRows or CSRRows
        The rows and per-sample inputs (built once per fit).
    params, grads : ndarray of shape (n_params,) and (n_params,), float32 or float64
        The model's parameter vector (updated in place) and its gradient buffer; with a
        reducer, grads has two extra slots (n_params + 2).
    state1, state2 : ndarray of shape (n_params,) or (0,), or None
        The optimizer's state (velocity / first moment, second moment), as it needs it.
    order : ndarray of shape (n_order,), intp, or None
        The epoch's sample order (a permutation), or None for rows in storage order (then a
        dense X's minibatches are read in place, without a gather).  Without a reducer every
        index must be a row of X (row_offset .. row_offset + n - 1; ValueError otherwise).
    optimizer : tuple
        (kind, lr, momentum, nesterov, weight_decay, clip_norm, beta1, beta2, eps) as they
        are for this epoch (fastnn.optim.optimizers.Optimizer.compiled_args).
    t0 : int >= 0
        The optimizer's update count before the epoch.
    epoch : int
        The epoch's index (the dropout masks' second key).

    Distributed (config.reducer given; a dense X only): order is a permutation of the global
    indices and this rank holds global rows row_offset .. row_offset + n - 1.  Each rank
    scales its gradient by 1 / (the minibatch's weight over all ranks) inside the loss
    gradient, as one process does (``_sgd.train_step``), so the all-reduce adds terms of the
    weighted mean and nothing overflows that one process would not overflow (a sum over ranks
    of unscaled w_i dl_i would: float32 weights near 1e37).  The minibatches' global weights
    are the row counts without sample weights, otherwise one all-reduce of the ranks'
    per-batch partial sums (float64) when the epoch starts.  The loss sum travels in the
    extra slot of the gradient's all-reduce (float64; a float32 model adds it in double, in
    a second one-element all-reduce, so that it cannot overflow float32).

    The result of the run (``EpochCall.result``) is (loss_sum, weight_sum, steps, t, status,
    failed_step, pending_exception): loss_sum / weight_sum is the epoch's weighted mean
    training loss over the steps taken, t the optimizer's update count afterwards (t0 plus
    the batches of non-zero weight).

    Raises
    ------
    ValueError
        A buffer whose size does not fit the network, the row source or the batch, an
        order index outside X, an invalid CSR structure, overlapping buffers.
    TypeError
        A source that is neither DenseRows nor CSRRows, an optimizer that is not a 9-tuple.
    """
    if not isinstance(source, (DenseRows, CSRRows)):
        raise TypeError(f"source must be DenseRows or CSRRows; got {type(source).__name__}")
    if not isinstance(optimizer, tuple) or len(optimizer) != 9:
        raise TypeError("optimizer must be the tuple (kind, lr, momentum, nesterov, "
                        f"weight_decay, clip_norm, beta1, beta2, eps); got {optimizer!r}")
    dtype = getattr(params, "dtype", None)
    if dtype == np.float64:
        return _pack[double](config, source, params, grads, state1, state2, order,
                             optimizer, t0, epoch)
    if dtype == np.float32:
        return _pack[float](config, source, params, grads, state1, state2, order, optimizer,
                            t0, epoch)
    raise ValueError(f"params has dtype {dtype}; expected a float32 or float64 array")


def train_epoch(*args, **kwargs):
    """Run one epoch on the calling thread: ``prepare_epoch(*args, **kwargs).run()``.

    Arguments as ``prepare_epoch``.  Returns (loss_sum, weight_sum, steps, t, status,
    failed_step, pending_exception) (see there).
    """
    return prepare_epoch(*args, **kwargs).run()


cdef EpochCall _pack(EpochConfig config, object source, floating[::1] params,
                     floating[::1] grads, floating[::1] state1, floating[::1] state2,
                     const Py_ssize_t[::1] order, tuple optimizer, long long t0,
                     uint32_t epoch):
    """prepare_epoch in the model's dtype: the row source's and the workspace's arrays as
    typed views (a dtype or layout that does not fit raises here), every size checked, the
    pointers taken."""
    cdef bint sparse = isinstance(source, CSRRows)
    cdef const floating[:, ::1] X = None
    cdef const floating[::1] data = None
    cdef const Py_ssize_t[::1] indices = None
    cdef const Py_ssize_t[::1] indptr = None
    cdef const floating[:, ::1] Y = source.Y
    cdef const Py_ssize_t[::1] labels = source.labels
    cdef const floating[::1] sample_weight = source.sample_weight
    cdef const floating[::1] sigma = source.sigma
    cdef floating[::1] acts = config.acts
    cdef floating[::1] delta0 = config.delta0
    cdef floating[::1] delta1 = config.delta1
    cdef floating[:, ::1] X_batch = None
    cdef floating[:, ::1] Y_batch = config.Y_batch
    cdef Py_ssize_t[::1] labels_batch = config.labels_batch
    cdef floating[::1] sw_batch = config.sw_batch
    cdef floating[::1] sigma_batch = config.sigma_batch
    cdef Py_ssize_t n, n_in, i, batch_size = config.batch_size, row_offset = config.row_offset
    cdef NetSpec spec = config.spec
    cdef Allreduce reducer = config.reducer
    cdef EpochCall call = EpochCall.__new__(EpochCall)
    cdef _Epoch *a = &call.a
    cdef Py_ssize_t[::1] samples_buf = None
    cdef double[::1] batch_weights = None
    cdef int opt_kind = optimizer[0]
    cdef double momentum = optimizer[2]
    cdef bint dropout = False
    cdef Py_ssize_t item = sizeof(floating), index = sizeof(Py_ssize_t)
    cdef list written, read
    call.net = with_threads(spec, config.n_threads)  # (0: the untiled path, for tests)
    if sparse:
        data, indices, indptr = source.data, source.indices, source.indptr
        n, n_in = indptr.shape[0] - 1, source.n_features
        if reducer is not None:
            raise ValueError("a CSR row source cannot run with a reducer: data-parallel "
                             "training (MPI) takes a dense X")
        if n_in != spec.net.sizes[0]:
            raise ValueError(f"X has {n_in} features; the network expects "
                             f"{spec.net.sizes[0]}")
        check_first_layer(&call.net)
        check_csr(data, indices, indptr, n_in)
    else:
        X = source.X
        if X is None:
            raise ValueError("DenseRows.X is None; expected an array of shape (n, n_inputs)")
        n, n_in = X.shape[0], X.shape[1]
        if order is not None:
            X_batch = config.X_batch    # (read in place without an order: not used)
    # (sizes as C expressions, -1 for an absent buffer: the typed views never become
    # Python objects, which cost most of a small network's epoch preparation)
    check_epoch_buffers(
        spec, params.shape[0], grads.shape[0], -1 if state1 is None else state1.shape[0],
        -1 if state2 is None else state2.shape[0], n, -1 if sparse else n_in,
        -1 if Y is None else Y.shape[0], -1 if Y is None else Y.shape[1],
        -1 if labels is None else labels.shape[0],
        -1 if sample_weight is None else sample_weight.shape[0],
        -1 if sigma is None else sigma.shape[0], order, batch_size, config.loss_kind,
        opt_kind, momentum, t0, -1 if acts is None else acts.shape[0],
        -1 if delta0 is None else delta0.shape[0], -1 if delta1 is None else delta1.shape[0],
        -1 if X_batch is None else X_batch.shape[0],
        -1 if X_batch is None else X_batch.shape[1],
        -1 if Y_batch is None else Y_batch.shape[0],
        -1 if Y_batch is None else Y_batch.shape[1],
        -1 if labels_batch is None else labels_batch.shape[0],
        -1 if sw_batch is None else sw_batch.shape[0],
        -1 if sigma_batch is None else sigma_batch.shape[0], row_offset, reducer is not None)
    # dropout: a copy of the network struct carries the context (spec.net stays inference-
    # only, so a concurrent predict never drops units); one index buffer per epoch, which a
    # CSR source's minibatch also reads as its row list
    for i in range(spec.net.n_layers):
        dropout = dropout or spec.net.drop_rates[i] > 0
    if sparse or dropout:
        samples_buf = np.empty(max(batch_size, 1), dtype=np.intp)
        a.samples = &samples_buf[0]
    else:
        a.samples = NULL
    if dropout:
        call.dctx.seed, call.dctx.epoch, call.dctx.samples = config.dropout_seed, epoch, \
            &samples_buf[0]
        call.dctx.layer0 = 0
        call.net.drop = &call.dctx
    a.net = &call.net
    a.params = NULL if params.shape[0] == 0 else <void *> &params[0]
    a.grads = NULL if grads.shape[0] == 0 else <void *> &grads[0]
    a.s1 = NULL if state1 is None or state1.shape[0] == 0 else <void *> &state1[0]
    a.s2 = NULL if state2 is None or state2.shape[0] == 0 else <void *> &state2[0]
    # (if-statements, not conditional expressions: those drop the const of the pointers)
    a.source = _SOURCE_CSR if sparse else _SOURCE_DENSE
    a.X = a.data = a.Y = a.sw = a.sigma = NULL
    a.indices = a.indptr = a.labels = a.order = NULL
    if not sparse and n > 0 and n_in > 0:
        a.X = &X[0, 0]
    if sparse:
        a.indptr = &indptr[0]
        if data.shape[0] > 0:
            a.data = &data[0]
            a.indices = &indices[0]
    if Y is not None and Y.shape[0] > 0 and Y.shape[1] > 0:
        a.Y = &Y[0, 0]
    if labels is not None and labels.shape[0] > 0:
        a.labels = &labels[0]
    if sample_weight is not None and sample_weight.shape[0] > 0:
        a.sw = &sample_weight[0]
    if sigma is not None and sigma.shape[0] > 0:
        a.sigma = &sigma[0]
    a.order_local = True          # without a reducer, check_epoch_buffers made sure
    if order is not None and order.shape[0] > 0:
        a.order = &order[0]
        if reducer is not None:
            with nogil:
                for i in range(order.shape[0]):
                    if local_row(order[i], row_offset, n) < 0:
                        a.order_local = False
                        break
    a.acts = NULL if acts is None or acts.shape[0] == 0 else <void *> &acts[0]
    a.delta0 = NULL if delta0 is None or delta0.shape[0] == 0 else <void *> &delta0[0]
    a.delta1 = NULL if delta1 is None or delta1.shape[0] == 0 else <void *> &delta1[0]
    a.X_batch = (NULL if X_batch is None or X_batch.shape[0] == 0 or X_batch.shape[1] == 0
                 else <void *> &X_batch[0, 0])
    a.Y_batch = (NULL if Y_batch is None or Y_batch.shape[0] == 0 or Y_batch.shape[1] == 0
                 else <void *> &Y_batch[0, 0])
    a.labels_batch = (NULL if labels_batch is None or labels_batch.shape[0] == 0
                      else &labels_batch[0])
    a.sw_batch = NULL if sw_batch is None or sw_batch.shape[0] == 0 else <void *> &sw_batch[0]
    a.sigma_batch = (NULL if sigma_batch is None or sigma_batch.shape[0] == 0
                     else <void *> &sigma_batch[0])
    a.n, a.n_in = n, n_in
    a.n_t = 0 if Y is None else Y.shape[1]
    a.n_order = n if order is None else order.shape[0]
    a.batch_weights = NULL
    if reducer is not None and sample_weight is not None:
        # one slot per minibatch of the epoch, filled when it runs (_global_batch_weights)
        batch_weights = np.zeros(max((a.n_order + batch_size - 1) // batch_size, 1),
                                 dtype=np.float64)
        a.batch_weights = &batch_weights[0]
    a.n_params, a.batch_size, a.row_offset = params.shape[0], batch_size, row_offset
    a.drop_last, a.is_double = config.drop_last, floating is double
    a.flush_denormals = config.flush_denormals
    a.distributed = reducer is not None
    if reducer is not None:
        a.reducer = reducer.r
    a.check_every = config.check_every
    a.lp.kind, a.lp.full, a.lp.sigma = config.loss_kind, config.loss_full, config.sigma_scalar
    a.opt = _optimizer(opt_kind, optimizer[1], momentum, optimizer[3], optimizer[4],
                       optimizer[5], optimizer[6], optimizer[7], optimizer[8], t0)
    a.loss_sum = a.weight_sum = a.seconds = 0.0
    a.steps, a.failed_step, a.status = 0, -1, _STATUS_OK
    call._index = epoch
    call._n_s1 = 0 if state1 is None else state1.shape[0]
    call._n_s2 = 0 if state2 is None else state2.shape[0]
    # the pointers above stay valid while these live (a typed memoryview holds its buffer)
    call._keep = [spec, reducer, X, data, indices, indptr, Y, labels, sample_weight, sigma,
                  order, params, grads, state1, state2, acts, delta0, delta1, X_batch,
                  Y_batch, labels_batch, sw_batch, sigma_batch, samples_buf, batch_weights]
    # every byte the epoch writes, and every byte it only reads, from the pointers it will use
    written = []
    span(written, a.params, params.shape[0] * item, "params")
    span(written, a.grads, grads.shape[0] * item, "grads")
    span(written, a.s1, (0 if state1 is None else state1.shape[0]) * item, "state1")
    span(written, a.s2, (0 if state2 is None else state2.shape[0]) * item, "state2")
    span(written, a.acts, (0 if acts is None else acts.shape[0]) * item, "acts")
    span(written, a.delta0, (0 if delta0 is None else delta0.shape[0]) * item, "delta0")
    span(written, a.delta1, (0 if delta1 is None else delta1.shape[0]) * item, "delta1")
    span(written, a.X_batch,
          0 if X_batch is None else X_batch.shape[0] * X_batch.shape[1] * item, "X_batch")
    span(written, a.Y_batch,
          0 if Y_batch is None else Y_batch.shape[0] * Y_batch.shape[1] * item, "Y_batch")
    span(written, a.labels_batch,
          (0 if labels_batch is None else labels_batch.shape[0]) * index, "labels_batch")
    span(written, a.sw_batch, (0 if sw_batch is None else sw_batch.shape[0]) * item,
          "sw_batch")
    span(written, a.sigma_batch, (0 if sigma_batch is None else sigma_batch.shape[0]) * item,
          "sigma_batch")
    span(written, a.samples, (0 if samples_buf is None else samples_buf.shape[0]) * index,
          "dropout sample indices")
    span(written, a.batch_weights,
          (0 if batch_weights is None else batch_weights.shape[0]) * sizeof(double),
          "batch weights")
    read = []
    span(read, a.X, 0 if X is None else X.shape[0] * X.shape[1] * item, "X")
    span(read, a.data, (0 if data is None else data.shape[0]) * item, "data")
    span(read, a.indices, (0 if indices is None else indices.shape[0]) * index, "indices")
    span(read, a.indptr, (0 if indptr is None else indptr.shape[0]) * index, "indptr")
    span(read, a.Y, 0 if Y is None else Y.shape[0] * Y.shape[1] * item, "Y")
    span(read, a.labels, (0 if labels is None else labels.shape[0]) * index, "labels")
    span(read, a.sw, (0 if sample_weight is None else sample_weight.shape[0]) * item,
          "sample_weight")
    span(read, a.sigma, (0 if sigma is None else sigma.shape[0]) * item, "sigma")
    span(read, a.order, (0 if order is None else order.shape[0]) * index, "order")
    call._spans, call._read_spans = written, read
    check_disjoint([(call._spans, call._read_spans)])     # its own buffers (train_epochs checks them across calls)
    call._prepared = True
    return call
