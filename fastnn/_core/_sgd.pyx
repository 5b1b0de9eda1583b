"""The minibatch training loop, entirely in compiled code, and the in-place optimizer updates.

One call runs one epoch: for each minibatch, gather its rows (in the epoch's order) into
preallocated buffers, run the network's forward pass, the fused loss + output-link gradient,
the backward pass, and update the one contiguous parameter vector in one pass.  The loop holds
no GIL and allocates nothing; every buffer comes from fastnn.training.engine, sized once per fit.

Nothing raises inside the loop (sklearn's _plain_sgd does the same): a non-finite loss sets a
status and stops *before* the update that would use it, so the parameters stay those of the
last finite step; the caller raises with the epoch and step.  Every `check_every` seconds the
loop takes the GIL briefly to run Python's signal handlers, so Ctrl-C stops it after the
current minibatch with the model consistent.

Subnormal floats are flushed to zero for the duration of the call (src_c/fastnn_fpmode.h,
fastnn.runtime.fpmode) unless flush_denormals is False; the caller's floating-point mode is put back
before the loop takes the GIL and before it returns.

Data-parallel training (fastnn.training.distributed) runs the same loop on every MPI rank: `order` is
then a permutation of the GLOBAL sample indices (the same on every rank), each rank gathers
the rows of the global minibatch that it holds (rows row_offset .. row_offset + n - 1), and
the gradient of sum_i w_i l_i, the loss and the weight sum are added over ranks with ONE
MPI_Allreduce, called through a C function pointer (`Allreduce`) without leaving the loop.
Every rank then applies the identical update, scaled by the global weight sum: the step is
the one a single process would take on the global minibatch.
"""
from cython cimport floating
from libc.float cimport DBL_MAX, DBL_MIN, FLT_MIN
from libc.math cimport fabs, sqrt, isfinite, pow
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cpython.exc cimport PyErr_CheckSignals

from fastnn._core._fpmode cimport fnn_fpmode_enter, fnn_fpmode_leave
from fastnn._core._kernels cimport FNN_OK
from libc.limits cimport INT_MAX

from fastnn._core._losses cimport LossParams, check_target_sizes
from fastnn._core._network cimport (Net, NetSpec, check_net, net_backward, net_forward_loss,
                              net_loss_grad)
from fastnn._core._dropout cimport DropoutCtx
from fastnn._core._pool cimport parallel_for
from libc.stdint cimport uint32_t, uint64_t

import numbers

import numpy as np

cdef enum:
    _OPT_SGD = 0
    _OPT_ADAM = 1
    _OPT_ADAMW = 2                  # Adam with decoupled weight decay (Loshchilov & Hutter)
    _STATUS_OK = 0
    _STATUS_DIVERGED = 1            # a non-finite loss; the step was not applied
    _STATUS_INTERRUPTED = 2         # a signal handler raised (Ctrl-C); after a full step
    _STATUS_KERNEL_ERROR = 3        # a kernel returned an error status
    _STATUS_REDUCE_ERROR = 4        # MPI_Allreduce returned an error code

# the same codes for fastnn/optim/optimizers.py and fastnn/training/trainer.py
OPT_SGD, OPT_ADAM, OPT_ADAMW = _OPT_SGD, _OPT_ADAM, _OPT_ADAMW
STATUS_OK, STATUS_DIVERGED = _STATUS_OK, _STATUS_DIVERGED
STATUS_INTERRUPTED, STATUS_KERNEL_ERROR = _STATUS_INTERRUPTED, _STATUS_KERNEL_ERROR
STATUS_REDUCE_ERROR = _STATUS_REDUCE_ERROR

# MPI_Allreduce with the handle types of the two ABIs in use: MPICH (and derivatives) use int
# handles, Open MPI pointers.  fastnn never includes mpi.h: fastnn.training.distributed reads the
# function's address and the handles from mpi4py at run time.
ctypedef int (*allreduce_int_fn)(const void *, void *, int, int, int, int) noexcept nogil
ctypedef int (*allreduce_ptr_fn)(const void *, void *, int, void *, void *, void *) noexcept nogil


cdef struct _Reducer:
    void *fn
    bint int_handles
    Py_ssize_t in_place, comm, op, float_type, double_type


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
            err = _allreduce(&self.r, &buf[0], <int> buf.shape[0])
        if err != 0:
            raise RuntimeError(f"MPI_Allreduce failed with error code {err}")


cdef int _allreduce(const _Reducer *red, floating *buf, int count) noexcept nogil:
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


