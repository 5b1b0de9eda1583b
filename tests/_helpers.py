"""Helpers shared by the tests of bad input, layouts, memory, threads and faults.

An error is "clear" when its message names the argument, what was seen and what was expected:
``check_error`` asserts the fragments that say so.
"""
import contextlib
import io
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest

import fastnn

SANITIZED = os.environ.get("FASTNN_SANITIZED") == "1"  # set by tests/sanitize.sh


def check_error(call, exc, *fragments):
    """call() raises exc, and its message contains every fragment."""
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in the message {message!r}"
    return message


def layer_arrays(dtype=np.float64, n=6, n_in=4, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(dtype)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    A = fastnn.dense_forward(X, W, b, "tanh")
    dA = rng.standard_normal((n, n_out)).astype(dtype)
    return dict(X=X, W=W, b=b, A=A, dA=dA)


def classification_data(n=40, n_in=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)), rng.integers(0, n_classes, n)


def other_layouts(x):
    """Views of x with other memory layouts but the same values (and read-only copies)."""
    fortran = np.asfortranarray(x)
    padded = np.zeros((x.shape[0] * 2,) + x.shape[1:], x.dtype)
    padded[::2] = x
    flipped = np.ascontiguousarray(x[::-1])[::-1]  # negative strides, same values
    read_only = x.copy()
    read_only.flags.writeable = False
    return {"fortran": fortran, "strided": padded[::2], "negative-strides": flipped,
            "read-only": read_only}


def child_process_kwargs(cwd):
    """subprocess.run arguments so that `python -c` imports the fastnn these tests import.

    `python -c` puts its working directory first on sys.path: run it outside the repository,
    or it would import the uncompiled source tree instead of the installed package.
    """
    return {"cwd": cwd, "env": dict(os.environ, PYTHONPATH=os.path.dirname(
        os.path.dirname(fastnn.__file__)))}


def run_cli(tmp_path, *argv, check=True):
    """``fastnn.cli.command.main(argv)`` in this process (what the console script calls),
    with tmp_path as the working directory: (returncode, stdout, stderr).  A traceback on
    stderr fails the test; so does a non-zero status when `check`."""
    from fastnn.cli.command import main
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exc:  # argparse: --help, bad flags
                code = exc.code
    finally:
        os.chdir(cwd)
    result = SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


#: the optimizer hyperparameters of a compiled epoch, in the order of its `optimizer` tuple
_OPT_KEYS = ("opt_kind", "lr", "momentum", "nesterov", "weight_decay", "clip_norm", "beta1",
             "beta2", "eps")


def epoch_call_kwargs(flat):
    """``_epoch.prepare_epoch``'s keyword arguments from one flat dict of every value (the
    form the tests change one entry of at a time): the EpochConfig, the row source (dense
    ``X``, or ``csr`` = (data, indices, indptr, n_features)), then the per-epoch values.
    The config and source are built here, so a value they refuse raises here."""
    from fastnn._core import _epoch
    a = dict(flat)
    config = _epoch.EpochConfig(
        a["spec"], a["batch_size"], a["drop_last"], a["loss_kind"], a["loss_full"],
        a["sigma_scalar"], a["acts"], a["delta0"], a["delta1"], a.get("X_batch"),
        a.get("Y_batch"), a.get("labels_batch"), a.get("sw_batch"), a.get("sigma_batch"),
        check_every=a.get("check_every", -1.0), row_offset=a.get("row_offset", 0),
        reducer=a.get("reducer"), flush_denormals=a.get("flush_denormals", True),
        dropout_seed=a.get("dropout_seed", 0), n_threads=a.get("n_threads", 1))
    targets = (a.get("Y"), a.get("labels"), a.get("sample_weight"), a.get("sigma"))
    source = (_epoch.CSRRows(*a["csr"], *targets) if a.get("csr") is not None
              else _epoch.DenseRows(a["X"], *targets))
    return dict(config=config, source=source, params=a["params"], grads=a["grads"],
                state1=a.get("state1"), state2=a.get("state2"), order=a.get("order"),
                optimizer=tuple(a[k] for k in _OPT_KEYS), t0=a.get("t0", 0),
                epoch=a.get("epoch", 0))


