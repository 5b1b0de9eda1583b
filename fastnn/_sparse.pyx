"""A whole MLP over a CSR input matrix: the first layer's products as compiled sparse kernels.

Only the first layer sees X.  Its forward product ``Z_1 = X @ W_1`` and its weight gradient
``dW_1 = X^T @ D_1`` run over the stored entries of X (CSR: ``data``, ``indices``, ``indptr``),
``O(nnz * n_1)`` operations instead of ``O(n_samples * n_features * n_1)``, and X is never
densified.  Every later layer is the dense network of _network.pyx (the same cdef kernels).

fastnn/sparse.py converts the matrix (canonical CSR of the model's dtype, ``indices`` and
``indptr`` as intp) and validates its values and the targets; the def entry points here check
every size and index they will follow (the network's, the targets', the CSR structure) before
any loop, so no call reads or writes out of bounds.  Nothing raises inside ``nogil``.
"""
from cython cimport floating
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from fastnn._kernels cimport FNN_OK, act_backward, bias_act
from fastnn._layers cimport dense_backward, dense_forward
from fastnn._losses cimport LossParams, check_targets, loss_grad, output_activation
from fastnn._network cimport Net, NetSpec, check_net, layer_output


cdef int check_plain(const Net *net) except -1:
    """Raise ValueError unless every layer is a plain dense layer: these kernels do not
    implement layer normalization, dropout, or the activations whose backward pass reads Z
    (GELU, SiLU)."""
    cdef int k
    for k in range(net.n_layers):
        if net.norms[k] or net.z_off[k] != -1 or net.drop_rates[k] != 0:
            raise ValueError(f"sparse input supports plain dense layers only; layer {k} has "
                             "layer normalization, dropout or a GELU/SiLU activation: pass a "
                             "dense X")
    return 0


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
                          const Py_ssize_t *indptr, Py_ssize_t row0, Py_ssize_t n_rows,
                          const floating *W, Py_ssize_t n_out, floating *Z) noexcept nogil:
    """Z (n_rows, n_out) := X[row0:row0 + n_rows] @ W, W (n_features, n_out) row-major."""
    cdef Py_ssize_t i, p, j
    cdef floating v
    cdef floating *z
    cdef const floating *w
    for i in range(n_rows):
        z = Z + i * n_out
        memset(z, 0, n_out * sizeof(floating))
        for p in range(indptr[row0 + i], indptr[row0 + i + 1]):
            v = data[p]
            w = W + indices[p] * n_out
            for j in range(n_out):
                z[j] += v * w[j]


cdef void csr_transpose_times_dense(const floating *data, const Py_ssize_t *indices,
                                    const Py_ssize_t *indptr, Py_ssize_t n_rows,
                                    Py_ssize_t n_features, const floating *D,
                                    Py_ssize_t n_out, floating *G) noexcept nogil:
    """G (n_features, n_out) := X^T @ D, D (n_rows, n_out) row-major."""
    cdef Py_ssize_t i, p, j
    cdef floating v
    cdef floating *g
    cdef const floating *d
    memset(G, 0, n_features * n_out * sizeof(floating))
    for i in range(n_rows):
        d = D + i * n_out
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            g = G + indices[p] * n_out
            for j in range(n_out):
                g[j] += v * d[j]


cdef int sparse_net_forward(const Net *net, const floating *params, const floating *data,
                            const Py_ssize_t *indices, const Py_ssize_t *indptr,
                            Py_ssize_t row0, int n_rows, floating *acts) noexcept nogil:
    """Every layer's output for rows row0 .. row0 + n_rows of X into acts (as net_forward)."""
    cdef int k, status
    cdef floating *out = layer_output(net, acts, n_rows, 0)
    csr_times_dense(data, indices, indptr, row0, n_rows, params + net.w_off[0],
                    net.sizes[1], out)
    status = bias_act(out, params + net.b_off[0], n_rows, net.sizes[1], net.acts[0],
                      <floating> net.alphas[0])
    if status != FNN_OK:
        return status
    for k in range(1, net.n_layers):
        status = dense_forward(layer_output(net, acts, n_rows, k - 1),
                               params + net.w_off[k], params + net.b_off[k],
                               layer_output(net, acts, n_rows, k), n_rows, net.sizes[k],
                               net.sizes[k + 1], net.acts[k], <floating> net.alphas[k])
        if status != FNN_OK:
            return status
    return FNN_OK


