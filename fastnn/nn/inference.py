"""Prediction of a few rows in microseconds: ``MLP.predict``'s path for small inputs.

A one-row prediction of a small network is a few hundred multiply-adds (under 0.2 us); the
general path (``MLP._forward``) spent 30-40 us around them in Python: converting and checking
X, resolving the thread count (environment, CPU affinity, MPI ranks), holding OpenBLAS at one
thread, a NumPy finiteness reduction, a Cython fused-type dispatch.  ``predict_small`` keeps
every guarantee of that path at the cost of one compiled call:

* **Validation**: X is taken here only when it is already what the general path would
  produce (an ndarray of the model's dtype, 2-D, C-contiguous, the model's width, finite);
  the compiled call checks all of that in C, finiteness included, and declines otherwise,
  and then the general path converts or raises its error naming the problem.  Nothing that
  the general path refuses is accepted here.
* **One epoch boundary** of a fit running in another thread: the model's state lock is held
  around the call, exactly as ``consistent(model)`` holds it for a model (fastnn.runtime.state);
  the parameters, loss and output link are read under it.
* **Floating-point mode and threads**: the call goes through the compiled boundary
  (``fastnn.runtime.boundary.net_predict_rows``): this thread's flush-to-zero setting, one
  thread, no BLAS.
* **Same bits as the batched path**: every product of prediction is fastnn's fixed-order one
  (src_c/fastnn_gemm.h), so a row predicted here equals the same row inside any batch.

What does not depend on the call (the network description, its FLOPs) is the model's own,
fixed at construction; nothing is cached that a fit or a setter could change.
"""
from fastnn.runtime import boundary

__all__ = ["predict_small", "SMALL_FLOPS"]

#: inputs of at most this many FLOPs (rows x 2 W) take the compiled one-call path: below it,
#: a forward pass has nothing to share among threads (one thread's share of a product,
#: fastnn/_core/_network.pyx _thread_min_flops), so it runs on the calling thread
SMALL_FLOPS = 1e6

# output link name -> loss code (fastnn.nn.model.OUTPUT_LINKS; repeated here so that this
# module imports nothing from the model it serves)
_LINK_CODES = {"identity": 0, "sigmoid": 3, "softmax": 4, "exp": 6}
_LEARNED_GAUSSIAN = 2


def predict_small(model, X):
    """``model.predict(X)`` in one compiled call, or None when the general path must run.

    Parameters
    ----------
    model : fastnn.MLP
    X : object
        Taken when it is an ndarray of shape (n, model.n_inputs) of the model's dtype,
        C-contiguous and aligned, all finite, with n * 2 W <= SMALL_FLOPS.

    Returns
    -------
    ndarray of shape (n, n_outputs), the model's dtype, or None
        The output link applied to the logits.  None: X (or the model's link: a
        learned-variance Gaussian returns half its columns) is left to the general path.
    """
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
        return boundary.net_predict_rows(model._spec, model._params, X, kind, SMALL_FLOPS)
    finally:
        lock.release()
