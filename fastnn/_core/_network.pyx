"""A whole MLP in compiled code, over ONE contiguous parameter vector.

Layer k (0-based) owns W_k = params[w_off[k] : w_off[k] + n_k * n_{k+1}] (row-major
(n_k, n_{k+1})) and b_k = params[b_off[k] : b_off[k] + n_{k+1}]; the gradient vector has the
same layout, so an optimizer updates everything in one pass (and an all-reduce is one call).

The workspace is caller-owned: `acts` holds every layer's output for n_rows samples, the two
delta buffers ping-pong dl/dZ backwards.  Nothing here allocates, so the training loop
(_sgd.pyx) calls net_loss_grad once per minibatch on buffers sized once per fit.
"""
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.stdlib cimport malloc, free
from cpython.pyport cimport PY_SSIZE_T_MAX

from fastnn._core._fpmode cimport (fnn_fpmode_enter, fnn_fpmode_get, fnn_fpmode_leave,
                             fnn_fpmode_set, fnn_fpmode_supported, fnn_fpmode_writable_bits)
from fastnn._core._kernels cimport FNN_OK, FNN_N_ACTIVATIONS, FNN_IDENTITY, all_finite
from fastnn._core._kernels cimport fnn_act_keeps_preactivation
from fastnn._core._pool cimport parallel_for
from fastnn._core._dropout cimport (DropoutCtx, fnn_dropout_keep_row, fnn_dropout_threshold,
                                    fnn_philox4x32_10)
from libc.stdint cimport uint32_t, uint64_t
from fastnn._core._gemm cimport gemm_fixed, fnn_gemm_force_level, fnn_gemm_kernel
cimport numpy as cnp
from fastnn._core._layernorm cimport layernorm_act_backward
from fastnn._core._tiling cimport (PASS_ACT_BACKWARD, PASS_BIAS_ACT, PASS_BIAS_ACT_KEEP,
                                   fused_forward, run_dropout, run_layernorm, run_pass,
                                   thread_min_flops, tiled_gemm)
from fastnn._core._losses cimport (LossParams, N_LOSSES, check_targets, loss_grad,
                             output_activation)

import numpy as np

cnp.import_array()


cdef inline void _forward_product(const Net *net, int n_rows, int n_out, int n_in,
                                  const floating *X, const floating *W,
                                  floating *Z) noexcept nogil:
    """Z (n_rows, n_out) := X (n_rows, n_in) @ W (n_in, n_out): fastnn's fixed-order product
    (net.fixed_products: prediction) or BLAS over the fixed tiles (training)."""
    if net.fixed_products:
        gemm_fixed(n_rows, n_out, n_in, X, n_in, W, n_out, Z, n_out)
    else:
        tiled_gemm(net.n_threads, False, False, n_rows, n_out, n_in, <floating> 1, X, n_in,
                   W, n_out, <floating> 0, Z, n_out)


cdef int net_forward(const Net *net, const floating *params, const floating *X, int n_rows,
                     floating *acts) noexcept nogil:
    cdef int k, status
    cdef const floating *inp = X
    cdef floating *out
    cdef floating *kept
    cdef floating *xhat
    cdef int n_out, n_in, nt = net.n_threads
    for k in range(net.n_layers):
        out = layer_output(net, acts, n_rows, k)
        kept = layer_kept(net, acts, n_rows, k)
        n_out = net.sizes[k + 1]
        n_in = net.sizes[k]
        if net.norms[k]:
            # x W -> xhat (normalized), y = gamma xhat + beta (kept), A = act(y)
            xhat = acts + n_rows * net.n_off[k]
            _forward_product(net, n_rows, n_out, n_in, inp, params + net.w_off[k], xhat)
            status = run_layernorm(
                nt, xhat, params + net.b_off[k], params + net.b_off[k] + n_out,
                params + net.b_off[k] + 2 * n_out, acts + n_rows * net.z_off[k],
                acts + n_rows * net.r_off[k], out, n_rows, n_out, net.acts[k],
                <floating> net.alphas[k])
            kept = out
        elif fnn_act_keeps_preactivation(net.acts[k]):
            # Z = X W + b kept, A = act(Z) (dropout, if any, in place on the output)
            _forward_product(net, n_rows, n_out, n_in, inp, params + net.w_off[k], kept)
            status = run_pass(nt, PASS_BIAS_ACT_KEEP, n_rows, n_out, net.acts[k],
                               <floating> net.alphas[k], kept, params + net.b_off[k], out,
                               <const floating *> NULL)
            kept = out
        elif fused_forward(nt, n_rows, n_out, n_in, inp, params + net.w_off[k], kept,
                           params + net.b_off[k], net.acts[k], <floating> net.alphas[k],
                           net.fixed_products):
            # (a small training product, or any prediction's: the bias and activation in the
            # product's store)
            status = FNN_OK
        else:
            # with dropout, the output before dropout stays in the kept slot
            _forward_product(net, n_rows, n_out, n_in, inp, params + net.w_off[k], kept)
            status = run_pass(nt, PASS_BIAS_ACT, n_rows, n_out, net.acts[k],
                               <floating> net.alphas[k], kept, params + net.b_off[k],
                               <floating *> NULL, <const floating *> NULL)
        if status != FNN_OK:
            return status
        if dropping(net, k):
            run_dropout(nt, out, kept, n_rows, net.sizes[k + 1], net.drop, k,
                         net.drop_rates[k])
        inp = out
    return FNN_OK


