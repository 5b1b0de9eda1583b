"""Compiled array work the Python layer does on every call or epoch, where NumPy's per-call
cost outweighs the arithmetic on small arrays (a 64-32-10 network's epoch is ~0.4 ms; each
of these took 4-35 us in NumPy):

* ``finite_array``: the finiteness check behind fastnn._validation.all_finite;
* ``fill_permutation``: the epoch's sample order behind fastnn.training.engine.epoch_order,
  the permutation NumPy's default generator draws from the same seed, bit for bit.
"""
from array import array

from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t
cimport numpy as cnp

from fastnn._core._kernels cimport all_finite

cnp.import_array()

cdef enum:
    _FINITE_NOGIL_ELEMENTS = 1 << 16    # a check this long releases the GIL (~10 us and more)


def finite_array(object x):
    """Whether the C-contiguous, aligned, native-byte-order float32 or float64 ndarray `x`
    holds no NaN or infinity: True or False, from one vectorized pass
    (src_c/fastnn_kernels.h fnn_*_all_finite: no temporary, no floating-point-error context,
    the GIL released for long arrays).  None for anything else (another dtype, layout or
    byte order, not an ndarray): fastnn._validation.all_finite, which every caller goes
    through, decides those with NumPy."""
    cdef cnp.ndarray a
    cdef Py_ssize_t n
    cdef int kind
    if not isinstance(x, cnp.ndarray):
        return None
    a = <cnp.ndarray> x
    kind = cnp.PyArray_TYPE(a)
    # (native byte order and aligned: the bytes are the C type's; a big-endian or packed
    # array goes to NumPy)
    if (kind != cnp.NPY_FLOAT32 and kind != cnp.NPY_FLOAT64) or \
            not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISNOTSWAPPED(a) or \
            not cnp.PyArray_ISALIGNED(a):
        return None
    n = cnp.PyArray_SIZE(a)
    if kind == cnp.NPY_FLOAT32:
        return _finite(<const float *> cnp.PyArray_DATA(a), n)
    return _finite(<const double *> cnp.PyArray_DATA(a), n)


cdef bint _finite(const floating *X, Py_ssize_t n) noexcept:
    """all_finite(X, n), without the GIL for a long X."""
    cdef bint finite
    if n < _FINITE_NOGIL_ELEMENTS:
        return all_finite(X, n)
    with nogil:
        finite = all_finite(X, n)
    return finite


# NumPy's default generator, default_rng(entropy) = Generator(PCG64(SeedSequence(entropy))),
# in C: the SeedSequence's entropy pool and state words (numpy/random/bit_generator.pyx), PCG64's
# seeding and its XSL-RR output (numpy/random/src/pcg64/pcg64.h), the 32-bit draws it halves
# from one 64-bit output.  NumPy keeps these streams stable across releases (NEP 19); the
# constants are O'Neill's.
cdef extern from *:
    """
    typedef unsigned __int128 fnn_u128;
    """
    ctypedef unsigned long long fnn_u128

cdef enum:
    _POOL = 4                         # SeedSequence's default pool of 32-bit words
    _XSHIFT = 16
cdef uint32_t _INIT_A = 0x43b0d7e5U, _MULT_A = 0x931e8875U
cdef uint32_t _INIT_B = 0x8b51f9ddU, _MULT_B = 0x58f38dedU
cdef uint32_t _MIX_MULT_L = 0xca01f9ddU, _MIX_MULT_R = 0x4973f715U
cdef uint64_t _PCG_MULT_HIGH = 2549297995355413924ULL     # 0x2360ED051FC65DA4
cdef uint64_t _PCG_MULT_LOW = 4865540595714422341ULL      # 0x4385DF649FCCF645

ctypedef struct _Pcg64:
    fnn_u128 state, inc
    uint32_t half                     # the unused high half of the last 64-bit output
    bint has_half


cdef inline uint32_t _hashmix(uint32_t value, uint32_t *hash_const) noexcept nogil:
    value ^= hash_const[0]
    hash_const[0] *= _MULT_A
    value *= hash_const[0]
    value ^= value >> _XSHIFT
    return value


cdef inline uint32_t _mix(uint32_t x, uint32_t y) noexcept nogil:
    cdef uint32_t result = _MIX_MULT_L * x - _MIX_MULT_R * y
    result ^= result >> _XSHIFT
    return result


cdef inline void _pcg_step(_Pcg64 *rng) noexcept nogil:
    rng.state = rng.state * ((<fnn_u128> _PCG_MULT_HIGH << 64) | _PCG_MULT_LOW) + rng.inc


cdef inline uint64_t _next64(_Pcg64 *rng) noexcept nogil:
    """PCG64's next output: one step, then XSL-RR of the new state."""
    cdef uint64_t high, low
    cdef unsigned int rot
    _pcg_step(rng)
    high, low = <uint64_t> (rng.state >> 64), <uint64_t> rng.state
    rot = <unsigned int> (rng.state >> 122)
    low ^= high
    return (low >> rot) | (low << ((64 - rot) & 63))