cdef double _sum_squares(const floating *g, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double acc = 0.0
    for i in range(n):
        acc += <double> g[i] * g[i]
    return acc


cdef double _scaled_norm(const floating *g, Py_ssize_t n) noexcept nogil:
    """||g||_2 = scale * sqrt(ssq), ssq = sum (g_i / scale)^2 with scale the largest |g_i|
    so far (LAPACK's dnrm2 before 3.10): no square overflows or underflows.  NaN or inf in g
    give NaN or inf."""
    cdef Py_ssize_t i
    cdef double scale = 0.0, ssq = 1.0, a, r
    for i in range(n):
        a = fabs(<double> g[i])
        if a != 0.0:
            if scale < a:
                r = scale / a
                ssq = 1.0 + ssq * r * r
                scale = a
            else:
                r = a / scale
                ssq += r * r
    return scale * sqrt(ssq)


cdef void _clip_factors(const floating *g, Py_ssize_t n, double total, double grad_scale,
                        double clip_norm, double *g_scale, double *g_scale2) noexcept nogil:
    """The factor the update multiplies the gradient g by, as g_scale * g_scale2.

    grad_scale, or when grad_scale ||g|| > clip_norm, grad_scale clip_norm / (grad_scale ||g||).
    ||g|| is sqrt(total), total the sum of squares in double, when total is a normal number
    (then every bit is as before); otherwise, when a square overflowed (|g_i| > 1.3e154 in
    float64: the norm was inf and the step silently zero) or underflowed (|g_i| < 1e-154:
    the norm was 0, and a clip_norm below it was ignored), the scaled norm (_scaled_norm), if
    that is finite.  g_scale2 is 1 unless the clipping factor is below the dtype's smallest
    normal number, which flushing subnormals turns into 0 (float32 gradients near 1e38): then
    the factor is applied as two normal ones, g_scale = g_scale2 = sqrt(clip_norm / ||g||).
    """
    cdef double raw, norm, factor, smallest = DBL_MIN
    if floating is float:
        smallest = FLT_MIN
    g_scale[0] = grad_scale
    g_scale2[0] = 1.0
    if clip_norm <= 0:
        return
    if total >= DBL_MIN and total <= DBL_MAX:
        raw = sqrt(total)
    else:
        raw = _scaled_norm(g, n)
        if not isfinite(raw):
            raw = sqrt(total)       # NaN or inf in g: as before
    norm = grad_scale * raw
    if norm > clip_norm:
        factor = grad_scale * clip_norm / norm
        if isfinite(norm) and not factor >= smallest:
            g_scale[0] = sqrt(clip_norm) / sqrt(raw)   # never forms the subnormal quotient
            g_scale2[0] = g_scale[0]
        else:
            g_scale[0] = factor


cdef void _update_block_split(const Optimizer *opt, floating *w, const floating *g,
                              floating *s1, floating *s2, Py_ssize_t n, double decay,
                              double g_scale, double g_scale2) noexcept nogil:
    """_update_block with the gradient factor applied as (g_scale g_i) g_scale2: only for a
    clipping factor below the dtype's smallest normal number (_clip_factors), so the loops of
    every ordinary step stay as they are."""
    cdef Py_ssize_t i
    cdef floating lr = <floating> opt.lr, mu = <floating> opt.momentum
    cdef floating wd = <floating> decay, gs = <floating> g_scale, gs2 = <floating> g_scale2
    cdef floating b1 = <floating> opt.beta1, b2 = <floating> opt.beta2
    cdef floating ob1 = <floating> (1.0 - opt.beta1), ob2 = <floating> (1.0 - opt.beta2)
    cdef floating eps = <floating> opt.eps, gi, vi, mi, c1 = 1, c2 = 1
    if opt.kind != _OPT_SGD:
        c1 = <floating> (1.0 - pow(opt.beta1, <double> opt.t))
        c2 = <floating> (1.0 - pow(opt.beta2, <double> opt.t))
    for i in range(n):
        gi = (gs * g[i]) * gs2 + wd * w[i]
        if opt.kind == _OPT_SGD:
            if opt.momentum == 0.0:
                w[i] -= lr * gi
                continue
            vi = mu * s1[i] - lr * gi
            s1[i] = vi
            w[i] += mu * vi - lr * gi if opt.nesterov else vi
        else:
            mi = b1 * s1[i] + ob1 * gi
            vi = b2 * s2[i] + ob2 * gi * gi
            s1[i] = mi
            s2[i] = vi
            w[i] -= lr * (mi / c1) / (sqrt(vi / c2) + eps)


cdef void _update_block(const Optimizer *opt, floating *w, const floating *g,
                        floating *s1, floating *s2, Py_ssize_t n, double decay,
                        double g_scale, double g_scale2) noexcept nogil:
    """Update n parameters in place.  g_scale: gradient clipping factor (1 when off);
    g_scale2 != 1: its second factor (see _clip_factors).

    SGD:  v <- mu v - lr (g + decay w);  w <- w + v        (momentum; Nesterov:
          w <- w + mu v - lr (g + decay w) with the new v);  plain SGD is mu = 0.
    Adam: m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
          w <- s w - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
          Adam (L2):   g includes decay w, s = 1;
          AdamW:       g does not, s = 1 - lr decay (decoupled decay, applied before the
                       step as torch.optim.AdamW does: w <- (1 - lr decay) w, then the step)
    """
    cdef Py_ssize_t i
    cdef floating lr = <floating> opt.lr, mu = <floating> opt.momentum
    cdef floating wd = <floating> decay, gs = <floating> g_scale
    cdef floating b1, b2, ob1, ob2, c1, c2, eps, gi, vi, mi, shrink
    if g_scale2 != 1.0:
        _update_block_split(opt, w, g, s1, s2, n, decay, g_scale, g_scale2)
        return
    if opt.kind == _OPT_SGD:
        if opt.momentum == 0.0:
            for i in range(n):
                w[i] -= lr * (gs * g[i] + wd * w[i])
        elif opt.nesterov:
            for i in range(n):
                gi = gs * g[i] + wd * w[i]
                vi = mu * s1[i] - lr * gi
                s1[i] = vi
                w[i] += mu * vi - lr * gi
        else:
            for i in range(n):
                vi = mu * s1[i] - lr * (gs * g[i] + wd * w[i])
                s1[i] = vi
                w[i] += vi
    else:
        b1 = <floating> opt.beta1
        b2 = <floating> opt.beta2
        # 1 - beta in double, then rounded: 1 - (float)0.999 is 0.0010000467 in float32, a
        # 5e-5 relative bias on every second-moment update of a float32 run
        ob1 = <floating> (1.0 - opt.beta1)
        ob2 = <floating> (1.0 - opt.beta2)
        eps = <floating> opt.eps
        c1 = <floating> (1.0 - pow(opt.beta1, <double> opt.t))
        c2 = <floating> (1.0 - pow(opt.beta2, <double> opt.t))
        # one loop for both: Adam's decay is a gradient term (shrink is 1, and 1 * w is w
        # exactly, so Adam's bits are those of the loop without it); AdamW's multiplies w
        # (1 - lr decay in double, then rounded, as torch computes the Python float first)
        shrink = 1
        if opt.kind == _OPT_ADAMW:
            shrink = <floating> (1.0 - opt.lr * decay)
            wd = 0
        for i in range(n):
            gi = gs * g[i] + wd * w[i]
            mi = b1 * s1[i] + ob1 * gi
            vi = b2 * s2[i] + ob2 * gi * gi
            s1[i] = mi
            s2[i] = vi
            w[i] = shrink * w[i] - lr * (mi / c1) / (sqrt(vi / c2) + eps)


cdef enum:
    # the fixed decomposition of the parameter vector for the update (never of the thread
    # count): tasks of _UPDATE_CHUNK entries, or more when there would be over _MAX_CHUNKS
    _UPDATE_CHUNK = 16384
    _MAX_CHUNKS = 256


cdef struct _UpdateJob:
    bint dbl
    const Net *net
    const Optimizer *opt
    void *params
    const void *grads
    void *s1
    void *s2
    Py_ssize_t n, chunk
    double g_scale, g_scale2
    double *partial             # (n_chunks,) the clip norm's sums of squares, per chunk


cdef void _update_segment(_UpdateJob *j, Py_ssize_t a, Py_ssize_t e,
                          double decay) noexcept nogil:
    if j.dbl:
        _update_block(j.opt, (<double *> j.params) + a, (<const double *> j.grads) + a,
                      (<double *> j.s1) + a if j.s1 != NULL else <double *> NULL,
                      (<double *> j.s2) + a if j.s2 != NULL else <double *> NULL,
                      e - a, decay, j.g_scale, j.g_scale2)
    else:
        _update_block(j.opt, (<float *> j.params) + a, (<const float *> j.grads) + a,
                      (<float *> j.s1) + a if j.s1 != NULL else <float *> NULL,
                      (<float *> j.s2) + a if j.s2 != NULL else <float *> NULL,
                      e - a, decay, j.g_scale, j.g_scale2)


cdef void _update_task(void *ctx, long t) noexcept nogil:
    """Entries t * chunk .. of the vector, cut along the layer blocks (weights decay; biases,
    gains and shifts do not); element-wise, so the chunking never changes a bit."""
    cdef _UpdateJob *j = <_UpdateJob *> ctx
    cdef const Net *net = j.net
    cdef Py_ssize_t lo = <Py_ssize_t> t * j.chunk, hi = min(lo + j.chunk, j.n), a, e
    cdef int k
    for k in range(net.n_layers):
        a = max(lo, net.w_off[k])
        e = min(hi, net.w_off[k] + <Py_ssize_t> net.sizes[k] * net.sizes[k + 1])
        if a < e:
            _update_segment(j, a, e, j.opt.weight_decay)
        a = max(lo, net.b_off[k])
        e = min(hi, net.b_off[k] + net.sizes[k + 1] * (3 if net.norms[k] else 1))
        if a < e:
            _update_segment(j, a, e, 0.0)


cdef void _squares_task(void *ctx, long t) noexcept nogil:
    cdef _UpdateJob *j = <_UpdateJob *> ctx
    cdef Py_ssize_t lo = <Py_ssize_t> t * j.chunk, hi = min(lo + j.chunk, j.n)
    if j.dbl:
        j.partial[t] = _sum_squares((<const double *> j.grads) + lo, hi - lo)
    else:
        j.partial[t] = _sum_squares((<const float *> j.grads) + lo, hi - lo)


cdef void apply_update(const Net *net, const Optimizer *opt, floating *params,
                       const floating *grads, floating *s1, floating *s2,
                       Py_ssize_t n_params, double grad_scale) noexcept nogil:
    """One pass over the parameter vector, in fixed chunks on net.n_threads threads.

    The gradient used is grad_scale * grads (then clipped): a caller holding a sum, like the
    all-reduced one of distributed training, has it divided inside this pass, not in another.
    The clip norm's sum of squares is summed per chunk (in double), then over the chunks in
    their order: one chunk (up to _UPDATE_CHUNK parameters) is the sequential sum itself.
    When that sum is not a normal number, the norm is the scaled one (_clip_factors).
    """
    cdef int k
    cdef long n_chunks, c
    cdef Py_ssize_t nw, nb
    cdef double g_scale = grad_scale, g_scale2 = 1.0, total
    cdef double partial[_MAX_CHUNKS]
    cdef _UpdateJob job
    if net.n_threads <= 0:
        # the untiled sequential pass, from before fastnn had its own threads (kept for the tests comparing to it)
        if opt.clip_norm > 0:
            _clip_factors(grads, n_params, _sum_squares(grads, n_params), grad_scale,
                          opt.clip_norm, &g_scale, &g_scale2)
        for k in range(net.n_layers):
            nw = <Py_ssize_t> net.sizes[k] * net.sizes[k + 1]
            nb = net.sizes[k + 1] * (3 if net.norms[k] else 1)   # [b | gain | shift]: no decay
            _update_block(opt, params + net.w_off[k], grads + net.w_off[k],
                          s1 + net.w_off[k] if s1 != NULL else NULL,
                          s2 + net.w_off[k] if s2 != NULL else NULL,
                          nw, opt.weight_decay, g_scale, g_scale2)
            _update_block(opt, params + net.b_off[k], grads + net.b_off[k],
                          s1 + net.b_off[k] if s1 != NULL else NULL,
                          s2 + net.b_off[k] if s2 != NULL else NULL,
                          nb, 0.0, g_scale, g_scale2)
        return
    if n_params <= 0:
        return
    job.dbl = floating is double
    job.net, job.opt = net, opt
    job.params, job.grads, job.s1, job.s2 = params, grads, s1, s2
    job.n = n_params
    job.chunk = max(<Py_ssize_t> _UPDATE_CHUNK, (n_params + _MAX_CHUNKS - 1) // _MAX_CHUNKS)
    job.partial = partial
    n_chunks = (n_params + job.chunk - 1) // job.chunk
    if opt.clip_norm > 0:
        parallel_for(net.n_threads, n_chunks, _squares_task, &job)
        total = 0.0
        for c in range(n_chunks):
            total += partial[c]
        _clip_factors(grads, n_params, total, grad_scale, opt.clip_norm, &g_scale,
                      &g_scale2)
    job.g_scale = g_scale
    job.g_scale2 = g_scale2
    parallel_for(net.n_threads, n_chunks, _update_task, &job)


cdef double train_step(const Net *net, Optimizer *opt, floating *params, floating *grads,
                       floating *s1, floating *s2, Py_ssize_t n_params, const floating *X,
                       int rows, const LossParams *lp, const floating *Y,
                       const Py_ssize_t *labels, const floating *sample_weight,
                       const floating *sigma, double batch_weight, floating *acts,
                       floating *delta0, floating *delta1, int *status) noexcept nogil:
    """One minibatch of one process: forward, fused loss gradient, backward, update.

    Returns sum_i w_i l_i.  When it is not finite (or a kernel fails, see *status) nothing is
    updated.  Plain SGD (no momentum, no clipping) updates each layer inside its weight-
    gradient GEMM (net_backward with sgd_lr > 0): no gradient vector is formed and the separate pass
    over the parameters, ~15% of a small-batch step on a large network, disappears.
    """
    cdef double loss = net_forward_loss(net, params, X, rows, lp, Y, labels, sample_weight,
                                        sigma, 1.0 / batch_weight, acts, delta0, status)
    if status[0] != FNN_OK or not isfinite(loss):
        return loss
    opt.t += 1
    if opt.kind == _OPT_SGD and opt.momentum == 0 and opt.clip_norm <= 0:
        status[0] = net_backward(net, params, grads, X, rows, acts, delta0, delta1, opt.lr,
                                 opt.weight_decay)
    else:
        status[0] = net_backward(net, params, grads, X, rows, acts, delta0, delta1, 0.0, 0.0)
        if status[0] == FNN_OK:
            apply_update(net, opt, params, grads, s1, s2, n_params, 1.0)
    return loss


cdef Optimizer _optimizer(int kind, double lr, double momentum, bint nesterov,
                         double weight_decay, double clip_norm, double beta1, double beta2,
                         double eps, long long t):
    """The Optimizer struct from the arguments fastnn.optim.optimizers.Optimizer.compiled_args gives."""
    cdef Optimizer opt
    opt.kind, opt.lr, opt.momentum, opt.nesterov = kind, lr, momentum, nesterov
    opt.weight_decay, opt.clip_norm = weight_decay, clip_norm
    opt.beta1, opt.beta2, opt.eps, opt.t = beta1, beta2, eps, t
    return opt


cdef int _check_optimizer(int kind, double momentum, Py_ssize_t n_params, Py_ssize_t n_s1,
                          Py_ssize_t n_s2, long long t) except -1:
    """Raise ValueError unless the optimizer's code and state (sizes; -1: None) fit a vector
    of n_params.

    The update reads state1 (velocity / first moment) whenever momentum != 0 or for Adam,
    and state2 for Adam: a missing or short buffer must never reach it, whatever the
    Python-side optimizer object holds (a callback may have changed its momentum).  O(1).
    """
    cdef int i
    cdef Py_ssize_t n_state
    cdef bint needed
    if kind != _OPT_SGD and kind != _OPT_ADAM and kind != _OPT_ADAMW:
        raise ValueError(f"unknown optimizer code {kind}")
    if t < 0:
        raise ValueError(f"the optimizer's step count is {t}; expected >= 0")
    for i in range(2):
        n_state = max(0, n_s1 if i == 0 else n_s2)
        needed = kind != _OPT_SGD or (i == 0 and momentum != 0.0)
        if n_state != 0 and n_state != n_params:
            raise ValueError(f"optimizer state {i + 1} has {n_state} entries; expected "
                             f"{n_params} (one per parameter)")
        if needed and n_state == 0:
            what = ("Adam" if kind == _OPT_ADAM else "AdamW" if kind == _OPT_ADAMW else
                    f"SGD with momentum={momentum}")
            raise ValueError(f"{what} needs optimizer state {i + 1} of {n_params} entries; "
                             "it is missing (allocate it with Optimizer.init_state)")
    return 0


def update_params(NetSpec spec, floating[::1] params, const floating[::1] grads,
                  floating[::1] state1, floating[::1] state2, int kind, double lr,
                  double momentum, bint nesterov, double weight_decay, double clip_norm,
                  double beta1, double beta2, double eps, long long t,
                  bint flush_denormals=True, int n_threads=1):
    """One optimizer step from a gradient computed elsewhere (values: see fastnn.optim.optimizers).

    Sizes are checked: params and grads against the network, the state against the optimizer.
    flush_denormals: flush subnormals to zero on this thread during the step (fastnn.runtime.fpmode).
    """
    cdef Optimizer opt
    cdef unsigned long long fp_saved
    check_net(spec, params.shape[0], grads.shape[0], -1, -1)
    _check_optimizer(kind, momentum, params.shape[0], -1 if state1 is None else state1.shape[0],
                     -1 if state2 is None else state2.shape[0], t)
    opt = _optimizer(kind, lr, momentum, nesterov, weight_decay, clip_norm, beta1, beta2, eps,
                     t)
    cdef floating *s1 = NULL if state1 is None or state1.shape[0] == 0 else &state1[0]
    cdef floating *s2 = NULL if state2 is None or state2.shape[0] == 0 else &state2[0]
    cdef Net net = spec.net
    if n_threads < 0:
        raise ValueError(f"n_threads={n_threads}; expected >= 0")
    net.n_threads = n_threads
    with nogil:
        fp_saved = fnn_fpmode_enter(flush_denormals)
        apply_update(&net, &opt, &params[0], &grads[0], s1, s2, params.shape[0], 1.0)
        fnn_fpmode_leave(flush_denormals, fp_saved)


cdef int _check_epoch_buffers(NetSpec spec, Py_ssize_t n_params, Py_ssize_t n_grads,
                              Py_ssize_t n_s1, Py_ssize_t n_s2, Py_ssize_t n, Py_ssize_t n_in,
                              Py_ssize_t y_rows, Py_ssize_t y_cols, Py_ssize_t n_labels,
                              Py_ssize_t n_sw, Py_ssize_t n_sigma,
                              const Py_ssize_t[::1] order, Py_ssize_t batch_size,
                              int loss_kind, int opt_kind, double momentum, long long t0,
                              Py_ssize_t n_acts, Py_ssize_t n_d0, Py_ssize_t n_d1,
                              Py_ssize_t xb_rows, Py_ssize_t xb_cols, Py_ssize_t yb_rows,
                              Py_ssize_t yb_cols, Py_ssize_t n_lb, Py_ssize_t n_swb,
                              Py_ssize_t n_sigmab, Py_ssize_t row_offset,
                              bint distributed) except -1:
    """Raise ValueError unless every buffer of train_epoch fits the network and the batch.

    Sizes only (-1 for an absent array), compared in C: O(1), plus one pass over `order`.
    """
    cdef Py_ssize_t i, n_order, rows, bad = -1
    check_net(spec, n_params, n_grads - (2 if distributed else 0), n_in, n)
    check_target_sizes(loss_kind, n, spec.net.sizes[spec.net.n_layers], y_rows, y_cols,
                       n_labels, n_sw, n_sigma)
    _check_optimizer(opt_kind, momentum, n_params, n_s1, n_s2, t0)
    if batch_size < 1 or batch_size > INT_MAX:
        raise ValueError(f"batch_size={batch_size}; expected 1 .. {INT_MAX}")
    if row_offset < 0:
        raise ValueError(f"row_offset={row_offset}; expected >= 0")
    n_order = n if order is None else order.shape[0]
    rows = min(batch_size, n_order)  # the most rows one minibatch holds
    if rows == 0:
        return 0
    # (Python integers: the C products could overflow for absurd widths)
    for name, have, per_row in (("acts", n_acts, spec.net.act_width),
                                ("delta0", n_d0, spec.net.max_width),
                                ("delta1", n_d1, spec.net.max_width)):
        if have < (<object> rows) * per_row:
            raise ValueError(f"the workspace {name} has {max(have, 0)} entries; a batch of "
                             f"{rows} rows needs {(<object> rows) * per_row}")
    if order is None:
        return 0
    # every index >= 0; without ranks, every index a row of X too: there are no other
    # ranks' samples, and the gather would drop such an index from its batch silently
    with nogil:
        for i in range(n_order):
            if order[i] < 0 or (not distributed and _local_row(order[i], row_offset, n) < 0):
                bad = i
                break
    if bad >= 0 and order[bad] < 0:
        raise ValueError(f"order[{bad}] is {order[bad]}; expected sample indices >= 0")
    if bad >= 0:
        expected = (f"the indices of X's {n} rows, {row_offset} .. {row_offset + n - 1}"
                    if n else "none: X has no rows")
        raise ValueError(f"order[{bad}] is {order[bad]}; expected {expected} (row_offset="
                         f"{row_offset}, no reducer: every sample is this process's)")
    for name, buf_rows, buf_cols, source_cols in (
            ("X_batch", xb_rows, xb_cols, n_in), ("Y_batch", yb_rows, yb_cols, y_cols),
            ("labels_batch", n_lb, -2, n_labels), ("sw_batch", n_swb, -2, n_sw),
            ("sigma_batch", n_sigmab, -2, n_sigma)):
        if source_cols == -1:   # no such input: its batch buffer is not used
            continue
        two_d = buf_cols != -2
        needed = f"({rows}, {source_cols})" if two_d else f"({rows},)"
        if buf_rows == -1:
            raise ValueError(f"{name} is missing; a batch of {rows} rows needs one of shape "
                             f"at least {needed}")
        if buf_rows < rows or (two_d and buf_cols != source_cols):
            shape = f"({buf_rows}, {buf_cols})" if two_d else f"({buf_rows},)"
            raise ValueError(f"{name} has shape {shape}; a batch of {rows} rows needs at "
                             f"least {needed}")
    return 0


# ------------------------------------------------------------------ epochs: prepared, then run
# An epoch is prepared with the GIL (every argument checked, pointers taken, the arrays kept
# alive) into an EpochCall, then run without it by _run_epoch.  train_epoch = prepare + run
# (one model's fit); train_epochs runs many prepared epochs, e.g. an ensemble's members, as
# the tasks of ONE job on fastnn's pool: one task is one member's whole epoch, so a member's
# arithmetic is the same whichever thread runs it and however many threads there are, and
# equal to its epoch run alone.
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF

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
    const void *X
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
    Py_ssize_t *samples     # dropout: the global sample index of each row, or NULL
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
            _run_epoch(&self.a, &intr)
        self._pending = _take_pending(&intr)
        return self.result


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
    _run_epoch(job.epochs[t], job.intr)


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
    _check_disjoint(calls)
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
                    _run_epoch(job.epochs[i], &intr)
            else:
                parallel_for(threads, k, _epoch_task, &job)
    finally:
        PyMem_Free(job.epochs)
    pending = _take_pending(&intr)
    for c in calls:
        c._pending = pending if c.a.status == _STATUS_INTERRUPTED else None
    return pending


cdef _check_disjoint(list calls):
    """ValueError when memory one call writes is also written or read by another buffer of
    any call, its own included (a task reading memory another task writes races, and an
    epoch whose gather overwrites its own X trains on garbage); buffers that are only read
    (the members' shared X and y) may overlap.  Sorted spans, one sweep: O(m log m)."""
    cdef EpochCall c
    spans = []
    for k, c in enumerate(calls):
        spans.extend((start, end, k, name, True) for start, end, name in c._spans)
        spans.extend((start, end, k, name, False) for start, end, name in c._read_spans)
    spans.sort()
    last_any = last_written = None      # the span reaching furthest so far (written ones)
    for span in spans:
        start, end, k, name, writes = span
        other = last_any if writes else last_written
        if other is not None and other[1] > start:
            a, b = (other, span) if other[4] else (span, other)
            who = (lambda k: f"calls[{k}]") if len(calls) > 1 else (lambda k: "the epoch")
            raise ValueError(
                f"{who(a[2])} writes its {a[3]} in memory that {who(b[2])} "
                f"{'writes' if b[4] else 'reads'} as its {b[3]}: the epochs would use "
                "overlapping buffers; each needs its own model, optimizer state and "
                "workspace, none of them in the data it reads")
        if last_any is None or end > last_any[1]:
            last_any = span
        if writes and (last_written is None or end > last_written[1]):
            last_written = span


cdef list _spans_of(names, buffers):
    """[(first byte, one past the last, name)] of the contiguous arrays given, leaving out
    the absent and empty ones."""
    spans = []
    for name, buf in zip(names, buffers):
        if buf is None:
            continue
        view = memoryview(buf)
        if view.nbytes == 0:
            continue
        start = <Py_ssize_t> np.asarray(buf).__array_interface__["data"][0]
        spans.append((start, start + view.nbytes, name))
    return spans


def prepare_epoch(NetSpec spec, floating[::1] params, floating[::1] grads,
                  floating[::1] state1, floating[::1] state2,
                  const floating[:, ::1] X, const floating[:, ::1] Y,
                  const Py_ssize_t[::1] labels, const floating[::1] sample_weight,
                  const floating[::1] sigma, const Py_ssize_t[::1] order,
                  Py_ssize_t batch_size, bint drop_last,
                  int loss_kind, int loss_full, double sigma_scalar,
                  int opt_kind, double lr, double momentum, bint nesterov, double weight_decay,
                  double clip_norm, double beta1, double beta2, double eps, long long t0,
                  floating[::1] acts, floating[::1] delta0, floating[::1] delta1,
                  floating[:, ::1] X_batch, floating[:, ::1] Y_batch,
                  Py_ssize_t[::1] labels_batch, floating[::1] sw_batch,
                  floating[::1] sigma_batch, double check_every,
                  Py_ssize_t row_offset=0, Allreduce reducer=None, bint flush_denormals=True,
                  uint64_t dropout_seed=0, uint32_t epoch=0, int n_threads=1):
    """Check and pack one epoch's arguments into an EpochCall (run it with ``.run()`` or,
    with other models' epochs, ``train_epochs``).  fastnn.training.engine validates the values and
    sizes every buffer; the sizes are checked again here (O(1), plus O(n) over order),
    because this function is reachable from Python and the loop trusts them.

    flush_denormals: flush subnormals to zero on the running thread for the epoch
    (fastnn.runtime.fpmode); the thread's floating-point mode is back in place when the epoch ends,
    and while Python's signal handlers run.

    order: the epoch's sample order (a permutation), or None for rows in storage order (then
    minibatches are read in place, without a gather).  Without a reducer every index must be
    a row of X (row_offset .. row_offset + X.shape[0] - 1; ValueError otherwise).  The
    *_batch buffers may be None when the matching input is None (and X_batch when order is
    None).

    check_every: seconds between two runs of Python's signal handlers (on the thread that
    called run / train_epochs; < 0: never), so that Ctrl-C stops the epoch after its running
    minibatch with the model consistent.

    Distributed (reducer given): order is a permutation of the global indices, this rank
    holds global rows row_offset .. row_offset + X.shape[0] - 1, and `grads` has two extra
    slots (n_params + 2).  Each rank scales its gradient by 1 / (the minibatch's weight over
    all ranks) inside the loss gradient, as one process does (``train_step``), so the
    all-reduce adds terms of the weighted mean and nothing overflows that one process would
    not overflow (a sum over ranks of unscaled w_i dl_i would: float32 weights near 1e37).
    The minibatches' global weights are the row counts without sample weights, otherwise
    one all-reduce of the ranks' per-batch partial sums (float64) when the epoch starts.
    The loss sum travels in the extra slot of the gradient's all-reduce (float64; a float32
    model adds it in double, in a second one-element all-reduce, so that it cannot overflow
    float32).

    Dropout (layers with a rate > 0 in spec): the mask of a unit is a function of
    (dropout_seed, epoch, global sample index, layer, unit) only (src_c/fastnn_dropout.h), so
    it does not depend on the batching, the thread count or the rank holding the sample.

    The result of the run (``EpochCall.result``) is (loss_sum, weight_sum, steps, t, status,
    failed_step, pending_exception): loss_sum / weight_sum is the epoch's weighted mean
    training loss over the steps taken, t the optimizer's update count afterwards (t0 plus
    the batches of non-zero weight).
    """
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1], i
    cdef EpochCall call = EpochCall.__new__(EpochCall)
    cdef _Epoch *a = &call.a
    cdef Py_ssize_t[::1] samples_buf = None
    cdef double[::1] batch_weights = None
    _check_epoch_buffers(
        spec, params.shape[0], grads.shape[0], -1 if state1 is None else state1.shape[0],
        -1 if state2 is None else state2.shape[0], n, n_in,
        -1 if Y is None else Y.shape[0], -1 if Y is None else Y.shape[1],
        -1 if labels is None else labels.shape[0],
        -1 if sample_weight is None else sample_weight.shape[0],
        -1 if sigma is None else sigma.shape[0], order, batch_size, loss_kind, opt_kind,
        momentum, t0, -1 if acts is None else acts.shape[0],
        -1 if delta0 is None else delta0.shape[0], -1 if delta1 is None else delta1.shape[0],
        -1 if X_batch is None else X_batch.shape[0], -1 if X_batch is None else X_batch.shape[1],
        -1 if Y_batch is None else Y_batch.shape[0], -1 if Y_batch is None else Y_batch.shape[1],
        -1 if labels_batch is None else labels_batch.shape[0],
        -1 if sw_batch is None else sw_batch.shape[0],
        -1 if sigma_batch is None else sigma_batch.shape[0], row_offset, reducer is not None)
    # dropout: a copy of the network struct carries the context (spec.net stays inference-
    # only, so a concurrent predict never drops units); one index buffer per epoch
    if n_threads < 0:
        raise ValueError(f"n_threads={n_threads}; expected >= 0")
    call.net = spec.net
    call.net.n_threads = n_threads       # fastnn's threads (0: the untiled path, for tests)
    if np.any(spec._drop_rates > 0):
        samples_buf = np.empty(max(batch_size, 1), dtype=np.intp)
        call.dctx.seed, call.dctx.epoch, call.dctx.samples = dropout_seed, epoch, &samples_buf[0]
        call.dctx.layer0 = 0
        call.net.drop = &call.dctx
        a.samples = &samples_buf[0]
    a.net = &call.net
    a.params = NULL if params.shape[0] == 0 else <void *> &params[0]
    a.grads = NULL if grads.shape[0] == 0 else <void *> &grads[0]
    a.s1 = NULL if state1 is None or state1.shape[0] == 0 else <void *> &state1[0]
    a.s2 = NULL if state2 is None or state2.shape[0] == 0 else <void *> &state2[0]
    # (if-statements, not conditional expressions: those drop the const of the pointers)
    a.X = a.Y = a.sw = a.sigma = NULL
    a.labels = a.order = NULL
    if n > 0 and n_in > 0:
        a.X = &X[0, 0]
    if Y is not None and Y.shape[0] > 0 and Y.shape[1] > 0:
        a.Y = &Y[0, 0]
    if labels is not None and labels.shape[0] > 0:
        a.labels = &labels[0]
    if sample_weight is not None and sample_weight.shape[0] > 0:
        a.sw = &sample_weight[0]
    if sigma is not None and sigma.shape[0] > 0:
        a.sigma = &sigma[0]
    a.order_local = True          # without a reducer, _check_epoch_buffers made sure
    if order is not None and order.shape[0] > 0:
        a.order = &order[0]
        if reducer is not None:
            with nogil:
                for i in range(order.shape[0]):
                    if _local_row(order[i], row_offset, n) < 0:
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
    a.drop_last, a.is_double, a.flush_denormals = drop_last, floating is double, flush_denormals
    a.distributed = reducer is not None
    if reducer is not None:
        a.reducer = reducer.r
    a.check_every = check_every
    a.lp.kind, a.lp.full, a.lp.sigma = loss_kind, loss_full, sigma_scalar
    a.opt = _optimizer(opt_kind, lr, momentum, nesterov, weight_decay, clip_norm, beta1,
                       beta2, eps, t0)
    a.loss_sum = a.weight_sum = a.seconds = 0.0
    a.steps, a.failed_step, a.status = 0, -1, _STATUS_OK
    # the pointers above stay valid while these live (a typed memoryview holds its buffer)
    written = [params, grads, state1, state2, acts, delta0, delta1, X_batch, Y_batch,
               labels_batch, sw_batch, sigma_batch, samples_buf, batch_weights]
    call._keep = [spec, reducer, X, Y, labels, sample_weight, sigma, order] + written
    call._spans = _spans_of(("params", "grads", "state1", "state2", "acts", "delta0",
                             "delta1", "X_batch", "Y_batch", "labels_batch", "sw_batch",
                             "sigma_batch", "dropout sample indices", "batch weights"),
                            written)
    call._read_spans = _spans_of(("X", "Y", "labels", "sample_weight", "sigma", "order"),
                                 (X, Y, labels, sample_weight, sigma, order))
    _check_disjoint([call])     # its own buffers (train_epochs checks them across calls)
    call._prepared = True
    return call


def train_epoch(*args, **kwargs):
    """Run one epoch on the calling thread: ``prepare_epoch(*args, **kwargs).run()``.

    Arguments as ``prepare_epoch``.  Returns (loss_sum, weight_sum, steps, t, status,
    failed_step, pending_exception) (see there).
    """
    return prepare_epoch(*args, **kwargs).run()


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


cdef inline Py_ssize_t _local_row(Py_ssize_t index, Py_ssize_t row_offset,
                                  Py_ssize_t n) noexcept nogil:
    """The row of this X holding global sample `index`, or -1 (another rank's sample, or no
    sample at all); row_offset >= 0, and no subtraction that could overflow."""
    if index < row_offset or index - row_offset >= n:
        return -1
    return index - row_offset


cdef void _gather_task(void *ctx, long t) noexcept nogil:
    """Rows [t * block, (t + 1) * block) of the minibatch: copies, so any split gives the
    same bits.  Every index is checked again as it is read (prepare_epoch's check was of the
    order as it was then; the caller's array may have changed since): one that is not a row
    of X sets g.bad and is not read, and the caller gathers the batch serially instead."""
    cdef _Gather *g = <_Gather *> ctx
    cdef Py_ssize_t i, r, lo = t * g.block, hi = min(g.rows, (t + 1) * g.block)
    for i in range(lo, hi):
        r = _local_row(g.order[i], g.row_offset, g.n)
        if r < 0:
            fnn_sgd_flag_set(&g.bad)
            return
        _copy_row(g, i, r, g.order[i])


cdef inline void _copy_row(const _Gather *g, Py_ssize_t dst, Py_ssize_t src,
                           Py_ssize_t index) noexcept nogil:
    """Row src of X (and of every per-sample input) into row dst of the batch buffers;
    the dropout sample index of row dst is global sample `index`."""
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


cdef void _run_epoch(_Epoch *a, _Interrupt *intr) noexcept nogil:
    if a.is_double:
        _run_epoch_t(a, intr, <double *> a.params)
    else:
        _run_epoch_t(a, intr, <float *> a.params)


cdef void _run_epoch_t(_Epoch *a, _Interrupt *intr, floating *params) noexcept nogil:
    """The epoch's minibatch loop (results into *a).  Runs on any thread; Python's signal
    handlers run only on intr.caller's."""
    cdef const floating *X = <const floating *> a.X
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
    gjob.x_row, gjob.y_row = n_in * sizeof(floating), n_t * sizeof(floating)
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
                r = _local_row(order[start + i], row_offset, n)
                if r < 0:
                    continue              # another rank's sample
                _copy_row(&gjob, rows, r, order[start + i])
                rows += 1
        if gather:
            xb = X_batch
            yb = NULL if Y == NULL else Y_batch
            lb = NULL if labels == NULL else labels_batch
            wb = NULL if sample_weight == NULL else sw_batch
            sb = NULL if sigma == NULL else sigma_batch
        else:
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
            if batch_weight > 0:
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
                    if _allreduce(&a.reducer, grads, <int> n_params) != 0 or \
                            _allreduce(&a.reducer, &sums[0], 1) != 0:
                        status = _STATUS_REDUCE_ERROR
                        failed_step = step
                        break
                    batch_loss = sums[0]
                else:
                    grads[n_params] = batch_loss
                    if _allreduce(&a.reducer, grads, <int> (n_params + 1)) != 0:
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
            r = _local_row(a.order[start + i], a.row_offset, a.n)
            if r >= 0:
                total += sample_weight[r]
        a.batch_weights[k] = total
        k += 1
        start += rows
    done = 0
    while done < k:       # MPI counts are ints
        chunk = min(k - done, <Py_ssize_t> INT_MAX)
        if _allreduce(&a.reducer, a.batch_weights + done, <int> chunk) != 0:
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
    and weight to *loss_sum and *weight_sum and return False.  Shared by _run_epoch_t and
    _sparse.train_epoch_csr."""
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
