# Declarations of src_c/fastnn_layernorm.h with fused-type dispatchers (like _kernels.pxd).
from cython cimport floating

cdef extern from "fastnn_layernorm.h" nogil:
    void fnn_s_layernorm_forward(float *Z, const float *b, const float *gamma,
                                 const float *beta, float *Y, float *rstd, Py_ssize_t rows,
                                 Py_ssize_t cols) noexcept
    void fnn_d_layernorm_forward(double *Z, const double *b, const double *gamma,
                                 const double *beta, double *Y, double *rstd, Py_ssize_t rows,
                                 Py_ssize_t cols) noexcept
    int fnn_s_act_into(const float *Y, float *A, Py_ssize_t rows, Py_ssize_t cols, int act,
                       float alpha) noexcept
    int fnn_d_act_into(const double *Y, double *A, Py_ssize_t rows, Py_ssize_t cols, int act,
                       double alpha) noexcept
    int fnn_s_act_backward_z(const float *dA, const float *K, float *D, float *db,
                             Py_ssize_t rows, Py_ssize_t cols, int act, float alpha) noexcept
    int fnn_d_act_backward_z(const double *dA, const double *K, double *D, double *db,
                             Py_ssize_t rows, Py_ssize_t cols, int act, double alpha) noexcept
    void fnn_s_layernorm_backward(float *G, const float *xhat, const float *gamma,
                                  const float *rstd, float *dgamma, Py_ssize_t rows,
                                  Py_ssize_t cols) noexcept
    void fnn_d_layernorm_backward(double *G, const double *xhat, const double *gamma,
                                  const double *rstd, double *dgamma, Py_ssize_t rows,
                                  Py_ssize_t cols) noexcept


cdef inline int layernorm_act_forward(floating *Z, const floating *b, const floating *gamma,
                                      const floating *beta, floating *Y, floating *rstd,
                                      floating *A, Py_ssize_t rows, Py_ssize_t cols, int act,
                                      floating alpha) noexcept nogil:
    """Z (x W in, xhat out), Y = gamma xhat + beta, rstd, A = act(Y).  A status."""
    if floating is float:
        fnn_s_layernorm_forward(Z, b, gamma, beta, Y, rstd, rows, cols)
        return fnn_s_act_into(Y, A, rows, cols, act, alpha)
    else:
        fnn_d_layernorm_forward(Z, b, gamma, beta, Y, rstd, rows, cols)
        return fnn_d_act_into(Y, A, rows, cols, act, alpha)


cdef inline int layernorm_act_backward(floating *G, const floating *Y, const floating *xhat,
                                       const floating *gamma, const floating *rstd,
                                       floating *dgamma, floating *dbeta, Py_ssize_t rows,
                                       Py_ssize_t cols, int act, floating alpha) noexcept nogil:
    """G: dl/dA in, dl/dz out; dgamma, dbeta.  A status."""
    cdef int status
    if floating is float:
        status = fnn_s_act_backward_z(G, Y, G, dbeta, rows, cols, act, alpha)
        fnn_s_layernorm_backward(G, xhat, gamma, rstd, dgamma, rows, cols)
    else:
        status = fnn_d_act_backward_z(G, Y, G, dbeta, rows, cols, act, alpha)
        fnn_d_layernorm_backward(G, xhat, gamma, rstd, dgamma, rows, cols)
    return status
