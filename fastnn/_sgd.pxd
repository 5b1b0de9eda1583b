# The compiled training step and optimizer update, for other compiled modules (fastnn._bench).
# Implementation: _sgd.pyx.
from cython cimport floating

from fastnn._losses cimport LossParams
from fastnn._network cimport Net


cdef struct Optimizer:
    int kind                # OPT_SGD (0) or OPT_ADAM (1)
    double lr
    double momentum
    int nesterov
    double weight_decay     # applied to weight matrices only, not biases
    double clip_norm        # <= 0: no clipping
    double beta1
    double beta2
    double eps
    long long t             # Adam: steps taken before this one


cdef void apply_update(const Net *net, const Optimizer *opt, floating *params,
                       const floating *grads, floating *s1, floating *s2,
                       Py_ssize_t n_params, double grad_scale) noexcept nogil


cdef double train_step(const Net *net, Optimizer *opt, floating *params, floating *grads,
                       floating *s1, floating *s2, Py_ssize_t n_params, const floating *X,
                       int rows, const LossParams *lp, const floating *Y,
                       const Py_ssize_t *labels, const floating *sample_weight,
                       const floating *sigma, double batch_weight, floating *acts,
                       floating *delta0, floating *delta1, int *status) noexcept nogil
