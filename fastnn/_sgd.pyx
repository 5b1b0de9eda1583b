"""The minibatch training loop, entirely in compiled code, and the in-place optimizer updates.

One call runs one epoch: for each minibatch, gather its rows (in the epoch's order) into
preallocated buffers, run the network's forward pass, the fused loss + output-link gradient,
the backward pass, and update the one contiguous parameter vector in one pass.  The loop holds
no GIL and allocates nothing; every buffer comes from fastnn.trainer, sized once per fit.

Nothing raises inside the loop (sklearn's _plain_sgd does the same): a non-finite loss sets a
status and stops *before* the update that would use it, so the parameters stay those of the
last finite step; the caller raises with the epoch and step.  Every `check_every` seconds the
loop takes the GIL briefly to run Python's signal handlers, so Ctrl-C stops it after the
current minibatch with the model consistent.
"""
from cython cimport floating
from libc.math cimport sqrt, isfinite, pow
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cpython.exc cimport PyErr_CheckSignals

from fastnn._kernels cimport FNN_OK
from fastnn._losses cimport LossParams
from fastnn._network cimport Net, NetSpec, net_loss_grad

cdef enum:
    _OPT_SGD = 0
    _OPT_ADAM = 1
    _STATUS_OK = 0
    _STATUS_DIVERGED = 1            # a non-finite loss; the step was not applied
    _STATUS_INTERRUPTED = 2         # a signal handler raised (Ctrl-C); after a full step
    _STATUS_KERNEL_ERROR = 3        # a kernel returned an error status

# the same codes for fastnn/optim.py and fastnn/trainer.py
OPT_SGD, OPT_ADAM = _OPT_SGD, _OPT_ADAM
STATUS_OK, STATUS_DIVERGED = _STATUS_OK, _STATUS_DIVERGED
STATUS_INTERRUPTED, STATUS_KERNEL_ERROR = _STATUS_INTERRUPTED, _STATUS_KERNEL_ERROR


cdef struct Optimizer:
    int kind                # _OPT_SGD or _OPT_ADAM
    double lr
    double momentum
    int nesterov
    double weight_decay     # applied to weight matrices only, not biases
    double clip_norm        # <= 0: no clipping
    double beta1
    double beta2
    double eps
    long long t             # Adam: steps taken before this one


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


cdef void _update_block(const Optimizer *opt, floating *w, const floating *g,
                        floating *s1, floating *s2, Py_ssize_t n, double decay,
                        double g_scale) noexcept nogil:
    """Update n parameters in place.  g_scale: gradient clipping factor (1 when off).

    SGD:  v <- mu v - lr (g + decay w);  w <- w + v        (momentum; Nesterov:
          w <- w + mu v - lr (g + decay w) with the new v);  plain SGD is mu = 0.
    Adam: m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
          w <- w - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)   (g includes decay w)
    """
    cdef Py_ssize_t i
    cdef floating lr = <floating> opt.lr, mu = <floating> opt.momentum
    cdef floating wd = <floating> decay, gs = <floating> g_scale
    cdef floating b1, b2, c1, c2, eps, gi, vi, mi
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
        eps = <floating> opt.eps
        c1 = <floating> (1.0 - pow(opt.beta1, <double> opt.t))
        c2 = <floating> (1.0 - pow(opt.beta2, <double> opt.t))
        for i in range(n):
            gi = gs * g[i] + wd * w[i]
            mi = b1 * s1[i] + (1 - b1) * gi
            vi = b2 * s2[i] + (1 - b2) * gi * gi
            s1[i] = mi
            s2[i] = vi
            w[i] -= lr * (mi / c1) / (sqrt(vi / c2) + eps)


cdef void apply_update(const Net *net, const Optimizer *opt, floating *params,
                       const floating *grads, floating *s1, floating *s2,
                       Py_ssize_t n_params) noexcept nogil:
    """One pass over the parameter vector, layer block by layer block."""
    cdef int k
    cdef Py_ssize_t nw, nb
    cdef double g_scale = 1.0, norm
    if opt.clip_norm > 0:
        norm = sqrt(_sum_squares(grads, n_params))
        if norm > opt.clip_norm:
            g_scale = opt.clip_norm / norm
    for k in range(net.n_layers):
        nw = <Py_ssize_t> net.sizes[k] * net.sizes[k + 1]
        nb = net.sizes[k + 1]
        _update_block(opt, params + net.w_off[k], grads + net.w_off[k],
                      s1 + net.w_off[k] if s1 != NULL else NULL,
                      s2 + net.w_off[k] if s2 != NULL else NULL,
                      nw, opt.weight_decay, g_scale)
        _update_block(opt, params + net.b_off[k], grads + net.b_off[k],
                      s1 + net.b_off[k] if s1 != NULL else NULL,
                      s2 + net.b_off[k] if s2 != NULL else NULL,
                      nb, 0.0, g_scale)


