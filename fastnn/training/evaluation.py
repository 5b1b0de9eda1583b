"""Scoring a model on prepared data: the (weighted) mean loss and the metric (accuracy for a
sigmoid or softmax output, R^2 otherwise), in float64 sums over chunks, combined over MPI ranks.
``fit`` scores its validation data with it, and ``MLP.evaluate`` calls it too.
"""
import numpy as np

from fastnn.runtime.state import consistent
from fastnn._validation import weight_total
from fastnn.nn.sparse import CSRInput, forward_kind as sparse_forward_kind
from fastnn.runtime import boundary


def _evaluation_stats(model, loss, X, Y, labels, sw, sigma, flush_denormals=None,
                      n_threads=None):
    """Sufficient statistics of the loss and metric on prepared arrays (combinable over ranks).

    Keys: loss (sum_i w_i l_i), weight (sum_i w_i), and for classifiers hits (weighted count of
    correct predictions), for regression n, mean (per output), m2 (sum of squared deviations
    from the mean) and resid (sum of squared residuals), the inputs of R^2.  All float64
    (Python floats or float64 arrays), so sums over ranks cannot overflow the model's dtype.
    """
    if X.shape[0] == 0:
        # an MPI rank holding none of the rows (its shard all trained on, say): it adds
        # nothing to any sum
        if loss.output_name in _CLASSIFIER_LINKS:
            return {"weight": 0.0, "loss": 0.0, "hits": 0.0}
        zeros = np.zeros(Y.shape[1])
        return {"weight": 0.0, "loss": 0.0, "n": 0, "mean": zeros, "m2": zeros,
                "resid": zeros}
    with consistent(model):  # one epoch boundary of a fit in another thread
        if isinstance(X, CSRInput):
            Z = sparse_forward_kind(model, X, 0, False, 4096, flush_denormals,
                                    n_threads)  # the logits
        else:
            Z = np.empty((X.shape[0], model.n_outputs), model.dtype)
            boundary.net_forward(model._spec, model.params, X, Z, 0, 4096,
                                 flush_denormals=flush_denormals, n_threads=n_threads)
    total = boundary.loss_grad(loss.kind, int(loss.full), loss.scalar_sigma, Z, Y, labels, sw,
                               sigma, 1.0, None, flush_denormals=flush_denormals)
    stats = {"weight": weight_total(sw, X.shape[0]), "loss": float(total)}
    boundary.loss_output(loss.kind, Z, flush_denormals=flush_denormals)
    if loss.output_name in _CLASSIFIER_LINKS:
        if loss.output_name == "softmax":
            truth = labels if labels is not None else Y.argmax(axis=1)
            hit = Z.argmax(axis=1) == truth
        else:
            hit = ((Z >= 0.5) == (Y >= 0.5)).mean(axis=1)
        # (NumPy's sum, not np.dot: its BLAS splits long sums over the machine's cores)
        stats["hits"] = float(np.sum(hit * sw.astype(np.float64)) if sw is not None
                              else hit.sum())
    else:
        Y64 = Y.astype(np.float64)
        mean = Y64.mean(axis=0)
        stats.update(n=Y.shape[0], mean=mean, m2=((Y64 - mean) ** 2).sum(axis=0),
                     resid=((Y64 - Z[:, : Y.shape[1]]) ** 2).sum(axis=0))
    return stats

#: output links whose metric is accuracy (R^2 for the others)
_CLASSIFIER_LINKS = ("sigmoid", "softmax")


def _combine_evaluations(parts):
    """(mean loss, metric) from the statistics of one or more shards.

    Variances combine by Chan et al.'s pairwise rule, so R^2 over shards equals R^2 over the
    concatenated data without the cancellation of sum-of-squares formulas.
    """
    weight = sum(p["weight"] for p in parts)
    mean_loss = sum(p["loss"] for p in parts) / weight
    if "hits" in parts[0]:
        return mean_loss, sum(p["hits"] for p in parts) / weight
    n = sum(p["n"] for p in parts)
    mean = sum(p["n"] * p["mean"] for p in parts) / n
    m2 = sum(p["m2"] + p["n"] * (p["mean"] - mean) ** 2 for p in parts)
    resid = sum(p["resid"] for p in parts)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(m2 > 0, 1 - resid / m2, 0.0)
    return mean_loss, float(r2.mean())


def evaluate(model, loss, X, Y, labels, sw, sigma, mpi=None, flush_denormals=None,
             n_threads=None):
    """(mean loss, metric) of prepared arrays: accuracy for classifiers, R^2 otherwise.

    With `mpi` (a fastnn.training.distributed.MPIContext) the arrays are this rank's shard and the
    result is that of all shards together, the same on every rank.
    """
    stats = _evaluation_stats(model, loss, X, Y, labels, sw, sigma, flush_denormals,
                              n_threads)
    return _combine_evaluations([stats] if mpi is None else mpi.comm.allgather(stats))
