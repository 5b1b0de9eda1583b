# The optimizer update and one dense training step, for the epoch loop (_loop.pyx) and other
# compiled modules (bench/_bench.pyx).  Implementation: _sgd.pyx.
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


cdef Optimizer _optimizer(int kind, double lr, double momentum, bint nesterov,
                         double weight_decay, double clip_norm, double beta1, double beta2,
                         double eps, long long t)

cdef int _check_optimizer(int kind, double momentum, Py_ssize_t n_params, Py_ssize_t n_s1,
                          Py_ssize_t n_s2, long long t) except -1