cdef double net_forward_loss(const Net *net, const floating *params, const floating *X,
                             int n_rows, const LossParams *loss, const floating *Y,
                             const Py_ssize_t *labels, const floating *sample_weight,
                             const floating *sigma, double grad_scale, floating *acts,
                             floating *delta0, int *status) noexcept nogil:
    cdef int L = net.n_layers
    status[0] = net_forward(net, params, X, n_rows, acts)
    if status[0] != FNN_OK:
        return 0.0
    # dl/dZ_L straight from the logits: the output link is fused into the loss
    return loss_grad(loss, layer_output(net, acts, n_rows, L - 1), n_rows, net.sizes[L],
                     Y, labels, sample_weight, sigma, grad_scale, delta0)


cdef int net_backward(const Net *net, floating *params, floating *grads, const floating *X,
                      int n_rows, floating *acts, floating *delta0, floating *delta1,
                      double sgd_lr, double sgd_decay) noexcept nogil:
    cdef int k, act, n_out, n_in, status = FNN_OK, nt = net.n_threads
    cdef Py_ssize_t j
    # (the fused SGD step computes in the run's dtype)
    cdef floating lr = <floating> sgd_lr, decay = <floating> sgd_decay
    cdef floating *swap
    cdef floating *gb
    cdef const floating *inp
    for k in range(net.n_layers - 1, -1, -1):
        inp = X if k == 0 else layer_output(net, acts, n_rows, k - 1)
        if dropping(net, k):
            # dl/dA_k (after dropout) -> dl/dA_k before dropout: the same mask and scale
            run_dropout(nt, delta0, delta0, n_rows, net.sizes[k + 1], net.drop, k,
                         net.drop_rates[k])
        act = net.acts[k]
        if net.norms[k]:
            # dl/dA_k -> dl/dy -> dl/dz in place (with dgamma, dbeta), then the dense layer
            # as an identity one
            n_out = net.sizes[k + 1]
            gb = grads + net.b_off[k]
            status = layernorm_act_backward(
                delta0, acts + n_rows * net.z_off[k], acts + n_rows * net.n_off[k],
                params + net.b_off[k] + n_out, acts + n_rows * net.r_off[k], gb + n_out,
                gb + 2 * n_out, n_rows, n_out, act, <floating> net.alphas[k])
            if status != FNN_OK:
                return status
            if sgd_lr > 0:     # the fused plain SGD step also moves gamma and beta (no decay)
                for j in range(2 * n_out):
                    params[net.b_off[k] + n_out + j] -= (<floating> sgd_lr) * gb[n_out + j]
            act = FNN_IDENTITY
        # delta0 holds dl/dA_k on entry and becomes dl/dZ_k in place, with the bias
        # gradient (column blocks); dl/dA_{k-1} goes to delta1 (skipped for the first layer:
        # nobody needs dl/dX).  The products and passes of _layers.dense_backward(_sgd), on
        # fixed tiles.
        n_in = net.sizes[k]
        n_out = net.sizes[k + 1]
        status = run_pass(nt, PASS_ACT_BACKWARD, n_rows, n_out, act, <floating> net.alphas[k],
                           delta0, delta0, grads + net.b_off[k],
                           layer_kept(net, acts, n_rows, k))
        if status != FNN_OK:
            return status
        if sgd_lr > 0:
            # dX with the OLD W, then W := (1 - lr decay) W - lr X^T D inside the
            # weight-gradient GEMM (beta != 0), then b := b - lr db
            if k > 0:
                tiled_gemm(nt, False, True, n_rows, n_in, n_out, <floating> 1, delta0, n_out,
                           params + net.w_off[k], n_out, <floating> 0, delta1, n_in)
            tiled_gemm(nt, True, False, n_in, n_out, n_rows, -lr, inp, n_in, delta0, n_out,
                       1 - lr * decay, params + net.w_off[k], n_out)
            gb = grads + net.b_off[k]
            for j in range(n_out):
                params[net.b_off[k] + j] -= lr * gb[j]
        else:
            tiled_gemm(nt, True, False, n_in, n_out, n_rows, <floating> 1, inp, n_in, delta0,
                       n_out, <floating> 0, grads + net.w_off[k], n_out)
            if k > 0:
                tiled_gemm(nt, False, True, n_rows, n_in, n_out, <floating> 1, delta0, n_out,
                           params + net.w_off[k], n_out, <floating> 0, delta1, n_in)
        if status != FNN_OK:
            return status
        swap = delta0
        delta0 = delta1
        delta1 = swap
    return FNN_OK


