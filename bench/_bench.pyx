"""Micro-benchmarks timed inside compiled code: what bench/kernels.py and bench/gemm_floor.py report.

(Compiled with wraparound=False like every fastnn module: no negative indices, even on lists.)

Every measurement is a loop of `reps` calls between two CLOCK_MONOTONIC reads, run without the
GIL, divided by `reps`: no Python in the numbers.  Python only builds the buffers, chooses `reps`
(so that one sample lasts about `min_time` seconds) and interleaves the cases: in every repeat
each case is sampled once, in the same order, so that drift of the machine hits all of them
alike.  Results are raw samples (ns per call, one per repeat); the median is the figure to
quote (see bench/_common.py).

The cases:
  gemm            one bare GEMM through fastnn._core._blas.gemm_rowmajor (scipy's cython_blas)
  forward         _layers.dense_forward: the GEMM, then bias + activation in one pass
  backward        _layers.dense_backward: one pass for act' and db, then the dW and dX GEMMs
  pass            a plain loop D = dA * A over the output: the cost of "one pass"
  loss            _losses.loss_grad: the per-sample NLL and its gradient w.r.t. the logits
  step            one training step exactly as _sgd.train_epoch runs it: gather the batch's
                  rows in a shuffled order, then _sgd.train_step (forward, loss, backward,
                  update; plain SGD fuses the update into the weight-gradient GEMMs)
  floor           only the GEMMs that step needs (forward per layer, dW per layer, dX for every
                  layer but the first), with the same shapes and flags, back to back

Buffers are filled with small random values that no case drives to inf, NaN or subnormals
(backward writes D to its own buffer instead of over dA, so repeated calls see the same
inputs).  The bench never calls NumPy's BLAS: every product goes through scipy's OpenBLAS,
like fastnn itself (two OpenBLAS copies in one loop fight over threads and caches).
"""
from cython cimport floating
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from fastnn._core._blas cimport gemm_rowmajor
from fastnn._core._kernels cimport FNN_OK
from fastnn._core._layers cimport dense_forward, dense_forward_keep, dense_backward
from fastnn._core._losses cimport LossParams, N_LOSSES, loss_grad
from fastnn._core._network cimport Net, NetSpec, net_loss_grad, layer_output
from fastnn._core._sgd cimport Optimizer, apply_update, train_step

import numpy as np

from fastnn._core import _losses, _sgd
from fastnn.nn.layers import ACTIVATIONS, KEEPS_PREACTIVATION


# The loops below are reachable from Python and index raw pointers: each one checks, once
# before its loop, that every buffer holds what the loop reads or writes (O(1), plus O(n)
# over an index array), and raises ValueError otherwise.

def _need(name, buf, n):
    """buf (a 1-D or 2-D buffer) holds at least n elements."""
    size = 0 if buf is None else int(np.prod(buf.shape[:buf.ndim]))
    if size < n:
        raise ValueError(f"{name} has {size} elements; this case needs {n}")


def _at_least_one(*dims):
    for name, value in dims:
        if value < 1:
            raise ValueError(f"{name}={value}; expected >= 1")


def _indices(name, idx, n_idx, n):
    """idx holds at least n_idx entries, each in [0, n)."""
    _need(name, idx, n_idx)
    values = np.asarray(idx)[:n_idx]
    if n_idx and (values.min() < 0 or values.max() >= n):
        raise ValueError(f"{name} has entries outside [0, {n})")


def _state_sizes(opt_kind, n_params, s1, s2):
    if opt_kind not in (_sgd.OPT_SGD, _sgd.OPT_ADAM):
        raise ValueError(f"unknown optimizer code {opt_kind}")
    for name, s in (("s1", s1), ("s2", s2)):
        n_state = 0 if s is None else s.shape[0]
        if n_state not in (0, n_params) or (opt_kind == _sgd.OPT_ADAM and n_state == 0):
            raise ValueError(f"{name} has {n_state} entries; expected {n_params}")


cdef inline long long _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long> ts.tv_sec * 1000000000LL + ts.tv_nsec


# ------------------------------------------------------------------ compiled timing loops
# Each returns the mean ns per call over `reps` calls.

def _loop_gemm(const floating[::1] A, const floating[::1] B, floating[::1] C, bint trans_a,
               bint trans_b, int m, int n, int k, long long reps):
    """C (m, n) = op(A) @ op(B), row-major, leading dimensions from the shapes."""
    cdef int lda = m if trans_a else k
    cdef int ldb = k if trans_b else n
    cdef long long r, t0, t1
    _at_least_one(("m", m), ("n", n), ("k", k))
    _need("A", A, <object> m * k)
    _need("B", B, <object> k * n)
    _need("C", C, <object> m * n)
    with nogil:
        t0 = _now_ns()
        for r in range(reps):
            gemm_rowmajor(trans_a, trans_b, m, n, k, <floating> 1, &A[0], lda, &B[0], ldb,
                          <floating> 0, &C[0], n)
        t1 = _now_ns()
    return (t1 - t0) / <double> reps