def forward_csr_into(NetSpec spec, const floating[::1] params, const floating[::1] data,
                     const Py_ssize_t[::1] indices, const Py_ssize_t[::1] indptr,
                     floating[:, ::1] out, int loss_kind, bint link, Py_ssize_t chunk_rows):
    """out := the network's logits (or, with link, its output link) for the CSR rows.

    Rows are processed in chunks of chunk_rows, so the workspace is bounded.  Unchecked.
    """
    cdef const Net *net = &spec.net
    cdef Py_ssize_t n = out.shape[0], n_out = out.shape[1], start, rows, i, j
    check_net(spec, params.shape[0], -1, -1, n)
    check_plain(net)
    check_csr(data, indices, indptr, net.sizes[0])
    if indptr.shape[0] - 1 != n or n_out != net.sizes[net.n_layers]:
        raise ValueError(f"out has shape ({n}, {n_out}); expected ({indptr.shape[0] - 1}, "
                         f"{net.sizes[net.n_layers]})")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}; expected >= 1")
    cdef int status = FNN_OK, L = net.n_layers
    cdef floating *acts
    cdef floating *last
    cdef const floating *empty_data = NULL if data.shape[0] == 0 else &data[0]
    cdef const Py_ssize_t *empty_idx = NULL if indices.shape[0] == 0 else &indices[0]
    acts = <floating *> malloc(<size_t> chunk_rows * net.act_width * sizeof(floating))
    if acts == NULL:
        raise MemoryError("could not allocate the forward workspace")
    try:
        with nogil:
            start = 0
            while start < n:
                rows = min(chunk_rows, n - start)
                status = sparse_net_forward(net, &params[0], empty_data, empty_idx,
                                            &indptr[0], start, <int> rows, acts)
                if status != FNN_OK:
                    break
                last = layer_output(net, acts, <int> rows, L - 1)
                for i in range(rows):
                    for j in range(n_out):
                        out[start + i, j] = last[i * n_out + j]
                if link:
                    output_activation(loss_kind, &out[start, 0], <int> rows, <int> n_out)
                start += rows
    finally:
        free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled sparse forward pass failed with status {status}")


def loss_grad_csr_into(NetSpec spec, const floating[::1] params, floating[::1] grads,
                       const floating[::1] data, const Py_ssize_t[::1] indices,
                       const Py_ssize_t[::1] indptr, Py_ssize_t n_features, int loss_kind,
                       int full, double sigma_scalar, const floating[:, ::1] Y,
                       const Py_ssize_t[::1] labels, const floating[::1] sample_weight,
                       const floating[::1] sigma, double grad_scale):
    """Return sum_i w_i l_i over the CSR rows and fill grads with grad_scale times its gradient
    (as _network.loss_grad_into does for a dense X).  Unchecked."""
    cdef const Net *net = &spec.net
    cdef LossParams lp
    check_net(spec, params.shape[0], grads.shape[0], n_features, indptr.shape[0] - 1)
    check_plain(net)
    check_csr(data, indices, indptr, n_features)
    check_targets(loss_kind, indptr.shape[0] - 1, net.sizes[net.n_layers], Y, labels,
                  sample_weight, sigma)
    cdef int n = <int> (indptr.shape[0] - 1), status = FNN_OK, k, L = net.n_layers
    cdef double total = 0.0
    cdef floating *acts
    cdef floating *d0
    cdef floating *d1
    cdef floating *swap
    cdef const floating *Y_ptr = NULL if Y is None else &Y[0, 0]
    cdef const Py_ssize_t *lab_ptr = NULL if labels is None else &labels[0]
    cdef const floating *sw_ptr = NULL if sample_weight is None else &sample_weight[0]
    cdef const floating *sig_ptr = NULL if sigma is None else &sigma[0]
    cdef const floating *data_ptr = NULL if data.shape[0] == 0 else &data[0]
    cdef const Py_ssize_t *idx_ptr = NULL if indices.shape[0] == 0 else &indices[0]
    lp.kind = loss_kind
    lp.full = full
    lp.sigma = sigma_scalar
    cdef size_t act_bytes = <size_t> n * net.act_width * sizeof(floating)
    cdef size_t delta_bytes = <size_t> n * net.max_width * sizeof(floating)
    acts = <floating *> malloc(act_bytes + 2 * delta_bytes)
    if acts == NULL:
        raise MemoryError(f"could not allocate the workspace ({act_bytes + 2 * delta_bytes} "
                          "bytes)")
    d0 = acts + <size_t> n * net.act_width
    d1 = d0 + <size_t> n * net.max_width
    try:
        with nogil:
            status = sparse_net_forward(net, &params[0], data_ptr, idx_ptr, &indptr[0], 0, n,
                                        acts)
            if status == FNN_OK:
                total = loss_grad(&lp, layer_output(net, acts, n, L - 1), n, net.sizes[L],
                                  Y_ptr, lab_ptr, sw_ptr, sig_ptr, grad_scale, d0)
                # dense layers L-1 .. 1: d0 holds dl/dA_k on entry, dl/dA_{k-1} goes to d1
                for k in range(L - 1, 0, -1):
                    status = dense_backward(layer_output(net, acts, n, k - 1),
                                            &params[0] + net.w_off[k],
                                            layer_output(net, acts, n, k), d0, d0,
                                            &grads[0] + net.w_off[k], &grads[0] + net.b_off[k],
                                            d1, n, net.sizes[k], net.sizes[k + 1], net.acts[k],
                                            <floating> net.alphas[k])
                    if status != FNN_OK:
                        break
                    swap = d0
                    d0 = d1
                    d1 = swap
            if status == FNN_OK:
                # the first layer: D_1 = dl/dA_1 * act'(A_1) (and db_1), then dW_1 = X^T D_1
                status = act_backward(d0, layer_output(net, acts, n, 0), d0,
                                      &grads[0] + net.b_off[0], n, net.sizes[1], net.acts[0],
                                      <floating> net.alphas[0])
                if status == FNN_OK:
                    csr_transpose_times_dense(data_ptr, idx_ptr, &indptr[0], n, n_features, d0,
                                              net.sizes[1], &grads[0] + net.w_off[0])
    finally:
        free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled sparse backward pass failed with status {status}")
    return total
