"""The minibatch training loop over a row source, entirely in compiled code.

One call runs one epoch: for each minibatch, take its rows (in the epoch's order) from the
row source, run the network's forward pass, the fused loss + output-link gradient, the
backward pass, and update the one contiguous parameter vector in one pass.  The loop holds
no GIL and allocates nothing; every buffer comes from fastnn.training.engine, sized once per
fit, through fastnn/_core/_epoch.pyx, which checks them and fills the _Epoch this loop reads.

The row source (scikit-learn's SequentialDataset plays this part for its _plain_sgd) is
either a dense X, whose minibatch rows are gathered into X_batch (on the pool's threads when
the batch is large) or read in place when there is no order, or a CSR X (data, indices,
indptr), whose rows are always read in place through a row list (the epoch's order, copied
into `samples` as the targets are gathered, or a contiguous range): the sparse first layer of
fastnn/_core/_sparse.pyx runs over them (sparse_loss_grad), then the optimizer update
(_sgd.apply_update).  The dense step is _sgd.train_step, which fuses plain SGD without
momentum or clipping into the weight-gradient GEMM: a sparse and a dense epoch on the same
data agree to rounding, not to the bit.

Nothing raises inside the loop (sklearn's _plain_sgd does the same): a non-finite loss sets a
status and stops *before* the update that would use it, so the parameters stay those of the
last finite step; the caller raises with the epoch and step.  Every `check_every` seconds the
loop takes the GIL briefly to run Python's signal handlers, so Ctrl-C stops it after the
current minibatch with the model consistent.

Subnormal floats are flushed to zero for the duration of the call (src_c/fastnn_fpmode.h,
fastnn.runtime.fpmode) unless flush_denormals is False; the caller's floating-point mode is put
back before the loop takes the GIL and before it returns.

Data-parallel training (fastnn.training.distributed, a dense X only) runs the same loop on every
MPI rank: `order` is then a permutation of the GLOBAL sample indices (the same on every rank),
each rank gathers the rows of the global minibatch that it holds (rows row_offset .. row_offset
+ n - 1), and the gradient of sum_i w_i l_i, the loss and the weight sum are added over ranks
with ONE MPI_Allreduce, called through a C function pointer (`allreduce`) without leaving the
loop.  Every rank then applies the identical update, scaled by the global weight sum: the step
is the one a single process would take on the global minibatch.
"""
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.math cimport isfinite
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cpython.exc cimport PyErr_CheckSignals
from cpython.ref cimport Py_INCREF

from fastnn._core._fpmode cimport fnn_fpmode_enter, fnn_fpmode_leave
from fastnn._core._kernels cimport FNN_OK
from fastnn._core._network cimport Net, net_loss_grad
from fastnn._core._pool cimport parallel_for
from fastnn._core._sgd cimport Optimizer, apply_update, train_step
from fastnn._core._sparse cimport sparse_loss_grad

# MPI_Allreduce with the handle types of the two ABIs in use: MPICH (and derivatives) use int
# handles, Open MPI pointers.  fastnn never includes mpi.h: fastnn.training.distributed reads the
# function's address and the handles from mpi4py at run time.
ctypedef int (*allreduce_int_fn)(const void *, void *, int, int, int, int) noexcept nogil
ctypedef int (*allreduce_ptr_fn)(const void *, void *, int, void *, void *, void *) noexcept nogil


cdef int allreduce(const _Reducer *red, floating *buf, int count) noexcept nogil:
    cdef Py_ssize_t dtype = red.float_type if floating is float else red.double_type
    if red.int_handles:
        return (<allreduce_int_fn> red.fn)(<void *> red.in_place, buf, count, <int> dtype,
                                           <int> red.op, <int> red.comm)
    return (<allreduce_ptr_fn> red.fn)(<void *> red.in_place, buf, count, <void *> dtype,
                                       <void *> red.op, <void *> red.comm)


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef enum:
    _GATHER_MIN_BYTES = 131072      # a gather task copies at least this much of X


cdef struct _Gather:
    const char *X
    const char *Y
    const Py_ssize_t *labels
    const char *sw
    const char *sigma
    const Py_ssize_t *order
    char *X_batch
    char *Y_batch
    Py_ssize_t *labels_batch
    char *sw_batch
    char *sigma_batch
    Py_ssize_t *samples
    Py_ssize_t x_row, y_row, item, row_offset, n, rows, block
    int bad                 # set by a task that met an index that is not a row of X