def _loop_forward(const floating[::1] X, const floating[::1] W, const floating[::1] b,
                  floating[::1] A, int n_samples, int n_in, int n_out, int act,
                  long long reps):
    cdef long long r, t0, t1
    cdef int status = FNN_OK
    _at_least_one(("n_samples", n_samples), ("n_in", n_in), ("n_out", n_out))
    _need("X", X, <object> n_samples * n_in)
    _need("W", W, <object> n_in * n_out)
    _need("b", b, n_out)
    _need("A", A, <object> n_samples * n_out)
    with nogil:
        t0 = _now_ns()
        for r in range(reps):
            status |= dense_forward(&X[0], &W[0], &b[0], &A[0], n_samples, n_in, n_out, act,
                                    <floating> 0.01)
        t1 = _now_ns()
    if status != FNN_OK:
        raise ValueError(f"dense_forward failed with status {status}")
    return (t1 - t0) / <double> reps


def _loop_forward_keep(const floating[::1] X, const floating[::1] W, const floating[::1] b,
                       floating[::1] Z, floating[::1] A, int n_samples, int n_in, int n_out,
                       int act, long long reps):
    """dense_forward_keep: the training forward pass of GELU/SiLU layers (Z kept)."""
    cdef long long r, t0, t1
    cdef int status = FNN_OK
    with nogil:
        t0 = _now_ns()
        for r in range(reps):
            status |= dense_forward_keep(&X[0], &W[0], &b[0], &Z[0], &A[0], n_samples, n_in,
                                         n_out, act, <floating> 1)
        t1 = _now_ns()
    if status != FNN_OK:
        raise ValueError(f"dense_forward_keep failed with status {status}")
    return (t1 - t0) / <double> reps


def _loop_backward(const floating[::1] X, const floating[::1] W, const floating[::1] A,
                   const floating[::1] dA, floating[::1] D, floating[::1] dW, floating[::1] db,
                   floating[::1] dX, int n_samples, int n_in, int n_out, int act,
                   long long reps):
    """dX None: the first layer's backward (no dX GEMM)."""
    cdef long long r, t0, t1
    cdef int status = FNN_OK
    _at_least_one(("n_samples", n_samples), ("n_in", n_in), ("n_out", n_out))
    for name, buf, n in (("X", X, <object> n_samples * n_in), ("W", W, <object> n_in * n_out),
                         ("A", A, <object> n_samples * n_out),
                         ("dA", dA, <object> n_samples * n_out),
                         ("D", D, <object> n_samples * n_out),
                         ("dW", dW, <object> n_in * n_out), ("db", db, n_out)):
        _need(name, buf, n)
    if dX is not None:
        _need("dX", dX, <object> n_samples * n_in)
    cdef floating *dX_ptr = NULL if dX is None else &dX[0]
    with nogil:
        t0 = _now_ns()
        for r in range(reps):
            status |= dense_backward(&X[0], &W[0], &A[0], &dA[0], &D[0], &dW[0], &db[0], dX_ptr,
                                     n_samples, n_in, n_out, act, <floating> 0.01)
        t1 = _now_ns()
    if status != FNN_OK:
        raise ValueError(f"dense_backward failed with status {status}")
    return (t1 - t0) / <double> reps


def _loop_pass(const floating[::1] dA, const floating[::1] A, floating[::1] D,
               long long reps):
    """D = dA * A: one read-read-write pass, the least any element-wise kernel costs."""
    cdef long long r, t0, t1
    cdef Py_ssize_t i, n = D.shape[0]
    _at_least_one(("len(D)", n))
    _need("A", A, n)
    _need("dA", dA, n)
    cdef const floating *a = &A[0]
    cdef const floating *g = &dA[0]
    cdef floating *d = &D[0]
    with nogil:
        t0 = _now_ns()
        for r in range(reps):
            for i in range(n):
                d[i] = g[i] * a[i]
        t1 = _now_ns()
    return (t1 - t0) / <double> reps


def _loop_loss(const floating[::1] Z, const floating[::1] Y, const Py_ssize_t[::1] labels,
               floating[::1] G, int n_samples, int n_out, int kind, long long reps):
    cdef LossParams p
    cdef long long r, t0, t1
    cdef double total = 0.0
    _at_least_one(("n_samples", n_samples), ("n_out", n_out))
    if kind < 0 or kind >= N_LOSSES:
        raise ValueError(f"unknown loss code {kind}")
    _need("Z", Z, <object> n_samples * n_out)
    _need("G", G, <object> n_samples * n_out)
    if labels is not None:
        _need("labels", labels, n_samples)
    else:
        _need("Y", Y, <object> n_samples * n_out)
    cdef const floating *y_ptr = NULL if Y is None else &Y[0]
    cdef const Py_ssize_t *lab_ptr = NULL if labels is None else &labels[0]
    p.kind = kind
    p.full = 0
    p.sigma = 1.0
    with nogil:
        t0 = _now_ns()
        for r in range(reps):
            total += loss_grad(&p, &Z[0], n_samples, n_out, y_ptr, lab_ptr, NULL, NULL,
                               1.0 / n_samples, &G[0])
        t1 = _now_ns()
    if total != total:
        raise ValueError("loss_grad returned NaN")
    return (t1 - t0) / <double> reps


