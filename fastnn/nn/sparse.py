"""Sparse input (scipy.sparse CSR/CSC, matrices or arrays) without densifying X.

The compiled kernels (fastnn/_core/_sparse.pyx, called through fastnn.runtime.boundary) compute
the first layer's product ``X @ W_1`` and its weight gradient ``X^T @ D_1`` over X's stored
entries; the later layers are dense as usual.  This module converts and checks the matrix once
(the kernels trust it) and offers the forward pass of a ``fastnn.MLP`` on it.  ``fastnn.fit`` /
``MLP.fit`` (SGD, Adam: the compiled epoch loop over a CSR row source, fastnn/_core/_loop.pyx) and
``fastnn.LBFGS`` (full batch) train on such a matrix, and ``MLP.predict`` / ``forward`` accept
one.
"""
import numpy as np
from scipy import sparse as _sp

from fastnn.runtime import boundary
from fastnn._validation import all_finite, MAX_DIM

__all__ = ["issparse", "as_csr", "check_model", "check_structure", "forward"]


def issparse(X):
    """True for any scipy.sparse matrix or array."""
    return _sp.issparse(X)


class CSRInput:
    """A checked CSR matrix for the compiled kernels: data in the model's dtype, intp indices.

    Attributes: data, indices, indptr (1-D C-contiguous), shape.
    """

    def __init__(self, data, indices, indptr, shape):
        self.data, self.indices, self.indptr, self.shape = data, indices, indptr, shape

    def take(self, rows):
        """The rows `rows` (1-D intp, each in range) as a new CSRInput (a validation split)."""
        csr = _sp.csr_array((self.data, self.indices, self.indptr), shape=self.shape)[rows]
        return CSRInput(np.ascontiguousarray(csr.data, self.data.dtype),
                        np.ascontiguousarray(csr.indices, np.intp),
                        np.ascontiguousarray(csr.indptr, np.intp), csr.shape)


def as_csr(X, name, dtype, n_features=None):
    """Convert a scipy.sparse X once to the kernels' CSR layout and check it.

    Parameters
    ----------
    X : scipy.sparse matrix or array of shape (n_samples, n_features)
        Any format, int32 or int64 indices.  Copied once: a CSC/COO/... matrix is converted to
        CSR (scipy's conversion, about the size of X); a CSR with duplicate or unsorted
        entries is canonicalised (duplicates summed); the stored values are cast to dtype
        (no copy when they already are) and indices/indptr to intp (no copy when they are
        already 64-bit on a 64-bit platform; int32 indices cost 8 bytes per stored entry).
        Peak memory is therefore O(nnz), never O(n_samples * n_features).
    name : str
        The argument's name, for errors.
    dtype : numpy.float32 or numpy.float64
        The model's dtype; the stored values are cast to it.
    n_features : int, optional
        The number of columns the model expects.

    Returns
    -------
    CSRInput

    Raises
    ------
    TypeError
        X is not sparse, or its values are not real numbers.
    ValueError
        No rows, the wrong number of columns, or values that are NaN, infinite or too large
        for dtype.
    """
    if not _sp.issparse(X):
        raise TypeError(f"{name} must be a scipy.sparse matrix or array; got "
                        f"{type(X).__name__}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {X.dtype}; expected real numbers")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional; got shape {X.shape}")
    n, d = X.shape
    if n == 0:
        raise ValueError(f"{name} has 0 samples (shape {X.shape}); expected at least one")
    if n > MAX_DIM or d > MAX_DIM:
        raise ValueError(f"{name} has shape {X.shape}; at most {MAX_DIM} rows and columns are "
                         "supported")
    if n_features is not None and d != n_features:
        raise ValueError(f"{name} has {d} features (shape {X.shape}); the model expects "
                         f"{n_features}")
    # scipy's conversions (C++) follow the stored indices without checking them: a crafted
    # or mutated matrix would be read or written out of bounds before our checks below
    check_structure(X, name)
    csr = _sp.csr_array(X)  # a copy only when X is not CSR
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    with np.errstate(over="ignore"):
        data = np.ascontiguousarray(csr.data, dtype=dtype)
    if not all_finite(data):
        bad = int(np.argwhere(~np.isfinite(data))[0][0])
        # the stored value's row and column, as a dense X's error names them
        row = int(np.searchsorted(csr.indptr, bad, side="right")) - 1
        where = f"row {row}, column {int(csr.indices[bad])}"
        if np.isfinite(csr.data[bad]):
            raise ValueError(f"{name} has values too large for the model's dtype "
                             f"{np.dtype(dtype)} ({float(csr.data[bad]):g} at {where}); scale "
                             "the inputs or use float64")
        raise ValueError(f"{name} contains NaN or infinity (at {where}: "
                         f"{float(csr.data[bad])!r}); expected finite values")
    indices = np.ascontiguousarray(csr.indices, dtype=np.intp)
    indptr = np.ascontiguousarray(csr.indptr, dtype=np.intp)
    # scipy keeps these invariants for a canonical matrix; the kernels rely on them
    _check_compressed(name, "CSR", indptr, indices, data.shape[0], n, d)
    if indptr[-1] != data.shape[0]:
        raise ValueError(f"{name} is not a valid CSR matrix: indptr ends at {indptr[-1]}; "
                         f"expected the number of stored values, {data.shape[0]}")
    return CSRInput(data, indices, indptr, (n, d))


