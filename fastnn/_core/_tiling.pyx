"""The fixed decomposition: every product and element-wise pass of the compiled network cut
into tasks of fastnn's pool by the shapes alone, and the one choice of the kernel that computes a
training product.

A task runs the same single-threaded kernel on the same block whatever the thread count is,
writes its own outputs, and no sum crosses a task, so the results are the same bits for 1, 2,
... threads; only which thread takes which task varies (fastnn._core._pool).  Used by the
network's forward and backward passes (_network.pyx) and the layers (_layers.pyx).
"""
from cython cimport floating

from fastnn._core._blas cimport gemm_rowmajor
from fastnn._core._dropout cimport DropoutCtx, dropout
from fastnn._core._gemm cimport (gemm_fixed_bias_act, gemm_fixed_ex, gemm_packed, gemm_thin,
                                 gemm_update)
from fastnn._core._kernels cimport (FNN_IDENTITY, FNN_LEAKY_RELU, FNN_OK, FNN_RELU,
                                    act_backward_ld, bias_act, bias_act_keep)
from fastnn._core._layernorm cimport layernorm_act_forward
from fastnn._core._pool cimport parallel_for


# Every product and pass below is cut into tasks whose boundaries are a function of the
# shapes only, never of the thread count: each task runs the same single-threaded BLAS call or
# kernel on the same block whatever n_threads is, writes its own outputs, and no sum crosses
# a task.  So the results are the same bits for 1, 2, ... threads; only which thread takes
# which task varies (fastnn._core._pool).  The constants were chosen from bench/threads.py
# (bench/RESULTS.md, section 11).

# (the tile units, COL_UNIT and ROW_UNIT, and the pass sizes are in _tiling.pxd)

# The GEMM tiles: C is cut into a power-of-two number of near-equal blocks (so that 2, 4, ...
# threads share them evenly): 2 once each half does at least _tile_min_flops, more only while
# each tile still does at least _tile_big_flops (at most _max_tiles), and no side shorter than
# _tile_side unless C's side is.  Every tile costs: OpenBLAS packs a tile's operands afresh
# and its kernels lose efficiency on small blocks.  Measured on network A at one thread
# (bench/RESULTS.md section 11): 16-column tiles made a step's GEMMs 1.2-3.2x slower; 4 tiles
# of A's 17-411 MFLOP products cost 5-9% over one untiled call, 2 tiles 1-5%; and with 2
# tiles A trained 3-8% faster on 2 threads than with 4.  So a product is cut in two from 2
# MFLOP, which feeds 2 cores, and in more only where each tile stays large (>= 128 MFLOP:
# A from batch 2048, or wider layers), which is what lets a product feed many cores.
# Module globals only so that bench/threads.py can measure other choices (_set_tiling);
# results depend on them, so nothing else may change them.
cdef int _tile_side = 64
cdef double _tile_min_flops = 1e6
cdef double _tile_big_flops = 128e6
cdef int _max_tiles = 64
# How many threads take a product's tiles: one per _thread_min_flops of the product, at most
# n_threads (the tiles, hence the results, stay the same).  Measured: while the pool's
# workers slept after ~10 us, network A at batch 16 (6.4 MFLOP products, 2 tiles) trained 3%
# slower on 2 threads than on 1, so this was 4 MFLOP; with workers that stay awake
# (fastnn_pool.h) 2 threads at 1 MFLOP make it 1.55x faster (bench/RESULTS.md section 11).
cdef double _thread_min_flops = 1e6
# Training's products with m * n * k up to _fixed_max_mnk are fastnn's own fixed-order ones
# (src_c/fastnn_gemm.h gemm_fixed_ex: no packing, no zeroing pass, no per-call BLAS cost),
# larger ones take the kernel _product_kernel chooses, over the tiles above.  A function of
# the shape only, never of the thread count (such products are one tile anyway:
# 2 m n k < 2 _tile_min_flops).  Measured (bench/RESULTS.md section 14) on networks B and C.
cdef double _fixed_max_mnk = 1 << 18