cdef class _StepState:
    """Everything one training step touches, sized like fastnn.training.engine._Workspace."""
    cdef NetSpec spec
    cdef public object params, grads, s1, s2, acts, d0, d1, X, Y, labels, order
    cdef public object X_batch, Y_batch, labels_batch
    cdef public int batch, loss_kind
    cdef public Py_ssize_t cursor
    cdef Optimizer opt

    def __init__(self, NetSpec spec, params, X, Y, labels, int batch, int loss_kind,
                 int opt_kind, double lr, seed):
        dt = params.dtype
        rng = np.random.default_rng(seed)
        self.spec = spec
        self.params = params
        self.grads = np.zeros_like(params)
        n_state = 0 if opt_kind == _sgd.OPT_SGD else params.shape[0]
        self.s1 = np.zeros(n_state, dt)
        self.s2 = np.zeros(n_state, dt)
        self.acts = np.zeros(batch * spec.act_width, dt)
        self.d0 = np.zeros(batch * spec.max_width, dt)
        self.d1 = np.zeros(batch * spec.max_width, dt)
        self.X, self.Y, self.labels = X, Y, labels
        self.order = rng.permutation(X.shape[0]).astype(np.intp)
        self.X_batch = np.zeros((batch, X.shape[1]), dt)
        self.Y_batch = None if Y is None else np.zeros((batch, Y.shape[1]), dt)
        self.labels_batch = None if labels is None else np.zeros(batch, np.intp)
        self.batch = batch
        self.loss_kind = loss_kind
        self.cursor = 0
        self.opt.kind = opt_kind
        self.opt.lr = lr
        self.opt.momentum = 0.0
        self.opt.nesterov = 0
        self.opt.weight_decay = 0.0
        self.opt.clip_norm = 0.0
        self.opt.beta1 = 0.9
        self.opt.beta2 = 0.999
        self.opt.eps = 1e-8
        self.opt.t = 0

    def _check(self):
        """The public attributes may have been rebound: check them all against the spec."""
        spec, n_params, b = self.spec, self.spec.n_params, self.batch
        X = self.X
        spec.check(self.params.shape[0], self.grads.shape[0], X.shape[1])
        _at_least_one(("batch", b))
        if b > X.shape[0]:
            raise ValueError(f"batch={b} exceeds the {X.shape[0]} rows of X")
        _state_sizes(self.opt.kind, n_params, self.s1, self.s2)
        _need("acts", self.acts, <object> b * spec.act_width)
        _need("d0", self.d0, <object> b * spec.max_width)
        _need("d1", self.d1, <object> b * spec.max_width)
        _indices("order", self.order, X.shape[0], X.shape[0])
        _need("X_batch", self.X_batch, <object> b * X.shape[1])
        if self.X_batch.shape[1] != X.shape[1]:
            raise ValueError(f"X_batch has {self.X_batch.shape[1]} columns; expected "
                             f"{X.shape[1]}")
        _losses.check_targets_py(self.loss_kind, X.shape[0], spec.n_outputs, self.Y,
                                 self.labels)
        if self.Y is not None:
            _need("Y_batch", self.Y_batch, <object> b * self.Y.shape[1])
            if self.Y_batch.shape[1] != self.Y.shape[1]:
                raise ValueError("Y_batch and Y differ in columns")
        if self.labels is not None:
            _need("labels_batch", self.labels_batch, b)

    def run(self, long long reps):
        self._check()
        if self.params.dtype == np.float32:
            return _loop_step[float](self, self.params, self.grads, self.s1, self.s2, self.acts,
                                     self.d0, self.d1, self.X, self.Y, self.labels, self.order,
                                     self.X_batch, self.Y_batch, self.labels_batch, reps)
        return _loop_step[double](self, self.params, self.grads, self.s1, self.s2, self.acts,
                                  self.d0, self.d1, self.X, self.Y, self.labels, self.order,
                                  self.X_batch, self.Y_batch, self.labels_batch, reps)


