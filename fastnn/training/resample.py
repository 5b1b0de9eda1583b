"""Bootstrap resamples of a training set, for the members of an ensemble."""
import numpy as np

__all__ = ["bootstrap_draw", "out_of_bag"]

#: resamples drawn for one member at most, looking for one with a row of positive weight
_MAX_DRAWS = 200


def bootstrap_draw(rng, n, sample_weight=None, who="the member"):
    """n row indices drawn with replacement from `rng`, holding a row of positive weight.

    A bootstrap resample of weighted data can miss every row of positive weight (one such
    row in n is missed with probability (1 - 1/n)^n, about 0.37): the member would have
    nothing to train on, and its fit failed with "sample_weight is all zeros" although the
    data is valid.  Such a resample is drawn again from the same stream, as often as it
    takes (at most _MAX_DRAWS times: for one positive row the chance of needing more is
    below 1e-86); the first valid draw is the one kept, so data without zero weights gets
    the first draw.  Without a positive weight in the data itself the first draw is returned
    (the fit's own check names the problem).  Used by fastnn.MLPEnsemble and
    fastnn.interop.sklearn_ensemble.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int >= 1
    sample_weight : array-like of shape (n,) or None
    who : str
        Names the member in the error.

    Returns
    -------
    ndarray of shape (n,), int64, ascending
        Sorted, so that the resample keeps the data's row order: its rows from one MPI
        rank's shard are one contiguous part of it (fastnn.MLPEnsemble under MPI), and
        ``shuffle=False`` reads it in storage order.

    Raises
    ------
    ValueError
        Every one of the _MAX_DRAWS resamples missed the rows of positive weight.
    """
    idx = rng.integers(0, n, n)
    if sample_weight is None:
        return np.sort(idx)
    with np.errstate(invalid="ignore"):
        positive = np.asarray(sample_weight, dtype=np.float64) > 0
    if positive.shape != (n,) or not positive.any():
        return np.sort(idx)
    for _ in range(_MAX_DRAWS - 1):
        if positive[idx].any():
            return np.sort(idx)
        idx = rng.integers(0, n, n)
    if positive[idx].any():
        return np.sort(idx)
    raise ValueError(f"{_MAX_DRAWS} bootstrap resamples of the {n} rows for {who} all missed "
                     f"the {int(positive.sum())} rows of positive sample_weight; give more "
                     "rows a positive weight, or fit with bootstrap=False")


def out_of_bag(n, idx):
    """The rows of range(n) that the resample `idx` missed, ascending (int64).

    About (1 - 1/n)^n, 37%, of the rows for a bootstrap resample: a member's natural
    held-out set, which no copy of a training row enters.
    """
    missed = np.ones(n, dtype=bool)
    missed[idx] = False
    return np.flatnonzero(missed)
