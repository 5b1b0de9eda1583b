"""Full-batch training with L-BFGS: scipy's L-BFGS-B over fastnn's compiled loss and gradient.

The quasi-Newton method is scipy's (``scipy.optimize.minimize(method="L-BFGS-B")``); fastnn
supplies the objective (``LBFGSObjective``) and the run around it is the training engine's
(fastnn/training/full_batch.py: the data preparation, checks, history, callbacks, early
stopping, divergence and Ctrl-C handling of every fit); ``LBFGS`` holds the settings.
Each evaluation is one compiled call (``_network.loss_grad_into``, or
``_sparse.loss_grad_csr_into`` for a sparse X, through fastnn.runtime.boundary) that runs the
forward and backward pass over the whole data set without the GIL, so the optimizer's own
work (O(n_params) per iteration) is all that runs in Python.

The objective, for parameters theta (weights W_k and biases b_k), per-sample losses l_i and
sample weights w_i (all 1 by default)::

    F(theta) = sum_i w_i l_i(theta) / sum_i w_i  +  0.5 * weight_decay * sum_k ||W_k||_F^2

(biases are not penalised).  scikit-learn's ``alpha`` is ``weight_decay * sum_i w_i``.  Its
gradient is exact (no minibatch noise), so L-BFGS converges to a stationary point of F;
scipy stops when the largest component of the projected gradient is at most ``tol``, when
the relative decrease of F is below machine precision (scipy's ``ftol``), after ``max_iter``
iterations or after ``max_fun`` evaluations of F.

References
----------
Liu, D. C. and Nocedal, J. (1989). On the limited memory BFGS method for large scale
optimization. Mathematical Programming 45, 503-528.
Byrd, R. H., Lu, P., Nocedal, J. and Zhu, C. (1995). A limited memory algorithm for bound
constrained optimization. SIAM J. Sci. Comput. 16(5), 1190-1208 (the L-BFGS-B code scipy
wraps).
"""
import threading

import numpy as np

from fastnn.runtime import boundary
from fastnn._validation import check_number, weight_total

__all__ = ["LBFGS", "LBFGSObjective"]


