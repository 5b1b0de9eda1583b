"""Derivatives of a network with respect to its INPUTS: the backward pass run down to X.

The training backward pass (_network.pyx) stops at the first layer, since nobody needs dl/dX
to train; here we need nothing else, so the weight gradients are skipped instead.  For a
chunk of rows, one forward pass stores every layer's output; then each seed dl/dZ_L
(n_rows, n_L) is pulled back layer by layer,

    D_k := dA_k * act_k'(A_k),     dA_{k-1} := D_k @ W_k^T,

until dA_0 = dl/dX.  A seed is either the loss gradient (fused with the output link, as in
training) or, for the Jacobian, one unit vector per output column (of the logits, or of the
linked output, whose derivative is applied to the seed first).  The Jacobian's seeds are
stacked into one batch of n_L blocks, so each layer costs one matrix product for all output
columns (the element-wise derivative is applied block by block against the stored A_k): one
forward pass and the work of n_L backward passes per chunk, in a few large BLAS calls,
without the GIL.

Every function allocates its workspace once per call (so concurrent calls share nothing) and
processes X in chunks of rows, so memory is bounded whatever n_samples is.
Sizes, shapes and codes are checked here (a private call with a wrong out, first/stop or X
raised nothing and wrote out of bounds); the values are fastnn.nn.model's to validate.
"""
from cython cimport floating
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from fastnn._core._blas cimport gemm_rowmajor
from fastnn._core._fpmode cimport fnn_fpmode_enter, fnn_fpmode_leave
from fastnn._core._kernels cimport FNN_OK, FNN_IDENTITY, act_backward
from fastnn._core._layernorm cimport layernorm_act_backward
from fastnn._core._losses cimport LossParams, LOSS_GAUSSIAN_LEARNED, output_activation
from fastnn._core._network cimport (Net, NetSpec, net_forward, net_forward_loss, layer_output,
                              layer_kept, check_net, with_threads)
from fastnn._core._losses cimport N_LOSSES, check_targets
from libc.limits cimport INT_MAX

# seed kinds of jacobian_into (keep in step with fastnn/nn/model.py)
cdef enum:
    SEED_LOGITS = 0    # d Z_L[:, j] / dX
    SEED_OUTPUT = 1    # d link(Z_L)[:, j] / dX


cdef int layer_delta(const Net *net, const floating *params, floating *acts, int n_rows,
                     int k, floating *delta, floating *scratch) noexcept nogil:
    """delta (n_rows, n_{k+1}): dl/dA_k in, dl/dZ_k out, as net_backward computes it (layer
    normalization, then the activation's derivative from what the layer kept; no dropout at
    inference).  scratch holds 3 max(n_k) values.  Returns a status."""
    cdef int status, act = net.acts[k], n_out = net.sizes[k + 1]
    if net.norms[k]:
        status = layernorm_act_backward(
            delta, acts + n_rows * net.z_off[k], acts + n_rows * net.n_off[k],
            params + net.b_off[k] + n_out, acts + n_rows * net.r_off[k], scratch + n_out,
            scratch + 2 * n_out, n_rows, n_out, act, <floating> net.alphas[k])
        if status != FNN_OK:
            return status
        act = FNN_IDENTITY
    return act_backward(delta, layer_kept(net, acts, n_rows, k), delta, scratch, n_rows, n_out,
                        act, <floating> net.alphas[k])