cdef double net_loss_grad(const Net *net, const floating *params, floating *grads,
                          const floating *X, int n_rows, const LossParams *loss,
                          const floating *Y, const Py_ssize_t *labels,
                          const floating *sample_weight, const floating *sigma,
                          double grad_scale, floating *acts, floating *delta0,
                          floating *delta1, int *status) noexcept nogil:
    cdef double total = net_forward_loss(net, params, X, n_rows, loss, Y, labels,
                                         sample_weight, sigma, grad_scale, acts, delta0,
                                         status)
    if status[0] == FNN_OK:
        # params is only read when sgd_lr == 0
        status[0] = net_backward(net, <floating *> params, grads, X, n_rows, acts, delta0,
                                 delta1, 0.0, 0.0)
    return total


# ---------------------------------------------------------------- Python-facing holder

cdef Net with_threads(NetSpec spec, int n_threads) except *:
    """A copy of the network struct whose products and passes run in their fixed tiles on
    n_threads threads of fastnn's pool (the same bits for any count >= 1; 0: the untiled path,
    for tests).  The one place an entry point sets the thread count on its copy."""
    if n_threads < 0:
        raise ValueError(f"n_threads={n_threads}; expected >= 0")
    cdef Net net = spec.net
    net.n_threads = n_threads
    return net


cdef int check_net(NetSpec spec, Py_ssize_t n_params, Py_ssize_t n_grads,
                   Py_ssize_t n_inputs, Py_ssize_t n_rows) except -1:
    """See NetSpec.check; C comparisons only, unless one fails."""
    if n_params != spec.n_params:
        raise ValueError(f"params has {n_params} entries; the network has "
                         f"{spec.n_params} parameters")
    if n_grads != -1 and n_grads != spec.n_params:
        raise ValueError(f"grads has {n_grads} entries; the network has "
                         f"{spec.n_params} parameters")
    if n_inputs != -1 and n_inputs != spec.net.sizes[0]:
        raise ValueError(f"X has {n_inputs} features; the network expects "
                         f"{spec.net.sizes[0]}")
    if n_rows > INT_MAX:
        raise ValueError(f"X has {n_rows} rows; at most {INT_MAX} are supported")
    return 0


def _index_vector(values, name, low, high):
    """values as a 1-D intc array, each in [low, high] (checked before the cast can wrap)."""
    raw = np.asarray(values)
    if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a 1-D sequence of integers; got {values!r}")
    if raw.size and (raw.min() < low or raw.max() > high):
        raise ValueError(f"{name}={raw.tolist()}; expected integers in [{low}, {high}]")
    return np.ascontiguousarray(raw, dtype=np.intc)


