"""Prediction in one compiled call: ``MLP.predict``'s path for inputs that need no conversion.

A one-row prediction of a small network is a few hundred multiply-adds (under 0.2 us); the
general path (``MLP._forward``) spent 30-40 us around them in Python: converting and checking
X, resolving the thread count (environment, CPU affinity, MPI ranks), holding OpenBLAS at one
thread, a NumPy finiteness reduction, a Cython fused-type dispatch.  ``predict_fast`` keeps
every guarantee of that path at the cost of one compiled call:

* **Validation**: X is taken here only when it is already what the general path would
  produce (an ndarray of the model's dtype, 2-D, C-contiguous, the model's width, finite);
  the compiled call checks all of that in C, finiteness included (each chunk just before it
  is computed), and declines otherwise; then the general path converts X or raises its error
  naming the problem.  Nothing the general path refuses is accepted here.
* **One epoch boundary** of a fit running in another thread: the model's state lock is held
  around the call, as ``consistent(model)`` holds it for a model (fastnn.runtime.state); the
  parameters, loss and output link are read under it.
* **Floating-point mode and threads**: the call goes through the compiled boundary
  (``fastnn.runtime.boundary.net_predict_rows``): this thread's flush-to-zero setting, the
  context's thread count (one thread, not even resolved, below SMALL_FLOPS), no BLAS.
* **Same bits as every other prediction**: every product of prediction is fastnn's
  fixed-order one (src_c/fastnn_gemm.h), so a row predicted alone equals the same row inside
  any batch, any chunk and any thread count.

Nothing is cached between calls: what the call depends on (the network description, fixed at
construction; the parameters, loss and link, read under the lock) is read each time.
"""
import numpy as np

from fastnn.runtime import boundary

__all__ = ["predict_fast", "SMALL_FLOPS", "PREDICT_CHUNK_ROWS"]

#: rows per chunk when predicting: the workspace stays in cache and its size is bounded
PREDICT_CHUNK_ROWS = 1024
#: inputs of at most this many FLOPs (rows x 2 W) run on the calling thread without resolving
#: the thread count: below it a forward pass has nothing to share among threads (one
#: thread's share of a product, fastnn/_core/_network.pyx _thread_min_flops)
SMALL_FLOPS = 1e6

# output link name -> loss code (fastnn.nn.model.OUTPUT_LINKS; repeated here so that this
# module imports nothing from the model it serves)
_LINK_CODES = {"identity": 0, "sigmoid": 3, "softmax": 4, "exp": 6}
_LEARNED_GAUSSIAN = 2


def predict_fast(model, X):
    """``model.predict(X)`` in one compiled call, or None when the general path must run.

    Parameters
    ----------
    model : fastnn.MLP
    X : object
        Taken when it is an ndarray of shape (n, model.n_inputs), n >= 1, of the model's
        dtype, C-contiguous and aligned, with no NaN or infinity.

    Returns
    -------
    ndarray of shape (n, n_outputs), the model's dtype, or None
        The output link applied to the logits.  None: X, or the model's link (a
        learned-variance Gaussian returns half its columns), is left to the general path.
    """
    if type(X) is not np.ndarray or X.ndim != 2:
        return None
    spec = model._spec
    small = X.shape[0] * boundary.flops_per_row(spec) <= SMALL_FLOPS
    lock = model._lock
    lock.acquire()
    try:
        output = model._output
        if output == "auto":
            loss = model._loss
            kind = 0 if loss is None else loss.kind
            if kind == _LEARNED_GAUSSIAN:
                return None
        else:
            kind = _LINK_CODES[output]
        return boundary.net_predict_rows(spec, model._params, X, kind, PREDICT_CHUNK_ROWS,
                                         n_threads=1 if small else None)
    finally:
        lock.release()