# Which kernel computes a training product: the ONE place it is chosen (_product_kernel),
# a function of the shape (m, n, k, which operands are transposed) and the dtype only, never
# of the thread count or the tile.  Each kernel below sums every element of C in an order
# that does not depend on where a tile starts, so any of them may run on the fixed tiles.
#   _KERNEL_FIXED:  fastnn's fixed-order kernel (src_c/fastnn_gemm.h gemm_fixed_ex);
#   _KERNEL_PACKED: fastnn's packed, cache-blocked kernel (src_c/fastnn_gemm_packed.h);
#   _KERNEL_BLAS:   scipy's OpenBLAS (_blas.gemm_rowmajor): chosen for no shape since section 27,
#                   run only when bench/ or a test forces it (_set_product_kernel);
#   _KERNEL_THIN:   fastnn's thin-batch kernel, C computed as its transpose
#                   (src_c/fastnn_gemm_thin.h: the packed kernel's bits, and the fixed
#                   kernel's for k <= 384);
#   _KERNEL_UPDATE: fastnn's kernel for the fused SGD update's X^T D with a short reduction,
#                   C walked along its rows, D copied into panels
#                   (src_c/fastnn_gemm_update.h: the fixed kernel's bits, hence the packed
#                   kernel's for k <= 384).
cdef enum:
    _KERNEL_AUTO = -1
    _KERNEL_FIXED = 0
    _KERNEL_PACKED = 1
    _KERNEL_BLAS = 2
    _KERNEL_THIN = 3
    _KERNEL_UPDATE = 4

# X W above the thin kernel's rows with a reduction (the layer's inputs) of at most this many
# takes the fixed kernel, the packed one above (results depend on it where k > 384: the two
# sum in different orders there)
cdef int _fixed_max_k = 256

# X W and D W^T with at most this many rows (the batch) take the thin kernel
cdef int _thin_max_m = 64

# X^T D (the weight gradient, or plain SGD's fused update W := beta W + alpha X^T D) with a
# reduction (the batch) of at most this many rows takes the update kernel
cdef int _update_max_k = 64

# _KERNEL_AUTO, or the kernel every product above the fixed-order range takes (bench/ and
# tests: _set_product_kernel; changes results' bits)
cdef int _forced_kernel = _KERNEL_AUTO


cdef inline int _product_kernel(bint trans_a, bint trans_b, int m, int n, int k) noexcept nogil:
    """The kernel of a training product C (m, n) := op(A) (m, k) op(B) (k, n).

    Measured per product of workloads A (float32) and D (float64) at batch 16-1024, 1 thread,
    thread CPU time (bench/packed_products.py), then end to end (bench/fixed_products.py
    --large and --thin; bench/RESULTS.md sections 17, 21 and 23):
    - small products (m n k <= _fixed_max_mnk, one tile): fixed (no per-call cost);
    - a narrow C (n < 16) or a short reduction (k < 16): fixed (the packed kernel pads its
      16- or 8-column micro-tiles; packing is not repaid over a short k);
    - X^T D (A transposed, B not) with n >= 16 and k (the batch) <= _update_max_k = 64:
      update (C walked along its rows, D copied into panels; the fixed
      kernel's bits, and the packed kernel's, so the move changed no result).  Per product
      with training's beta = 1 (section 25) 1.2-1.5x the fixed kernel at batch 16-32 on
      the 784 x 256 W (1.1-1.2x on 256 x 128), 1.1x the packed one at 64 (float32); A
      trained 1.03-1.15x faster at batch 16 (3 runs), 1.03x at 64;
    - other X^T D with k (the batch) < 64: fixed;
    - float64 takes the same kernels as float32 (below; until section 27 it took scipy's
      OpenBLAS below 1024 rows): on the AVX-512 Zen 5 of section 27 the packed kernel ran D's
      products at 1.6-1.9x OpenBLAS (both bundled builds run AVX2 kernels there), on Zen 3 D
      at batch 256 measured level with all of them packed (section 17); and float64 results
      no longer depend on which OpenBLAS build and kernel a machine loads;
    - X W and D W^T with at most _thin_max_m = 64 rows (the batch): thin (C computed
      as its transpose, W streamed once and never packed; the packed kernel's bits, and the
      fixed kernel's for k <= 384, so the move changed no result).  Per product (section 23)
      1.5x the packed and fixed kernels at 16 rows, 1.06-1.25x at 32, 1.03-1.12x at 64;
      level or behind from 128 rows.  A trained 1.17x faster at batch 16, 1.01x at 64;
    - D W^T (B transposed) above that: packed (the fixed kernel first copies B^T;
      OpenBLAS 0.3.30 is slower on these thin shapes); X^T D: packed;
    - X W above 64 rows: fixed up to k = 256, packed above (since its op(A) packing
      is vectorized, level with OpenBLAS 0.3.30 alone, 0.97-1.03, and A 2-3% faster end to
      end at batch 256-1024; the fixed kernel, which packs nothing, trained A 1-2% faster
      still (n = 256) but was 6-8% slower at n >= 1024, and 6-15% slower at any n with the
      core shared)."""
    if (<double> m) * n * k <= _fixed_max_mnk and 2.0 * m * n * k < 2 * _tile_min_flops:
        return _KERNEL_FIXED
    if _forced_kernel != _KERNEL_AUTO:
        return _forced_kernel
    if trans_a and not trans_b and n >= 16 and k <= _update_max_k:
        return _KERNEL_UPDATE
    if n < 16 or k < 16 or (trans_a and k < 64):
        return _KERNEL_FIXED
    if not trans_a and m <= _thin_max_m:
        return _KERNEL_THIN
    if trans_a or trans_b:
        return _KERNEL_PACKED
    if k <= _fixed_max_k:
        return _KERNEL_FIXED
    return _KERNEL_PACKED


