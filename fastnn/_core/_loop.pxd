# The compiled epoch loop over a row source (a dense X or a CSR one), for its Python face
# fastnn/_core/_epoch.pyx, which prepares an _Epoch with the GIL and runs it without.
# Implementation: _loop.pyx.
from cython cimport floating
from cpython.ref cimport PyObject

from fastnn._core._losses cimport LossParams
from fastnn._core._network cimport Net
from fastnn._core._sgd cimport Optimizer

cdef enum:
    _STATUS_OK = 0
    _STATUS_DIVERGED = 1            # a non-finite loss; the step was not applied
    _STATUS_INTERRUPTED = 2         # a signal handler raised (Ctrl-C); after a full step
    _STATUS_KERNEL_ERROR = 3        # a kernel returned an error status
    _STATUS_REDUCE_ERROR = 4        # MPI_Allreduce returned an error code

cdef enum:
    _SOURCE_DENSE = 0               # X (n, n_in), C order: rows gathered or read in place
    _SOURCE_CSR = 1                 # data, indices, indptr: rows always read in place

cdef extern from *:
    """
    #include <pthread.h>
    /* the stop flag every task of a job polls (relaxed: it only ever goes from 0 to 1) */
    static inline int fnn_sgd_flag_get(const int *p)
        { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void fnn_sgd_flag_set(int *p) { __atomic_store_n(p, 1, __ATOMIC_RELAXED); }
    """
    ctypedef unsigned long pthread_t
    pthread_t pthread_self() nogil
    int pthread_equal(pthread_t a, pthread_t b) nogil
    int fnn_sgd_flag_get(const int *p) nogil
    void fnn_sgd_flag_set(int *p) nogil


cdef struct _Reducer:
    # MPI_Allreduce from C (_epoch.Allreduce builds it from mpi4py's handles)
    void *fn
    bint int_handles
    Py_ssize_t in_place, comm, op, float_type, double_type


cdef struct _Interrupt:
    pthread_t caller        # the thread that called run / train_epochs: the only one that
                            # runs Python's signal handlers (pool workers never take the GIL)
    int stop                # set when a handler raised: every epoch of the job stops
    PyObject *pending       # the exception the handler raised (a new reference), or NULL


cdef struct _Epoch:
    # the network: the call's copy, carrying the dropout context (and the thread count)
    const Net *net
    void *params
    void *grads
    void *s1
    void *s2
    # the row source: kind, then X (dense) or data / indices / indptr (CSR), and the
    # per-sample inputs of either
    int source
    const void *X
    const void *data
    const Py_ssize_t *indices
    const Py_ssize_t *indptr
    const void *Y
    const Py_ssize_t *labels
    const void *sw
    const void *sigma
    const Py_ssize_t *order
    void *acts
    void *delta0
    void *delta1
    void *X_batch
    void *Y_batch
    Py_ssize_t *labels_batch
    void *sw_batch
    void *sigma_batch
    Py_ssize_t *samples     # the global sample index of each row of the minibatch (dropout;
                            # a CSR source's row list), or NULL
    double *batch_weights   # distributed with sample weights: each minibatch's global weight
    Py_ssize_t n, n_in, n_t, n_order, n_params, batch_size, row_offset
    bint drop_last, is_double, flush_denormals, distributed
    bint order_local             # every index of `order` is a row of this X
    double check_every
    LossParams lp
    Optimizer opt
    _Reducer reducer
    # results
    double loss_sum, weight_sum, seconds
    Py_ssize_t steps, failed_step
    int status


cdef void run_epoch(_Epoch *a, _Interrupt *intr) noexcept nogil
# the epoch's minibatch loop; results into *a.  Any thread; signal handlers only on
# intr.caller's

cdef int allreduce(const _Reducer *red, floating *buf, int count) noexcept nogil
# MPI_Allreduce(MPI_IN_PLACE, buf, count, <float or double>, MPI_SUM, comm); its error code


cdef inline Py_ssize_t local_row(Py_ssize_t index, Py_ssize_t row_offset,
                                 Py_ssize_t n) noexcept nogil:
    """The row of this X holding global sample `index`, or -1 (another rank's sample, or no
    sample at all); row_offset >= 0, and no subtraction that could overflow."""
    if index < row_offset or index - row_offset >= n:
        return -1
    return index - row_offset
