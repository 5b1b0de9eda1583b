# Declarations of src_c/fastnn_fpmode.h: flush subnormals to zero around a stretch of compiled
# work on the calling thread, and put the caller's mode back afterwards.
#     fp = fnn_fpmode_enter(flush)       # before the nogil work
#     ...                                # no return, raise or goto in between
#     fnn_fpmode_leave(flush, fp)        # on every way out
cdef extern from "fastnn_fpmode.h" nogil:
    int fnn_fpmode_supported() noexcept
    unsigned long long fnn_fpmode_writable_bits() noexcept
    unsigned long long fnn_fpmode_get() noexcept
    void fnn_fpmode_set(unsigned long long mode) noexcept
    unsigned long long fnn_fpmode_enter(int flush) noexcept
    void fnn_fpmode_leave(int flush, unsigned long long saved) noexcept
