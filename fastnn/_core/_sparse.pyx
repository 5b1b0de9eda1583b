"""A whole MLP over a CSR input matrix: the first layer's products as compiled sparse kernels.

Only the first layer sees X.  Its forward product ``Z_1 = X @ W_1`` and its weight gradient
``dW_1 = X^T @ D_1`` run over the stored entries of X (CSR: ``data``, ``indices``, ``indptr``),
``O(nnz * n_1)`` operations instead of ``O(n_samples * n_features * n_1)``, and X is never
densified.  Every later layer is the dense network of _network.pyx, run through the SAME cdef
functions (net_forward_loss, net_backward) on a view of the network that starts at its second
layer (``_rest``): same pointers shifted by one layer, same workspace, the dropout masks of
the same layer numbers (DropoutCtx.layer0).  The first layer may use any activation and
dropout; layer normalization of the first layer is not implemented here (a ValueError).

A minibatch is a list of row numbers (the epoch's order, or a contiguous range): the kernels
read those rows of X where they are, so nothing is gathered or allocated per minibatch.  The
epoch loop (fastnn/_core/_loop.pyx) runs ``sparse_loss_grad`` for a CSR row source in place of
the dense step, then the optimizer update of _sgd (apply_update), so a sparse and a dense
epoch on the same data agree to rounding.

fastnn/nn/sparse.py converts the matrix (canonical CSR of the model's dtype, ``indices`` and
``indptr`` as intp) and validates its values and the targets; the def entry points here check
every size and index they will follow (the network's, the targets', the CSR structure, the
sample order) before any loop, so no call reads or writes out of bounds.  Nothing raises
inside ``nogil``.
"""
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.math cimport isfinite
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from fastnn._core._blas cimport gemm_rowmajor
from fastnn._core._dropout cimport DropoutCtx, dropout
from fastnn._core._fpmode cimport fnn_fpmode_enter, fnn_fpmode_leave
from fastnn._core._kernels cimport (FNN_OK, act_backward, bias_act, bias_act_keep,
                              fnn_act_keeps_preactivation)
from fastnn._core._losses cimport LossParams, check_targets, loss_grad
from fastnn._core._network cimport (Net, NetSpec, check_net, dropping, layer_kept, layer_output,
                              loss_grad_workspace, net_backward, net_forward,
                              net_forward_loss, with_threads, write_output)


cdef int check_first_layer(const Net *net) except -1:
    """Raise ValueError unless these kernels implement the first layer: no layer
    normalization there (any activation, and dropout, are fine; later layers are free)."""
    if net.norms[0]:
        raise ValueError("sparse input does not support layer normalization of the first "
                         "layer (the later layers may have it): pass a dense X")
    return 0


cdef Net _rest(const Net *net, DropoutCtx *ctx) noexcept nogil:
    """The network from its second layer on, over the same parameters and workspace.

    ctx (may be NULL when net.drop is): receives a copy of net's dropout context with
    layer0 + 1, so layer k of the view draws the masks of layer k + 1 of the network.
    """
    cdef Net r = net[0]
    r.n_layers = net.n_layers - 1
    r.sizes = net.sizes + 1
    r.acts = net.acts + 1
    r.alphas = net.alphas + 1
    r.w_off = net.w_off + 1
    r.b_off = net.b_off + 1
    r.a_off = net.a_off + 1
    r.z_off = net.z_off + 1
    r.norms = net.norms + 1
    r.n_off = net.n_off + 1
    r.r_off = net.r_off + 1
    r.drop_rates = net.drop_rates + 1
    if net.drop != NULL:
        ctx[0] = net.drop[0]
        ctx.layer0 = net.drop.layer0 + 1
        r.drop = ctx
    return r