cdef int backward_to_input(const Net *net, const floating *params, int n_rows,
                           floating *acts, floating *delta0, floating *delta1,
                           floating *scratch, floating *dX) noexcept nogil:
    """dX (n_rows, n_0) := the pull-back of delta0 = dl/dZ_L through every layer.

    delta0 and delta1 each hold n_rows * max(n_k) values and are overwritten; scratch holds
    3 max(n_k) values (bias and layer-norm gradients, unused here).  Returns a status.
    """
    cdef int k, status
    cdef int L = net.n_layers
    cdef floating *swap
    cdef floating *target
    for k in range(L - 1, -1, -1):
        # delta0 holds dl/dA_k on entry; D_k overwrites it in place
        status = layer_delta(net, params, acts, n_rows, k, delta0, scratch)
        if status != FNN_OK:
            return status
        target = dX if k == 0 else delta1
        # dA_{k-1} (n_rows, n_k) := D_k (n_rows, n_{k+1}) @ W_k^T
        gemm_rowmajor(False, True, n_rows, net.sizes[k], net.sizes[k + 1], <floating> 1,
                      delta0, net.sizes[k + 1], params + net.w_off[k], net.sizes[k + 1],
                      <floating> 0, target, net.sizes[k])
        swap = delta0
        delta0 = delta1
        delta1 = swap
    return FNN_OK


cdef size_t _delta_width(const Net *net) noexcept nogil:
    return <size_t> (net.max_width if net.max_width > net.sizes[0] else net.sizes[0])