cdef double _loop_step(_StepState st, floating[::1] params, floating[::1] grads,
                       floating[::1] s1, floating[::1] s2, floating[::1] acts,
                       floating[::1] d0, floating[::1] d1, const floating[:, ::1] X,
                       const floating[:, ::1] Y, const Py_ssize_t[::1] labels,
                       const Py_ssize_t[::1] order, floating[:, ::1] X_batch,
                       floating[:, ::1] Y_batch, Py_ssize_t[::1] labels_batch,
                       long long reps) except -1.0:
    """The body of _sgd.train_epoch's loop for a full batch, reps times, walking `order`."""
    cdef LossParams lp
    cdef Optimizer opt = st.opt
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1]
    cdef Py_ssize_t n_t = 0 if Y is None else Y.shape[1]
    cdef Py_ssize_t i, r, start = st.cursor, n_params = params.shape[0]
    cdef int rows = st.batch, kstatus = FNN_OK
    cdef long long rep, t0, t1
    cdef double batch_loss, bad = 0.0
    cdef bint has_y = Y is not None, has_labels = labels is not None
    cdef floating *s1p = NULL if s1.shape[0] == 0 else &s1[0]
    cdef floating *s2p = NULL if s2.shape[0] == 0 else &s2[0]
    lp.kind = st.loss_kind
    lp.full = 0
    lp.sigma = 1.0
    with nogil:
        t0 = _now_ns()
        for rep in range(reps):
            if start + rows > n:
                start = 0
            for i in range(rows):
                r = order[start + i]
                memcpy(&X_batch[i, 0], &X[r, 0], n_in * sizeof(floating))
                if has_y:
                    memcpy(&Y_batch[i, 0], &Y[r, 0], n_t * sizeof(floating))
                if has_labels:
                    labels_batch[i] = labels[r]
            batch_loss = train_step(&st.spec.net, &opt, &params[0], &grads[0], s1p, s2p,
                                    n_params, &X_batch[0, 0], rows, &lp,
                                    &Y_batch[0, 0] if has_y else NULL,
                                    &labels_batch[0] if has_labels else NULL, NULL, NULL,
                                    <double> rows, &acts[0], &d0[0], &d1[0], &kstatus)
            if kstatus != FNN_OK or batch_loss != batch_loss:
                bad = 1.0
                break
            start += rows
        t1 = _now_ns()
    st.cursor = start
    st.opt = opt
    if bad:
        raise FloatingPointError(f"benchmark step failed (kernel status {kstatus}, loss "
                                 f"{batch_loss})")
    return (t1 - t0) / <double> reps


def _loop_gather(const floating[:, ::1] X, const Py_ssize_t[::1] order,
                 floating[:, ::1] X_batch, int batch, long long reps):
    """Only the row gather of the step (X rows; labels are a few bytes more)."""
    cdef Py_ssize_t i, start = 0, n = X.shape[0], n_in = X.shape[1]
    cdef long long rep, t0, t1
    _at_least_one(("batch", batch))
    if batch > n:
        raise ValueError(f"batch={batch} exceeds the {n} rows of X")
    _indices("order", order, n, n)
    _need("X_batch", X_batch, <object> batch * n_in)
    if X_batch.shape[1] != n_in:
        raise ValueError(f"X_batch has {X_batch.shape[1]} columns; expected {n_in}")
    with nogil:
        t0 = _now_ns()
        for rep in range(reps):
            if start + batch > n:
                start = 0
            for i in range(batch):
                memcpy(&X_batch[i, 0], &X[order[start + i], 0], n_in * sizeof(floating))
            start += batch
        t1 = _now_ns()
    return (t1 - t0) / <double> reps


def _loop_net(NetSpec spec, const floating[::1] params, floating[::1] grads,
              const floating[:, ::1] X_batch, const Py_ssize_t[::1] labels,
              const floating[:, ::1] Y, floating[::1] acts, floating[::1] d0, floating[::1] d1,
              int loss_kind, long long reps):
    """Only _network.net_loss_grad (forward, fused loss, backward) on one fixed batch."""
    cdef LossParams lp
    cdef int rows = <int> X_batch.shape[0], kstatus = FNN_OK
    cdef long long rep, t0, t1
    cdef double total = 0.0
    spec.check(params.shape[0], grads.shape[0], X_batch.shape[1], X_batch.shape[0])
    _at_least_one(("rows", rows))
    _losses.check_targets_py(loss_kind, rows, spec.n_outputs, Y, labels)
    _need("acts", acts, <object> rows * spec.act_width)
    _need("d0", d0, <object> rows * spec.max_width)
    _need("d1", d1, <object> rows * spec.max_width)
    cdef const floating *y_ptr = NULL if Y is None else &Y[0, 0]
    cdef const Py_ssize_t *lab_ptr = NULL if labels is None else &labels[0]
    lp.kind = loss_kind
    lp.full = 0
    lp.sigma = 1.0
    with nogil:
        t0 = _now_ns()
        for rep in range(reps):
            total += net_loss_grad(&spec.net, &params[0], &grads[0], &X_batch[0, 0], rows, &lp,
                                   y_ptr, lab_ptr, NULL, NULL, 1.0 / rows, &acts[0], &d0[0],
                                   &d1[0], &kstatus)
        t1 = _now_ns()
    if kstatus != FNN_OK or total != total:
        raise FloatingPointError(f"net_loss_grad failed (status {kstatus}, loss {total})")
    return (t1 - t0) / <double> reps


