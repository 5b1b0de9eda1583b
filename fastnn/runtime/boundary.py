"""The compiled boundary: the one door from Python into fastnn's compiled code.

Every call of fastnn's compiled arithmetic -- prediction, loss and gradient, the L-BFGS
objective, the sparse kernels, the input derivatives, the single layers and losses, an
optimizer step, training epochs (one model's or an ensemble's) -- goes through an entry of this
module, and no other module outside ``fastnn._core`` imports a compiled module
(tests/test_imports.py reads the source to hold that).  Each entry, built by ``_entry`` below,
does the same four things, so a call site cannot forget one of them:

1. **fastnn's thread count**: ``n_threads`` (None: this context's default,
   ``fastnn.runtime.threads.resolve_threads``) is resolved and handed to the kernel, whose
   products and passes run in tiles fixed by the shapes on that many threads of fastnn's
   pool (fastnn._core._pool): the same bits for any count.  Kernels with no tiled product
   (a single layer, a loss) run on the calling thread.
2. **OpenBLAS at one thread** while the kernel runs (``compiled_threads``), also inside a
   caller's ``blas_threads(n)`` block: OpenBLAS's products at 2 threads are not the bits
   of 1.
3. **The floating-point mode**: ``flush_denormals`` (None: this thread's setting,
   ``fastnn.runtime.fpmode.resolve``) is handed to the kernel, which flushes subnormals on
   every thread doing its arithmetic and puts the caller's mode back before returning.
4. **Buffer sizes** are checked by the compiled entry point itself, before any pointer is
   taken (check_net, the CSR structure, the targets, the output shapes): the compiled
   modules are importable, so they check what reaches them whoever calls them.

Training is configured once per fit and prepared and run epoch by epoch, so that an ensemble
can run its members' epochs as one job: ``epoch_config`` resolves (1) and (3) once per fit,
``prepare_epoch`` checks (4) and returns an ``Epoch`` over a dense or a CSR row source
(``DenseRows``, ``CSRRows``); ``Epoch.run`` and ``run_epochs`` hold (2) while it runs.

The names below that run no arithmetic (the network description ``NetSpec``, the MPI
reducer ``Allreduce``, codes and status values) are re-exported so the layers above have one
module to import from.
"""
from fastnn._core import (_arrays, _epoch, _layers, _losses, _network, _sensitivity, _sgd,
                          _sparse)
from fastnn.runtime import fpmode, threads
from fastnn.runtime.threads import compiled_threads

__all__ = [
    "NetSpec", "Allreduce", "LOSS_KINDS", "OPT_SGD", "OPT_ADAM", "OPT_ADAMW", "STATUS_OK",
    "STATUS_DIVERGED", "STATUS_INTERRUPTED", "ENTRIES", "net_forward", "net_predict_rows",
    "net_loss_grad",
    "csr_forward", "csr_loss_grad", "input_loss_grad", "input_jacobian", "layer_forward",
    "layer_backward", "loss_grad", "loss_output", "update_params", "DenseRows", "CSRRows",
    "fill_permutation",
    "epoch_config", "Epoch", "prepare_epoch", "run_epochs",
]

# ------------------------------------------------------------------ no arithmetic: re-exported

NetSpec = _network.NetSpec      # the network's description; its check() sizes buffers
Allreduce = _epoch.Allreduce    # MPI's sum, called from inside the compiled epoch
#: loss name -> loss code (fastnn/_core/_losses.pxd)
LOSS_KINDS = dict(_losses.KINDS)
OPT_SGD, OPT_ADAM, OPT_ADAMW = _sgd.OPT_SGD, _sgd.OPT_ADAM, _sgd.OPT_ADAMW
STATUS_OK, STATUS_DIVERGED, STATUS_INTERRUPTED = (_epoch.STATUS_OK, _epoch.STATUS_DIVERGED,
                                                  _epoch.STATUS_INTERRUPTED)
# an epoch's row source: a dense X or a CSR one, with the per-sample inputs (arrays only)
DenseRows, CSRRows = _epoch.DenseRows, _epoch.CSRRows
#: fill_permutation(order, entropy): an epoch's sample order, NumPy's default_rng(entropy)
#: .permutation compiled (integer arithmetic only)
fill_permutation = _arrays.fill_permutation