cdef inline uint32_t _next32(_Pcg64 *rng) noexcept nogil:
    """NumPy's pcg64_next32: the low half of a fresh output, then its high half."""
    cdef uint64_t value
    if rng.has_half:
        rng.has_half = False
        return rng.half
    value = _next64(rng)
    rng.has_half, rng.half = True, <uint32_t> (value >> 32)
    return <uint32_t> value


cdef void _seed(_Pcg64 *rng, const uint32_t *entropy, Py_ssize_t n) noexcept nogil:
    """PCG64(SeedSequence(entropy words)): mix the words into the pool, draw four 64-bit state
    words from it (two 32-bit words each, the first the low half), seed and increment."""
    cdef uint32_t pool[_POOL]
    cdef uint32_t words[8]
    cdef uint32_t hash_const = _INIT_A, value
    cdef uint64_t s[4]
    cdef Py_ssize_t i, j
    for i in range(_POOL):
        pool[i] = _hashmix(entropy[i] if i < n else 0, &hash_const)
    for i in range(_POOL):
        for j in range(_POOL):
            if i != j:
                pool[j] = _mix(pool[j], _hashmix(pool[i], &hash_const))
    for i in range(_POOL, n):
        for j in range(_POOL):
            pool[j] = _mix(pool[j], _hashmix(entropy[i], &hash_const))
    hash_const = _INIT_B
    for i in range(8):
        value = pool[i % _POOL] ^ hash_const
        hash_const *= _MULT_B
        value *= hash_const
        value ^= value >> _XSHIFT
        words[i] = value
    for i in range(4):
        s[i] = <uint64_t> words[2 * i] | (<uint64_t> words[2 * i + 1] << 32)
    rng.state = 0
    rng.inc = (((<fnn_u128> s[2] << 64) | s[3]) << 1) | 1
    _pcg_step(rng)
    rng.state += (<fnn_u128> s[0] << 64) | s[1]
    _pcg_step(rng)
    rng.has_half, rng.half = False, 0


cdef inline uint64_t _interval(_Pcg64 *rng, uint64_t most) noexcept nogil:
    """A uniform integer in [0, most]: NumPy's random_interval
    (numpy/random/src/distributions/distributions.c), the draws of Generator.shuffle: the
    smallest all-ones mask covering `most`, then masked draws until one is <= most, 32-bit
    draws while `most` fits in 32 bits."""
    cdef uint64_t mask = most, value
    if most == 0:
        return 0
    mask |= mask >> 1
    mask |= mask >> 2
    mask |= mask >> 4
    mask |= mask >> 8
    mask |= mask >> 16
    mask |= mask >> 32
    if most <= <uint64_t> 0xffffffffU:
        while True:
            value = _next32(rng) & mask
            if value <= most:
                return value
    while True:
        value = _next64(rng) & mask
        if value <= most:
            return value


def fill_permutation(Py_ssize_t[::1] order not None, tuple entropy):
    """order[:] := ``numpy.random.default_rng(list(entropy)).permutation(len(order))``,
    bit for bit, computed here: NumPy's SeedSequence and PCG64 seeding, then Fisher-Yates as
    Generator.shuffle runs it on a 1-D array (numpy/random/_generator.pyx _shuffle_raw: for
    i = n-1 down to 1, swap order[i] with order[random_interval(i)]).  NumPy's own objects
    cost ~20 us per call (seeding) and ~3 ns per element more, most of a small data set's
    epoch overhead.  tests/test_continuation.py compares it with NumPy over many entropies
    and lengths.

    Parameters
    ----------
    order : ndarray of shape (n,), intp, C-contiguous, writeable
    entropy : tuple of int >= 0
        SeedSequence's entropy: each integer split into 32-bit words, lowest first (0 is
        one word), the words of all of them in turn.

    Raises
    ------
    ValueError
        A negative integer in `entropy`.
    TypeError
        An entry that is not an integer.
    """
    cdef list words = entropy_words(entropy)
    cdef uint32_t[::1] packed = array("I", words if words else [0])
    cdef Py_ssize_t n_words = len(words)
    with nogil:
        permute(&order[0] if order.shape[0] else NULL, order.shape[0], &packed[0], n_words)


cdef list entropy_words(tuple entropy):
    """SeedSequence's entropy words of a tuple of non-negative ints: each split into 32-bit
    words, lowest first (0 is one word), the words of all of them in turn (TypeError,
    ValueError otherwise)."""
    cdef list words = []
    for value in entropy:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"entropy holds {value!r}; expected non-negative integers")
        if value < 0:
            raise ValueError(f"entropy holds {value}; expected non-negative integers")
        if value == 0:
            words.append(0)
        while value > 0:
            words.append(value & 0xffffffff)
            value >>= 32
    return words


cdef void permute(Py_ssize_t *order, Py_ssize_t n, const uint32_t *words,
                  Py_ssize_t n_words) noexcept nogil:
    """order[0:n] := default_rng(entropy).permutation(n), the entropy given as its
    `n_words` 32-bit words (entropy_words; n_words == 0: an empty entropy)."""
    cdef _Pcg64 rng
    cdef Py_ssize_t i, j, kept
    _seed(&rng, words, n_words)
    for i in range(n):
        order[i] = i
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t> _interval(&rng, <uint64_t> i)
        kept = order[i]
        order[i] = order[j]
        order[j] = kept
