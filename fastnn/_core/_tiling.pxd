# The fixed decomposition of the network's products and passes into tasks of fastnn's pool,
# and the one choice of a training product's kernel.  Implementation: _tiling.pyx.
from cython cimport floating

from fastnn._core._dropout cimport DropoutCtx

cdef enum:
    COL_UNIT = 16              # column tiles are multiples of the kernels' vector width
    ROW_UNIT = 8               # row tiles: multiples of the kernels' row unroll
    PASS_MIN_ELEMS = 16384     # an element-wise task covers at least this many entries
    MAX_TILES = 64             # element-wise tasks per pass at most

cdef enum:                     # the element-wise passes (run_pass's kind)
    PASS_BIAS_ACT = 0
    PASS_BIAS_ACT_KEEP = 1
    PASS_ACT_BACKWARD = 2
    PASS_DROPOUT = 3
    PASS_LN_FORWARD = 4


cdef void tiled_gemm(int n_threads, bint trans_a, bint trans_b, int m, int n, int k,
                     floating alpha, const floating *A, int lda, const floating *B, int ldb,
                     floating beta, floating *C, int ldc) noexcept nogil
# C := alpha op(A) op(B) + beta C over fixed tiles of C (a function of (m, n, k) only), on up
# to n_threads threads of fastnn's pool, each tile by the kernel _product_kernel chose for
# the whole product (fastnn's fixed-order or packed kernel, or OpenBLAS); k is never split
# across tiles, and no kernel's sums depend on where a tile starts, so every element of C
# gets the same bits whatever n_threads is.

cdef bint fused_forward(int n_threads, int m, int n, int k, const floating *X,
                        const floating *W, floating *Z, const floating *b, int act,
                        floating alpha, bint fixed) noexcept nogil
# Z := act(X W + b) in one pass (fastnn's fixed-order product with the bias and an identity,
# ReLU or leaky ReLU applied in its store), when the product is small enough to be one
# fixed-order tile, or at any size when `fixed` (prediction, whose products are all
# fixed-order); the bits of the product then run_pass(PASS_BIAS_ACT).  False: not done.

cdef double thread_min_flops() noexcept nogil
# FLOPs a thread must get before a product or a prediction chunk takes one more thread.

cdef int run_pass(int n_threads, int kind, int rows, int cols, int act, floating alpha,
                  floating *Z, const floating *b, floating *A,
                  const floating *K) noexcept nogil
# bias_act, bias_act_keep (row blocks) or act_backward (column blocks) on fixed blocks.
# Returns FNN_OK or FNN_EBADACT (checked on an empty block before any task runs).

cdef void run_dropout(int n_threads, floating *dst, const floating *src, int rows, int cols,
                      const DropoutCtx *drop, int layer, double rate) noexcept nogil
# dropout over fixed row blocks (a row's mask depends on its sample, not its block).

cdef int run_layernorm(int n_threads, floating *Z, const floating *b, const floating *gamma,
                       const floating *beta, floating *Y, floating *rstd, floating *A,
                       int rows, int cols, int act, floating alpha) noexcept nogil
# layernorm_act_forward over fixed row blocks (each row is normalized on its own).
