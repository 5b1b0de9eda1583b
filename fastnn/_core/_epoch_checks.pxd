# The checks of a compiled epoch's buffers (sizes, overlaps), for fastnn/_core/_epoch.pyx.
# Implementation: _epoch_checks.pyx.
from fastnn._core._network cimport NetSpec

cdef int check_epoch_buffers(NetSpec spec, Py_ssize_t n_params, Py_ssize_t n_grads,
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
# ValueError unless every buffer of an epoch fits the network and the batch

cdef int check_disjoint(list calls) except -1
# ValueError when memory a call writes overlaps another buffer of any call; calls: each
# call's (written, read) lists of (first byte, one past the last, name)

cdef int check_apart(list spans, const char *p, Py_ssize_t nbytes, str name) except -1
# ValueError when nbytes at p overlap any of spans (its own span excepted)

cdef inline void span(list spans, const void *start, Py_ssize_t nbytes, str name):
    """Append (first byte, one past the last, name) of a buffer the epoch points into, unless
    it is absent or empty (a NULL pointer or no bytes)."""
    if start != NULL and nbytes > 0:
        spans.append((<Py_ssize_t> start, <Py_ssize_t> start + nbytes, name))


