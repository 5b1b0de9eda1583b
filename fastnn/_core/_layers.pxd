from cython cimport floating


cdef int dense_forward(const floating *X, const floating *W, const floating *b, floating *A,
                       int n_samples, int n_in, int n_out, int act,
                       floating alpha) noexcept nogil

cdef int dense_forward_keep(const floating *X, const floating *W, const floating *b,
                            floating *Z, floating *A, int n_samples, int n_in, int n_out,
                            int act, floating alpha) noexcept nogil

cdef int dense_backward(const floating *X, const floating *W, const floating *A,
                        const floating *dA, floating *D, floating *dW, floating *db,
                        floating *dX, int n_samples, int n_in, int n_out, int act,
                        floating alpha) noexcept nogil