def _set_product_kernel(str name):
    """For bench/ and tests only: the kernel of every training product above the fixed-order
    range: "auto" (the measured choice), "fixed", "packed", "thin", "update" or "blas"
    (changes results' bits).
    Returns the old name."""
    global _forced_kernel
    names = {"auto": _KERNEL_AUTO, "fixed": _KERNEL_FIXED, "packed": _KERNEL_PACKED,
             "blas": _KERNEL_BLAS, "thin": _KERNEL_THIN, "update": _KERNEL_UPDATE}
    if name not in names:
        raise ValueError(f"name={name!r}; expected one of {sorted(names)}")
    old = {v: key for key, v in names.items()}[_forced_kernel]
    _forced_kernel = names[name]
    return old


def _set_fixed_max_k(int k):
    """For bench/ only: the longest reduction of an X W above the thin kernel's rows that
    takes the fixed kernel (the packed one above; changes results where k > 384).  Returns
    the old value."""
    global _fixed_max_k
    if k < 0:
        raise ValueError(f"k={k}; expected >= 0")
    old = _fixed_max_k
    _fixed_max_k = k
    return old


def _set_thin_max_m(int m):
    """For bench/ only: the most rows (the batch) of a float32 X W or D W^T that takes the thin
    kernel (0: none; the bits stay the same, only the speed changes).  Returns the old value."""
    global _thin_max_m
    if m < 0:
        raise ValueError(f"m={m}; expected >= 0")
    old = _thin_max_m
    _thin_max_m = m
    return old


def _kernel_name(bint trans_a, bint trans_b, int m, int n, int k):
    """For bench/ and tests: the name of the kernel _product_kernel chooses for C (m, n) :=
    op(A) op(B) with reduction length k ("fixed", "packed", "blas", "thin" or "update")."""
    return {_KERNEL_FIXED: "fixed", _KERNEL_PACKED: "packed", _KERNEL_BLAS: "blas",
            _KERNEL_THIN: "thin", _KERNEL_UPDATE: "update"}[
        _product_kernel(trans_a, trans_b, m, n, k)]


def _set_update_max_k(int k):
    """For bench/ only: the longest reduction (the batch) of an X^T D that takes the update
    kernel (0: none; the bits stay the same, only the speed changes).  Returns the old
    value."""
    global _update_max_k
    if k < 0:
        raise ValueError(f"k={k}; expected >= 0")
    old = _update_max_k
    _update_max_k = k
    return old


