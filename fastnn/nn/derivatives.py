"""Input derivatives of an ``MLP``: ``input_gradient`` (of the loss or of one output) and
``jacobian``, by the compiled backward pass run down to X (fastnn/_core/_sensitivity.pyx),
without finite differences.
"""
import numpy as np

from fastnn.runtime import boundary
from fastnn.runtime.state import consistent
from fastnn._validation import check_choice, check_number, weight_total
from fastnn.nn.forward import as_input
from fastnn.nn.network import OUTPUT_LINKS, _LEARNED_GAUSSIAN

# rows per chunk of input_gradient's loss gradient: its delta buffers (rows x the widest
# layer) stay in L2 for layers up to ~1000 wide in float32
SENSITIVITY_CHUNK_ROWS = 256
# rows of the stacked batch of jacobian (columns x rows of a chunk): one product per layer
# for all columns; 2048 was fastest for the 784-256-128-10 network's 10 columns
JACOBIAN_STACKED_ROWS = 2048


class InputDerivatives:
    """The input-derivative methods of ``fastnn.MLP`` (a mixin over
    ``fastnn.nn.network.Network``; the loss gradient prepares its data with the model's
    ``prepare_data``)."""

    def input_gradient(self, X, y=None, loss=None, output=None, *, of="output",
                       reduction="none", sample_weight=None):
        """Gradient with respect to the inputs, by the compiled backward pass run down to X.

        Exactly one of `y` (the gradient of the loss given targets) and `output` (the gradient
        of one output column) is given.  No finite differences: one forward and one backward
        pass per chunk of rows (a bounded workspace), in the model's dtype, without the GIL.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
            Converted once to the model's dtype (see ``as_input``); a sparse X is kept
            sparse (fastnn.nn.sparse: the first layer over its stored entries).
        y : array-like, optional
            Targets as `loss` accepts them: return the loss gradient.
        loss : str or fastnn.nn.losses.Loss, optional
            The loss for `y`; default: the loss the model was last trained with.
        output : int, optional
            Return d y_j / dX for output column j in [0, n_outputs) (see `of`).
        of : {"output", "logits"}, default "output"
            With `output`: "output" differentiates what the output link gives (probabilities
            for sigmoid/softmax, the rate for exp; for ``GaussianNLL("learned")`` columns
            0..k-1 are the means and k..2k-1 the standard deviations exp(s/2)); "logits" the
            last layer before the link.
        reduction : {"none", "mean"}, default "none"
            With `y`: "none" gives row i = w_i dl_i/dx_i, the per-sample loss gradient (what
            a sensitivity analysis wants); "mean" gives the gradient of the (weighted) mean
            loss sum_i w_i l_i / sum_i w_i with respect to X, i.e. the same rows divided by
            sum_i w_i.
        sample_weight : array-like of shape (n_samples,), optional
            Weights w_i (default 1), with `y` only: the loss is the weighted mean
            sum_i w_i l_i / sum_i w_i.

        Returns
        -------
        ndarray of shape (n_samples, n_inputs), the model's dtype

        Raises
        ------
        ValueError, TypeError
            Both or neither of `y` and `output`; `output` out of range; `y` without a loss
            when the model has never been trained; bad X, y or sample_weight.
        """
        if (y is None) == (output is None):
            raise ValueError("input_gradient needs exactly one of y (the gradient of the loss "
                             "given targets) and output (the gradient of one output column); "
                             f"got {'both' if y is not None else 'neither'}")
        check_choice(of, "of", ("output", "logits"))
        check_choice(reduction, "reduction", ("none", "mean"))
        if y is None:
            if loss is not None or sample_weight is not None or reduction != "none":
                raise ValueError("loss, sample_weight and reduction apply to the loss "
                                 "gradient; pass y with them, or output alone")
            j = check_number(output, "output", low=0, high=self.n_outputs - 1, integer=True)
            return self._jacobian(X, of, int(j), int(j) + 1)[:, 0, :]
        if of != "output":
            raise ValueError(f"of={of!r} applies to output=; the loss gradient is always "
                             "taken through the loss's own output link")
        if loss is None:
            if self.loss_ is None:
                raise ValueError("the model has not been trained, so it has no loss: pass "
                                 "loss= with y")
            loss = self.loss_
        loss, X, Y, labels, sw, sigma = self.prepare_data(X, y, loss, sample_weight)
        scale = 1.0
        if reduction == "mean":
            weight_sum = weight_total(sw, X.shape[0])
            if not weight_sum > 0:
                raise ValueError("sample_weight sums to 0: the mean loss is undefined")
            scale = 1.0 / weight_sum
        out = np.empty((X.shape[0], self.n_inputs), dtype=self.dtype)
        with consistent(self):  # one epoch boundary of a fit in another thread
            boundary.input_loss_grad(
                self._spec, self.params, X, loss.kind, int(loss.full), loss.scalar_sigma, Y,
                labels, sw, sigma, scale, out, SENSITIVITY_CHUNK_ROWS)
        return out

    def jacobian(self, X, of="output"):
        """The Jacobian of the outputs with respect to the inputs, per sample.

        ``J[i, j, c] = d y_ij / d x_ic`` by the compiled backward pass run down to X, without
        the GIL, in the model's dtype: per chunk of JACOBIAN_STACKED_ROWS // n_outputs rows,
        one forward pass, then the n_outputs unit seeds stacked into one batch that is pulled
        back with one matrix product per layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
        of : {"output", "logits"}, default "output"
            "output": y is what the output link gives (``predict``/``predict_proba``; for
            ``GaussianNLL("learned")`` the k means then the k standard deviations exp(s/2));
            "logits": y is the last layer before the link (``forward``).

        Returns
        -------
        ndarray of shape (n_samples, n_outputs, n_inputs), the model's dtype
            Units of y (probability, mean, ...; logits with of="logits") per unit of x.
        """
        return self._jacobian(X, of, 0, self.n_outputs)

    def _jacobian(self, X, of, first, stop):
        """Columns [first, stop) of the Jacobian, shape (n_samples, stop - first, n_inputs)."""
        check_choice(of, "of", ("output", "logits"))
        X = as_input(X, "X", self.dtype, self.n_inputs)
        out = np.empty((X.shape[0], stop - first, self.n_inputs), dtype=self.dtype)
        with consistent(self):  # the link and parameters of one epoch boundary
            # the link by name (KL's softmax, a fixed-sigma Gaussian's identity), as a loss code
            link = self._link_name()
            kind = _LEARNED_GAUSSIAN if link == "gaussian" else OUTPUT_LINKS[link]
            boundary.input_jacobian(self._spec, self.params, X, int(of == "output"), kind,
                                    first, stop, out, JACOBIAN_STACKED_ROWS)
        return out