def _check_index_array(name, what, a, length=None):
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu" or (length is not None and a.shape[0] != length):
        expected = "a 1-D integer array" + ("" if length is None else f" of length {length}")
        raise ValueError(f"{name} is not a valid sparse matrix: its {what} has shape "
                         f"{a.shape} and dtype {a.dtype}; expected {expected}")
    return a


def _check_compressed(name, fmt, indptr, indices, n_values, major, minor):
    """ValueError unless indptr/indices are a compressed (CSR/CSC/BSR) structure of `major`
    rows (columns, block rows) whose first indptr[-1] indices are in [0, minor), with at
    least that many stored values: what scipy's C++ conversions assume."""
    indptr = _check_index_array(name, f"{fmt} indptr", indptr, major + 1)
    indices = _check_index_array(name, f"{fmt} indices", indices)
    end = int(indptr[-1])
    if indptr[0] != 0 or end > min(indices.shape[0], n_values):
        raise ValueError(f"{name} is not a valid {fmt} matrix: indptr runs from {indptr[0]} to "
                         f"{end} over {indices.shape[0]} indices and {n_values} stored values; "
                         f"expected it to start at 0 and end within both")
    steps = np.diff(indptr)
    if steps.size and steps.min() < 0:
        raise ValueError(f"{name} is not a valid {fmt} matrix: indptr decreases after entry "
                         f"{int(np.argmax(steps < 0))}; expected a non-decreasing indptr")
    used = indices[:end]
    if used.size and (used.min() < 0 or used.max() >= minor):
        bad = int(np.argmax((used < 0) | (used >= minor)))
        raise ValueError(f"{name} is not a valid {fmt} matrix: indices[{bad}] = "
                         f"{int(used[bad])} is outside [0, {minor})")


