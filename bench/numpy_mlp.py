"""A plain NumPy MLP trainer: the same algorithm as fastnn's fit, written plainly.

Every epoch: shuffle, then for each minibatch: gather its rows, forward (X @ W + b, activation),
softmax cross-entropy or MSE and its gradient with respect to the logits, backward (dW = A^T D,
db = sum D, dX = D W^T, times the activation's derivative), plain SGD update.  Same layer
layout as fastnn (samples as rows, W of shape (n_in, n_out)), same loss scaling (the gradient
of the batch mean; MSE is the mean over outputs of (z - y)^2), no dX for the first layer.
Nothing is tuned beyond what a careful NumPy user writes: no preallocated buffers, no
in-place tricks.  It runs on NumPy's own BLAS (never scipy's: two OpenBLAS copies in one loop fight over threads and caches).
"""
import numpy as np


class NumpyMLP:
    def __init__(self, sizes, activation="relu", loss="cross_entropy", dtype=np.float32,
                 seed=0):
        rng = np.random.default_rng(seed)
        self.activation, self.loss, self.dtype = activation, loss, np.dtype(dtype)
        self.W, self.b = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            if activation == "relu":
                W = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
            else:
                limit = np.sqrt(6.0 / (n_in + n_out))
                W = rng.uniform(-limit, limit, (n_in, n_out))
            self.W.append(W.astype(self.dtype))
            self.b.append(np.zeros(n_out, self.dtype))

    def _act(self, Z):
        if self.activation == "relu":
            return np.maximum(Z, 0)
        return np.tanh(Z)

    def _act_grad(self, A, G):
        """dl/dZ from dl/dA and the stored output A."""
        if self.activation == "relu":
            return G * (A > 0)
        return G * (1 - A * A)

    def step(self, X, y, lr):
        """One SGD step on a minibatch; returns the mean loss."""
        acts = [X]
        for k in range(len(self.W)):
            Z = acts[-1] @ self.W[k] + self.b[k]
            acts.append(Z if k == len(self.W) - 1 else self._act(Z))
        Z = acts[-1]
        n = X.shape[0]
        if self.loss == "cross_entropy":
            Z = Z - Z.max(axis=1, keepdims=True)
            E = np.exp(Z)
            P = E / E.sum(axis=1, keepdims=True)
            loss = -np.log(P[np.arange(n), y]).mean()
            G = P
            G[np.arange(n), y] -= 1
            G /= n
        else:
            diff = Z - y
            loss = (diff * diff).mean()
            G = (2.0 / diff.size) * diff
        for k in range(len(self.W) - 1, -1, -1):
            dW = acts[k].T @ G
            db = G.sum(axis=0)
            if k > 0:
                G = self._act_grad(acts[k], G @ self.W[k].T)
            self.W[k] -= lr * dW
            self.b[k] -= lr * db
        return loss

    def fit(self, X, y, epochs=1, batch_size=32, lr=0.01, seed=0):
        rng = np.random.default_rng(seed)
        n = X.shape[0]
        loss = np.nan
        for _ in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                loss = self.step(X[idx], y[idx], lr)
        return loss