def _loop_update(NetSpec spec, floating[::1] params, const floating[::1] grads,
                 floating[::1] s1, floating[::1] s2, int opt_kind, double lr, long long reps):
    """Only _sgd.apply_update over the whole parameter vector."""
    cdef Optimizer opt
    cdef long long rep, t0, t1
    spec.check(params.shape[0], grads.shape[0])
    _state_sizes(opt_kind, params.shape[0], s1, s2)
    cdef floating *s1p = NULL if s1.shape[0] == 0 else &s1[0]
    cdef floating *s2p = NULL if s2.shape[0] == 0 else &s2[0]
    opt.kind = opt_kind
    opt.lr = lr
    opt.momentum = 0.0
    opt.nesterov = 0
    opt.weight_decay = 0.0
    opt.clip_norm = 0.0
    opt.beta1 = 0.9
    opt.beta2 = 0.999
    opt.eps = 1e-8
    opt.t = 0
    with nogil:
        t0 = _now_ns()
        for rep in range(reps):
            opt.t += 1
            apply_update(&spec.net, &opt, &params[0], &grads[0], s1p, s2p, params.shape[0],
                         1.0)
        t1 = _now_ns()
    return (t1 - t0) / <double> reps


def _loop_floor(NetSpec spec, const floating[::1] params, floating[::1] grads,
                const floating[::1] X, floating[::1] acts, const floating[::1] deltas,
                floating[::1] dX, int batch, long long reps):
    """The GEMMs of one step with fastnn's shapes and flags; deltas holds one fixed D per layer
    (at batch * a_off[k]) so that values never build up over the repeats."""
    cdef const Net *net = &spec.net
    cdef int k, L = net.n_layers, n_a, n_b
    cdef long long rep, t0, t1
    cdef const floating *inp
    spec.check(params.shape[0], grads.shape[0])
    _at_least_one(("batch", batch))
    sizes = spec.sizes
    _need("X", X, <object> batch * int(sizes[0]))
    _need("acts", acts, <object> batch * spec.act_width)
    _need("deltas", deltas, <object> batch * spec.act_width)
    if L > 1:
        _need("dX", dX, <object> batch * int(sizes[1:L].max()))
    with nogil:
        t0 = _now_ns()
        for rep in range(reps):
            inp = &X[0]
            for k in range(L):
                n_a = net.sizes[k]
                n_b = net.sizes[k + 1]
                gemm_rowmajor(False, False, batch, n_b, n_a, <floating> 1, inp, n_a,
                              &params[0] + net.w_off[k], n_b, <floating> 0,
                              layer_output(net, &acts[0], batch, k), n_b)
                inp = layer_output(net, &acts[0], batch, k)
            for k in range(L - 1, -1, -1):
                n_a = net.sizes[k]
                n_b = net.sizes[k + 1]
                inp = &X[0] if k == 0 else layer_output(net, &acts[0], batch, k - 1)
                gemm_rowmajor(True, False, n_a, n_b, batch, <floating> 1, inp, n_a,
                              &deltas[0] + batch * net.a_off[k], n_b, <floating> 0,
                              &grads[0] + net.w_off[k], n_b)
                if k > 0:
                    gemm_rowmajor(False, True, batch, n_a, n_b, <floating> 1,
                                  &deltas[0] + batch * net.a_off[k], n_b,
                                  &params[0] + net.w_off[k], n_b, <floating> 0, &dX[0], n_a)
        t1 = _now_ns()
    return (t1 - t0) / <double> reps


# ------------------------------------------------------------------ sampling


def _dtype(dtype):
    dt = np.dtype(dtype)
    if dt.type not in (np.float32, np.float64):
        raise TypeError(f"dtype is {dtype!r}; expected numpy.float32 or numpy.float64")
    return dt


def _positive(value, name):
    value = int(value)
    if value < 1:
        raise ValueError(f"{name}={value}; expected at least 1")
    return value


def _reps_for(run, min_time):
    """reps such that run(reps) lasts about min_time seconds (one call at least)."""
    ns = run(1)
    ns = min(ns, run(1))
    return max(1, int(min_time * 1e9 / max(ns, 1.0)))