def update_params(NetSpec spec, floating[::1] params, const floating[::1] grads,
                  floating[::1] state1, floating[::1] state2, int kind, double lr,
                  double momentum, bint nesterov, double weight_decay, double clip_norm,
                  double beta1, double beta2, double eps, long long t):
    """One optimizer step from a gradient computed elsewhere (unchecked; see fastnn.optim)."""
    cdef Optimizer opt
    opt.kind, opt.lr, opt.momentum, opt.nesterov = kind, lr, momentum, nesterov
    opt.weight_decay, opt.clip_norm = weight_decay, clip_norm
    opt.beta1, opt.beta2, opt.eps, opt.t = beta1, beta2, eps, t
    cdef floating *s1 = NULL if state1 is None or state1.shape[0] == 0 else &state1[0]
    cdef floating *s2 = NULL if state2 is None or state2.shape[0] == 0 else &state2[0]
    with nogil:
        apply_update(&spec.net, &opt, &params[0], &grads[0], s1, s2, params.shape[0])


def train_epoch(NetSpec spec, floating[::1] params, floating[::1] grads,
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
                floating[::1] sigma_batch, double check_every):
    """Run one epoch.  Unchecked: fastnn.trainer validates and sizes every buffer.

    order: the epoch's sample order (a permutation), or None for rows in storage order (then
    minibatches are read in place, without a gather).  The *_batch buffers may be None when
    the matching input is None (and X_batch when order is None).

    Returns (loss_sum, weight_sum, steps, t, status, failed_step, pending_exception):
    loss_sum / weight_sum is the epoch's weighted mean training loss over the steps taken, t
    the optimizer's update count afterwards (t0 plus the batches of non-zero weight).
    """
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1]
    cdef Py_ssize_t n_t = 0 if Y is None else Y.shape[1]
    cdef Py_ssize_t start, rows, i, r, step = 0, failed_step = -1
    cdef Py_ssize_t n_params = params.shape[0]
    cdef int status = _STATUS_OK, kstatus = FNN_OK, signalled = 0
    cdef double loss_sum = 0.0, weight_sum = 0.0, batch_loss, batch_weight, last_check
    cdef bint gather = order is not None
    cdef LossParams lp
    cdef Optimizer opt
    cdef const floating *xb
    cdef const floating *yb
    cdef const Py_ssize_t *lb
    cdef const floating *wb
    cdef const floating *sb
    cdef floating *s1 = NULL if state1 is None or state1.shape[0] == 0 else &state1[0]
    cdef floating *s2 = NULL if state2 is None or state2.shape[0] == 0 else &state2[0]
    pending = None

    lp.kind, lp.full, lp.sigma = loss_kind, loss_full, sigma_scalar
    opt.kind, opt.lr, opt.momentum, opt.nesterov = opt_kind, lr, momentum, nesterov
    opt.weight_decay, opt.clip_norm = weight_decay, clip_norm
    opt.beta1, opt.beta2, opt.eps, opt.t = beta1, beta2, eps, t0

    with nogil:
        last_check = _now()
        start = 0
        while start < n:
            rows = min(batch_size, n - start)
            if rows < batch_size and drop_last:
                break
            # -- the minibatch: gathered in the epoch's order, or read in place
            if gather:
                for i in range(rows):
                    r = order[start + i]
                    memcpy(&X_batch[i, 0], &X[r, 0], n_in * sizeof(floating))
                    if Y is not None:
                        memcpy(&Y_batch[i, 0], &Y[r, 0], n_t * sizeof(floating))
                    if labels is not None:
                        labels_batch[i] = labels[r]
                    if sample_weight is not None:
                        sw_batch[i] = sample_weight[r]
                    if sigma is not None:
                        sigma_batch[i] = sigma[r]
                xb = &X_batch[0, 0]
                yb = NULL if Y is None else &Y_batch[0, 0]
                lb = NULL if labels is None else &labels_batch[0]
                wb = NULL if sample_weight is None else &sw_batch[0]
                sb = NULL if sigma is None else &sigma_batch[0]
            else:
                xb = &X[start, 0]
                yb = NULL if Y is None else &Y[start, 0]
                lb = NULL if labels is None else &labels[start]
                wb = NULL if sample_weight is None else &sample_weight[start]
                sb = NULL if sigma is None else &sigma[start]
            if wb == NULL:
                batch_weight = <double> rows
            else:
                batch_weight = 0.0
                for i in range(rows):
                    batch_weight += wb[i]
            # -- forward, fused loss gradient, backward: gradient of the weighted batch mean
            if batch_weight > 0:
                batch_loss = net_loss_grad(&spec.net, &params[0], &grads[0], xb, <int> rows,
                                           &lp, yb, lb, wb, sb, 1.0 / batch_weight, &acts[0],
                                           &delta0[0], &delta1[0], &kstatus)
                if kstatus != FNN_OK:
                    status = _STATUS_KERNEL_ERROR
                    failed_step = step
                    break
                if not isfinite(batch_loss):
                    status = _STATUS_DIVERGED      # stop before this gradient is applied
                    failed_step = step
                    break
                opt.t += 1
                apply_update(&spec.net, &opt, &params[0], &grads[0], s1, s2, n_params)
                loss_sum += batch_loss
                weight_sum += batch_weight
            step += 1
            start += rows
            # -- let Python's signal handlers run now and then (Ctrl-C stops after this step)
            if check_every >= 0 and _now() - last_check >= check_every:
                last_check = _now()
                with gil:
                    try:
                        PyErr_CheckSignals()
                    except BaseException as exc:
                        pending = exc
                        signalled = 1
                if signalled:
                    status = _STATUS_INTERRUPTED
                    break
    return loss_sum, weight_sum, step, opt.t, status, failed_step, pending