cdef class NetSpec:
    """Owns the index arrays behind a `Net` struct (built once per model by fastnn.nn.model)."""

    def __cinit__(self, sizes, acts, alphas, drop_rates=None, norms=None):
        # reachable from Python: every index array the compiled code follows is checked here
        sizes = _index_vector(sizes, "sizes", 1, INT_MAX)
        n_layers = sizes.shape[0] - 1
        if n_layers < 1:
            raise ValueError(f"sizes has {sizes.shape[0]} entries; expected at least 2")
        self._sizes = sizes
        self._acts = _index_vector(acts, "acts", 0, FNN_N_ACTIVATIONS - 1)
        if self._acts.shape[0] != n_layers:
            raise ValueError(f"acts has {self._acts.shape[0]} entries; expected {n_layers}")
        self._alphas = np.ascontiguousarray(alphas, dtype=np.float64)
        if self._alphas.shape != (n_layers,) or not np.isfinite(self._alphas).all():
            raise ValueError(f"alphas has shape {self._alphas.shape}; expected {n_layers} "
                             "finite values")
        self._drop_rates = (np.zeros(n_layers) if drop_rates is None else
                            np.ascontiguousarray(drop_rates, dtype=np.float64))
        if self._drop_rates.shape != (n_layers,) or not (
                (self._drop_rates >= 0) & (self._drop_rates < 1)).all():
            raise ValueError(f"drop_rates has shape {self._drop_rates.shape}; expected "
                             f"{n_layers} rates in [0, 1)")
        self._norms = (np.zeros(n_layers, dtype=np.intc) if norms is None else
                       _index_vector(norms, "norms", 0, 1))
        if self._norms.shape[0] != n_layers:
            raise ValueError(f"norms has {self._norms.shape[0]} entries; expected {n_layers}")
        n_off = np.full(n_layers, -1, dtype=np.intp)
        r_off = np.full(n_layers, -1, dtype=np.intp)
        w_off = np.empty(n_layers, dtype=np.intp)
        b_off = np.empty(n_layers, dtype=np.intp)
        a_off = np.empty(n_layers, dtype=np.intp)
        z_off = np.full(n_layers, -1, dtype=np.intp)
        pos = 0
        width = 0
        for k in range(n_layers):
            w_off[k] = pos
            pos += int(sizes[k]) * int(sizes[k + 1])
            b_off[k] = pos
            pos += int(sizes[k + 1]) * (3 if self._norms[k] else 1)   # [b | gamma | beta]
            a_off[k] = width
            width += int(sizes[k + 1])
        for k in range(n_layers):  # the kept pre-activations follow all the outputs
            if (fnn_act_keeps_preactivation(int(self._acts[k])) or self._drop_rates[k] > 0
                    or self._norms[k]):
                z_off[k] = width
                width += int(sizes[k + 1])
            if self._norms[k]:     # xhat, and 1 / std per row
                n_off[k] = width
                r_off[k] = width + int(sizes[k + 1])
                width += int(sizes[k + 1]) + 1
        self._w_off, self._b_off, self._a_off, self._z_off = w_off, b_off, a_off, z_off
        self._n_off, self._r_off = n_off, r_off
        self.n_params = pos
        self.net.n_layers = n_layers
        self.net.act_width = width
        self.net.max_width = int(sizes[1:].max())
        self._refresh()

    def _refresh(self):
        cdef int[::1] s = self._sizes, a = self._acts
        cdef double[::1] al = self._alphas, dr = self._drop_rates
        cdef Py_ssize_t[::1] w = self._w_off, b = self._b_off, ao = self._a_off
        cdef Py_ssize_t[::1] zo = self._z_off, no = self._n_off, ro = self._r_off
        cdef int[::1] nm = self._norms
        self.net.sizes = &s[0]
        self.net.acts = &a[0]
        self.net.alphas = &al[0]
        self.net.w_off = &w[0]
        self.net.b_off = &b[0]
        self.net.a_off = &ao[0]
        self.net.z_off = &zo[0]
        self.net.drop_rates = &dr[0]
        self.net.norms = &nm[0]
        self.net.n_off = &no[0]
        self.net.r_off = &ro[0]
        self.net.drop = NULL
        self.net.n_threads = 1
        self.net.fixed_products = False

    def check(self, Py_ssize_t n_params, Py_ssize_t n_grads=-1, Py_ssize_t n_inputs=-1,
              Py_ssize_t n_rows=-1):
        """Raise ValueError unless the buffers fit this network (-1: not checked); O(1).

        Every def entry point that hands a parameter or gradient vector, or inputs, to the
        compiled network checks this first (check_net, from C), so no Python-side state can
        make it read or write out of bounds.
        """
        return check_net(self, n_params, n_grads, n_inputs, n_rows)

    @property
    def sizes(self):
        return self._sizes.copy()

    @property
    def n_inputs(self):
        return self.net.sizes[0]

    @property
    def n_outputs(self):
        return self.net.sizes[self.net.n_layers]

    @property
    def w_offsets(self):
        return self._w_off.copy()

    @property
    def b_offsets(self):
        return self._b_off.copy()

    @property
    def act_width(self):
        return self.net.act_width

    @property
    def max_width(self):
        return self.net.max_width


cdef void write_output(const Net *net, floating *acts, int rows, floating *out, bint link,
                       int loss_kind) noexcept nogil:
    """out (rows, n_L), C order := the last layer's output of `rows` rows in the activation
    workspace acts, then (link) the output link of loss_kind in place: one prediction chunk
    of forward_into and of _sparse.forward_csr_into."""
    cdef Py_ssize_t n_out = net.sizes[net.n_layers], i, j
    cdef const floating *last = layer_output(net, acts, rows, net.n_layers - 1)
    for i in range(rows):
        for j in range(n_out):
            out[i * n_out + j] = last[i * n_out + j]
    if link:
        output_activation(loss_kind, out, rows, <int> n_out)


cdef struct _RowsForward:
    # one prediction chunk cut into blocks of rows, a pool task each (forward_into)
    const Net *net              # fixed_products set, n_threads 0 (a task runs on one thread)
    bint dbl
    const void *params
    const void *X
    void *out
    void *acts
    int rows, block, loss_kind
    int status                  # FNN_OK, or a task's failure


