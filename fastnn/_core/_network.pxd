# A whole MLP in compiled code: forward, loss + gradient, backward over one parameter vector.
from cython cimport floating

from fastnn._core._losses cimport LossParams
from fastnn._core._dropout cimport DropoutCtx
from fastnn._core._kernels cimport fnn_act_keeps_preactivation


cdef struct Net:
    int n_layers
    const int *sizes          # (n_layers + 1,) widths n_0 .. n_L
    const int *acts           # (n_layers,) activation codes; the last is FNN_IDENTITY (logits)
    const double *alphas      # (n_layers,) leaky_relu slopes
    const Py_ssize_t *w_off   # (n_layers,) offset of W_k (n_{k-1}, n_k) in the parameter vector
    const Py_ssize_t *b_off   # (n_layers,) offset of b_k (n_k,)
    const Py_ssize_t *a_off   # (n_layers,) offset of A_k in the activation workspace, per row
    const Py_ssize_t *z_off   # (n_layers,) offset of what layer k's backward pass reads when
                              # it is not A_k, or -1: Z_k for GELU/SiLU (fastnn_kernels.h
                              # says why), the output before dropout for a dropout layer
    const int *norms          # (n_layers,) 1: layer normalization of the pre-activation;
                              # its gain and shift follow b_k: [b_k | gamma_k | beta_k]
    const Py_ssize_t *n_off   # (n_layers,) offset of xhat_k (layer-normalized layers), or -1
    const Py_ssize_t *r_off   # (n_layers,) offset of 1 / std per row (idem), or -1
    const double *drop_rates  # (n_layers,) dropout rate of each layer's output (0: none)
    DropoutCtx *drop          # NULL: no dropout (inference).  Set only on a COPY of the
                              # struct, by a training loop (_epoch.prepare_epoch)
    Py_ssize_t act_width      # sum_k n_k (+ n_k of each layer keeping Z): the activation
                              # workspace holds rows * act_width
    int max_width             # max_k n_k over k >= 1: each delta buffer holds rows * max_width
    int n_threads             # threads that take the fixed tiles of every product and pass
                              # (results never depend on it); 0: the untiled sequential path
                              # from before fastnn had its own threads, kept for the tests that compare
                              # against it.  1 on the spec's own struct; callers set it on a
                              # COPY (_epoch.prepare_epoch, forward_into), as drop
    bint fixed_products       # 1: the layers' products are fastnn's own, in one fixed order
                              # per element (src_c/fastnn_gemm.h: prediction, row-independent,
                              # no BLAS); 0: BLAS over the tiles above (training).  0 on the
                              # spec's own struct; forward_into sets it on a COPY


cdef int net_forward(const Net *net, const floating *params, const floating *X, int n_rows,
                     floating *acts) noexcept nogil
# A_k for every layer into acts (row-major blocks at n_rows * a_off[k]); returns a status.

cdef double net_forward_loss(const Net *net, const floating *params, const floating *X,
                             int n_rows, const LossParams *loss, const floating *Y,
                             const Py_ssize_t *labels, const floating *sample_weight,
                             const floating *sigma, double grad_scale, floating *acts,
                             floating *delta0, int *status) noexcept nogil
# Forward, then the fused loss + output-link gradient: delta0 := grad_scale * w_i dl_i/dZ_L.
# Returns sum_i w_i l_i; *status is FNN_OK or an error code.

cdef int net_backward(const Net *net, floating *params, floating *grads, const floating *X,
                      int n_rows, floating *acts, floating *delta0, floating *delta1,
                      double sgd_lr, double sgd_decay) noexcept nogil
# Backward from delta0 (as net_forward_loss left it).  sgd_lr == 0: the gradient into grads.
# sgd_lr > 0: a plain SGD step fused into each layer's weight-gradient GEMM (params updated,
# grads holds only the bias gradients).  Returns a status.

cdef double net_loss_grad(const Net *net, const floating *params, floating *grads,
                          const floating *X, int n_rows, const LossParams *loss,
                          const floating *Y, const Py_ssize_t *labels,
                          const floating *sample_weight, const floating *sigma,
                          double grad_scale, floating *acts, floating *delta0,
                          floating *delta1, int *status) noexcept nogil
# net_forward_loss then net_backward into grads: grads receives grad_scale times the gradient
# of sum_i w_i l_i; returns sum_i w_i l_i.  *status is FNN_OK or an error code.


cdef inline floating *layer_output(const Net *net, floating *acts, int n_rows,
                                   int k) noexcept nogil:
    """A_{k+1} (0-based layer k) inside the activation workspace."""
    return acts + n_rows * net.a_off[k]


cdef inline bint dropping(const Net *net, int k) noexcept nogil:
    """Whether layer k's output goes through dropout in this pass (training only)."""
    return net.drop != NULL and net.drop_rates[k] > 0


cdef inline floating *layer_kept(const Net *net, floating *acts, int n_rows,
                                 int k) noexcept nogil:
    """What layer k's backward pass reads: Z_k (GELU/SiLU), A_k before dropout, or A_k."""
    if net.z_off[k] >= 0 and (fnn_act_keeps_preactivation(net.acts[k]) or dropping(net, k)):
        return acts + n_rows * net.z_off[k]
    return acts + n_rows * net.a_off[k]


cdef class NetSpec:
    cdef Net net
    cdef readonly Py_ssize_t n_params
    cdef object _sizes, _acts, _alphas, _w_off, _b_off, _a_off, _z_off, _drop_rates
    cdef object _norms, _n_off, _r_off


cdef Net with_threads(NetSpec spec, int n_threads) except *
# A copy of spec's struct with n_threads set (ValueError below 0): every entry point's copy.

cdef int check_net(NetSpec spec, Py_ssize_t n_params, Py_ssize_t n_grads,
                   Py_ssize_t n_inputs, Py_ssize_t n_rows) except -1
# Raise ValueError unless params (and grads, inputs, rows; -1: unchecked) fit the network.

cdef floating *loss_grad_workspace(floating[::1] workspace, Py_ssize_t n_rows,
                                   const Net *net, bint *owned) except NULL
# acts | delta0 | delta1 for n_rows rows: the caller's workspace (length checked) or malloc'ed
# (then *owned is true: the caller frees it).  Raises ValueError or MemoryError.

cdef void write_output(const Net *net, floating *acts, int rows, floating *out, bint link,
                       int loss_kind) noexcept nogil
# One prediction chunk: out (rows, n_L) := the last layer's output in acts, through the
# loss's output link when link.
