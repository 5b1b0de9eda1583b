"""Data-parallel training over MPI: run with

    mpiexec -n 2 python examples/mpi_train.py

Every rank builds the same model and keeps its share of the data; fastnn.fit(..., comm=...)
adds the ranks' gradients with one MPI_Allreduce per minibatch inside the compiled loop, so
the result is that of one process on the whole data.  Only rank 0 prints and saves.
"""
import sys

import numpy as np
from mpi4py import MPI

import fastnn
from fastnn.datasets import make_spirals
from fastnn.training.distributed import is_root, shard

comm = MPI.COMM_WORLD
X, y = make_spirals(12000, n_classes=3, seed=0)   # every rank makes the same data ...
mine = shard(len(X), comm)                        # ... and keeps its contiguous share
model = fastnn.MLP([2, 64, 64, 3], seed=0)        # rank 0's weights are broadcast by fit
history = fastnn.fit(model, X[mine], y[mine], "cross_entropy", fastnn.Adam(lr=0.01),
                     epochs=10, batch_size=64, seed=0, validation_split=0.1,
                     verbose=1, comm=comm)

accuracy = np.mean(model.predict(X[mine]).argmax(axis=1) == y[mine])
correct = comm.allreduce(accuracy * len(X[mine]))
if is_root(comm):
    print(f"{comm.Get_size()} ranks: training accuracy {correct / len(X):.4f}, "
          f"validation accuracy {history.val_metric[-1]:.4f}")
    if len(sys.argv) > 1:
        model.save(sys.argv[1])
        print(f"saved to {sys.argv[1]}")