def check_structure(X, name):
    """Raise ValueError unless X's stored index arrays (CSR, CSC, BSR, COO; LIL's row lists)
    are consistent with its shape.  DOK and DIA convert through COO with scipy's own checks,
    and the CSR result is checked in as_csr.  O(nnz), no copy.  Call it before handing X to
    anything that converts it (scipy's C++ conversions trust the stored indices: a crafted or
    mutated matrix is read or written out of bounds, a crash or silent garbage)."""
    if X.ndim != 2:
        return  # not a matrix: the caller's shape check says so
    n, d = X.shape
    fmt = X.format
    if fmt in ("csr", "csc", "coo") and np.ndim(X.data) != 1:
        raise ValueError(f"{name} is not a valid {fmt.upper()} matrix: its data has shape "
                         f"{np.shape(X.data)}; expected a 1-D array of the stored values")
    if fmt in ("csr", "csc"):
        major, minor = (n, d) if fmt == "csr" else (d, n)
        _check_compressed(name, fmt.upper(), X.indptr, X.indices, np.shape(X.data)[0],
                          major, minor)
    elif fmt == "bsr":
        r, c = X.blocksize
        if r < 1 or c < 1 or n % r or d % c or np.ndim(X.data) != 3 or \
                np.shape(X.data)[1:] != (r, c):
            raise ValueError(f"{name} is not a valid BSR matrix: blocksize {X.blocksize}, "
                             f"shape {X.shape}, data of shape {np.shape(X.data)}")
        _check_compressed(name, "BSR", X.indptr, X.indices, np.shape(X.data)[0], n // r,
                          d // c)
    elif fmt == "lil":
        # per row a list of columns and a list of values; scipy's Cython flattening writes
        # the values into an array sized by the columns (longer value lists: heap corruption)
        if np.shape(X.rows) != (n,) or np.shape(X.data) != (n,):
            raise ValueError(f"{name} is not a valid LIL matrix: rows and data have shapes "
                             f"{np.shape(X.rows)} and {np.shape(X.data)}; expected ({n},)")
        for i, (cols, vals) in enumerate(zip(X.rows, X.data)):
            if len(cols) != len(vals):
                raise ValueError(f"{name} is not a valid LIL matrix: row {i} has {len(cols)} "
                                 f"column indices and {len(vals)} values; expected as many")
        # the column indices themselves are checked on the CSR result (as_csr)
    elif fmt == "coo":
        n_values = np.shape(X.data)[0]
        coords = X.coords if hasattr(X, "coords") else (X.row, X.col)  # scipy < 1.13
        for axis, (coord, size) in enumerate(zip(coords, X.shape)):
            coord = _check_index_array(name, f"COO coords[{axis}]", coord, n_values)
            if coord.size and (coord.min() < 0 or coord.max() >= size):
                bad = int(np.argmax((coord < 0) | (coord >= size)))
                raise ValueError(f"{name} is not a valid COO matrix: coords[{axis}][{bad}] = "
                                 f"{int(coord[bad])} is outside [0, {size})")


def check_model(model, name="X"):
    """Raise ValueError unless `model`'s first layer can take a sparse `name`: the sparse
    kernels do not implement layer normalization there (later layers may have it).  Called
    before any work (a failed first fit leaves nothing half-done); the compiled entry points
    check it again."""
    normalization = model.layers[0].normalization
    if normalization is not None:
        raise ValueError(f"{name} is sparse, and sparse input does not support layer "
                         f"normalization of the first layer (its normalization is "
                         f"{normalization!r}; the later layers may have it): pass a dense "
                         f"{name} ({name}.toarray()) or normalize only later layers")


def forward(model, X, link=False):
    """The network's logits (or, with link, its prediction) for a sparse X.

    Parameters
    ----------
    model : fastnn.MLP
    X : scipy.sparse matrix or array of shape (n_samples, model.n_inputs)
    link : bool, default False
        Apply the model's output link (``model.predict``) rather than return the logits
        (``model.forward``); both keep a sparse X sparse.

    Returns
    -------
    ndarray of shape (n_samples, model.n_outputs), the model's dtype
    """
    return model.predict(X) if link else model.forward(X)


def forward_kind(model, X, kind, link, chunk_rows, flush_denormals=None, n_threads=None):
    """The logits of a sparse X (or CSRInput) for ``fastnn.MLP``, with (link True) the output
    link of code `kind` applied: what ``MLP._forward`` computes for a dense X, over
    chunk_rows rows at a time.  flush_denormals, n_threads: None for this thread's setting
    and count (fastnn.runtime.boundary).  (The model's constants come in as arguments: this
    module is below fastnn.nn.model.)"""
    check_model(model)
    csr = X if isinstance(X, CSRInput) else as_csr(X, "X", model.dtype, model.n_inputs)
    if csr.data.dtype != model.dtype or csr.shape[1] != model.n_inputs:
        raise ValueError(f"X is a CSRInput of dtype {csr.data.dtype} and shape {csr.shape}; "
                         f"the model expects {model.dtype} and {model.n_inputs} columns")
    out = np.empty((csr.shape[0], model.n_outputs), dtype=model.dtype)
    boundary.csr_forward(model._spec, model.params, csr.data, csr.indices, csr.indptr, out,
                         kind, bool(link), chunk_rows, flush_denormals=flush_denormals,
                         n_threads=n_threads)
    return out
