# fastnn's own worker threads (src_c/fastnn_pool.h, started once, in fastnn._core._pool only).
#     parallel_for(n_threads, n_tasks, fn, ctx)   runs fn(ctx, t) for t in 0 .. n_tasks-1
# Tasks write disjoint outputs, so results never depend on n_threads; a nested call or a call
# while another thread's job holds the pool runs serially on the caller.  Workers run with the
# caller's floating-point mode (flush to zero).
ctypedef void (*task_fn)(void *ctx, long task) noexcept nogil

cdef int parallel_for(int n_threads, long n_tasks, task_fn fn, void *ctx) noexcept nogil
# Returns the number of threads that took part.