cdef void _rows_forward(_RowsForward *f, floating *dtype, long t) noexcept nogil:
    # (dtype only selects the type)
    cdef Py_ssize_t lo = <Py_ssize_t> t * f.block
    cdef int cnt = <int> min(<Py_ssize_t> f.block, f.rows - lo)
    cdef const Net *net = f.net
    cdef floating *acts = (<floating *> f.acts) + lo * net.act_width
    cdef int status
    if cnt <= 0:
        return
    status = net_forward(net, <const floating *> f.params,
                         (<const floating *> f.X) + lo * net.sizes[0], cnt, acts)
    if status != FNN_OK:
        f.status = status
        return
    write_output(net, acts, cnt, (<floating *> f.out) + lo * net.sizes[net.n_layers], True,
                 f.loss_kind)


cdef void _rows_forward_task(void *ctx, long t) noexcept nogil:
    cdef _RowsForward *f = <_RowsForward *> ctx
    if f.dbl:
        _rows_forward(f, <double *> NULL, t)
    else:
        _rows_forward(f, <float *> NULL, t)


cdef double _flops_per_row(const Net *net) noexcept nogil:
    """2 W: the multiply-adds of one row's forward pass, counted twice."""
    cdef double flops = 0
    cdef int k
    for k in range(net.n_layers):
        flops += 2.0 * net.sizes[k] * net.sizes[k + 1]
    return flops