class LBFGSObjective:
    """F(theta) and its gradient over a whole data set, for a fixed model structure.

    Parameters
    ----------
    model : fastnn.MLP
        Its structure; it is not changed: each evaluation writes theta and the gradient into
        vectors of the objective's own, so that the model never holds a trial point of a
        line search (a save or predict in another thread sees the iterates ``LBFGS.fit``
        publishes, fastnn/runtime/state.py).
    X, y, loss, sample_weight
        As for ``MLP.loss_and_grad``; converted and checked once, here.  X may also be a
        scipy.sparse matrix or array (CSR, CSC, ...): it is kept sparse, and the first layer's
        products run over its stored entries (fastnn.nn.sparse).
    weight_decay : float >= 0
        The L2 coefficient on the weights (see the module docstring).

    Attributes
    ----------
    n_evaluations : int
        Evaluations so far.
    """

    def __init__(self, model, X, y, loss, sample_weight=None, weight_decay=0.0):
        # a sparse X becomes a checked CSRInput (fastnn.nn.sparse), a dense one a checked
        # array, by the data preparation every run uses (which refuses weights that are
        # negative, not finite or all zero)
        loss, *data = model._prepare_any(X, y, loss, sample_weight)
        self._set_up(model, loss, data, weight_decay)

    @classmethod
    def _over(cls, model, loss, data, weight_decay, *, flush_denormals=None, n_threads=None):
        """The objective over data already prepared, ``(X, Y, labels, sw, sigma)`` as
        ``MLP.prepare_data`` returns them, whose weights are checked (a full-batch run,
        fastnn.training.full_batch); flush_denormals, n_threads: the compiled calls' (None:
        the context's)."""
        objective = cls.__new__(cls)
        objective._set_up(model, loss, data, weight_decay, flush_denormals, n_threads)
        return objective

    def _set_up(self, model, loss, data, weight_decay, flush_denormals=None, n_threads=None):
        self.model = model
        self.weight_decay = float(check_number(weight_decay, "weight_decay", low=0.0))
        self.flush_denormals, self.n_threads = flush_denormals, n_threads
        self.loss = loss
        X, self.Y, self.labels, self.sw, self.sigma = data
        self.X, self.csr = (X, None) if isinstance(X, np.ndarray) else (None, X)
        n = X.shape[0]
        # the total the weighted mean divides by (positive and finite: checked with the data)
        self.weight_sum = weight_total(self.sw, n)
        # which entries of the parameter vector are weights (penalised) rather than biases:
        # one contiguous range per layer
        self.weight_ranges = []
        self.is_weight = np.zeros(model.n_params, dtype=bool)
        for W in model.coefs:
            start = (W.__array_interface__["data"][0] -
                     model.params.__array_interface__["data"][0]) // model.params.itemsize
            self.weight_ranges.append((start, start + W.size))
            self.is_weight[start:start + W.size] = True
        # the L2 term as one vector (weight_decay on weights, 0 on biases): two NumPy calls
        # per evaluation rather than three per layer (small problems pay per call)
        self.decay = self.weight_decay * self.is_weight.astype(np.float64)
        self.n_evaluations = 0
        # the compiled evaluation's workspace (every layer's activations and two delta
        # buffers for all rows), allocated once: a fresh multi-MB allocation per call would
        # cost the kernel's page faults and zeroing each time
        spec = model._spec
        self.workspace = np.empty(n * (spec.act_width + 2 * spec.max_width), model.dtype)
        # the evaluated point and its gradient, in the model's dtype: the objective's own
        self.params = np.empty(model.n_params, model.dtype)
        self.grads = np.empty(model.n_params, model.dtype)
        self._lock = threading.Lock()  # one evaluation at a time uses the buffers

    def __call__(self, theta):
        """(F(theta), dF/dtheta) as (float, float64 array of shape (n_params,))."""
        theta = np.asarray(theta, dtype=np.float64)
        with self._lock:
            return self._evaluate(self.model, theta)

    def _evaluate(self, model, theta):
        if self.params.dtype == np.float64:
            self.params[...] = theta
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # reported by the loss
                self.params[...] = theta
        if self.csr is None:
            total = boundary.net_loss_grad(
                model._spec, self.params, self.grads, self.X, self.loss.kind,
                int(self.loss.full), self.loss.scalar_sigma, self.Y, self.labels, self.sw,
                self.sigma, 1.0 / self.weight_sum, workspace=self.workspace,
                flush_denormals=self.flush_denormals, n_threads=self.n_threads)
        else:
            csr = self.csr
            total = boundary.csr_loss_grad(
                model._spec, self.params, self.grads, csr.data, csr.indices, csr.indptr,
                csr.shape[1], self.loss.kind, int(self.loss.full), self.loss.scalar_sigma,
                self.Y, self.labels, self.sw, self.sigma, 1.0 / self.weight_sum,
                self.workspace, flush_denormals=self.flush_denormals, n_threads=self.n_threads)
        self.n_evaluations += 1
        value = total / self.weight_sum
        grad = self.grads.astype(np.float64)
        if self.weight_decay:
            decayed = self.decay * theta
            # (NumPy's sum, not its BLAS dot: that one splits the sum over as many threads
            # as the machine has cores, and the bits would follow the core count)
            value += 0.5 * float(np.sum(decayed * theta))
            grad += decayed
        return float(value), grad