def _set_tiling(int side, double min_flops, int max_tiles, double big_flops=128e6):
    """For bench/threads.py only: the tiling constants (changes results' bits).  Returns
    the old (side, min_flops, max_tiles, big_flops)."""
    global _tile_side, _tile_min_flops, _max_tiles, _tile_big_flops
    if side < 16 or min_flops < 0 or max_tiles < 1 or big_flops < 0:
        raise ValueError(f"side={side}, min_flops={min_flops}, max_tiles={max_tiles}, "
                         f"big_flops={big_flops}; expected >= 16, >= 0, >= 1, >= 0")
    old = (_tile_side, _tile_min_flops, _max_tiles, _tile_big_flops)
    _tile_side, _tile_min_flops, _max_tiles, _tile_big_flops = (side, min_flops, max_tiles,
                                                                big_flops)
    return old


def _set_fixed_max(double mnk):
    """For bench/ only: the largest m * n * k of a training product that takes fastnn's own
    kernel (0: none; changes results' bits).  Returns the old value."""
    global _fixed_max_mnk
    if not mnk >= 0:
        raise ValueError(f"mnk={mnk}; expected >= 0")
    old = _fixed_max_mnk
    _fixed_max_mnk = mnk
    return old


cdef struct _Gemm:
    bint dbl, trans_a, trans_b
    int kernel                  # one of the _KERNEL_ values above (not _KERNEL_AUTO)
    int m, n, k, lda, ldb, ldc, tm, tn, gn
    double alpha, beta          # exact copies of the float32 values for a float32 product
    const void *A
    const void *B
    void *C


