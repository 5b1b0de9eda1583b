# The sparse first layer over a CSR X, for the epoch loop (_loop.pyx) and its Python face
# (_epoch.pyx).  Implementation: _sparse.pyx.
from cython cimport floating

from fastnn._core._losses cimport LossParams
from fastnn._core._network cimport Net


cdef int check_first_layer(const Net *net) except -1
# ValueError unless the sparse kernels implement the first layer (no layer normalization)

cdef int check_csr(const floating[::1] data, const Py_ssize_t[::1] indices,
                   const Py_ssize_t[::1] indptr, Py_ssize_t n_features) except -1
# ValueError unless (data, indices, indptr) is a CSR structure the kernels can follow

cdef double sparse_loss_grad(const Net *net, const floating *params, floating *grads,
                             const floating *data, const Py_ssize_t *indices,
                             const Py_ssize_t *indptr, Py_ssize_t n_features,
                             const Py_ssize_t *rows, Py_ssize_t row0, int n_rows,
                             const LossParams *lp, const floating *Y,
                             const Py_ssize_t *labels, const floating *sample_weight,
                             const floating *sigma, double grad_scale, floating *acts,
                             floating *delta0, floating *delta1, int *status) noexcept nogil
# forward, fused loss gradient, backward for rows R of X (rows[0:n_rows], or row0 ..
# row0 + n_rows - 1 when rows is NULL); grads := grad_scale * the gradient; sum_i w_i l_i