def loss_input_grad_into(NetSpec spec, const floating[::1] params, const floating[:, ::1] X,
                         int loss_kind, int full, double sigma_scalar,
                         const floating[:, ::1] Y, const Py_ssize_t[::1] labels,
                         const floating[::1] sample_weight, const floating[::1] sigma,
                         double grad_scale, floating[:, ::1] out, Py_ssize_t chunk_rows,
                         bint flush_denormals=True, int n_threads=1):
    """out (n, n_0) := grad_scale * w_i * dl_i/dx_i for every sample; returns sum_i w_i l_i.

    Row i depends on sample i only (the samples of a network are independent), so out holds
    the per-sample loss gradients; the gradient of the (weighted) mean loss w.r.t. X is
    out / sum(w) with grad_scale = 1.  flush_denormals: flush subnormals to zero on this
    thread during the call, as every compiled entry point does (fastnn.runtime.fpmode).
    n_threads: threads of fastnn's pool taking the forward pass's fixed tiles, as in
    _network.forward_into.
    """
    cdef Net local = with_threads(spec, n_threads)
    cdef const Net *net = &local
    cdef LossParams lp
    cdef Py_ssize_t n = X.shape[0], start, rows
    cdef int status = FNN_OK
    cdef double total = 0.0
    cdef size_t dw = _delta_width(net)
    cdef floating *acts
    cdef floating *d0
    cdef floating *d1
    cdef floating *scratch
    cdef Py_ssize_t n_targets = 0 if Y is None else Y.shape[1]
    cdef unsigned long long fp_saved
    lp.kind = loss_kind
    lp.full = full
    lp.sigma = sigma_scalar
    check_net(spec, params.shape[0], -1, X.shape[1], n)
    if out.shape[0] != n or out.shape[1] != net.sizes[0]:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}); expected "
                         f"({n}, {net.sizes[0]})")
    check_targets(loss_kind, n, net.sizes[net.n_layers], Y, labels, sample_weight, sigma)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}; expected >= 1")
    # the workspace stays below 2**31 elements per chunk (chunks are int-sized for the kernels)
    chunk_rows = max(1, min(chunk_rows, n,
                            <Py_ssize_t> (INT_MAX // (net.act_width + 2 * dw))))
    cdef size_t n_values = <size_t> chunk_rows * (net.act_width + 2 * dw) + 3 * dw
    acts = <floating *> malloc(n_values * sizeof(floating))
    if acts == NULL:
        raise MemoryError(f"could not allocate the input-gradient workspace "
                          f"({n_values * sizeof(floating)} bytes)")
    d0 = acts + <size_t> chunk_rows * net.act_width
    d1 = d0 + <size_t> chunk_rows * dw
    scratch = d1 + <size_t> chunk_rows * dw
    try:
        with nogil:
            fp_saved = fnn_fpmode_enter(flush_denormals)
            start = 0
            while start < n:
                rows = min(chunk_rows, n - start)
                total += net_forward_loss(
                    net, &params[0], &X[start, 0], <int> rows, &lp,
                    NULL if Y is None else &Y[0, 0] + start * n_targets,
                    NULL if labels is None else &labels[0] + start,
                    NULL if sample_weight is None else &sample_weight[0] + start,
                    NULL if sigma is None else &sigma[0] + start,
                    grad_scale, acts, d0, &status)
                if status != FNN_OK:
                    break
                status = backward_to_input(net, &params[0], <int> rows, acts, d0, d1,
                                           scratch, &out[start, 0])
                if status != FNN_OK:
                    break
                start += rows
            fnn_fpmode_leave(flush_denormals, fp_saved)
    finally:
        free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled input-gradient pass failed with status {status}")
    return total


cdef void _seed(int seed_kind, int link_kind, const floating *P, int rows, int n_out, int j,
                floating *delta) noexcept nogil:
    """delta (rows, n_out) := d(output column j)/dZ_L per row, for the chosen output.

    P is the linked output (the output link applied to Z), used by the link derivatives:
    sigmoid p(1 - p), exp p, softmax p_j (e_j - p), learned Gaussian: identity for the mean
    columns and sigma / 2 for the columns sigma = exp(s / 2).
    """
    cdef int i, m
    cdef floating p
    memset(delta, 0, <size_t> rows * n_out * sizeof(floating))
    for i in range(rows):
        p = P[i * n_out + j]
        if seed_kind == SEED_LOGITS or link_kind == 0:
            delta[i * n_out + j] = 1
        elif link_kind == 3:    # sigmoid
            delta[i * n_out + j] = p * (1 - p)
        elif link_kind == 6:    # exp
            delta[i * n_out + j] = p
        elif link_kind == 4:    # softmax: d p_j / d z_m = p_j (delta_jm - p_m)
            for m in range(n_out):
                delta[i * n_out + m] = -p * P[i * n_out + m]
            delta[i * n_out + j] += p
        elif link_kind == LOSS_GAUSSIAN_LEARNED:
            delta[i * n_out + j] = 1 if j < n_out // 2 else p / 2
        else:                   # identity-linked losses (MSE, fixed-sigma Gaussian)
            delta[i * n_out + j] = 1


def jacobian_into(NetSpec spec, const floating[::1] params, const floating[:, ::1] X,
                  int seed_kind, int link_kind, Py_ssize_t first, Py_ssize_t stop,
                  floating[:, :, ::1] out, Py_ssize_t stacked_rows,
                  bint flush_denormals=True, int n_threads=1):
    """out (n, stop - first, n_0) := d y_j / dX for the output columns j in [first, stop).

    y = Z_L (seed_kind SEED_LOGITS) or the output link of Z_L (SEED_OUTPUT, link_kind as in
    fastnn/_core/_losses.pxd, restricted to the links: 0 identity, 2 learned Gaussian, 3 sigmoid,
    4 softmax, 6 exp).  Per chunk of R rows: one forward pass, then the stop - first seeds are
    stacked into one (stop - first) R-row batch that is pulled back with ONE product per
    layer (the element-wise activation derivative is applied block by block, each block
    against the chunk's stored outputs).  R = stacked_rows // (stop - first), at least 1.
    flush_denormals, n_threads: as in loss_input_grad_into.
    """
    cdef Net local = with_threads(spec, n_threads)
    cdef const Net *net = &local
    cdef int L = net.n_layers, n_out = net.sizes[net.n_layers], n_in = net.sizes[0]
    cdef int n_cols
    cdef Py_ssize_t n = X.shape[0], start, rows, i, c, chunk_rows
    cdef int j, k, b, status = FNN_OK
    cdef size_t dw = _delta_width(net), stride
    cdef floating *acts
    cdef floating *P
    cdef floating *d0
    cdef floating *d1
    cdef floating *swap
    cdef floating *scratch
    cdef const floating *Z
    cdef unsigned long long fp_saved
    check_net(spec, params.shape[0], -1, X.shape[1], n)
    if not 0 <= first < stop <= n_out:
        raise ValueError(f"output columns first={first}, stop={stop}; expected "
                         f"0 <= first < stop <= {n_out}")
    n_cols = <int> (stop - first)
    if out.shape[0] != n or out.shape[1] != n_cols or out.shape[2] != n_in:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}, {out.shape[2]}); "
                         f"expected ({n}, {n_cols}, {n_in})")
    if seed_kind not in (SEED_LOGITS, SEED_OUTPUT):
        raise ValueError(f"seed_kind={seed_kind}; expected {SEED_LOGITS} or {SEED_OUTPUT}")
    if not 0 <= link_kind < N_LOSSES:
        raise ValueError(f"unknown link code {link_kind}")
    if stacked_rows < 1:
        raise ValueError(f"stacked_rows={stacked_rows}; expected >= 1")
    # the workspace (and the stacked batch, n_cols * rows rows of up to dw columns, an int
    # for BLAS) stays below 2**31 elements per chunk
    chunk_rows = max(1, min(stacked_rows // n_cols, n,
                            <Py_ssize_t> (INT_MAX // (net.act_width + n_out
                                                   + 2 * dw * <size_t> n_cols))))
    cdef size_t n_values = (<size_t> chunk_rows * (net.act_width + n_out
                                                   + 2 * dw * <size_t> n_cols) + 3 * dw)
    acts = <floating *> malloc(n_values * sizeof(floating))
    if acts == NULL:
        raise MemoryError(f"could not allocate the Jacobian workspace "
                          f"({n_values * sizeof(floating)} bytes)")
    P = acts + <size_t> chunk_rows * net.act_width
    d0 = P + <size_t> chunk_rows * n_out
    d1 = d0 + <size_t> chunk_rows * dw * n_cols
    scratch = d1 + <size_t> chunk_rows * dw * n_cols
    try:
        with nogil:
            fp_saved = fnn_fpmode_enter(flush_denormals)
            start = 0
            while start < n:
                rows = min(chunk_rows, n - start)
                status = net_forward(net, &params[0], &X[start, 0], <int> rows, acts)
                if status != FNN_OK:
                    break
                Z = layer_output(net, acts, <int> rows, L - 1)
                for i in range(rows * n_out):
                    P[i] = Z[i]
                if seed_kind == SEED_OUTPUT:
                    output_activation(link_kind, P, <int> rows, n_out)
                # block b of the stacked batch (rows b R .. b R + rows - 1) seeds column
                # first + b
                for b in range(n_cols):
                    _seed(seed_kind, link_kind, P, <int> rows, n_out, <int> first + b,
                          d0 + <size_t> b * rows * n_out)
                for k in range(L - 1, -1, -1):
                    stride = <size_t> rows * net.sizes[k + 1]
                    for b in range(n_cols):
                        status = layer_delta(net, &params[0], acts, <int> rows, k,
                                             d0 + b * stride, scratch)
                        if status != FNN_OK:
                            break
                    if status != FNN_OK:
                        break
                    # dA_{k-1} (n_cols rows, n_k) := D_k (n_cols rows, n_{k+1}) @ W_k^T
                    gemm_rowmajor(False, True, n_cols * <int> rows, net.sizes[k],
                                  net.sizes[k + 1], <floating> 1, d0, net.sizes[k + 1],
                                  &params[0] + net.w_off[k], net.sizes[k + 1], <floating> 0,
                                  d1, net.sizes[k])
                    swap = d0
                    d0 = d1
                    d1 = swap
                if status != FNN_OK:
                    break
                # d0 now holds dX, block b = column first + b
                for b in range(n_cols):
                    for i in range(rows):
                        for c in range(n_in):
                            out[start + i, b, c] = d0[(<size_t> b * rows + i) * n_in + c]
                start += rows
            fnn_fpmode_leave(flush_denormals, fp_saved)
    finally:
        # d0/d1 were swapped L times: the allocation starts at acts either way
        free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled Jacobian pass failed with status {status}")