cdef void _gather_task(void *ctx, long t) noexcept nogil:
    """Rows [t * block, (t + 1) * block) of the minibatch: copies, so any split gives the
    same bits.  Every index is checked again as it is read (prepare_epoch's check was of the
    order as it was then; the caller's array may have changed since): one that is not a row
    of X sets g.bad and is not read, and the caller gathers the batch serially instead."""
    cdef _Gather *g = <_Gather *> ctx
    cdef Py_ssize_t i, r, lo = t * g.block, hi = min(g.rows, (t + 1) * g.block)
    for i in range(lo, hi):
        r = local_row(g.order[i], g.row_offset, g.n)
        if r < 0:
            fnn_sgd_flag_set(&g.bad)
            return
        _copy_row(g, i, r, g.order[i])


cdef inline void _copy_row(const _Gather *g, Py_ssize_t dst, Py_ssize_t src,
                           Py_ssize_t index) noexcept nogil:
    """Row src of X (and of every per-sample input) into row dst of the batch buffers;
    the dropout sample index of row dst is global sample `index`."""
    if g.x_row != 0:        # (a CSR source: its rows are read in place)
        memcpy(g.X_batch + dst * g.x_row, g.X + src * g.x_row, g.x_row)
    if g.Y != NULL:
        memcpy(g.Y_batch + dst * g.y_row, g.Y + src * g.y_row, g.y_row)
    if g.labels != NULL:
        g.labels_batch[dst] = g.labels[src]
    if g.sw != NULL:
        memcpy(g.sw_batch + dst * g.item, g.sw + src * g.item, g.item)
    if g.sigma != NULL:
        memcpy(g.sigma_batch + dst * g.item, g.sigma + src * g.item, g.item)
    if g.samples != NULL:
        g.samples[dst] = index


cdef void run_epoch(_Epoch *a, _Interrupt *intr) noexcept nogil:
    if a.is_double:
        _run_epoch_t(a, intr, <double *> a.params)
    else:
        _run_epoch_t(a, intr, <float *> a.params)


