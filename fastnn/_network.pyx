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

from fastnn._fpmode cimport (fnn_fpmode_enter, fnn_fpmode_get, fnn_fpmode_leave,
                             fnn_fpmode_set, fnn_fpmode_supported, fnn_fpmode_writable_bits)
from fastnn._kernels cimport FNN_OK, FNN_N_ACTIVATIONS
from fastnn._layers cimport dense_forward, dense_backward, dense_backward_sgd
from fastnn._losses cimport (LossParams, N_LOSSES, check_targets, loss_grad,
                             output_activation)

import numpy as np


cdef int net_forward(const Net *net, const floating *params, const floating *X, int n_rows,
                     floating *acts) noexcept nogil:
    cdef int k, status
    cdef const floating *inp = X
    cdef floating *out
    for k in range(net.n_layers):
        out = layer_output(net, acts, n_rows, k)
        status = dense_forward(inp, params + net.w_off[k], params + net.b_off[k], out, n_rows,
                               net.sizes[k], net.sizes[k + 1], net.acts[k],
                               <floating> net.alphas[k])
        if status != FNN_OK:
            return status
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
    cdef int k, status = FNN_OK
    cdef floating *swap
    cdef const floating *inp
    for k in range(net.n_layers - 1, -1, -1):
        inp = X if k == 0 else layer_output(net, acts, n_rows, k - 1)
        # delta0 holds dl/dA_k on entry and becomes dl/dZ_k in place; dl/dA_{k-1} goes to
        # delta1 (skipped for the first layer: nobody needs dl/dX)
        if sgd_lr > 0:
            status = dense_backward_sgd(inp, params + net.w_off[k], params + net.b_off[k],
                                        layer_output(net, acts, n_rows, k), delta0, delta0,
                                        grads + net.b_off[k], delta1 if k > 0 else NULL,
                                        n_rows, net.sizes[k], net.sizes[k + 1], net.acts[k],
                                        <floating> net.alphas[k], <floating> sgd_lr,
                                        <floating> sgd_decay)
        else:
            status = dense_backward(inp, params + net.w_off[k],
                                    layer_output(net, acts, n_rows, k), delta0, delta0,
                                    grads + net.w_off[k], grads + net.b_off[k],
                                    delta1 if k > 0 else NULL, n_rows, net.sizes[k],
                                    net.sizes[k + 1], net.acts[k], <floating> net.alphas[k])
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
    """Owns the index arrays behind a `Net` struct (built once per model by fastnn.model)."""

    def __cinit__(self, sizes, acts, alphas):
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
        w_off = np.empty(n_layers, dtype=np.intp)
        b_off = np.empty(n_layers, dtype=np.intp)
        a_off = np.empty(n_layers, dtype=np.intp)
        pos = 0
        width = 0
        for k in range(n_layers):
            w_off[k] = pos
            pos += int(sizes[k]) * int(sizes[k + 1])
            b_off[k] = pos
            pos += int(sizes[k + 1])
            a_off[k] = width
            width += int(sizes[k + 1])
        self._w_off, self._b_off, self._a_off = w_off, b_off, a_off
        self.n_params = pos
        self.net.n_layers = n_layers
        self.net.act_width = width
        self.net.max_width = int(sizes[1:].max())
        self._refresh()

    def _refresh(self):
        cdef int[::1] s = self._sizes, a = self._acts
        cdef double[::1] al = self._alphas
        cdef Py_ssize_t[::1] w = self._w_off, b = self._b_off, ao = self._a_off
        self.net.sizes = &s[0]
        self.net.acts = &a[0]
        self.net.alphas = &al[0]
        self.net.w_off = &w[0]
        self.net.b_off = &b[0]
        self.net.a_off = &ao[0]

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


def forward_into(NetSpec spec, const floating[::1] params, const floating[:, ::1] X,
                 floating[:, ::1] out, int loss_kind, Py_ssize_t chunk_rows,
                 bint flush_denormals=True):
    """out (n, n_L) := output link of the logits, computed chunk_rows samples at a time.

    The workspace is allocated here, per call, so concurrent calls on one model share no
    mutable state.  Values are fastnn.model's to validate; sizes are checked here.
    flush_denormals: flush subnormals to zero on this thread during the call (fastnn.fpmode).
    """
    cdef unsigned long long fp_saved
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1], n_out = out.shape[1]
    cdef Py_ssize_t start, rows, i, j
    cdef int status = FNN_OK, L = spec.net.n_layers
    cdef floating *acts
    cdef floating *last
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
                status = net_forward(&spec.net, &params[0], &X[start, 0], <int> rows, acts)
                if status != FNN_OK:
                    break
                last = layer_output(&spec.net, acts, <int> rows, L - 1)
                for i in range(rows):
                    for j in range(n_out):
                        out[start + i, j] = last[i * n_out + j]
                output_activation(loss_kind, &out[start, 0], <int> rows, <int> n_out)
                start += rows
            fnn_fpmode_leave(flush_denormals, fp_saved)
    finally:
        free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled forward pass failed with status {status}")


def loss_grad_into(NetSpec spec, const floating[::1] params, floating[::1] grads,
                   const floating[:, ::1] X, int loss_kind, int full, double sigma_scalar,
                   const floating[:, ::1] Y, const Py_ssize_t[::1] labels,
                   const floating[::1] sample_weight, const floating[::1] sigma,
                   double grad_scale, bint flush_denormals=True):
    """Return sum_i w_i l_i and fill grads with grad_scale times its gradient.

    The workspace covers all rows of X at once and is freed on return.  Values are
    fastnn.model's to validate; sizes are checked here.  flush_denormals: flush subnormals to
    zero on this thread during the call (fastnn.fpmode).
    """
    cdef unsigned long long fp_saved
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
    # (in Python integers: the C product could overflow)
    if ((<object> X.shape[0]) * ((<object> spec.net.act_width) + 2 * spec.net.max_width)
            * (<object> sizeof(floating)) > PY_SSIZE_T_MAX):
        raise MemoryError(f"the workspace for {X.shape[0]} rows would exceed the address space")
    cdef size_t act_bytes = <size_t> n * spec.net.act_width * sizeof(floating)
    cdef size_t delta_bytes = <size_t> n * spec.net.max_width * sizeof(floating)
    acts = <floating *> malloc(act_bytes + 2 * delta_bytes)
    if acts == NULL:
        raise MemoryError(f"could not allocate the workspace ({act_bytes + 2 * delta_bytes} "
                          "bytes)")
    d0 = acts + <size_t> n * spec.net.act_width
    d1 = d0 + <size_t> n * spec.net.max_width
    try:
        with nogil:
            fp_saved = fnn_fpmode_enter(flush_denormals)
            total = net_loss_grad(&spec.net, &params[0], &grads[0], &X[0, 0], n, &lp, Y_ptr,
                                  lab_ptr, sw_ptr, sig_ptr, grad_scale, acts, d0, d1, &status)
            fnn_fpmode_leave(flush_denormals, fp_saved)
    finally:
        free(acts)
    if status != FNN_OK:
        raise ValueError(f"compiled backward pass failed with status {status}")
    return total


# ---------------------------------------------------------------- floating-point mode (tests)

def _fpmode_supported():
    """Whether this build can flush subnormals (x86-64 MXCSR, aarch64 FPCR); see fastnn.fpmode."""
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
