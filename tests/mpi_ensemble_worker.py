"""Run under `mpiexec -n 2` by tests/test_ensemble.py: an MLPEnsemble trained data-parallel.

Usage: mpi_ensemble_worker.py OUT   rank 0 writes every rank's members' parameters to OUT
       mpi_ensemble_worker.py bad   rank 1's shard holds NaN (bootstrap on): every rank must
                                    raise, none may wait forever in a collective
       mpi_ensemble_worker.py OUT VARIANT
                                    as OUT, for a fit of VARIANTS (bootstrap resamples with
                                    weights, held-out rows drawn by the fit): the ranks must
                                    draw together the rows one process draws
       mpi_ensemble_worker.py members | bootstrap
                                    the ranks' ensembles differ in n_members (rank 0 one
                                    more: it would wait alone in member 2's collectives) or
                                    in bootstrap (a silent mix of resampled and plain
                                    shards): every rank raises the same ValueError
"""
import sys

import numpy as np

import fastnn
from fastnn.ensemble import MLPEnsemble

FIT = dict(epochs=3, batch_size=16)


def global_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 4))
    return X, np.sin(X[:, :1]) + 0.1 * rng.standard_normal((90, 1))


def ensemble():
    return MLPEnsemble([4, 8, 1], 3, activation="tanh", dtype=np.float64, seed=2)


def optimizer():
    return fastnn.Adam(lr=0.01)


def weights():
    w = np.random.default_rng(5).uniform(0.5, 2.0, 90)
    w[35:48] = 0.0      # rows of zero weight on both shards
    return w


#: variant -> (ensemble, loss, fit keywords of the global data, given rows `rows`)
VARIANTS = {
    "plain": lambda rows: (ensemble(), "mse", {}),
    # weighted bootstrap resamples, early stopping on each member's out-of-bag rows
    "bootstrap": lambda rows: (
        MLPEnsemble([4, 8, 2], 3, activation="tanh", dtype=np.float64, seed=2, bootstrap=True),
        fastnn.GaussianNLL("learned"), {"sample_weight": weights()[rows]}),
    # early_stopping="auto": each member holds out its own random 10% of the rows
    "auto-split": lambda rows: (
        MLPEnsemble([4, 8, 2], 3, activation="tanh", dtype=np.float64, seed=2),
        fastnn.GaussianNLL("learned"), {}),
    # the caller's validation_split and early stopping
    "split": lambda rows: (ensemble(), "mse", {"validation_split": 0.3, "early_stopping": 1,
                                               "sample_weight": weights()[rows]}),
}


def fit(variant, rows=slice(None), comm=None):
    """The fitted ensemble of `variant` on the global rows `rows` (all of them: one
    process)."""
    X, y = global_data()
    ens, loss, kwargs = VARIANTS[variant](rows)
    ens.fit(X[rows], y[rows], loss, optimizer(), comm=comm, **FIT, **kwargs)
    return ens


def main(out, variant="plain"):
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    X, y = global_data()
    mine = slice(0, 40) if rank == 0 else slice(40, 90)   # uneven shards
    if out == "bad":
        if rank == 1:
            X[50, 1] = np.nan
        ens = MLPEnsemble([4, 8, 1], 2, seed=2, bootstrap=True)
        try:
            ens.fit(X[mine], y[mine], "mse", comm=comm, **FIT)
        except ValueError as exc:
            print(f"rank {rank} raised: {exc}", flush=True)
            sys.exit(1)
        return
    if out == "bad-arg":    # rank 1 alone passes a bad argument: every rank must raise
        bad = {"n_threads": {"n_threads": 0}, "callbacks": {"callbacks": [3]},
               "loss": {"loss": "mae"}, "optimizer": {"optimizer": fastnn.LBFGS()},
               "keyword": {"bootstrap": True}}[variant] if rank == 1 else {}
        kwargs = dict(dict(loss="mse"), **bad)
        try:
            MLPEnsemble([4, 8, 1], 2, seed=2).fit(X[mine], y[mine], comm=comm, **FIT, **kwargs)
        except (ValueError, TypeError) as exc:
            print(f"rank {rank} raised: {exc}", flush=True)
            sys.exit(1)
        return
    if out in ("members", "bootstrap"):
        n = 3 - rank if out == "members" else 2
        ens = MLPEnsemble([4, 8, 1], n, seed=2, bootstrap=out == "bootstrap" and rank == 1)
        try:
            ens.fit(X[mine], y[mine], "mse", comm=comm, **FIT)
        except ValueError as exc:
            print(f"rank {rank} raised: {exc}", flush=True)
            sys.exit(1)
        return
    ens = fit(variant, mine, comm)
    every = comm.gather([m.params.copy() for m in ens.members], root=0)
    if rank == 0:
        np.savez(out, **{f"rank{r}_{k}": p for r, ps in enumerate(every)
                         for k, p in enumerate(ps)})


if __name__ == "__main__":
    main(*sys.argv[1:])