# ------------------------------------------------------------------ the mechanism

def _entry(name, kernel, pooled):
    """The boundary's face of the compiled entry point `kernel`.

    Called with the kernel's own arguments, minus ``flush_denormals`` and ``n_threads``,
    which it takes as keywords (None: this thread's setting, this context's count), resolves
    and passes on by keyword; OpenBLAS is held at one thread meanwhile.  `pooled`: the
    kernel takes ``n_threads`` (its products run on fastnn's pool).
    """
    if pooled:
        def call(*args, n_threads=None, flush_denormals=None, **kwargs):
            flush = fpmode.resolve(flush_denormals)
            with compiled_threads(n_threads) as n:
                return kernel(*args, flush_denormals=flush, n_threads=n, **kwargs)
    else:
        def call(*args, n_threads=None, flush_denormals=None, **kwargs):
            flush = fpmode.resolve(flush_denormals)
            with compiled_threads(n_threads):      # (validates n_threads; one thread here)
                return kernel(*args, flush_denormals=flush, **kwargs)
    call.__name__ = call.__qualname__ = name
    call.__doc__ = (f"``{kernel.__module__}.{kernel.__name__}`` through the compiled boundary "
                    "(fastnn.runtime.boundary): keywords n_threads and flush_denormals "
                    "(None: the context's).\n\n" + (kernel.__doc__ or ""))
    call.kernel, call.pooled = kernel, pooled
    return call


# ------------------------------------------------------------------ the entries

#: boundary name -> its entry; every compiled call of the package is one of these
ENTRIES = {}


def _register(name, kernel, pooled):
    ENTRIES[name] = entry = _entry(name, kernel, pooled)
    return entry


# the network: prediction (logits or output link), loss and parameter gradient
net_forward = _register("net_forward", _network.forward_into, pooled=True)
net_loss_grad = _register("net_loss_grad", _network.loss_grad_into, pooled=True)
# the same over a CSR X (the sparse first layer; later layers as above)
csr_forward = _register("csr_forward", _sparse.forward_csr_into, pooled=True)
csr_loss_grad = _register("csr_loss_grad", _sparse.loss_grad_csr_into, pooled=True)
# derivatives with respect to the inputs
input_loss_grad = _register("input_loss_grad", _sensitivity.loss_input_grad_into, pooled=True)
input_jacobian = _register("input_jacobian", _sensitivity.jacobian_into, pooled=True)
# one dense layer (fastnn.dense_forward / dense_backward)
layer_forward = _register("layer_forward", _layers.forward_into, pooled=False)
layer_backward = _register("layer_backward", _layers.backward_into, pooled=False)
# a loss on given logits (fastnn.nn.losses), and its output link
loss_grad = _register("loss_grad", _losses.loss_grad_into, pooled=False)
loss_output = _register("loss_output", _losses.output_into, pooled=False)
# one optimizer step (Optimizer.step)
update_params = _register("update_params", _sgd.update_params, pooled=True)




def net_predict_rows(spec, params, X, loss_kind, chunk_rows, n_threads=None,
                     flush_denormals=None):
    """``fastnn._core._network.predict_rows`` through the compiled boundary: a prediction in
    one compiled call, or None when that path does not take X (the caller then validates
    and calls ``net_forward``).

    The boundary's promises, at the cost of a one-row prediction (a few microseconds): (1)
    fastnn's thread count is resolved here (None: this context's; 1 costs nothing to
    resolve, and a one-row call should pass it); (3) the floating-point mode too (None:
    this thread's setting); (2) needs no hold: the call makes no BLAS call (its products are
    fastnn's fixed-order ones, src_c/fastnn_gemm.h, whose bits no thread count changes);
    (4) the compiled function checks every size (it declines what does not fit).
    """
    flush = _get_flush() if flush_denormals is None else fpmode.resolve(flush_denormals)
    n = 1 if n_threads == 1 else threads.resolve_threads(n_threads)
    return _network.predict_rows(spec, params, X, loss_kind, flush, n, chunk_rows)


