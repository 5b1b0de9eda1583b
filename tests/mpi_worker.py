"""Run under mpiexec by tests/test_distributed.py: one scenario per first argument.

    equal OUT OPT   train float64 on uneven shards with sample weights; rank 0 writes every
                    rank's final parameters and the history to OUT (.npz)
    bad-input       rank 1's shard contains NaN: every rank must raise the same ValueError
    callback-fails  rank 1's callback raises after epoch 0: the job must abort, not hang
"""
import sys

import numpy as np
from mpi4py import MPI

import fastnn

comm = MPI.COMM_WORLD
rank = comm.Get_rank()


def global_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((101, 5))
    labels = rng.integers(0, 3, 101)
    sw = rng.uniform(0.0, 2.0, 101)
    return X, labels, sw


def optimizer(name):
    return {"sgd": fastnn.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
            "adam": fastnn.Adam(lr=0.01)}[name]


def model(dropout=0.0, normalization=None):
    return fastnn.MLP([5, 8, 6, 3], activation=["tanh", "relu"], dtype=np.float64, seed=1,
                      bias_init=0.1, dropout=dropout, normalization=normalization)


def uneven_shard():
    # rank 0: rows 0..29, rank 1: rows 30..100 (30 and 71 rows)
    return slice(0, 30) if rank == 0 else slice(30, 101)


def main(scenario, *args):
    X, labels, sw = global_data()
    mine = uneven_shard()
    if scenario == "equal":
        out, opt, *extra = args
        net = model(float(extra[0]) if extra else 0.0, extra[1] if len(extra) > 1 else None)
        if rank == 1:
            net.params[:] = 0.0  # fit must broadcast rank 0's parameters
        history = fastnn.fit(net, X[mine], labels[mine], "cross_entropy", optimizer(opt),
                             epochs=4, batch_size=16, seed=3, sample_weight=sw[mine],
                             comm=comm)
        every = comm.gather(net.params.copy(), root=0)
        if rank == 0:
            np.savez(out, params=np.array(every), loss=np.array(history.loss))
    elif scenario == "bad-input":
        if rank == 1:
            X = X.copy()
            X[40, 2] = np.nan
        try:
            fastnn.fit(model(), X[mine], labels[mine], "cross_entropy", epochs=2, comm=comm)
        except ValueError as exc:
            print(f"rank {rank} raised: {exc}", flush=True)
            sys.exit(3)
    elif scenario == "callback-fails":
        def callback(epoch, logs):
            if rank == 1 and epoch == 0:
                raise RuntimeError("callback failed on rank 1")

        fastnn.fit(model(), X[mine], labels[mine], "cross_entropy", epochs=50, comm=comm,
                   callbacks=[callback])


if __name__ == "__main__":
    main(*sys.argv[1:])