def gemm_operands(rng, dtype, m, n, k, trans_a, trans_b, pad=0, integers=False):
    """op(A) (m, k), op(B) (k, n), C (m, n) of a product test; each stored with `pad` extra
    columns (a leading dimension larger than the row) and then sliced, so lda > cols is
    exercised.  integers: values in -4..4 instead of standard normal ones."""
    def make(rows, cols):
        shape = (rows, cols + pad)
        full = (rng.integers(-4, 5, shape) if integers else rng.standard_normal(shape))
        return full.astype(dtype)[:, :cols]
    A = make(k, m) if trans_a else make(m, k)
    B = make(n, k) if trans_b else make(k, n)
    C = make(m, n)
    return A, B, C


def check_gemm_integers(kernel, dtype, shapes, trans_a, trans_b, seed):
    """C := op(A) op(B) - C by a named kernel, for each (m, n, k) of shapes (the i-th with
    i % 3 padding columns), against NumPy's int64 product exactly: every product and partial
    sum of integers in -4..4 is an integer below 2^24, exact in any order, so one misplaced
    element (a packed panel, a broadcast from the wrong column, a store into the wrong place)
    changes the result."""
    from fastnn._core import _products
    rng = np.random.default_rng(seed)
    for case, (m, n, k) in enumerate(shapes):
        A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, trans_b, pad=case % 3,
                                integers=True)
        a = (A.T if trans_a else A).astype(np.int64)
        b = (B.T if trans_b else B).astype(np.int64)
        out = C.copy()
        _products.gemm(kernel, trans_a, trans_b, 1.0, A, B, -1.0, out)
        np.testing.assert_array_equal(out, (a @ b - C.astype(np.int64)).astype(dtype))


def check_gemm(kernel, dtype, m, n, k, trans_a, trans_b, alpha, beta, seed, pad=0):
    """One product by a named kernel (fastnn._core._products.gemm) against the float64 NumPy
    product: each element is a sum of k products (+ the beta term), k + 2 roundings at most,
    each relative to the sum of the magnitudes; beta == 0 must not read C (it starts as NaN)."""
    from fastnn._core import _products
    rng = np.random.default_rng(seed)
    A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, trans_b, pad)
    a = (A.T if trans_a else A).astype(np.float64)
    b = (B.T if trans_b else B).astype(np.float64)
    expected = alpha * (a @ b) + (beta * C.astype(np.float64) if beta != 0 else 0)
    magnitude = abs(alpha) * (np.abs(a) @ np.abs(b)) + abs(beta) * np.abs(C)
    out = C.copy() if pad == 0 else C
    if beta == 0:
        out[...] = np.nan
    _products.gemm(kernel, trans_a, trans_b, alpha, A, B, beta, out)
    eps = np.finfo(dtype).eps
    tol = (k + 3) * eps * magnitude + np.finfo(dtype).tiny
    err = np.abs(out.astype(np.float64) - expected)
    assert np.all(err <= tol), (f"{kernel} {np.dtype(dtype).name} m={m} n={n} k={k} "
                                f"trans=({trans_a}, {trans_b}) alpha={alpha} beta={beta}: "
                                f"largest error {err.max()} over tolerance")


def sigint_during_record(monkeypatch, nth):
    """Send a real SIGINT while the run records its `nth` History entry (inside
    History._append: the moment a Ctrl-C lands in an epoch's or iteration's record).
    Returns a function that puts History._append back."""
    from fastnn.training.callbacks import History
    original, appended = History._append, []

    def append(self, logs):
        appended.append(logs["epoch"])
        if len(appended) == nth:
            signal.raise_signal(signal.SIGINT)
        return original(self, logs)

    monkeypatch.setattr(History, "_append", append)
    return lambda: monkeypatch.setattr(History, "_append", original)
