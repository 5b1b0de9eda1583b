# The compiled training step and optimizer update, for other compiled modules (bench/_bench.pyx).
# Implementation: _sgd.pyx.
from cython cimport floating

from fastnn._core._losses cimport LossParams
from fastnn._core._network cimport Net, NetSpec


cdef struct Optimizer:
    int kind                # OPT_SGD (0), OPT_ADAM (1) or OPT_ADAMW (2)
    double lr
    double momentum
    int nesterov
    double weight_decay     # applied to weight matrices only, not biases
    double clip_norm        # <= 0: no clipping
    double beta1
    double beta2
    double eps
    long long t             # Adam(W): steps taken before this one


cdef void apply_update(const Net *net, const Optimizer *opt, floating *params,
                       const floating *grads, floating *s1, floating *s2,
                       Py_ssize_t n_params, double grad_scale) noexcept nogil


cdef double train_step(const Net *net, Optimizer *opt, floating *params, floating *grads,
                       floating *s1, floating *s2, Py_ssize_t n_params, const floating *X,
                       int rows, const LossParams *lp, const floating *Y,
                       const Py_ssize_t *labels, const floating *sample_weight,
                       const floating *sigma, double batch_weight, floating *acts,
                       floating *delta0, floating *delta1, int *status) noexcept nogil


# for the sparse epoch loop (fastnn/_core/_sparse.pyx), which shares the update and the checks
cdef double batch_weight_sum(const floating *weights, Py_ssize_t rows) noexcept nogil

cdef bint _record_step(int kstatus, double batch_loss, double batch_weight, Py_ssize_t step,
                       double *loss_sum, double *weight_sum, int *status,
                       Py_ssize_t *failed_step) noexcept nogil
# after a step of positive weight: kernel error, then non-finite loss (status, failed_step,
# True: stop), else accumulate the loss and weight sums (False)

cdef Optimizer _optimizer(int kind, double lr, double momentum, bint nesterov,
                         double weight_decay, double clip_norm, double beta1, double beta2,
                         double eps, long long t)

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
                              bint distributed) except -1