class LBFGS:
    """Full-batch L-BFGS training of a ``fastnn.MLP`` (scipy's L-BFGS-B).

    Parameters
    ----------
    max_iter : int >= 1, default 200
        Most L-BFGS iterations.
    max_fun : int >= 1, default 15000
        Evaluations of the objective (each one pass over the data) after which no new
        iteration starts.  scipy checks it between iterations, so the line search of the
        last iteration may exceed it by a few (``result.nfev`` says how many ran), as in
        scikit-learn.
    tol : float >= 0, default 1e-4
        Stop when every component of the gradient is at most tol in absolute value
        (scipy's ``gtol``).
    weight_decay : float >= 0, default 0.0
        L2 coefficient on the weights (not the biases): the objective adds
        ``0.5 * weight_decay * sum ||W||^2`` to the (weighted) mean loss.
    history_size : int >= 1, default 10
        Correction pairs kept (scipy's ``maxcor``).

    Attributes
    ----------
    result_ : scipy.optimize.OptimizeResult or None
        The last run's result (None before one ends).

    A run of the training engine (fastnn/training/full_batch.py): pass it as the optimizer of
    ``fastnn.fit`` or ``MLP.fit`` (its iterations are max_iter: fit's ``epochs`` does not
    apply, nor do ``batch_size``, ``shuffle``, ``drop_last``; the objective has no dropout),
    or call ``LBFGS.fit``.  Each fit starts a new quasi-Newton memory from the model's
    parameters.

    Examples
    --------
    >>> model = fastnn.MLP([4, 16, 3], dtype=np.float64, seed=0)
    >>> history = model.fit(X, y, "cross_entropy", optimizer=fastnn.LBFGS(max_iter=100))
    >>> len(history), history.loss[-1]    # iterations run, final objective
    >>> result = fastnn.LBFGS(max_iter=100).fit(model, X, y, "cross_entropy")
    >>> result.nit, result.fun            # scipy's OptimizeResult
    """

    result_ = None

    def __init__(self, max_iter=200, max_fun=15000, tol=1e-4, weight_decay=0.0,
                 history_size=10):
        self.max_iter = int(check_number(max_iter, "max_iter", low=1, integer=True))
        self.max_fun = int(check_number(max_fun, "max_fun", low=1, integer=True))
        self.tol = float(check_number(tol, "tol", low=0.0))
        self.weight_decay = float(check_number(weight_decay, "weight_decay", low=0.0))
        self.history_size = int(check_number(history_size, "history_size", low=1,
                                             integer=True))

    def __repr__(self):
        return (f"LBFGS(max_iter={self.max_iter}, max_fun={self.max_fun}, tol={self.tol}, "
                f"weight_decay={self.weight_decay}, history_size={self.history_size})")

    def fit(self, model, X, y, loss, sample_weight=None, callback=None, verbose=False):
        """Minimise the objective from the model's current parameters.

        A thin call into the training engine: the same as ``model.fit(X, y, loss,
        optimizer=self, sample_weight=sample_weight)`` (``fastnn.fit``; the run is
        fastnn/training/full_batch.py), which also takes validation data, early stopping,
        callbacks ``cb(iteration, logs)`` and a progress bar, and returns the History.

        Parameters
        ----------
        model : fastnn.MLP
            Trained in place: on return ``model.params`` holds the solution and
            ``model.history_`` one entry per iteration.
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
        y : targets as the loss accepts them (see fastnn.nn.losses)
        loss : str or fastnn.nn.losses.Loss
        sample_weight : array-like of shape (n_samples,), optional
            One weight per sample: the objective is the weighted mean loss
            sum_i w_i l_i / sum_i w_i (plus the penalty).
        callback : callable(iteration, value), optional
            Called after every L-BFGS iteration with the objective at the new point.
        verbose : bool, default False
            Print the objective after every iteration.

        Returns
        -------
        scipy.optimize.OptimizeResult
            ``x`` (float64 parameters), ``fun`` (the objective at ``x``), ``nit``
            (iterations), ``nfev``,
            ``status`` (0 converged, 1 max_iter or max_fun reached, 2 stopped otherwise,
            e.g. an abnormal line search) and ``message``.  Also ``self.result_``.

        Raises
        ------
        ValueError, TypeError
            Invalid data (as ``fastnn.fit``), before any parameter changes.
        fastnn.TrainingDiverged
            The objective is NaN or infinite where the run ended (at the start: no iterate
            is accepted from there); the model keeps its finite starting parameters or the
            last accepted iterate, and the exception's ``result`` is scipy's.
        KeyboardInterrupt
            The model holds the last accepted iterate.
        """
        def report(iteration, logs):
            if verbose:
                print(f"Iteration {iteration}, loss = {logs['loss']:.8f}", flush=True)
            if callback is not None:
                callback(iteration, logs["loss"])

        # (through the model's fit, which the model inherits from fastnn.training: the
        # optimizers sit below the training package and do not import it)
        model.fit(X, y, loss, optimizer=self, sample_weight=sample_weight, callbacks=[report])
        return self.result_
