"""What every benchmark script shares: the workloads and their data, a median-of-repeats timer,
BLAS thread pinning, and the report of the machine.

Rules kept by every script:
* competitors run in the same process, on the same arrays, interleaved (A B C A B C ...), and
  only ratios measured inside one run are compared;
* every figure is the median of at least 3 repeats after a warm-up, with its min and max;
* 1 BLAS thread is the primary figure; 2 threads are reported beside it (bimodal here);
* fastnn's path only ever calls scipy's OpenBLAS, the NumPy peer only NumPy's: the two are never
  mixed inside one timed loop.
"""
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:  # an installed fastnn first; a built source tree otherwise
    import fastnn  # noqa: F401
except ImportError:
    sys.path.insert(0, ROOT)
    import fastnn  # noqa: F401

# ------------------------------------------------------------------ workloads

#: name -> definition.  n: rows of the synthetic data set; batches: batch sizes to run;
#: epochs: per timed fit (enough that one fit lasts long enough to time).
WORKLOADS = {
    "A": dict(title="784-256-128-10 ReLU, softmax CE, 60000 x 784 (MNIST-shaped)",
              sizes=[784, 256, 128, 10], activation="relu", loss="cross_entropy",
              n=60000, batches=(16, 64, 256, 1024), epochs=1, lr=0.01, dtype=np.float32),
    "B": dict(title="64-32-10 ReLU, softmax CE, 1797 x 64 (digits-shaped)",
              sizes=[64, 32, 10], activation="relu", loss="cross_entropy",
              n=1797, batches=(32,), epochs=50, lr=0.01, dtype=np.float32),
    "C": dict(title="8-64-64-1 tanh, MSE, 20000 x 8",
              sizes=[8, 64, 64, 1], activation="tanh", loss="mse",
              n=20000, batches=(64,), epochs=5, lr=0.01, dtype=np.float32),
    "D": dict(title="A in float64 (784-256-128-10 ReLU, softmax CE, 60000 x 784)",
              sizes=[784, 256, 128, 10], activation="relu", loss="cross_entropy",
              n=60000, batches=(256,), epochs=1, lr=0.01, dtype=np.float64),
}

#: --quick: the same workloads, smaller, so that everything runs in under a minute
QUICK = {
    "A": dict(n=8192, batches=(16, 256)),
    "B": dict(epochs=10),
    "C": dict(n=5000, epochs=2),
    "D": dict(n=8192),
}



def _where(module):
    """Where a module was imported from, without naming this machine's folders: a path inside
    the source tree, or "installed"."""
    path = os.path.dirname(os.path.abspath(module.__file__))
    return os.path.relpath(path, ROOT) + "/ of this source tree" \
        if path.startswith(ROOT + os.sep) else "installed"

def workloads(quick=False, only=None):
    """The workload definitions (copies), shrunk by --quick, filtered by `only` names."""
    out = {}
    for name, w in WORKLOADS.items():
        if only and name not in only:
            continue
        w = dict(w)
        if quick:
            w.update(QUICK.get(name, {}))
        out[name] = w
    return out


def make_data(w, seed=0):
    """Synthetic data of a workload, in its dtype, C-contiguous; targets learnable.

    Classification: inputs in [0, 1] (pixel-like), labels from a random linear teacher (int64).
    Regression (C): fastnn.datasets.make_regression, target as an (n, 1) column.
    """
    rng = np.random.default_rng(seed)
    n, n_in, n_out = w["n"], w["sizes"][0], w["sizes"][-1]
    if w["loss"] == "mse":
        from fastnn.datasets import make_regression
        X, y = make_regression(n, n_in, seed=rng)
        return (np.ascontiguousarray(X, dtype=w["dtype"]),
                np.ascontiguousarray(y.reshape(-1, 1), dtype=w["dtype"]))
    X = rng.random((n, n_in), dtype=np.float32)
    if n_in == 64:  # digits-like: 17 grey levels
        X = np.floor(X * 17) / 16
    teacher = rng.standard_normal((n_in, n_out)).astype(np.float32)
    y = np.argmax((X - X.mean(axis=0)) @ teacher + rng.standard_normal((n, n_out)), axis=1)
    return np.ascontiguousarray(X, dtype=w["dtype"]), y.astype(np.int64)


# ------------------------------------------------------------------ timing