cdef int _predict_chunk(const Net *net, const floating *params, const floating *X, int rows,
                        floating *out, int loss_kind, floating *acts,
                        int n_threads) noexcept nogil:
    """out (rows, n_L) := the output link of the logits of rows X, by fixed-order products
    (net: fixed_products set, n_threads 0).  Each row's result does not depend on the other
    rows (src_c/fastnn_gemm.h), so the rows are cut into one block per thread when the chunk
    is large enough to share (at least thread_min_flops() per thread), any cut giving the
    same bits.  acts: rows * act_width entries.  Returns a status."""
    cdef _RowsForward f
    cdef long n_tasks = 1
    cdef double flops = rows * _flops_per_row(net)
    f.net, f.dbl, f.params, f.X, f.out, f.acts = net, floating is double, params, X, out, acts
    f.rows, f.loss_kind, f.status = rows, loss_kind, FNN_OK
    if n_threads > 1:
        n_tasks = <long> min(<double> n_threads, max(1.0, flops // thread_min_flops()))
    f.block = rows
    if n_tasks > 1:
        f.block = <int> (((rows + n_tasks - 1) // n_tasks + 5) // 6 * 6)
        n_tasks = (rows + f.block - 1) // f.block
    if n_tasks > 1:
        parallel_for(<int> n_tasks, n_tasks, _rows_forward_task, &f)
    else:
        _rows_forward(&f, <floating *> NULL, 0)
    return f.status


def forward_into(NetSpec spec, const floating[::1] params, const floating[:, ::1] X,
                 floating[:, ::1] out, int loss_kind, Py_ssize_t chunk_rows,
                 bint flush_denormals=True, int n_threads=1):
    """out (n, n_L) := output link of the logits, computed chunk_rows samples at a time.

    The products are fastnn's own, each element summed in one fixed order
    (src_c/fastnn_gemm.h): a row's prediction is the same bits alone (predict_rows), in any
    chunk and on any thread, and no BLAS is called.  The workspace is allocated here, per
    call, so concurrent calls on one model share no mutable state.  Values are
    fastnn.nn.model's to validate; sizes are checked here.
    flush_denormals: flush subnormals to zero on this thread (and the pool's threads taking
    part) during the call (fastnn.runtime.fpmode).
    n_threads: threads of fastnn's pool taking blocks of rows (the same bits for any count).
    """
    cdef unsigned long long fp_saved
    cdef Net net = spec.net
    if n_threads < 0:
        raise ValueError(f"n_threads={n_threads}; expected >= 0")
    net.n_threads = 0
    net.fixed_products = True
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1], n_out = out.shape[1]
    cdef Py_ssize_t start, rows
    cdef int status = FNN_OK, L = spec.net.n_layers
    cdef floating *acts
    check_net(spec, params.shape[0], -1, n_in, -1)
    if out.shape[0] != n or n_out != spec.net.sizes[L]:
        raise ValueError(f"out has shape ({out.shape[0]}, {n_out}); expected "
                         f"({n}, {spec.net.sizes[L]})")
    if loss_kind < 0 or loss_kind >= N_LOSSES:
        raise ValueError(f"unknown loss code {loss_kind}")
    # the workspace stays below 2**31 elements (and chunks are int-sized for the kernels)
    chunk_rows = max(1, min(chunk_rows, n, INT_MAX // max(1, spec.net.act_width)))
    acts = <floating *> malloc(chunk_rows * spec.net.act_width * sizeof(floating))
    if acts == NULL:
        raise MemoryError(f"could not allocate the prediction workspace "
                          f"({chunk_rows * spec.net.act_width * sizeof(floating)} bytes)")
    try:
        with nogil:
            fp_saved = fnn_fpmode_enter(flush_denormals)
            start = 0
            while start < n:
                rows = min(chunk_rows, n - start)
                status = _predict_chunk(&net, &params[0], &X[start, 0], <int> rows,
                                        &out[start, 0], loss_kind, acts, n_threads)
                if status != FNN_OK:
                    break
                start += rows
            fnn_fpmode_leave(flush_denormals, fp_saved)
    finally:
        free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled forward pass failed with status {status}")


cdef enum:
    _STACK_DOUBLES = 2048       # predict_rows' workspace on the stack up to 16 KiB


cdef object _predict_rows(NetSpec spec, cnp.ndarray params, cnp.ndarray X, int loss_kind,
                          bint flush_denormals, int n_threads, Py_ssize_t chunk_rows,
                          floating *dtype):
    # (dtype only selects the type)
    cdef Net net = spec.net
    cdef Py_ssize_t n = cnp.PyArray_DIM(X, 0), n_in = net.sizes[0]
    cdef Py_ssize_t n_out = net.sizes[net.n_layers], start = 0, rows
    cdef cnp.npy_intp dims[2]
    cdef double stack[_STACK_DOUBLES]
    cdef size_t nbytes
    cdef floating *acts = <floating *> stack
    cdef const floating *x = <const floating *> cnp.PyArray_DATA(X)
    cdef const floating *p = <const floating *> cnp.PyArray_DATA(params)
    cdef floating *o
    cdef unsigned long long fp_saved
    cdef bint finite = True
    cdef int status = FNN_OK
    dims[0], dims[1] = n, n_out
    out = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT64 if floating is double else
                            cnp.NPY_FLOAT32, 0)
    o = <floating *> cnp.PyArray_DATA(out)
    # the workspace stays below 2**31 elements (and chunks are int-sized for the kernels)
    chunk_rows = max(1, min(chunk_rows, n, INT_MAX // max(1, net.act_width)))
    nbytes = <size_t> chunk_rows * net.act_width * sizeof(floating)
    if nbytes > sizeof(stack):
        acts = <floating *> malloc(nbytes)
        if acts == NULL:
            raise MemoryError(f"could not allocate the prediction workspace ({nbytes} bytes)")
    net.n_threads = 0
    net.fixed_products = True
    with nogil:
        fp_saved = fnn_fpmode_enter(flush_denormals)
        while start < n:
            rows = min(chunk_rows, n - start)
            # each chunk checked just before it is computed, while it comes into the cache
            finite = all_finite(x + start * n_in, rows * n_in)
            if not finite:
                break
            status = _predict_chunk(&net, p, x + start * n_in, <int> rows, o + start * n_out,
                                    loss_kind, acts, n_threads)
            if status != FNN_OK:
                break
            start += rows
        fnn_fpmode_leave(flush_denormals, fp_saved)
    if nbytes > sizeof(stack):
        free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled forward pass failed with status {status}")
    return out if finite else None


def predict_rows(NetSpec spec, params, X, int loss_kind, bint flush_denormals=True,
                 int n_threads=1, Py_ssize_t chunk_rows=1024):
    """The prediction of X in one call, or None when this path does not take X (then
    forward_into does, after the caller's validation).

    Taken: X and params are NumPy arrays of one dtype (float32 or float64), C-contiguous and
    aligned, X of shape (n, n_inputs) with n >= 1, params of the network's size, and every
    value of X finite (checked a chunk at a time: a NaN found in a later chunk returns None
    after the earlier ones were computed, for nothing).  Returns a new (n, n_L) array: the
    output link of loss_kind applied to the logits, the same bits as forward_into (the same
    fixed-order products, see forward_into), computed chunk_rows rows at a time on up to
    n_threads threads of fastnn's pool (1: this thread only; the bits do not depend on it).
    No BLAS, no Python object but the result.  Raises ValueError for an unknown loss code or
    n_threads < 1, MemoryError when the workspace cannot be allocated.
    flush_denormals: as in forward_into.
    """
    if loss_kind < 0 or loss_kind >= N_LOSSES:
        raise ValueError(f"unknown loss code {loss_kind}")
    if n_threads < 1:
        raise ValueError(f"n_threads={n_threads}; expected >= 1")
    if type(X) is not np.ndarray or type(params) is not np.ndarray:
        return None
    cdef cnp.ndarray x = <cnp.ndarray> X, p = <cnp.ndarray> params
    cdef int t = cnp.PyArray_TYPE(x)
    if (cnp.PyArray_NDIM(x) != 2 or cnp.PyArray_NDIM(p) != 1 or cnp.PyArray_TYPE(p) != t
            or (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64)
            or not cnp.PyArray_ISCARRAY_RO(x) or not cnp.PyArray_ISCARRAY_RO(p)
            or cnp.PyArray_DIM(x, 1) != spec.net.sizes[0]
            or cnp.PyArray_DIM(p, 0) != spec.n_params or cnp.PyArray_DIM(x, 0) < 1):
        return None
    if t == cnp.NPY_FLOAT32:
        return _predict_rows(spec, p, x, loss_kind, flush_denormals, n_threads, chunk_rows,
                             <float *> NULL)
    return _predict_rows(spec, p, x, loss_kind, flush_denormals, n_threads, chunk_rows,
                         <double *> NULL)


def flops_per_row(NetSpec spec):
    """2 W: the FLOPs of one row's forward pass."""
    return _flops_per_row(&spec.net)


def _gemm_kernel(plain=None, level=None):
    """The instruction-set level this module's fixed-order products run at (src_c/
    fastnn_gemm.h: 0 plain C, 1 AVX2 + FMA, 2 AVX-512); plain=True forces level 0 first and
    plain=False lifts the cap again; level=0, 1 or 2 caps it there (tests)."""
    if plain is not None:
        fnn_gemm_force_level(0 if plain else 2)
    if level is not None:
        fnn_gemm_force_level(level)
    return fnn_gemm_kernel()


cdef floating *loss_grad_workspace(floating[::1] workspace, Py_ssize_t n_rows,
                                   const Net *net, bint *owned) except NULL:
    """acts | delta0 | delta1 for a loss and gradient over n_rows rows at once: n_rows *
    (act_width + 2 * max_width) entries.  The caller's `workspace` when given (ValueError if
    it is shorter), else malloc'ed (MemoryError if it fails or the size exceeds the address
    space); *owned: whether the caller must free it.  For loss_grad_into and
    _sparse.loss_grad_csr_into."""
    # (in Python integers: the C product could overflow)
    if ((<object> n_rows) * ((<object> net.act_width) + 2 * net.max_width)
            * (<object> sizeof(floating)) > PY_SSIZE_T_MAX):
        raise MemoryError(f"the workspace for {n_rows} rows would exceed the address space")
    cdef size_t act_bytes = <size_t> n_rows * net.act_width * sizeof(floating)
    cdef size_t delta_bytes = <size_t> n_rows * net.max_width * sizeof(floating)
    cdef floating *acts
    owned[0] = False
    if workspace is not None:
        if <size_t> workspace.shape[0] < (act_bytes + 2 * delta_bytes) // sizeof(floating):
            raise ValueError(f"workspace has {workspace.shape[0]} entries; {n_rows} rows "
                             f"need {(act_bytes + 2 * delta_bytes) // sizeof(floating)}")
        return &workspace[0]
    acts = <floating *> malloc(act_bytes + 2 * delta_bytes)
    if acts == NULL:
        raise MemoryError(f"could not allocate the workspace ({act_bytes + 2 * delta_bytes} "
                          "bytes)")
    owned[0] = True
    return acts


def loss_grad_into(NetSpec spec, const floating[::1] params, floating[::1] grads,
                   const floating[:, ::1] X, int loss_kind, int full, double sigma_scalar,
                   const floating[:, ::1] Y, const Py_ssize_t[::1] labels,
                   const floating[::1] sample_weight, const floating[::1] sigma,
                   double grad_scale, bint flush_denormals=True,
                   const Py_ssize_t[::1] dropout_samples=None, uint64_t dropout_seed=0,
                   uint32_t epoch=0, floating[::1] workspace=None, int n_threads=1):
    """Return sum_i w_i l_i and fill grads with grad_scale times its gradient.

    The workspace covers all rows of X at once and is freed on return, unless the caller
    passes `workspace` (at least n_rows * (act_width + 2 * max_width) entries, checked), which
    a caller evaluating many times reuses (fastnn.optim.lbfgs: a fresh multi-MB allocation per call
    costs the kernel's page faults and zeroing, 40% of an evaluation at 10000 x 50).  Values are
    fastnn.nn.model's to validate; sizes are checked here.  flush_denormals: flush subnormals to
    zero on this thread during the call (fastnn.runtime.fpmode).
    dropout_samples (n,): apply the layers' dropout as training does, row i being global
    sample dropout_samples[i] of epoch `epoch` under `dropout_seed` (a fixed mask: tests
    check the gradient through it).  None: no dropout, as in prediction.
    n_threads: as in forward_into.
    """
    cdef unsigned long long fp_saved
    cdef Net net = with_threads(spec, n_threads)
    cdef DropoutCtx ctx
    if dropout_samples is not None:
        if dropout_samples.shape[0] != X.shape[0]:
            raise ValueError(f"dropout_samples has {dropout_samples.shape[0]} entries; "
                             f"expected one per row of X ({X.shape[0]})")
        ctx.seed, ctx.epoch, ctx.samples, ctx.layer0 = dropout_seed, epoch, &dropout_samples[0], 0
        net.drop = &ctx
    cdef LossParams lp
    check_net(spec, params.shape[0], grads.shape[0], X.shape[1], X.shape[0])
    if X.shape[0] < 1:
        raise ValueError("X has 0 rows; expected at least one")
    check_targets(loss_kind, X.shape[0], spec.net.sizes[spec.net.n_layers], Y, labels,
                  sample_weight, sigma)
    cdef int n = <int> X.shape[0], status = FNN_OK
    cdef double total
    cdef floating *acts
    cdef floating *d0
    cdef floating *d1
    cdef const floating *Y_ptr = NULL if Y is None else &Y[0, 0]
    cdef const Py_ssize_t *lab_ptr = NULL if labels is None else &labels[0]
    cdef const floating *sw_ptr = NULL if sample_weight is None else &sample_weight[0]
    cdef const floating *sig_ptr = NULL if sigma is None else &sigma[0]
    lp.kind = loss_kind
    lp.full = full
    lp.sigma = sigma_scalar
    cdef bint owned = False
    acts = loss_grad_workspace(workspace, X.shape[0], &spec.net, &owned)
    d0 = acts + <size_t> n * spec.net.act_width
    d1 = d0 + <size_t> n * spec.net.max_width
    try:
        with nogil:
            fp_saved = fnn_fpmode_enter(flush_denormals)
            total = net_loss_grad(&net, &params[0], &grads[0], &X[0, 0], n, &lp, Y_ptr,
                                  lab_ptr, sw_ptr, sig_ptr, grad_scale, acts, d0, d1, &status)
            fnn_fpmode_leave(flush_denormals, fp_saved)
    finally:
        if owned:
            free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled backward pass failed with status {status}")
    return total


# ---------------------------------------------------------------- floating-point mode (tests)

def _fpmode_supported():
    """Whether this build can flush subnormals (x86-64 MXCSR, aarch64 FPCR); see fastnn.runtime.fpmode."""
    return bool(fnn_fpmode_supported())


def _get_fpmode():
    """The calling thread's MXCSR (x86-64) or FPCR (aarch64) as an int; 0 elsewhere."""
    return fnn_fpmode_get()


def _set_fpmode(unsigned long long mode):
    """Write the calling thread's MXCSR/FPCR (a value _get_fpmode returned).  Tests only.

    Raises ValueError for a reserved bit (writing one would fault) or where there is no
    register."""
    if mode & ~fnn_fpmode_writable_bits():
        raise ValueError(f"mode {mode:#x} sets reserved bits; writable: "
                         f"{fnn_fpmode_writable_bits():#x}")
    fnn_fpmode_set(mode)


# ---------------------------------------------------------------- dropout masks (private)

def dropout_keep(uint64_t seed, uint32_t epoch, int layer, const Py_ssize_t[::1] samples,
                 Py_ssize_t n_units, double rate):
    """The keep mask (len(samples), n_units) of uint8 that training applies to `layer`.

    The same C function as the training loop (Philox-4x32-10 of (unit / 4, sample, layer,
    epoch) under the seed; src_c/fastnn_dropout.h), for fastnn._core._reference and the tests.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate={rate!r}; expected 0 <= rate < 1")
    keep = np.empty((samples.shape[0], n_units), dtype=np.uint8)
    cdef unsigned char[:, ::1] k = keep
    cdef uint32_t threshold = fnn_dropout_threshold(rate)
    cdef Py_ssize_t i
    if n_units > 0:
        for i in range(samples.shape[0]):
            fnn_dropout_keep_row(seed, epoch, <uint32_t> layer, <uint64_t> samples[i],
                                 threshold, n_units, &k[i, 0])
    return keep


def philox4x32_10(counter, key):
    """Philox-4x32-10 of a 4-word counter under a 2-word key (for the known-answer test)."""
    cdef uint32_t out[4]
    fnn_philox4x32_10(counter[0], counter[1], counter[2], counter[3], key[0], key[1], out)
    return [out[0], out[1], out[2], out[3]]
