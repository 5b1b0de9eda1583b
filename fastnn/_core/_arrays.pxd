# The sample order of an epoch, for the compiled epochs (fastnn/_core/_epoch.pyx runs several
# epochs in one call and draws each one's order itself).  Implementation: _arrays.pyx.
from libc.stdint cimport uint32_t

cdef list entropy_words(tuple entropy)
# SeedSequence's 32-bit entropy words of a tuple of non-negative ints

cdef void permute(Py_ssize_t *order, Py_ssize_t n, const uint32_t *words,
                  Py_ssize_t n_words) noexcept nogil
# order[0:n] := numpy.random.default_rng(entropy).permutation(n), bit for bit