cdef int check_csr(const floating[::1] data, const Py_ssize_t[::1] indices,
                   const Py_ssize_t[::1] indptr, Py_ssize_t n_features) except -1:
    """Raise ValueError unless (data, indices, indptr) is a CSR structure whose rows and column
    indices the kernels can follow: indptr non-decreasing from 0 to nnz, 0 <= indices <
    n_features.  O(n_rows + nnz) C comparisons."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, nnz = data.shape[0], i, bad = -1
    if n < 1:
        raise ValueError(f"indptr has {indptr.shape[0]} entries; expected n_rows + 1 >= 2")
    if indices.shape[0] != nnz:
        raise ValueError(f"indices has {indices.shape[0]} entries; data has {nnz}")
    if indptr[0] != 0 or indptr[n] != nnz:
        raise ValueError(f"indptr runs from {indptr[0]} to {indptr[n]}; expected 0 to {nnz}")
    with nogil:
        for i in range(n):
            if indptr[i + 1] < indptr[i]:
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"indptr decreases after row {bad}")
    with nogil:
        for i in range(nnz):
            if indices[i] < 0 or indices[i] >= n_features:
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"indices[{bad}] = {indices[bad]} is outside [0, {n_features})")
    return 0


cdef void csr_times_dense(const floating *data, const Py_ssize_t *indices,
                          const Py_ssize_t *indptr, const Py_ssize_t *rows, Py_ssize_t row0,
                          Py_ssize_t n_rows, const floating *W, Py_ssize_t n_out,
                          floating *Z) noexcept nogil:
    """Z (n_rows, n_out) := X[R] @ W, W (n_features, n_out) row-major; R = rows[0:n_rows], or
    row0 .. row0 + n_rows - 1 when rows is NULL."""
    cdef Py_ssize_t i, p, j, r
    cdef floating v
    cdef floating *z
    cdef const floating *w
    for i in range(n_rows):
        r = row0 + i if rows == NULL else rows[i]
        z = Z + i * n_out
        memset(z, 0, n_out * sizeof(floating))
        for p in range(indptr[r], indptr[r + 1]):
            v = data[p]
            w = W + indices[p] * n_out
            for j in range(n_out):
                z[j] += v * w[j]


cdef void csr_transpose_times_dense(const floating *data, const Py_ssize_t *indices,
                                    const Py_ssize_t *indptr, const Py_ssize_t *rows,
                                    Py_ssize_t row0, Py_ssize_t n_rows, Py_ssize_t n_features,
                                    const floating *D, Py_ssize_t n_out,
                                    floating *G) noexcept nogil:
    """G (n_features, n_out) := X[R]^T @ D, D (n_rows, n_out) row-major; R as in
    csr_times_dense.  G is dense: every row of it is written (zero where no row of X[R] has
    an entry), O(n_features * n_out + nnz(X[R]) * n_out)."""
    cdef Py_ssize_t i, p, j, r
    cdef floating v
    cdef floating *g
    cdef const floating *d
    memset(G, 0, n_features * n_out * sizeof(floating))
    for i in range(n_rows):
        r = row0 + i if rows == NULL else rows[i]
        d = D + i * n_out
        for p in range(indptr[r], indptr[r + 1]):
            v = data[p]
            g = G + indices[p] * n_out
            for j in range(n_out):
                g[j] += v * d[j]


cdef int first_layer_forward(const Net *net, const floating *params, const floating *data,
                             const Py_ssize_t *indices, const Py_ssize_t *indptr,
                             const Py_ssize_t *rows, Py_ssize_t row0, int n_rows,
                             floating *acts) noexcept nogil:
    """A_1 for rows R of X into acts, as net_forward computes its first layer (the
    pre-activation kept for GELU/SiLU, the output before dropout kept for dropout)."""
    cdef int status, n1 = net.sizes[1]
    cdef floating *out = layer_output(net, acts, n_rows, 0)
    cdef floating *kept = layer_kept(net, acts, n_rows, 0)
    if fnn_act_keeps_preactivation(net.acts[0]):
        csr_times_dense(data, indices, indptr, rows, row0, n_rows, params + net.w_off[0], n1,
                        kept)
        status = bias_act_keep(kept, params + net.b_off[0], out, n_rows, n1, net.acts[0],
                               <floating> net.alphas[0])
        kept = out          # dropout (if any) in place on the output
    else:
        csr_times_dense(data, indices, indptr, rows, row0, n_rows, params + net.w_off[0], n1,
                        kept)
        status = bias_act(kept, params + net.b_off[0], n_rows, n1, net.acts[0],
                          <floating> net.alphas[0])
    if status != FNN_OK:
        return status
    if dropping(net, 0):
        dropout(out, kept, n_rows, n1, net.drop, 0, net.drop_rates[0])
    return FNN_OK


cdef int sparse_net_forward(const Net *net, const floating *params, const floating *data,
                            const Py_ssize_t *indices, const Py_ssize_t *indptr,
                            Py_ssize_t row0, int n_rows, floating *acts) noexcept nogil:
    """Every layer's output for rows row0 .. row0 + n_rows of X into acts (as net_forward;
    prediction: no dropout)."""
    cdef int status = first_layer_forward(net, params, data, indices, indptr, NULL, row0,
                                          n_rows, acts)
    cdef Net rest
    if status != FNN_OK or net.n_layers == 1:
        return status
    rest = _rest(net, NULL)
    return net_forward(&rest, params, layer_output(net, acts, n_rows, 0), n_rows, acts)


cdef double sparse_loss_grad(const Net *net, const floating *params, floating *grads,
                             const floating *data, const Py_ssize_t *indices,
                             const Py_ssize_t *indptr, Py_ssize_t n_features,
                             const Py_ssize_t *rows, Py_ssize_t row0, int n_rows,
                             const LossParams *lp, const floating *Y,
                             const Py_ssize_t *labels, const floating *sample_weight,
                             const floating *sigma, double grad_scale, floating *acts,
                             floating *delta0, floating *delta1, int *status) noexcept nogil:
    """Forward, fused loss gradient and backward for rows R of X (see csr_times_dense):
    grads := grad_scale * the gradient of sum_i w_i l_i; returns sum_i w_i l_i.

    When the loss is not finite (or a kernel fails: *status), returns it at once; grads is
    then partly written.  Layers 2..L run through net_forward_loss / net_backward on the view
    ``_rest``; net_backward does not form dl/dA_1 (its first layer's input gradient), so it
    is formed here from dl/dZ_2, which net_backward leaves in delta0 when the view has an
    odd number of layers and in delta1 otherwise (it swaps the two after each layer).
    """
    cdef int L = net.n_layers, n1 = net.sizes[1], n2
    cdef double total
    cdef floating *dA
    cdef const floating *D2
    cdef Net rest
    cdef DropoutCtx rest_ctx
    cdef floating *A1 = layer_output(net, acts, n_rows, 0)
    status[0] = first_layer_forward(net, params, data, indices, indptr, rows, row0, n_rows,
                                    acts)
    if status[0] != FNN_OK:
        return 0.0
    if L == 1:
        total = loss_grad(lp, A1, n_rows, n1, Y, labels, sample_weight, sigma, grad_scale,
                          delta0)
        if not isfinite(total):
            return total
        dA = delta0
    else:
        rest = _rest(net, &rest_ctx)
        total = net_forward_loss(&rest, params, A1, n_rows, lp, Y, labels, sample_weight,
                                 sigma, grad_scale, acts, delta0, status)
        if status[0] != FNN_OK or not isfinite(total):
            return total
        status[0] = net_backward(&rest, <floating *> params, grads, A1, n_rows, acts, delta0,
                                 delta1, 0.0, 0.0)
        if status[0] != FNN_OK:
            return total
        if (L - 1) % 2 == 1:
            D2, dA = delta0, delta1
        else:
            D2, dA = delta1, delta0
        n2 = net.sizes[2]
        # dl/dA_1 = D_2 @ W_2^T
        gemm_rowmajor(False, True, n_rows, n1, n2, <floating> 1, D2, n2,
                      params + net.w_off[1], n2, <floating> 0, dA, n1)
    if dropping(net, 0):
        # dl/dA_1 (after dropout) -> before dropout: the same mask and scale
        dropout(dA, dA, n_rows, n1, net.drop, 0, net.drop_rates[0])
    status[0] = act_backward(dA, layer_kept(net, acts, n_rows, 0), dA,
                             grads + net.b_off[0], n_rows, n1, net.acts[0],
                             <floating> net.alphas[0])
    if status[0] == FNN_OK:
        csr_transpose_times_dense(data, indices, indptr, rows, row0, n_rows, n_features, dA,
                                  n1, grads + net.w_off[0])
    return total


def forward_csr_into(NetSpec spec, const floating[::1] params, const floating[::1] data,
                     const Py_ssize_t[::1] indices, const Py_ssize_t[::1] indptr,
                     floating[:, ::1] out, int loss_kind, bint link, Py_ssize_t chunk_rows,
                     bint flush_denormals=True, int n_threads=1):
    """out := the network's logits (or, with link, its output link) for the CSR rows.

    Rows are processed in chunks of chunk_rows, so the workspace is bounded.  Sizes and the
    CSR structure are checked.  flush_denormals: flush subnormals to zero on this thread
    during the call (fastnn.runtime.fpmode), as _network.forward_into.  n_threads: threads of
    fastnn's pool taking the dense layers' fixed tiles, as in _network.forward_into.
    """
    cdef Net local = with_threads(spec, n_threads)
    cdef const Net *net = &local
    cdef Py_ssize_t n = out.shape[0], n_out = out.shape[1], start, rows
    check_net(spec, params.shape[0], -1, -1, n)
    check_first_layer(net)
    check_csr(data, indices, indptr, net.sizes[0])
    if indptr.shape[0] - 1 != n or n_out != net.sizes[net.n_layers]:
        raise ValueError(f"out has shape ({n}, {n_out}); expected ({indptr.shape[0] - 1}, "
                         f"{net.sizes[net.n_layers]})")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}; expected >= 1")
    # as forward_into: no larger than the rows, the workspace below 2**31 elements
    chunk_rows = max(1, min(chunk_rows, n, INT_MAX // max(1, net.act_width)))
    cdef int status = FNN_OK
    cdef floating *acts
    cdef const floating *empty_data = NULL if data.shape[0] == 0 else &data[0]
    cdef const Py_ssize_t *empty_idx = NULL if indices.shape[0] == 0 else &indices[0]
    acts = <floating *> malloc(<size_t> chunk_rows * net.act_width * sizeof(floating))
    if acts == NULL:
        raise MemoryError("could not allocate the forward workspace")
    cdef unsigned long long fp_saved
    try:
        with nogil:
            fp_saved = fnn_fpmode_enter(flush_denormals)
            start = 0
            while start < n:
                rows = min(chunk_rows, n - start)
                status = sparse_net_forward(net, &params[0], empty_data, empty_idx,
                                            &indptr[0], start, <int> rows, acts)
                if status != FNN_OK:
                    break
                write_output(net, acts, <int> rows, &out[start, 0], link, loss_kind)
                start += rows
            fnn_fpmode_leave(flush_denormals, fp_saved)
    finally:
        free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled sparse forward pass failed with status {status}")


def loss_grad_csr_into(NetSpec spec, const floating[::1] params, floating[::1] grads,
                       const floating[::1] data, const Py_ssize_t[::1] indices,
                       const Py_ssize_t[::1] indptr, Py_ssize_t n_features, int loss_kind,
                       int full, double sigma_scalar, const floating[:, ::1] Y,
                       const Py_ssize_t[::1] labels, const floating[::1] sample_weight,
                       const floating[::1] sigma, double grad_scale,
                       floating[::1] workspace=None, bint flush_denormals=True,
                       int n_threads=1):
    """Return sum_i w_i l_i over the CSR rows and fill grads with grad_scale times its gradient
    (as _network.loss_grad_into does for a dense X, `workspace`, `flush_denormals` and
    `n_threads` included).  Sizes checked."""
    cdef Net local = with_threads(spec, n_threads)
    cdef const Net *net = &local
    cdef LossParams lp
    cdef unsigned long long fp_saved
    check_net(spec, params.shape[0], grads.shape[0], n_features, indptr.shape[0] - 1)
    check_first_layer(net)
    check_csr(data, indices, indptr, n_features)
    check_targets(loss_kind, indptr.shape[0] - 1, net.sizes[net.n_layers], Y, labels,
                  sample_weight, sigma)
    cdef int n = <int> (indptr.shape[0] - 1), status = FNN_OK
    cdef double total = 0.0
    cdef floating *acts
    cdef floating *d0
    cdef floating *d1
    cdef const floating *Y_ptr = NULL if Y is None else &Y[0, 0]
    cdef const Py_ssize_t *lab_ptr = NULL if labels is None else &labels[0]
    cdef const floating *sw_ptr = NULL if sample_weight is None else &sample_weight[0]
    cdef const floating *sig_ptr = NULL if sigma is None else &sigma[0]
    cdef const floating *data_ptr = NULL if data.shape[0] == 0 else &data[0]
    cdef const Py_ssize_t *idx_ptr = NULL if indices.shape[0] == 0 else &indices[0]
    lp.kind = loss_kind
    lp.full = full
    lp.sigma = sigma_scalar
    cdef bint owned = False
    acts = loss_grad_workspace(workspace, n, net, &owned)
    d0 = acts + <size_t> n * net.act_width
    d1 = d0 + <size_t> n * net.max_width
    try:
        with nogil:
            fp_saved = fnn_fpmode_enter(flush_denormals)
            total = sparse_loss_grad(net, &params[0], &grads[0], data_ptr, idx_ptr, &indptr[0],
                                     n_features, NULL, 0, n, &lp, Y_ptr, lab_ptr, sw_ptr,
                                     sig_ptr, grad_scale, acts, d0, d1, &status)
            fnn_fpmode_leave(flush_denormals, fp_saved)
    finally:
        if owned:
            free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled sparse backward pass failed with status {status}")
    return total
