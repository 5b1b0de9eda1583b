"""``check_gradients``: the compiled backward pass against float64 central differences.

fastnn writes its backpropagation by hand (no autograd), so this is how a user, and the test
suite, convinces themselves that it is right for a given network, loss and data: every
parameter is nudged by +-eps, the loss re-evaluated, and the slope compared with the analytic
gradient, block by block (W and b of each layer).
"""
import numpy as np

from fastnn._validation import check_number, check_random_state
from fastnn.nn.model import MLP

# below this gradient magnitude a block is compared absolutely: central differences of a loss
# of size ~1 carry rounding noise ~1e-16 / eps ~ 1e-10
ZERO_GRADIENT_SCALE = 1e-8


class GradientReport:
    """The outcome of ``check_gradients``: one row per parameter block.

    Parameters
    ----------
    rows : list of dict
        As the attribute below.
    loss : float
        As the attribute below.

    Attributes
    ----------
    rows : list of dict
        Keys: layer, block ("W", "b", or a layer norm's "gain" and "shift"), shape,
        checked (number of parameters compared), max_abs_error, max_rel_error.  The relative error of a block is
        ``max |analytic - numeric| / max(max |numeric|, max |analytic|, 1e-8)``: per block,
        so that one entry that happens to be ~0 does not make a correct block look wrong, and
        a block whose gradient is truly zero (a dead unit) is judged by its absolute error.
    loss : float
        The loss at the checked parameters: the weighted mean over samples of the per-sample
        losses, as ``MLP.loss_and_grad`` returns it.
    """

    def __init__(self, rows, loss):
        self.rows = rows
        self.loss = loss

    @property
    def max_rel_error(self):
        """The largest relative error over all blocks."""
        return max(row["max_rel_error"] for row in self.rows)

    def ok(self, tol=1e-6):
        """True when every block's relative error is below `tol`.

        Parameters
        ----------
        tol : float, default 1e-6
            Largest acceptable relative error (dimensionless).

        Returns
        -------
        bool
        """
        return self.max_rel_error < tol

    def __str__(self):
        lines = [f"gradient check at loss {self.loss:.6g} (float64 central differences)",
                 f"{'layer':>5}  {'block':<5}  {'shape':<12}  {'checked':>7}  "
                 f"{'max abs err':>11}  {'max rel err':>11}"]
        for row in self.rows:
            lines.append(f"{row['layer']:>5}  {row['block']:<5}  {str(row['shape']):<12}  "
                         f"{row['checked']:>7}  {row['max_abs_error']:>11.3e}  "
                         f"{row['max_rel_error']:>11.3e}")
        lines.append(f"max relative error {self.max_rel_error:.3e}")
        return "\n".join(lines)

    __repr__ = __str__


def check_gradients(model, X, y, loss, sample_weight=None, *, eps=1e-6,
                    max_checks_per_block=None, seed=0):
    """Compare ``model.loss_and_grad`` with central differences, in float64.

    The model is copied to float64 (a float32 model is checked through its float64 twin: the
    code paths are the same fused kernels), so ``model`` itself is not modified.

    Parameters
    ----------
    model : fastnn.MLP
    X : array-like of shape (n_samples, n_inputs)
    y : targets as ``loss`` accepts them
    loss : str or fastnn.nn.losses.Loss
    sample_weight : array-like of shape (n_samples,), optional
        One weight per sample: the loss checked is the weighted mean sum_i w_i l_i / sum_i w_i.
    eps : float, default 1e-6
        Step of the central difference (error O(eps^2) + rounding O(1e-16 / eps)).
    max_checks_per_block : int, optional
        Check only this many randomly chosen parameters per block (for large networks).
    seed : int
        Which parameters are chosen when max_checks_per_block is set.

    Returns
    -------
    GradientReport
        ``print(report)`` shows the table; ``report.ok(1e-6)`` the verdict.

    Notes
    -----
    ReLU and leaky ReLU have a kink at 0: a difference quotient across it is wrong by design.
    Use data and parameters whose pre-activations stay further than eps from 0.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a fastnn.MLP; got {type(model).__name__}")
    eps = float(check_number(eps, "eps", low=0.0, low_open=True))
    if max_checks_per_block is not None:
        check_number(max_checks_per_block, "max_checks_per_block", low=1, integer=True)
    rng = check_random_state(seed)
    twin = model.astype(np.float64)
    loss_value = twin.loss_and_grad(X, y, loss, sample_weight)
    analytic = twin.grads.copy()
    params = twin.params
    rows = []
    w_off, b_off = twin._spec.w_offsets, twin._spec.b_offsets
    for k, layer in enumerate(twin.layers):
        blocks = [("W", layer.W, w_off[k]), ("b", layer.b, b_off[k])]
        if layer.normalization:     # the layer norm's gain and shift follow b
            blocks += [("gain", layer.gain, b_off[k] + layer.n_out),
                       ("shift", layer.shift, b_off[k] + 2 * layer.n_out)]
        for block, view, start in blocks:
            size = view.size
            picks = np.arange(size)
            if max_checks_per_block is not None and size > max_checks_per_block:
                picks = np.sort(rng.choice(size, max_checks_per_block, replace=False))
            numeric = np.empty(len(picks))
            for j, i in enumerate(picks):
                original = params[start + i]
                params[start + i] = original + eps
                up = twin.loss_and_grad(X, y, loss, sample_weight)
                params[start + i] = original - eps
                down = twin.loss_and_grad(X, y, loss, sample_weight)
                params[start + i] = original
                numeric[j] = (up - down) / (2 * eps)
            exact = analytic[start + picks]
            abs_err = np.abs(exact - numeric)
            scale = max(np.abs(numeric).max(), np.abs(exact).max(), ZERO_GRADIENT_SCALE)
            rows.append({"layer": k, "block": block, "shape": view.shape,
                         "checked": len(picks), "max_abs_error": float(abs_err.max()),
                         "max_rel_error": float(abs_err.max() / scale)})
    return GradientReport(rows, loss_value)