cdef inline long _split(long dim, long parts, long unit, long *width) noexcept nogil:
    """Cut dim into `parts` near-equal blocks of a multiple of unit; returns the count."""
    cdef long w = (dim + parts - 1) // parts
    w = ((w + unit - 1) // unit) * unit
    if w >= dim:
        width[0] = dim
        return 1
    width[0] = w
    return (dim + w - 1) // w


cdef long _gemm_tiles(int m, int n, int k, int *tm, int *tn, int *gn) noexcept nogil:
    """The tiles of C (m, n) := op(A) op(B) with reduction length k: their count, their
    height tm and width tn, gn per row of tiles (row-major order).  A function of (m, n, k)
    only (and of the constants above), never of the thread count."""
    cdef double flops = 2.0 * m * n * k
    cdef long target = 1, pm = 1, pn = 1, wm, wn, cm, cn
    if _max_tiles >= 2 and flops / 2 >= _tile_min_flops:
        target = 2
    while target * 2 <= _max_tiles and flops / (target * 2) >= _tile_big_flops:
        target *= 2
    while pm * pn < target:
        # halve the longer side of the current tile, if it stays >= _tile_side
        if m // pm >= n // pn and m // pm >= 2 * <long> _tile_side:
            pm *= 2
        elif n // pn >= 2 * <long> _tile_side:
            pn *= 2
        elif m // pm >= 2 * <long> _tile_side:
            pm *= 2
        else:
            break
    cm = _split(m, pm, ROW_UNIT, &wm)
    cn = _split(n, pn, COL_UNIT, &wn)
    tm[0], tn[0], gn[0] = <int> wm, <int> wn, <int> cn
    return cm * cn


def gemm_tiles(int m, int n, int k):
    """(n_tiles, tile height, tile width) of the fixed decomposition of a product C (m, n)
    with reduction length k (for bench/threads.py and the tests)."""
    cdef int tm, tn, gn
    if m < 1 or n < 1 or k < 1:
        raise ValueError(f"m={m}, n={n}, k={k}; expected each >= 1")
    n_tiles = _gemm_tiles(m, n, k, &tm, &tn, &gn)
    return n_tiles, tm, tn


cdef inline int _own_gemm(int kernel, bint trans_a, bint trans_b, int m, int n, int k,
                          floating alpha, const floating *A, int lda, const floating *B,
                          int ldb, floating beta, floating *C, int ldc) noexcept nogil:
    """One of fastnn's own kernels (fixed-order, packed, thin or update); 0, or -1 when its
    workspace failed."""
    if kernel == _KERNEL_UPDATE:
        return gemm_update(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    if kernel == _KERNEL_THIN:
        return gemm_thin(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    if kernel == _KERNEL_PACKED:
        return gemm_packed(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    return gemm_fixed_ex(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef void _gemm_task(void *ctx, long t) noexcept nogil:
    cdef _Gemm *g = <_Gemm *> ctx
    cdef Py_ssize_t r0 = (t // g.gn) * <Py_ssize_t> g.tm, c0 = (t % g.gn) * <Py_ssize_t> g.tn
    cdef int m = <int> min(<Py_ssize_t> g.tm, g.m - r0), n = <int> min(<Py_ssize_t> g.tn,
                                                                        g.n - c0)
    cdef Py_ssize_t a_off = r0 if g.trans_a else r0 * g.lda
    cdef Py_ssize_t b_off = c0 * g.ldb if g.trans_b else c0
    cdef Py_ssize_t c_off = r0 * g.ldc + c0
    # (fastnn's kernels failing to allocate their workspace fall back to BLAS for this tile)
    if g.kernel != _KERNEL_BLAS:
        if g.dbl:
            if _own_gemm(g.kernel, g.trans_a, g.trans_b, m, n, g.k, <double> g.alpha,
                         (<const double *> g.A) + a_off, g.lda, (<const double *> g.B) + b_off,
                         g.ldb, <double> g.beta, (<double *> g.C) + c_off, g.ldc) == 0:
                return
        elif _own_gemm(g.kernel, g.trans_a, g.trans_b, m, n, g.k, <float> g.alpha,
                       (<const float *> g.A) + a_off, g.lda, (<const float *> g.B) + b_off,
                       g.ldb, <float> g.beta, (<float *> g.C) + c_off, g.ldc) == 0:
            return
    if g.dbl:
        gemm_rowmajor(g.trans_a, g.trans_b, m, n, g.k, <double> g.alpha,
                      (<const double *> g.A) + a_off, g.lda, (<const double *> g.B) + b_off,
                      g.ldb, <double> g.beta, (<double *> g.C) + c_off, g.ldc)
    else:
        gemm_rowmajor(g.trans_a, g.trans_b, m, n, g.k, <float> g.alpha,
                      (<const float *> g.A) + a_off, g.lda, (<const float *> g.B) + b_off,
                      g.ldb, <float> g.beta, (<float *> g.C) + c_off, g.ldc)


cdef void tiled_gemm(int n_threads, bint trans_a, bint trans_b, int m, int n, int k,
                     floating alpha, const floating *A, int lda, const floating *B, int ldb,
                     floating beta, floating *C, int ldc) noexcept nogil:
    cdef _Gemm g
    cdef long n_tiles
    if m <= 0 or n <= 0:
        return
    g.kernel = _product_kernel(trans_a, trans_b, m, n, k)
    if n_threads > 0:
        n_tiles = _gemm_tiles(m, n, k, &g.tm, &g.tn, &g.gn)
        if n_tiles > 1:
            g.dbl = floating is double
            g.trans_a, g.trans_b = trans_a, trans_b
            g.m, g.n, g.k, g.lda, g.ldb, g.ldc = m, n, k, lda, ldb, ldc
            g.alpha, g.beta = alpha, beta
            g.A, g.B, g.C = A, B, C
            parallel_for(<int> min(<double> n_threads, max(1.0, 2.0 * m * n * k
                                                            // _thread_min_flops)),
                         n_tiles, _gemm_task, &g)
            return
    # one tile (or the untiled path, n_threads == 0): the whole product in one call
    if g.kernel != _KERNEL_BLAS and _own_gemm(g.kernel, trans_a, trans_b, m, n, k, alpha, A,
                                              lda, B, ldb, beta, C, ldc) == 0:
        return
    gemm_rowmajor(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef bint fused_forward(int n_threads, int m, int n, int k, const floating *X,
                        const floating *W, floating *Z, const floating *b, int act,
                        floating alpha, bint fixed) noexcept nogil:
    """Z (m, n) := act(X (m, k) @ W (k, n) + b) in one pass over Z, the bias and activation
    applied while the sums are in registers, when act is the identity, ReLU or leaky ReLU
    and either the product is one fixed-order tile and the pass one block (training: the bits
    of tiled_gemm then run_pass(PASS_BIAS_ACT), a function of the shape, so the same for every
    thread count) or `fixed` (prediction, whose products are all fastnn's fixed-order ones on
    one thread: the bits of gemm_fixed then the pass, each row's alone, at any size).  The
    same operations on the same values either way.  False: nothing was done, the caller runs
    both."""
    cdef int code, tm, tn, gn
    if act == FNN_IDENTITY:
        code = 0
    elif act == FNN_RELU:
        code = 1
    elif act == FNN_LEAKY_RELU:
        code = 2
    else:
        return False
    if m <= 0 or n <= 0:
        return False
    if not fixed:
        if (<double> m) * n >= 2.0 * PASS_MIN_ELEMS:
            return False
        if _product_kernel(False, False, m, n, k) != _KERNEL_FIXED:
            return False
        if n_threads > 0 and _gemm_tiles(m, n, k, &tm, &tn, &gn) > 1:
            return False
    return gemm_fixed_bias_act(m, n, k, X, k, W, n, Z, n, b, code, alpha) == 0


cdef double thread_min_flops() noexcept nogil:
    return _thread_min_flops


cdef struct _Pass:
    bint dbl
    int kind                    # PASS_BIAS_ACT, PASS_BIAS_ACT_KEEP, PASS_ACT_BACKWARD, PASS_DROPOUT, PASS_LN_FORWARD
    int act, rows, cols, block
    double alpha
    void *Z                     # bias_act*, layer norm: Z; act_backward: D; dropout: dst
    const void *b               # bias_act*, layer norm: b; act_backward: dA
    void *A                     # bias_act_keep, layer norm: A; act_backward: db
    const void *K               # act_backward: what the forward pass kept; dropout: src
    const void *gamma           # layer norm: gain, shift; Y (kept) and 1 / std per row
    const void *beta
    void *Y
    void *rstd
    const DropoutCtx *drop      # dropout: the context, its layer and rate
    int layer
    double rate


cdef void _rows_task(_Pass *p, floating *Z, Py_ssize_t lo, Py_ssize_t cnt) noexcept nogil:
    # (Z only selects the dtype)
    cdef Py_ssize_t off = lo * p.cols
    cdef DropoutCtx block
    if p.kind == PASS_BIAS_ACT_KEEP:
        bias_act_keep((<floating *> p.Z) + off, <const floating *> p.b,
                      (<floating *> p.A) + off, cnt, p.cols, p.act, <floating> p.alpha)
    elif p.kind == PASS_DROPOUT:
        block = p.drop[0]
        block.samples = block.samples + lo          # each row's mask is its sample's
        dropout((<floating *> p.Z) + off, (<const floating *> p.K) + off, cnt, p.cols,
                &block, p.layer, p.rate)
    elif p.kind == PASS_LN_FORWARD:
        layernorm_act_forward((<floating *> p.Z) + off, <const floating *> p.b,
                              <const floating *> p.gamma, <const floating *> p.beta,
                              (<floating *> p.Y) + off, (<floating *> p.rstd) + lo,
                              (<floating *> p.A) + off, cnt, p.cols, p.act,
                              <floating> p.alpha)
    else:
        bias_act((<floating *> p.Z) + off, <const floating *> p.b, cnt, p.cols, p.act,
                 <floating> p.alpha)


cdef void _pass_task(void *ctx, long t) noexcept nogil:
    # act_backward: a block of columns (each column's bias gradient summed over all rows in
    # row order, as in one pass); the others: a block of rows
    cdef _Pass *p = <_Pass *> ctx
    cdef Py_ssize_t lo = <Py_ssize_t> t * p.block
    cdef Py_ssize_t cnt
    if p.kind == PASS_ACT_BACKWARD:
        cnt = min(<Py_ssize_t> p.block, p.cols - lo)
        if p.dbl:
            act_backward_ld((<const double *> p.b) + lo, (<const double *> p.K) + lo,
                            (<double *> p.Z) + lo, (<double *> p.A) + lo, p.rows, cnt, p.cols,
                            p.act, <double> p.alpha)
        else:
            act_backward_ld((<const float *> p.b) + lo, (<const float *> p.K) + lo,
                            (<float *> p.Z) + lo, (<float *> p.A) + lo, p.rows, cnt, p.cols,
                            p.act, <float> p.alpha)
        return
    cnt = min(<Py_ssize_t> p.block, p.rows - lo)
    if p.dbl:
        _rows_task(p, <double *> NULL, lo, cnt)
    else:
        _rows_task(p, <float *> NULL, lo, cnt)


cdef void _launch(int n_threads, _Pass *p) noexcept nogil:
    """Run the pass over its fixed blocks: at least PASS_MIN_ELEMS entries each, at most
    MAX_TILES blocks (a function of the shape only); n_threads <= 0: one block."""
    cdef long want = <long> ((<double> p.rows * p.cols) / PASS_MIN_ELEMS), unit = 1, n_tasks
    cdef long dim = p.cols if p.kind == PASS_ACT_BACKWARD else p.rows
    if p.kind == PASS_ACT_BACKWARD:
        unit = COL_UNIT
    want = min(want, MAX_TILES, (dim + unit - 1) // unit)
    p.block = <int> dim
    n_tasks = 1
    if n_threads > 0 and want > 1:
        p.block = <int> (((dim + want - 1) // want + unit - 1) // unit * unit)
        n_tasks = (dim + p.block - 1) // p.block
    if n_tasks == 1:
        _pass_task(p, 0)
    else:
        parallel_for(n_threads, n_tasks, _pass_task, p)


cdef int run_pass(int n_threads, int kind, int rows, int cols, int act, floating alpha,
                   floating *Z, const floating *b, floating *A,
                   const floating *K) noexcept nogil:
    """bias_act, bias_act_keep (row blocks) or act_backward (column blocks) on fixed blocks.
    Returns FNN_OK or FNN_EBADACT (checked on an empty block before any task runs)."""
    cdef _Pass p
    cdef int status
    if kind == PASS_ACT_BACKWARD:
        status = act_backward_ld(b, K, Z, A, 0, 0, cols, act, alpha)
    elif kind == PASS_BIAS_ACT_KEEP:
        status = bias_act_keep(Z, b, A, 0, cols, act, alpha)
    else:
        status = bias_act(Z, b, 0, cols, act, alpha)
    if status != FNN_OK or rows <= 0 or cols <= 0:
        return status
    p.dbl = floating is double
    p.kind, p.act, p.rows, p.cols, p.alpha = kind, act, rows, cols, alpha
    p.Z, p.b, p.A, p.K = Z, b, A, K
    _launch(n_threads, &p)
    return FNN_OK


cdef void run_dropout(int n_threads, floating *dst, const floating *src, int rows, int cols,
                       const DropoutCtx *drop, int layer, double rate) noexcept nogil:
    """dropout over fixed row blocks (a row's mask depends on its sample, not its block)."""
    cdef _Pass p
    if rows <= 0 or cols <= 0:
        return
    p.dbl = floating is double
    p.kind, p.rows, p.cols = PASS_DROPOUT, rows, cols
    p.Z, p.K, p.drop, p.layer, p.rate = dst, src, drop, layer, rate
    _launch(n_threads, &p)


cdef int run_layernorm(int n_threads, floating *Z, const floating *b, const floating *gamma,
                        const floating *beta, floating *Y, floating *rstd, floating *A,
                        int rows, int cols, int act, floating alpha) noexcept nogil:
    """layernorm_act_forward over fixed row blocks (each row is normalized on its own)."""
    cdef _Pass p
    cdef int status = layernorm_act_forward(Z, b, gamma, beta, Y, rstd, A, 0, cols, act,
                                            alpha)
    if status != FNN_OK or rows <= 0 or cols <= 0:
        return status
    p.dbl = floating is double
    p.kind, p.act, p.rows, p.cols, p.alpha = PASS_LN_FORWARD, act, rows, cols, alpha
    p.Z, p.b, p.gamma, p.beta, p.Y, p.rstd, p.A = Z, b, gamma, beta, Y, rstd, A
    _launch(n_threads, &p)
    return FNN_OK
