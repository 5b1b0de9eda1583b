"""The optimizer update, in place over the one contiguous parameter vector, and one training step.

``apply_update`` runs SGD (momentum, Nesterov), Adam or AdamW with weight decay and gradient
clipping in one pass over the parameters, in fixed chunks on fastnn's pool (the chunking is
element-wise, so no thread count changes a bit); ``train_step`` is one minibatch of a dense
X: forward, fused loss gradient, backward, update.  ``update_params`` is the Python face of
one step (Optimizer.step).  The epoch loop that calls these is fastnn/_core/_loop.pyx, its
Python face fastnn/_core/_epoch.pyx.

Nothing here raises inside ``nogil`` and nothing allocates per step.
"""
from cython cimport floating
from libc.float cimport DBL_MAX, DBL_MIN, FLT_MIN
from libc.math cimport fabs, sqrt, isfinite, pow

from fastnn._core._fpmode cimport fnn_fpmode_enter, fnn_fpmode_leave
from fastnn._core._kernels cimport FNN_OK

from fastnn._core._losses cimport LossParams
from fastnn._core._network cimport (Net, NetSpec, check_net, net_backward, net_forward_loss,
                                    with_threads)
from fastnn._core._pool cimport parallel_for

cdef enum:
    _OPT_SGD = 0
    _OPT_ADAM = 1
    _OPT_ADAMW = 2                  # Adam with decoupled weight decay (Loshchilov & Hutter)

# the same codes for fastnn/optim/optimizers.py
OPT_SGD, OPT_ADAM, OPT_ADAMW = _OPT_SGD, _OPT_ADAM, _OPT_ADAMW


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
    cdef Net net = with_threads(spec, n_threads)
    with nogil:
        fp_saved = fnn_fpmode_enter(flush_denormals)
        apply_update(&net, &opt, &params[0], &grads[0], s1, s2, params.shape[0], 1.0)
        fnn_fpmode_leave(flush_denormals, fp_saved)