def sample_cases(cases, repeats=5, min_time=0.02, warmup=True):
    """Time several cases interleaved.

    cases: dict name -> run(reps) returning ns per call.  Each case gets its own reps
    (about min_time seconds per sample); then for every repeat each case is sampled once, in
    order.  Returns dict name -> {"ns": [ns per call, one per repeat], "reps": reps}.
    """
    repeats = _positive(repeats, "repeats")
    reps = {name: _reps_for(run, min_time) for name, run in cases.items()}
    if warmup:
        for name, run in cases.items():
            run(reps[name])
    out = {name: {"ns": [], "reps": reps[name]} for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            out[name]["ns"].append(float(run(reps[name])))
    return out


def _random(rng, shape, dt, scale=1.0):
    return np.ascontiguousarray((rng.standard_normal(shape) * scale).astype(dt))


# ------------------------------------------------------------------ public entry points

def gemm_flops(m, n, k):
    return 2.0 * m * n * k


def gemm_case(m, n, k, trans_a=False, trans_b=False, dtype=np.float32, seed=0):
    """run(reps) for one row-major GEMM C (m, n) = op(A) @ op(B)."""
    dt = _dtype(dtype)
    m, n, k = _positive(m, "m"), _positive(n, "n"), _positive(k, "k")
    rng = np.random.default_rng(seed)
    A = _random(rng, m * k, dt)
    B = _random(rng, k * n, dt)
    C = np.zeros(m * n, dt)
    ta, tb = bool(trans_a), bool(trans_b)
    return lambda reps: _loop_gemm(A, B, C, ta, tb, m, n, k, reps)


def layer_cases(batch, n_in, n_out, activations=("identity", "relu", "tanh", "sigmoid"),
                dtype=np.float32, first_layer=False, seed=0):
    """run(reps) closures for one dense layer of shape (batch, n_in) -> (batch, n_out).

    Returns (cases, flops): cases holds the bare GEMMs ("gemm_fwd", "gemm_dW", "gemm_dX"),
    "pass" (one element-wise pass over the output), and per activation "forward:<act>" and
    "backward:<act>"; flops the GEMM work of each name.  first_layer: backward without dX.
    For the activations whose backward pass reads Z (GELU, GELU-tanh, SiLU), "forward:<act>"
    is the training forward pass that keeps Z, "predict:<act>" the in-place one, and the
    backward pass reads Z.
    """
    dt = _dtype(dtype)
    batch, n_in, n_out = (_positive(batch, "batch"), _positive(n_in, "n_in"),
                          _positive(n_out, "n_out"))
    rng = np.random.default_rng(seed)
    X = _random(rng, batch * n_in, dt)
    W = _random(rng, n_in * n_out, dt, 1.0 / np.sqrt(n_in))
    b = _random(rng, n_out, dt, 0.1)
    A = np.zeros(batch * n_out, dt)
    dA = _random(rng, batch * n_out, dt, 0.01)
    D = np.zeros(batch * n_out, dt)
    dW = np.zeros(n_in * n_out, dt)
    db = np.zeros(n_out, dt)
    dX = None if first_layer else np.zeros(batch * n_in, dt)
    C_in = np.zeros(batch * n_in, dt)
    cases = {
        "gemm_fwd": lambda reps: _loop_gemm(X, W, A, False, False, batch, n_out, n_in, reps),
        "gemm_dW": lambda reps: _loop_gemm(X, dA, dW, True, False, n_in, n_out, batch, reps),
        "pass": lambda reps: _loop_pass(dA, dA, D, reps),
    }
    f = gemm_flops(batch, n_out, n_in)
    flops = {"gemm_fwd": f, "gemm_dW": f, "pass": 0.0}
    if not first_layer:
        cases["gemm_dX"] = lambda reps: _loop_gemm(dA, W, C_in, False, True, batch, n_in, n_out,
                                                   reps)
        flops["gemm_dX"] = f
    n_bwd_gemms = 1 if first_layer else 2
    Z = np.zeros(batch * n_out, dt)
    for name in activations:
        code = ACTIVATIONS[name]
        # what the backward pass reads: the stored output A, or Z
        A_act = np.zeros(batch * n_out, dt)
        _loop_forward(X, W, b, A_act, batch, n_in, n_out, code, 1)
        cases[f"forward:{name}"] = (
            lambda reps, c=code: _loop_forward(X, W, b, A, batch, n_in, n_out, c, reps))
        if name in KEEPS_PREACTIVATION:
            _loop_forward(X, W, b, A_act, batch, n_in, n_out, ACTIVATIONS["identity"], 1)
            cases[f"predict:{name}"] = cases[f"forward:{name}"]
            flops[f"predict:{name}"] = f
            cases[f"forward:{name}"] = (
                lambda reps, c=code: _loop_forward_keep(X, W, b, Z, A, batch, n_in, n_out, c,
                                                        reps))
        cases[f"backward:{name}"] = (
            lambda reps, c=code, a=A_act: _loop_backward(X, W, a, dA, D, dW, db, dX, batch, n_in,
                                                         n_out, c, reps))
        flops[f"forward:{name}"] = f
        flops[f"backward:{name}"] = n_bwd_gemms * f
    return cases, flops


def loss_case(batch, n_out, loss="cross_entropy", dtype=np.float32, seed=0):
    """run(reps) for _losses.loss_grad on (batch, n_out) logits.

    cross_entropy takes integer labels, mse/bce targets of the logits' shape.
    """
    dt = _dtype(dtype)
    kind = _losses.KINDS.get(loss, -1)
    batch, n_out = _positive(batch, "batch"), _positive(n_out, "n_out")
    rng = np.random.default_rng(seed)
    Z = _random(rng, batch * n_out, dt)
    G = np.zeros(batch * n_out, dt)
    labels = Y = None
    if loss == "cross_entropy":
        labels = rng.integers(0, n_out, batch).astype(np.intp)
    elif loss == "bce":
        Y = np.ascontiguousarray((rng.random(batch * n_out) < 0.5).astype(dt))
    elif loss == "mse":
        Y = _random(rng, batch * n_out, dt)
    else:
        raise ValueError(f"loss={loss!r}; expected 'cross_entropy', 'mse' or 'bce'")
    return lambda reps: _loop_loss(Z, Y, labels, G, batch, n_out, kind, reps)


def _mlp_params(spec, sizes, rng, dt):
    params = np.zeros(spec.n_params, dt)
    w_off, b_off = spec.w_offsets, spec.b_offsets
    for k in range(len(sizes) - 1):
        n_w = sizes[k] * sizes[k + 1]
        params[w_off[k]:w_off[k] + n_w] = rng.standard_normal(n_w) * np.sqrt(2.0 / sizes[k])
    return params


def step_cases(sizes, activation="relu", loss="cross_entropy", batch=64, dtype=np.float32,
               optimizer="sgd", n_rows=None, lr=0.01, seed=0):
    """run(reps) closures for one training step of an MLP and for its GEMM floor.

    sizes: layer widths [n_0, ..., n_L]; activation for the hidden layers, the last layer is
    linear (logits).  loss: "cross_entropy" (integer labels), "mse" or "bce".  The step gathers
    its rows from an n_rows-sample data set (default max(4 batch, 4096) rows) in a shuffled
    order, like fit with shuffle=True.

    Returns (cases, info): cases "step" and "floor"; the parts of a step alone
    ("part:gather", "part:net_loss_grad" = forward + loss + backward on a fixed batch,
    "part:update"); and "gemm:<fwd|dW|dX>:<layer>" for each GEMM of the floor alone; info holds "flops" (the floor's GEMM work per step), "gemm_flops" per
    GEMM name and "n_params".
    """
    dt = _dtype(dtype)
    sizes = [_positive(s, "layer size") for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"sizes={sizes}; expected at least 2 entries")
    batch = _positive(batch, "batch")
    L = len(sizes) - 1
    acts = [ACTIVATIONS[activation]] * (L - 1) + [ACTIVATIONS["identity"]]
    spec = NetSpec(sizes, acts, [0.01] * L)
    rng = np.random.default_rng(seed)
    params = _mlp_params(spec, sizes, rng, dt)
    n_rows = max(4 * batch, 4096) if n_rows is None else _positive(n_rows, "n_rows")
    if n_rows < batch:
        raise ValueError(f"n_rows={n_rows} is smaller than batch={batch}")
    X = _random(rng, (n_rows, sizes[0]), dt)
    Y = labels = None
    if loss == "cross_entropy":
        labels = rng.integers(0, sizes[L], n_rows).astype(np.intp)
    elif loss == "bce":
        Y = np.ascontiguousarray((rng.random((n_rows, sizes[L])) < 0.5).astype(dt))
    elif loss == "mse":
        Y = _random(rng, (n_rows, sizes[L]), dt)
    else:
        raise ValueError(f"loss={loss!r}; expected 'cross_entropy', 'mse' or 'bce'")
    opt_kind = {"sgd": _sgd.OPT_SGD, "adam": _sgd.OPT_ADAM}[optimizer]
    state = _StepState(spec, params, X, Y, labels, batch, _losses.KINDS[loss], opt_kind, lr,
                       seed)

    # the floor: its own copies, so that the step's updates do not change its inputs
    f_params = params.copy()
    f_grads = np.zeros_like(params)
    f_X = np.ascontiguousarray(X[:batch].ravel())
    f_acts = np.zeros(batch * spec.act_width, dt)
    f_deltas = _random(rng, batch * spec.act_width, dt, 0.01)
    f_dX = np.zeros(batch * max(sizes), dt)
    # the parts of a step alone, each on its own buffers
    p_params = params.copy()
    p_grads = np.zeros_like(params)
    p_Xb = np.ascontiguousarray(X[:batch])
    p_lab = None if labels is None else np.ascontiguousarray(labels[:batch])
    p_Y = None if Y is None else np.ascontiguousarray(Y[:batch])
    p_acts = np.zeros(batch * spec.act_width, dt)
    p_d0 = np.zeros(batch * spec.max_width, dt)
    p_d1 = np.zeros(batch * spec.max_width, dt)
    _loop_net(spec, p_params, p_grads, p_Xb, p_lab, p_Y, p_acts, p_d0, p_d1,
              _losses.KINDS[loss], 1)
    u_params = params.copy()
    u_s1 = np.zeros(0 if opt_kind == _sgd.OPT_SGD else spec.n_params, dt)
    u_s2 = np.zeros_like(u_s1)
    g_order = np.random.default_rng(seed + 1).permutation(n_rows).astype(np.intp)
    g_Xb = np.zeros((batch, sizes[0]), dt)
    cases = {
        "step": state.run,
        "floor": lambda reps: _loop_floor(spec, f_params, f_grads, f_X, f_acts, f_deltas, f_dX,
                                          batch, reps),
        "part:gather": lambda reps: _loop_gather(X, g_order, g_Xb, batch, reps),
        "part:net_loss_grad": lambda reps: _loop_net(spec, p_params, p_grads, p_Xb, p_lab, p_Y,
                                                     p_acts, p_d0, p_d1, _losses.KINDS[loss],
                                                     reps),
        "part:update": lambda reps: _loop_update(spec, u_params, p_grads, u_s1, u_s2, opt_kind,
                                                 1e-6, reps),
    }
    gemm_flops_by_name = {}
    for k in range(L):
        n_a, n_b = sizes[k], sizes[k + 1]
        f = gemm_flops(batch, n_a, n_b)
        cases[f"gemm:fwd:{k}"] = gemm_case(batch, n_b, n_a, False, False, dt, seed + k)
        gemm_flops_by_name[f"gemm:fwd:{k}"] = f
        cases[f"gemm:dW:{k}"] = gemm_case(n_a, n_b, batch, True, False, dt, seed + k)
        gemm_flops_by_name[f"gemm:dW:{k}"] = f
        if k > 0:
            cases[f"gemm:dX:{k}"] = gemm_case(batch, n_a, n_b, False, True, dt, seed + k)
            gemm_flops_by_name[f"gemm:dX:{k}"] = f
    info = {"flops": sum(gemm_flops_by_name.values()), "gemm_flops": gemm_flops_by_name,
            "n_params": spec.n_params}
    return cases, info


# ------------------------------------------------------------------ fastnn's threads

from fastnn._core._tiling cimport tiled_gemm
from fastnn._core._pool cimport parallel_for


def _loop_tiled_gemm(const floating[::1] A, const floating[::1] B, floating[::1] C,
                     bint trans_a, bint trans_b, int m, int n, int k, int n_threads,
                     long long reps):
    """As _loop_gemm, through _network.tiled_gemm on n_threads (0: one untiled call)."""
    cdef int lda = m if trans_a else k
    cdef int ldb = k if trans_b else n
    cdef long long r, t0, t1
    _at_least_one(("m", m), ("n", n), ("k", k))
    if n_threads < 0:
        raise ValueError(f"n_threads={n_threads}; expected >= 0")
    _need("A", A, <object> m * k)
    _need("B", B, <object> k * n)
    _need("C", C, <object> m * n)
    with nogil:
        t0 = _now_ns()
        for r in range(reps):
            tiled_gemm(n_threads, trans_a, trans_b, m, n, k, <floating> 1, &A[0], lda, &B[0],
                       ldb, <floating> 0, &C[0], n)
        t1 = _now_ns()
    return (t1 - t0) / <double> reps


cdef void _empty_task(void *ctx, long t) noexcept nogil:
    (<long *> ctx)[t] = t


def _loop_dispatch(int n_threads, long n_tasks, long long reps):
    """ns per parallel_for of n_tasks empty tasks on n_threads: the pool's dispatch cost."""
    cdef long long r, t0, t1
    if n_threads < 1 or not 1 <= n_tasks <= 4096:
        raise ValueError(f"n_threads={n_threads}, n_tasks={n_tasks}; expected >= 1, 1..4096")
    out = np.zeros(n_tasks, dtype=np.int64)
    cdef long[::1] o = out
    with nogil:
        t0 = _now_ns()
        for r in range(reps):
            parallel_for(n_threads, n_tasks, _empty_task, &o[0])
        t1 = _now_ns()
    return (t1 - t0) / <double> reps


def tiled_gemm_case(m, n, k, n_threads, trans_a=False, trans_b=False, dtype=np.float32,
                    seed=0):
    """run(reps) for one row-major GEMM through fastnn's tiles on n_threads (0: untiled)."""
    dt = _dtype(dtype)
    rng = np.random.default_rng(seed)
    A = _random(rng, m * k, dt)
    B = _random(rng, k * n, dt)
    C = np.zeros(m * n, dt)
    ta, tb, nt = bool(trans_a), bool(trans_b), int(n_threads)
    return lambda reps: _loop_tiled_gemm(A, B, C, ta, tb, m, n, k, nt, reps)


# ------------------------------------------------------------------ the machine's FMA peak

cdef extern from "fma_peak.h" nogil:
    int fnn_fma_width()
    double fnn_fma_run(long long n, int dbl, double *flops)


def fma_width():
    """The vector width (bits) of fma_peak's loop on this CPU: 512, 256, or 0 (no FMA)."""
    return fnn_fma_width()


def fma_seconds(long long rounds, bint dbl):
    """(seconds, FLOPs) of `rounds` rounds of 12 independent vector FMAs (bench/fma_peak.h) on
    this thread, without the GIL (so that threads can run it at once)."""
    _positive(rounds, "rounds")
    cdef double flops, sink
    cdef long long t0, t1
    with nogil:
        t0 = _now_ns()
        sink = fnn_fma_run(rounds, dbl, &flops)
        t1 = _now_ns()
    if sink != sink:                  # (never: keeps the result alive)
        raise RuntimeError("the FMA loop gave NaN")
    return (t1 - t0) * 1e-9, flops