cdef void _run_epoch_t(_Epoch *a, _Interrupt *intr, floating *params) noexcept nogil:
    """The epoch's minibatch loop (results into *a).  Runs on any thread; Python's signal
    handlers run only on intr.caller's."""
    cdef const floating *X = <const floating *> a.X
    cdef const floating *data = <const floating *> a.data
    cdef const Py_ssize_t *row_list = NULL
    cdef bint sparse = a.source == _SOURCE_CSR
    cdef const floating *Y = <const floating *> a.Y
    cdef const Py_ssize_t *labels = a.labels
    cdef const floating *sample_weight = <const floating *> a.sw
    cdef const floating *sigma = <const floating *> a.sigma
    cdef const Py_ssize_t *order = a.order
    cdef floating *grads = <floating *> a.grads
    cdef floating *s1 = <floating *> a.s1
    cdef floating *s2 = <floating *> a.s2
    cdef floating *acts = <floating *> a.acts
    cdef floating *delta0 = <floating *> a.delta0
    cdef floating *delta1 = <floating *> a.delta1
    cdef floating *X_batch = <floating *> a.X_batch
    cdef floating *Y_batch = <floating *> a.Y_batch
    cdef Py_ssize_t *labels_batch = a.labels_batch
    cdef floating *sw_batch = <floating *> a.sw_batch
    cdef floating *sigma_batch = <floating *> a.sigma_batch
    cdef Py_ssize_t *samples = a.samples
    cdef const Net *net = a.net
    cdef Optimizer *opt = &a.opt
    cdef Py_ssize_t n = a.n, n_in = a.n_in, n_t = a.n_t, n_order = a.n_order
    cdef Py_ssize_t n_params = a.n_params, batch_size = a.batch_size
    cdef Py_ssize_t row_offset = a.row_offset
    cdef bint flush_denormals = a.flush_denormals, drop_last = a.drop_last
    cdef bint distributed = a.distributed, gather = order != NULL
    cdef bint caller = pthread_equal(pthread_self(), intr.caller) != 0
    cdef double check_every = a.check_every
    cdef Py_ssize_t start, rows, batch_rows, i, r, step = 0, failed_step = -1
    cdef int status = _STATUS_OK, kstatus = FNN_OK, signalled = 0
    cdef double loss_sum = 0.0, weight_sum = 0.0, batch_loss = 0.0, batch_weight
    cdef double last_check, began
    cdef double sums[2]
    cdef const floating *xb
    cdef const floating *yb
    cdef const Py_ssize_t *lb
    cdef const floating *wb
    cdef const floating *sb
    cdef unsigned long long fp_saved

    cdef _Gather gjob
    cdef Py_ssize_t n_tasks
    cdef bint copied
    gjob.X, gjob.Y, gjob.labels = <const char *> X, <const char *> Y, labels
    gjob.sw, gjob.sigma = <const char *> sample_weight, <const char *> sigma
    gjob.X_batch, gjob.Y_batch, gjob.labels_batch = <char *> X_batch, <char *> Y_batch, \
        labels_batch
    gjob.sw_batch, gjob.sigma_batch, gjob.samples = <char *> sw_batch, <char *> sigma_batch, \
        samples
    # (a CSR source: no X to copy; n_in is its feature count)
    gjob.x_row = 0 if sparse else n_in * sizeof(floating)
    gjob.y_row = n_t * sizeof(floating)
    gjob.item, gjob.row_offset, gjob.n = sizeof(floating), row_offset, n

    began = _now()
    if fnn_sgd_flag_get(&intr.stop):     # the job was interrupted before this epoch began
        a.status, a.steps, a.failed_step, a.seconds = _STATUS_INTERRUPTED, 0, -1, 0.0
        a.loss_sum = a.weight_sum = 0.0
        return
    if distributed and a.batch_weights != NULL and \
            _global_batch_weights(a, sample_weight) != 0:
        a.status, a.steps, a.failed_step, a.seconds = _STATUS_REDUCE_ERROR, 0, 0, 0.0
        a.loss_sum = a.weight_sum = 0.0
        return
    fp_saved = fnn_fpmode_enter(flush_denormals)
    last_check = began
    start = 0
    while start < n_order:
        batch_rows = min(batch_size, n_order - start)
        if batch_rows < batch_size and drop_last:
            break
        # -- the minibatch: gathered in the epoch's order (this rank's rows of it when
        #    distributed), or read in place
        rows = batch_rows
        copied = False
        if gather and a.order_local:
            # every row is this process's: copy over row blocks on the pool's threads
            gjob.order = order + start
            gjob.rows = batch_rows
            gjob.bad = 0
            n_tasks = min(<Py_ssize_t> net.n_threads,
                          batch_rows * gjob.x_row // _GATHER_MIN_BYTES)
            if n_tasks > 1:
                gjob.block = (batch_rows + n_tasks - 1) // n_tasks
                parallel_for(net.n_threads, (batch_rows + gjob.block - 1) // gjob.block,
                             _gather_task, &gjob)
            else:
                gjob.block = batch_rows
                _gather_task(&gjob, 0)
            # (an index the caller changed since prepare_epoch: the serial gather below)
            copied = not fnn_sgd_flag_get(&gjob.bad)
        if gather and not copied:
            rows = 0
            for i in range(batch_rows):
                r = local_row(order[start + i], row_offset, n)
                if r < 0:
                    continue              # another rank's sample
                _copy_row(&gjob, rows, r, order[start + i])
                rows += 1
        if gather:
            xb = X_batch
            row_list = samples      # a CSR source's rows: the gathered sample indices
            yb = NULL if Y == NULL else Y_batch
            lb = NULL if labels == NULL else labels_batch
            wb = NULL if sample_weight == NULL else sw_batch
            sb = NULL if sigma == NULL else sigma_batch
        else:
            xb = NULL       # (if-statements: a conditional expression drops the const)
            if not sparse:
                xb = X + start * n_in
            if samples != NULL:
                for i in range(rows):
                    samples[i] = row_offset + start + i
            yb, lb, wb, sb = NULL, NULL, NULL, NULL
            if Y != NULL:
                yb = Y + start * n_t
            if labels != NULL:
                lb = labels + start
            if sample_weight != NULL:
                wb = sample_weight + start
            if sigma != NULL:
                sb = sigma + start
        # -- forward, fused loss gradient, backward: gradient of the weighted batch mean
        if not distributed:
            batch_weight = batch_weight_sum(wb, rows)
            if batch_weight > 0 and sparse:
                # the sparse first layer, the later ones dense, then the update; a non-finite
                # loss or a kernel error leaves the parameters alone
                batch_loss = sparse_loss_grad(net, params, grads, data, a.indices, a.indptr,
                                              n_in, row_list, start, <int> rows, &a.lp, yb,
                                              lb, wb, sb, 1.0 / batch_weight, acts, delta0,
                                              delta1, &kstatus)
                if kstatus == FNN_OK and isfinite(batch_loss):
                    opt.t += 1
                    apply_update(net, opt, params, grads, s1, s2, n_params, 1.0)
            elif batch_weight > 0:
                batch_loss = train_step(net, opt, params, grads, s1, s2, n_params, xb,
                                        <int> rows, &a.lp, yb, lb, wb, sb, batch_weight, acts,
                                        delta0, delta1, &kstatus)
        else:
            # the minibatch's weight over every rank, the same on each: all ranks skip a
            # batch of weight 0 together, and each scales its rows' gradient by 1 / weight
            # as one process does, so the all-reduce adds terms of the weighted mean
            batch_weight = (a.batch_weights[step] if a.batch_weights != NULL
                            else <double> batch_rows)
            if batch_weight > 0:
                batch_loss = 0.0
                if rows > 0:
                    batch_loss = net_loss_grad(net, params, grads, xb, <int> rows, &a.lp, yb,
                                               lb, wb, sb, 1.0 / batch_weight, acts, delta0,
                                               delta1, &kstatus)
                else:
                    for i in range(n_params):
                        grads[i] = 0
                # one all-reduce of [gradient | loss sum]
                if floating is float:
                    # the loss sum over ranks can overflow float32 where the model's values
                    # do not: add it in double, in a second small reduction
                    sums[0] = batch_loss
                    if allreduce(&a.reducer, grads, <int> n_params) != 0 or \
                            allreduce(&a.reducer, &sums[0], 1) != 0:
                        status = _STATUS_REDUCE_ERROR
                        failed_step = step
                        break
                    batch_loss = sums[0]
                else:
                    grads[n_params] = batch_loss
                    if allreduce(&a.reducer, grads, <int> (n_params + 1)) != 0:
                        status = _STATUS_REDUCE_ERROR
                        failed_step = step
                        break
                    batch_loss = grads[n_params]
                if isfinite(batch_loss) and kstatus == FNN_OK:
                    opt.t += 1
                    apply_update(net, opt, params, grads, s1, s2, n_params, 1.0)
        if batch_weight > 0 and _record_step(kstatus, batch_loss, batch_weight, step, &loss_sum,
                                             &weight_sum, &status, &failed_step):
            break
        step += 1
        start += batch_rows
        # -- Ctrl-C stops the job after this step: the caller's thread lets Python's signal
        #    handlers run now and then; every task polls the job's stop flag
        if caller and check_every >= 0 and _now() - last_check >= check_every:
            last_check = _now()
            fnn_fpmode_leave(flush_denormals, fp_saved)    # handlers run in the caller's mode
            with gil:
                try:
                    PyErr_CheckSignals()
                except BaseException as exc:
                    if intr.pending == NULL:
                        Py_INCREF(exc)
                        intr.pending = <PyObject *> exc
                    signalled = 1
            if signalled:
                fnn_sgd_flag_set(&intr.stop)
                status = _STATUS_INTERRUPTED
                break
            fp_saved = fnn_fpmode_enter(flush_denormals)
        if fnn_sgd_flag_get(&intr.stop):
            status = _STATUS_INTERRUPTED
            break
    fnn_fpmode_leave(flush_denormals, fp_saved)
    a.loss_sum, a.weight_sum, a.steps, a.failed_step, a.status = \
        loss_sum, weight_sum, step, failed_step, status
    a.seconds = _now() - began


cdef int _global_batch_weights(_Epoch *a, const floating *sample_weight) noexcept nogil:
    """Distributed training with sample weights: a.batch_weights[k] = the weight of the
    epoch's minibatch k summed over every rank (this rank's rows of it in batch order, in
    double, then one all-reduce).  Returns the all-reduce's error code (0: success)."""
    cdef Py_ssize_t start = 0, k = 0, i, r, rows, done, chunk
    cdef double total
    while start < a.n_order:
        rows = min(a.batch_size, a.n_order - start)
        if rows < a.batch_size and a.drop_last:
            break
        total = 0.0
        for i in range(rows):
            r = local_row(a.order[start + i], a.row_offset, a.n)
            if r >= 0:
                total += sample_weight[r]
        a.batch_weights[k] = total
        k += 1
        start += rows
    done = 0
    while done < k:       # MPI counts are ints
        chunk = min(k - done, <Py_ssize_t> INT_MAX)
        if allreduce(&a.reducer, a.batch_weights + done, <int> chunk) != 0:
            return 1
        done += chunk
    return 0


cdef double batch_weight_sum(const floating *weights, Py_ssize_t rows) noexcept nogil:
    """The minibatch's weight: the sum of its sample weights in row order (in double), or
    its row count without weights."""
    cdef double total = 0.0
    cdef Py_ssize_t i
    if weights == NULL:
        return <double> rows
    for i in range(rows):
        total += weights[i]
    return total


cdef bint _record_step(int kstatus, double batch_loss, double batch_weight, Py_ssize_t step,
                       double *loss_sum, double *weight_sum, int *status,
                       Py_ssize_t *failed_step) noexcept nogil:
    """After a minibatch step of positive weight, in this order: a kernel error (*status =
    _STATUS_KERNEL_ERROR), then a non-finite loss (_STATUS_DIVERGED: the step was not applied)
    set *failed_step = step and return True (the epoch stops); otherwise add the batch's loss
    and weight to *loss_sum and *weight_sum and return False."""
    if kstatus != FNN_OK:
        status[0] = _STATUS_KERNEL_ERROR
        failed_step[0] = step
        return True
    if not isfinite(batch_loss):
        status[0] = _STATUS_DIVERGED
        failed_step[0] = step
        return True
    loss_sum[0] += batch_loss
    weight_sum[0] += batch_weight
    return False