def summary(samples):
    """{"median", "min", "max", "n"} of a list of numbers."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "n": len(samples)}


def spread(s):
    """The spread of a summary as a +-% of the median: (max - min) / 2 / median."""
    return 100.0 * (s["max"] - s["min"]) / 2.0 / s["median"] if s["median"] else float("nan")


#: clock name -> function: "wall" (the default) or "thread", the calling thread's CPU time,
#: which leaves out the time the thread waited for a core.  On a machine shared with other
#: jobs the thread clock of single-threaded work is far steadier than the wall clock (it
#: still includes what the other jobs cost it through shared caches); it is meaningless for
#: work done on other threads.
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def timed(fn, clock="wall"):
    """Seconds of one call of fn() on `clock` (see CLOCKS)."""
    now = CLOCKS[clock]
    t0 = now()
    fn()
    return now() - t0


def interleaved(runs, repeats=3, warmups=None, clock="wall"):
    """Time several callables interleaved: warm-ups first, then `repeats` rounds A B C ...

    runs: dict name -> fn() (one timed unit of work).  warmups: dict name -> fn() to call once
    first (default: the run itself).  clock: see CLOCKS.  Returns dict name -> list of seconds.
    """
    for name, fn in runs.items():
        (warmups or {}).get(name, fn)()
    out = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            out[name].append(timed(fn, clock))
    return out


# ------------------------------------------------------------------ threads


def _torch():
    return sys.modules.get("torch")


@contextlib.contextmanager
def blas_threads(n):
    """Pin every BLAS/OpenMP pool (both OpenBLAS copies, torch's) to n threads."""
    from threadpoolctl import threadpool_limits
    torch = _torch()
    old = torch.get_num_threads() if torch else None
    with threadpool_limits(limits=n):
        if torch:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch:
                torch.set_num_threads(old)


def thread_counts(quick=False):
    return (1,) if quick else (1, 2)


# ------------------------------------------------------------------ peers


def import_peer(name):
    """The module, or None when it is not installed (reported, never silently dropped)."""
    try:
        return __import__(name)
    except ImportError:
        return None


def peer_versions():
    out = {}
    for mod, label in (("numpy", "numpy"), ("scipy", "scipy"), ("torch", "torch"),
                       ("sklearn", "scikit-learn"), ("threadpoolctl", "threadpoolctl"),
                       ("Cython", "Cython")):
        m = import_peer(mod)
        out[label] = getattr(m, "__version__", "?") if m else "MISSING"
    return out


# ------------------------------------------------------------------ environment


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in ("sse2", "avx", "avx2", "fma", "avx512f") if f in flags]
    except OSError:
        pass
    return []


def _lscpu(field):
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


def blas_libraries():
    """Every BLAS / OpenMP library loaded in this process (after importing the peers)."""
    from threadpoolctl import threadpool_info
    libs = []
    for info in threadpool_info():
        path = info.get("filepath", "")
        owner = ("numpy" if "numpy" in path else "scipy" if "scipy" in path
                 else "torch" if "torch" in path else "scikit-learn" if "sklearn" in path
                 or "scikit_learn" in path else "?")
        libs.append({"owner": owner, "api": info.get("internal_api"),
                     "version": info.get("version"), "arch": info.get("architecture"),
                     "threading": info.get("threading_layer"),
                     "threads": info.get("num_threads"), "file": os.path.basename(path)})
    torch = _torch()
    if torch is not None:
        cfg = torch.__config__.show()
        blas = "MKL" if "Math Kernel Library" in cfg else "?"
        for line in cfg.splitlines():
            if "Math Kernel Library" in line:
                blas = line.strip(" -")
        libs.append({"owner": "torch", "api": "blas (built in)", "version": blas, "arch":
                     torch.backends.cpu.get_cpu_capability(), "threading": "openmp",
                     "threads": torch.get_num_threads(), "file": "libtorch_cpu"})
    return libs


def _kernel_level():
    """The instruction set fastnn's own product kernels run on here (src_c/fastnn_gemm.h)."""
    from fastnn._core import _network
    return {0: "plain C", 1: "AVX2 + FMA", 2: "AVX-512"}[_network._gemm_kernel()]


def environment():
    """The machine and software, for the head of RESULTS.md."""
    import fastnn
    return {
        "cpu": _cpu_model(),
        "flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "l2": _lscpu("L2 cache"), "l3": _lscpu("L3 cache"),
        "os": platform.platform(),
        "python": platform.python_version(),
        "fastnn": f"{fastnn.__version__} ({_where(fastnn)})",
        "fastnn_native": os.environ.get("FASTNN_NATIVE", "0"),
        "fastnn_kernels": _kernel_level(),
        "versions": peer_versions(),
        "blas": blas_libraries(),
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                        "MKL_NUM_THREADS")},
    }


def environment_markdown(env):
    lines = [f"- CPU: {env['cpu']} ({env['cores']} logical cores, {env['usable_cores']} usable; "
             f"L2 {env['l2']}, L3 {env['l3']}; SIMD: {', '.join(env['flags'])})",
             f"- OS: {env['os']}, Python {env['python']}",
             f"- fastnn {env['fastnn']}, built with FASTNN_NATIVE={env['fastnn_native']} "
             "(SSE2 baseline unless 1); its product kernels run on "
             f"{env.get('fastnn_kernels', '?')} here (chosen at run time)",
             "- " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
             f"- thread environment variables: {env['thread_env']}; every figure pins all "
             "pools with threadpoolctl (and torch.set_num_threads) to the stated count",
             "- BLAS / OpenMP libraries loaded in the benchmark process:", ""]
    lines.append("| used by | API | version | kernel arch | threading | library |")
    lines.append("|---|---|---|---|---|---|")
    for lib in env["blas"]:
        lines.append(f"| {lib['owner']} | {lib['api']} | {lib['version']} | {lib['arch']} | "
                     f"{lib['threading']} | `{lib['file']}` |")
    lines.append("")
    lines.append("fastnn's dense training products run on its own fixed-order, packed, "
                 "thin-batch or update kernels, chosen per shape (fastnn/_core/_tiling.pyx), "
                 "prediction's on its fixed-order kernels (scipy's OpenBLAS, through "
                 "scipy.linalg.cython_blas, only in sparse-input and L-BFGS fits); the NumPy "
                 "trainer and scikit-learn call NumPy's OpenBLAS; PyTorch its own MKL.")
    return "\n".join(lines)


def fmt_rate(x):
    """Samples/s as 123.4k / 1.23M."""
    if x != x:
        return "n/a"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"
