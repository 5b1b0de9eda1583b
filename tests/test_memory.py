"""Memory: allocation failures raise MemoryError with the size asked for (in a subprocess
under an address-space limit), thousands of calls do not grow memory, and no reference to the
inputs is kept after a call or an error; fit and predict need no large stack (the kernels'
copies live in per-thread scratch memory)."""
import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc
import weakref

import numpy as np
import pytest

import fastnn
from fastnn.nn.losses import CrossEntropy
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import SGD, Adam
from fastnn.training.trainer import TrainingDiverged, fit
from tests._helpers import SANITIZED, child_process_kwargs, classification_data, layer_arrays


# ======================================================================================
# Allocation failures: MemoryError with the size, in a subprocess with an address-space limit
# ======================================================================================

MEMORY_SCRIPT = r"""
import resource, sys
import numpy as np
import fastnn

def vm_bytes():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

# BLAS allocates its buffers on first use: do that before the limit
fastnn.MLP([4, 4]).predict(np.ones((64, 4)))
limit = vm_bytes() + (384 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

def attempt(name, call):
    try:
        call()
        print(name, "| no error")
    except MemoryError as exc:
        print(name, "| MemoryError |", exc)
    except Exception as exc:
        print(name, "|", type(exc).__name__, "|", exc)

X = np.zeros((20000, 8), np.float32)
y = np.zeros(20000, np.int64)
wide = fastnn.MLP([8, 30000, 2], seed=0)  # 0.3M parameters; 1 GB of activations per 8k rows
attempt("fit", lambda: wide.fit(X, y, "cross_entropy", batch_size=20000, epochs=1))
attempt("loss_and_grad", lambda: wide.loss_and_grad(X, y, "cross_entropy"))
widest = fastnn.MLP([2, 150000, 2], seed=0)  # predict: 1024 rows of 150002 activations
attempt("predict", lambda: widest.predict(np.zeros((2000, 2))))
attempt("MLP", lambda: fastnn.MLP([30000, 30000, 2]))
attempt("init", lambda: fastnn.nn.init.he_normal((20000, 20000)))
attempt("dense_forward", lambda: fastnn.dense_forward(np.ones((30000, 2)), np.ones((2, 30000)),
                                                       np.ones(30000)))
# and fastnn still works in the same process afterwards
model = fastnn.MLP([8, 16, 2], seed=0)
model.fit(X[:200], y[:200], "cross_entropy", epochs=1)
print("after | ok |", bool(np.isfinite(model.predict(X[:10])).all()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or SANITIZED,
                    reason="needs /proc and RLIMIT_AS (ASan reserves terabytes of address "
                           "space)")
def test_allocation_failures_raise_memory_error_with_the_size_asked_for(tmp_path):
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True,
                          text=True, timeout=120, **child_process_kwargs(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr  # no crash, no abort
    results = {}
    for line in done.stdout.splitlines():
        name, kind, *message = line.split(" | ")
        results[name] = (kind, message[0] if message else "")
    assert results["after"] == ("ok", "True")
    expectations = {
        "fit": "training workspace for batch_size=20000",
        "loss_and_grad": "could not allocate the workspace",
        "predict": "could not allocate the prediction workspace",
        "MLP": "an MLP [30000, 30000, 2] has 900090002 parameters",
        "init": "he_normal cannot allocate its values for shape (20000, 20000)",
        "dense_forward": "Unable to allocate",   # NumPy's own message, with the size
    }
    for name, fragment in expectations.items():
        kind, message = results[name]
        assert kind == "MemoryError", (name, kind, message)
        assert fragment in message, (name, message)
        assert "bytes" in message or "GiB" in message, (name, message)


# ======================================================================================
# Memory growth over thousands of calls
# ======================================================================================

def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _one_round(state):
    """Every compiled entry point once, plus the error paths (which must not leak either)."""
    a, model, X, y, sw = state["arrays"], state["model"], state["X"], state["y"], state["sw"]
    A = fastnn.dense_forward(a["X"], a["W"], a["b"], "relu")
    fastnn.dense_backward(a["X"], a["W"], A, a["dA"], "relu")
    CrossEntropy().loss_and_grad(A, state["labels"], sw[:6])
    model.loss_and_grad(X, y, "cross_entropy", sw)
    model.predict(X)
    fit(model, X, y, "cross_entropy", state["opt"], epochs=1, batch_size=16, seed=0)
    for bad in (lambda: model.predict(X[:, :2]), lambda: CrossEntropy()(A, state["labels"] + 9),
                lambda: fit(model, X, y + 5, "cross_entropy")):
        try:
            bad()
        except ValueError:
            pass
    try:
        fit(state["diverging"], X * 1e3, y, "cross_entropy", SGD(lr=1e30), epochs=2)
    except TrainingDiverged:
        pass


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or SANITIZED,
                    reason="RSS from /proc; ASan's allocator keeps freed memory quarantined")
def test_thousands_of_calls_do_not_grow_memory():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 8))
    state = {"arrays": layer_arrays(n=6, n_in=4, n_out=3), "model": MLP([8, 32, 4], seed=0),
             "X": X, "y": rng.integers(0, 4, 64), "sw": rng.uniform(0.5, 2.0, 64),
             "labels": np.array([0, 1, 2, 0, 1, 2]), "opt": Adam(lr=1e-3),
             "diverging": MLP([8, 32, 4], seed=0)}
    for _ in range(200):  # warm-up: allocator pools, caches, lazily built objects
        _one_round(state)
    # A leak grows RSS in every block of rounds; a one-off growth (another test's threads
    # finishing under load, an allocator arena) in one block only: judge the smallest.
    growths = []
    for _ in range(3):
        gc.collect()
        rss_before = _rss_bytes()
        for _ in range(2000):
            _one_round(state)
        gc.collect()
        growths.append(_rss_bytes() - rss_before)
    rss_growth = min(growths)
    tracemalloc.start()  # Python objects and NumPy buffers (not the compiled code's malloc)
    try:
        traced_before = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            _one_round(state)
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
    finally:
        tracemalloc.stop()
    # Measured: RSS grows by 0-20 KB per 2000 rounds, traced memory by ~2 KB (tracemalloc's
    # own) over 500.  Each round allocates workspaces of 1-10 KB in C (predict, loss_and_grad)
    # and NumPy (fit), outputs and exceptions: leaking any one of them per round would grow
    # RSS by > 4 MB over 2000 rounds, and one leaked 64-byte Python object per round exceeds
    # the 32 KB traced bound.
    assert rss_growth < 4 << 20, f"RSS grew by {[g / 2**20 for g in growths]} MB per block"
    assert traced_growth < 32 << 10, f"traced memory grew by {traced_growth / 2**10:.0f} KB"


def test_no_reference_to_inputs_is_kept_after_a_call_or_an_error():
    X, y = classification_data(n=32)
    model = MLP([3, 4, 3], seed=0)
    for call in (lambda X, y: model.predict(X),
                 lambda X, y: model.loss_and_grad(X, y, "cross_entropy"),
                 lambda X, y: fit(model, X, y, "cross_entropy", epochs=1),
                 lambda X, y: fit(model, X, y + 7, "cross_entropy")):
        Xc, yc = X.copy(), y.copy()
        refs = weakref.ref(Xc), weakref.ref(yc)
        try:
            call(Xc, yc)
        except ValueError:
            pass
        del Xc, yc
        gc.collect()
        assert refs[0]() is None and refs[1]() is None


@pytest.mark.skipif(SANITIZED, reason="ASan's instrumented frames need a larger stack of "
                    "their own (tests/sanitize.sh)")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_and_predict_run_in_a_thread_with_a_small_stack(dtype, tmp_path):
    # The fixed-order kernel's copies (a transposed B, a panel of B, the twide kernel's
    # transposed chunk of A) live in per-thread scratch memory (src_c/fastnn_gemm.h): on the
    # stack, 40-48 KB when the three calls nest, they crashed fit in a thread made with
    # threading.stack_size(56 KiB).  Each network below takes some of those copies (D W^T on
    # the fixed kernel, outputs 8-12 wide, narrow outputs) on 1 and 2 threads, in a 48 KiB
    # thread (the same fits pass at 32 KiB, the least Python allows; both dtypes crashed at
    # 48 KiB before); in a child process, since a stack overflow would end pytest.
    code = textwrap.dedent(f"""
        import threading
        import numpy as np
        import fastnn

        def run():
            rng = np.random.default_rng(0)
            for sizes, batch in (([64, 32, 10], 32), ([64, 64, 10], 64), ([8, 64, 64, 2], 64),
                                 ([784, 256, 10], 16), ([300, 70, 12, 3], 100)):
                X = rng.standard_normal((300, sizes[0])).astype("{dtype}")
                y = rng.integers(0, sizes[-1], 300)
                for n_threads in (1, 2):
                    model = fastnn.MLP(sizes, seed=0, dtype="{dtype}")
                    model.fit(X, y, "cross_entropy", fastnn.SGD(lr=0.01), epochs=1,
                              batch_size=batch, n_threads=n_threads)
                    model.predict(X)
                    model.predict(X[:1])
            print("done")

        threading.stack_size(48 * 1024)
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, **child_process_kwargs(tmp_path))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "done"