_get_flush = fpmode.get_flush_denormals
net_predict_rows.kernel, net_predict_rows.pooled = _network.predict_rows, True
ENTRIES["net_predict_rows"] = net_predict_rows
#: 2 W, the FLOPs of one row's forward pass of a network (no arithmetic: a count)
flops_per_row = _network.flops_per_row


# ------------------------------------------------------------------ training epochs

class Epoch:
    """One prepared training epoch of one model (``prepare_epoch``), over a dense or a CSR X.

    ``run()`` runs it on the calling thread (its products on fastnn's pool), with OpenBLAS
    held at one thread; ``run_epochs`` runs several models' epochs as one job.  ``group()``
    before the run makes ``run()`` go on with more epochs in the same compiled call
    (``_epoch.EpochCall.run_group``).  Attributes after the run: ``ran``, ``result``
    ((loss_sum, weight_sum, steps, t, status, failed_step, pending_exception), the last
    epoch's), ``seconds`` (its own wall time) and ``results`` ((result, seconds) of every
    epoch run).  ``drop()``: never run it (its run ended first).
    """
    __slots__ = ("_call", "_group")

    def __init__(self, call):
        self._call = call       # a compiled _epoch.EpochCall
        self._group = None

    @property
    def ran(self):
        return self._call.ran

    @property
    def result(self):
        return self._call.result

    @property
    def results(self):
        return self._call.results

    @property
    def seconds(self):
        return self._call.seconds

    def drop(self):
        """Never run this epoch (its run ended before it ran); no effect once it ran."""
        self._call.drop()

    def group(self, rates, order_key, order, previous, snapshot):
        """Run ``len(rates)`` epochs in this call (``_epoch.EpochCall.run_group``'s arguments):
        for a driver that has nothing to do between them; ``run_epochs`` refuses it."""
        self._group = (rates, order_key, order, previous, snapshot)

    def run(self):
        """Run the epoch (or its group) on the calling thread; returns ``result``."""
        with compiled_threads(1):
            if self._group is None:
                return self._call.run()
            return self._call.run_group(*self._group)


def epoch_config(*args, n_threads=None, flush_denormals=None, **kwargs):
    """What every epoch of one fit shares, built once per fit (``_epoch.EpochConfig``'s
    arguments, minus ``flush_denormals`` and ``n_threads``, resolved here as every entry
    resolves them: None is this thread's setting, this context's count)."""
    return _epoch.EpochConfig(*args, flush_denormals=fpmode.resolve(flush_denormals),
                              n_threads=threads.resolve_threads(n_threads), **kwargs)


def prepare_epoch(config, source, params, grads, state1, state2, order, optimizer, t0, epoch):
    """One epoch, prepared (``_epoch.prepare_epoch``'s arguments: the fit's ``epoch_config``,
    its row source ``DenseRows`` or ``CSRRows``, then this epoch's model buffers, order,
    optimizer hyperparameters, step count and index).  Returns an ``Epoch``; every size is
    checked now, by the compiled code."""
    return Epoch(_epoch.prepare_epoch(config, source, params, grads, state1, state2, order,
                                      optimizer, t0, epoch))


def run_epochs(epochs, n_threads):
    """Run prepared epochs of different models (``Epoch``, dense or sparse X) as the tasks of
    one job on fastnn's pool (``_epoch.train_epochs``, `n_threads` threads; it refuses epochs
    whose written buffers overlap), OpenBLAS held at one thread.

    Returns the exception a signal handler raised (Ctrl-C: KeyboardInterrupt), or None, as
    ``_epoch.train_epochs`` does: epochs not yet started then do not start; each epoch's
    ``result`` holds its own figures.
    """
    epochs = list(epochs)
    for e in epochs:
        if not isinstance(e, Epoch):
            raise TypeError(f"epochs must be Epoch objects (prepare_epoch); got "
                            f"{type(e).__name__}")
        if e._group is not None:
            raise ValueError("a grouped Epoch runs alone (Epoch.run): its epochs follow one "
                             "another in one call")
    with compiled_threads(n_threads) as n:
        return _epoch.train_epochs([e._call for e in epochs], n)
