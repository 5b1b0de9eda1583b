"""Question 12: fastnn against the compiled peers, and against the machine's FLOP peak.

For each workload and batch size, in one process pinned to `--threads` cores (JAX sizes its
pool from the CPU affinity, so the affinity is set before JAX or PyTorch is imported), on the
same arrays, from the same initial weights (fastnn's), plain SGD at the same rate, interleaved:

  fastnn          MLP.fit(X, y, loss, SGD(lr), shuffle=True, n_threads=threads): the whole call
  jax scan        the whole epoch as ONE ``jax.jit`` of ``lax.scan`` over the minibatches, the
                  gather ``X[idx]`` inside (the fastest idiomatic JAX); a last short batch is
                  one more jitted step; compiled before the clock starts
  jax step        one ``jax.jit`` step (gather, forward, loss, grad, update) called per batch
  torch.compile   one whole step (gather, forward, loss, gradient by ``torch.func.grad``,
                  update) compiled with ``fullgraph=True``, called per batch
  torch eager     the same step without compilation (autograd, ``torch.optim.SGD``)

Every peer shuffles with its own permutation per epoch (a gather of random rows costs the same
whatever the permutation).  Before anything is timed, each peer's first step from the same
weights on the same batch is compared with a float64 NumPy reference (bench/numpy_mlp.py's
step): a peer that computes another algorithm is reported and not timed.

FLOP/s: a training step costs 6 W - 2 n_in n_1 FLOPs per sample (forward 2W, backward 4W, no
input gradient for the first layer), W the number of weights.  The peak is the highest of one
large square GEMM (n=2048) through NumPy's BLAS and through scipy's, and of a loop of
independent fused multiply-adds on the widest vectors the CPU has (bench/fma_peak.h), at the
same thread count: the machine's, not one BLAS build's (on an AVX-512 CPU that the bundled
OpenBLAS builds do not know, their GEMMs run AVX2 kernels at half the FMA peak).

    python bench/peers.py [--threads 1] [--workloads A,B] [--quick] [--repeats 5]
"""
import argparse
import concurrent.futures
import os
import sys


def _pin(threads):
    # before JAX/PyTorch/NumPy start their pools: they size them from the affinity
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < threads:
        sys.exit(f"--threads {threads}: only {len(cores)} cores are available")
    os.sched_setaffinity(0, set(cores[:threads]))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=" +
                               ("true" if threads > 1 else "false")).strip()


if __name__ == "__main__":
    _early = argparse.ArgumentParser(add_help=False)
    _early.add_argument("--threads", type=int, default=1)
    _pin(_early.parse_known_args()[0].threads)

import time  # noqa: E402

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
from numpy_mlp import NumpyMLP  # noqa: E402

import fastnn  # noqa: E402

PEERS = ("fastnn", "jax scan", "jax step", "torch.compile", "torch eager")


# ------------------------------------------------------------------ the shared definition

def initial_params(w, seed=0):
    """fastnn's initial weights for the workload: [(W (n_in, n_out), b (n_out,)), ...]."""
    model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=w["dtype"], seed=seed)
    return [(layer.W.copy(), layer.b.copy()) for layer in model.layers]


def step_flops(sizes):
    """FLOPs of one training step per sample: 6 W - 2 n_in n_1."""
    W = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 6.0 * W - 2.0 * sizes[0] * sizes[1]


def reference_step(w, params, X, y):
    """The float64 NumPy step (bench/numpy_mlp.py) from `params` on (X, y): new params."""
    ref = NumpyMLP(w["sizes"], w["activation"], w["loss"], np.float64)
    ref.W = [np.asarray(W, np.float64).copy() for W, _ in params]
    ref.b = [np.asarray(b, np.float64).copy() for _, b in params]
    ref.step(np.asarray(X, np.float64), y if w["loss"] != "mse" else np.asarray(y, np.float64),
             w["lr"])
    return list(zip(ref.W, ref.b))


def agree(got, expected, dtype):
    """Largest relative difference of the parameters, and whether it is within rounding."""
    worst = 0.0
    for (W, b), (RW, Rb) in zip(got, expected):
        for a, r in ((W, RW), (b, Rb)):
            a = np.asarray(a, np.float64)
            worst = max(worst, float(np.max(np.abs(a - r)) / max(np.max(np.abs(r)), 1e-30)))
    return worst, worst < (1e-4 if np.dtype(dtype) == np.float32 else 1e-10)


# ------------------------------------------------------------------ fastnn

def fastnn_runner(w, X, y, batch, threads, params0):
    def build():
        model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=w["dtype"], seed=0)
        for layer, (W, b) in zip(model.layers, params0):
            layer.W[...] = W
            layer.b[...] = b
        return model

    def run(epochs=w["epochs"]):
        build().fit(X, y, w["loss"], fastnn.SGD(lr=w["lr"]), epochs=epochs, batch_size=batch,
                    shuffle=True, seed=0, n_threads=threads)

    def first_step(Xb, yb):
        model = build()
        model.fit(Xb, yb, w["loss"], fastnn.SGD(lr=w["lr"]), epochs=1, batch_size=len(Xb),
                  shuffle=False, n_threads=threads)
        return [(layer.W, layer.b) for layer in model.layers]
    return run, first_step


# ------------------------------------------------------------------ JAX

def jax_runners(w, X, y, batch, params0):
    import jax
    import jax.numpy as jnp
    from jax import lax

    if np.dtype(w["dtype"]) == np.float64:
        jax.config.update("jax_enable_x64", True)
    act = jax.nn.relu if w["activation"] == "relu" else jnp.tanh
    lr = w["lr"]

    def loss_fn(params, xb, yb):
        a = xb
        for k, (W, b) in enumerate(params):
            a = a @ W + b
            if k < len(params) - 1:
                a = act(a)
        if w["loss"] == "mse":
            return jnp.mean((a - yb) ** 2)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(a), yb[:, None], axis=1))

    def step(params, idx, Xd, yd):
        g = jax.grad(loss_fn)(params, Xd[idx], yd[idx])
        return jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g)

    @jax.jit
    def epoch(params, order, Xd, yd):
        body = (lambda p, idx: (step(p, idx, Xd, yd), None))
        params, _ = lax.scan(body, params, order)
        return params

    jstep = jax.jit(step)
    Xd, yd = jax.device_put(X), jax.device_put(y)
    n = X.shape[0]
    full = n // batch * batch
    rng = np.random.default_rng(0)
    p0 = jax.device_put([tuple(map(np.asarray, p)) for p in params0])

    def orders(epochs):
        return [rng.permutation(n) for _ in range(epochs)]

    def scan_run(epochs=w["epochs"]):
        p = p0
        for order in orders(epochs):
            p = epoch(p, order[:full].reshape(-1, batch), Xd, yd)
            if full < n:
                p = jstep(p, order[full:], Xd, yd)
        jax.block_until_ready(p)

    def step_run(epochs=w["epochs"]):
        p = p0
        for order in orders(epochs):
            for start in range(0, n, batch):
                p = jstep(p, order[start:start + batch], Xd, yd)
        jax.block_until_ready(p)

    def first_step(Xb, yb):
        p = jstep(p0, np.arange(len(Xb)), jax.device_put(Xb), jax.device_put(yb))
        return [(np.asarray(W), np.asarray(b)) for W, b in p]
    return scan_run, step_run, first_step


# ------------------------------------------------------------------ PyTorch

def torch_runners(w, X, y, batch, threads, params0):
    import torch
    torch.set_num_threads(threads)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    lr = w["lr"]
    act = torch.relu if w["activation"] == "relu" else torch.tanh

    def loss_fn(params, xb, yb):
        a = xb
        for k in range(0, len(params), 2):
            a = a @ params[k] + params[k + 1]
            if k < len(params) - 2:
                a = act(a)
        if w["loss"] == "mse":
            return torch.mean((a - yb) ** 2)
        return torch.nn.functional.cross_entropy(a, yb)

    def step(params, idx):
        g = torch.func.grad(loss_fn)(params, Xt[idx], yt[idx])
        return [p - lr * d for p, d in zip(params, g)]

    # each configuration compiles its own step (a full and a last, partial batch shape): the
    # shapes of earlier configurations would otherwise count against dynamo's recompile limit
    # (8), which fullgraph=True turns into an error
    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    p0 = [torch.from_numpy(np.array(a)) for W, b in params0 for a in (W, b)]
    n = X.shape[0]

    def compiled_run(epochs=w["epochs"]):
        p = p0
        for _ in range(epochs):
            order = torch.randperm(n)
            for start in range(0, n, batch):
                p = compiled(p, order[start:start + batch])

    def eager_run(epochs=w["epochs"]):
        p = [t.clone().requires_grad_(True) for t in p0]
        opt = torch.optim.SGD(p, lr=lr)
        for _ in range(epochs):
            order = torch.randperm(n)
            for start in range(0, n, batch):
                idx = order[start:start + batch]
                opt.zero_grad(set_to_none=True)
                loss_fn(p, Xt[idx], yt[idx]).backward()
                opt.step()

    def first_step(fn):
        def run(Xb, yb):
            idx = torch.arange(len(Xb))
            if fn is compiled:
                p = compiled(p0, idx)
            else:
                p = [t.clone().requires_grad_(True) for t in p0]
                loss_fn(p, Xt[idx], yt[idx]).backward()
                with torch.no_grad():
                    p = [t - lr * t.grad for t in p]
            p = [t.detach().numpy() for t in p]
            return list(zip(p[0::2], p[1::2]))
        return run
    return compiled_run, eager_run, first_step(compiled), first_step(None)


# ------------------------------------------------------------------ the peak

def fma_peak(dtype, threads, seconds=0.3, repeats=3):
    """FLOP/s of independent fused multiply-adds on the widest vectors the CPU has
    (bench/fma_peak.h), `threads` threads at once (best of repeats): the machine's peak,
    which no kernel of any library can pass.  None when the CPU has no FMA vectors."""
    from _compiled import load_bench
    _bench = load_bench()
    if _bench.fma_width() == 0:
        return None
    dbl = np.dtype(dtype) == np.float64
    probe, _ = _bench.fma_seconds(1_000_000, dbl)
    rounds = max(1, int(1_000_000 * seconds / max(probe, 1e-6)))
    best = 0.0
    for _ in range(repeats):
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            done = list(pool.map(lambda _: _bench.fma_seconds(rounds, dbl), range(threads)))
            wall = time.perf_counter() - start
        best = max(best, sum(flops for _, flops in done) / wall)
    return best


def gemm_peak(dtype, threads, n=2048, repeats=5):
    """FLOP/s of the fastest n^3 GEMM through NumPy's and scipy's BLAS (best of repeats), and
    of the machine's FMA loop ("fma", fma_peak): the peak quoted is the highest of them."""
    from scipy.linalg import blas as sblas
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    gemm = sblas.sgemm if np.dtype(dtype) == np.float32 else sblas.dgemm
    best = {}
    with C.blas_threads(threads):
        for name, fn in (("numpy", lambda: A @ B), ("scipy", lambda: gemm(1.0, A, B))):
            fn()
            best[name] = 2.0 * n ** 3 / min(C.timed(fn) for _ in range(repeats))
    fma = fma_peak(dtype, threads)
    if fma is not None:
        best["fma"] = fma
    return best


# ------------------------------------------------------------------ one configuration

def run_config(w, X, y, batch, threads, repeats, log=print):
    params0 = initial_params(w)
    runs, checks = {}, {}
    fast_run, fast_first = fastnn_runner(w, X, y, batch, threads, params0)
    runs["fastnn"], checks["fastnn"] = fast_run, fast_first
    try:
        scan_run, step_run, jax_first = jax_runners(w, X, y, batch, params0)
        runs["jax scan"], runs["jax step"] = scan_run, step_run
        checks["jax scan"] = checks["jax step"] = jax_first
    except ImportError:
        log("  (jax is not installed: pip install '.[peers]')")
    try:
        compiled_run, eager_run, compiled_first, eager_first = torch_runners(
            w, X, y, batch, threads, params0)
        runs["torch.compile"], runs["torch eager"] = compiled_run, eager_run
        checks["torch.compile"], checks["torch eager"] = compiled_first, eager_first
    except ImportError:
        log("  (torch is not installed: pip install '.[peers]')")

    Xb, yb = X[:batch], y[:batch]
    expected = reference_step(w, params0, Xb, yb)
    res = {"workload": w["name"], "batch": batch, "threads": threads,
           "dtype": np.dtype(w["dtype"]).name, "check": {}, "rates": {}}
    for name in list(runs):
        worst, ok = agree(checks[name](Xb, yb), expected, w["dtype"])
        res["check"][name] = worst
        if not ok:
            log(f"  {name}: first step differs from the float64 reference by {worst:.2e}; "
                "not timed")
            del runs[name]
    n, epochs = X.shape[0], w["epochs"]
    warm = {name: (lambda fn=fn: fn(1)) for name, fn in runs.items()}  # compiles, first touch
    times = C.interleaved({k: (lambda fn=fn: fn()) for k, fn in runs.items()},
                          repeats=repeats, warmups=warm)
    for name, ts in times.items():
        res["rates"][name] = C.summary([n * epochs / t for t in ts])
    res["gflops_per_sample"] = step_flops(w["sizes"]) / 1e9
    return res


def markdown(results, peaks):
    lines = ["| workload | batch | thr | dtype | " + " | ".join(PEERS) +
             " | fastnn / best peer | fastnn GFLOP/s | % of peak |",
             "|---" * (len(PEERS) + 7) + "|"]
    for r in results:
        med = {k: v["median"] for k, v in r["rates"].items()}
        peers = {k: v for k, v in med.items() if k != "fastnn"}
        best = max(peers.values()) if peers else float("nan")
        gf = med.get("fastnn", float("nan")) * r["gflops_per_sample"]
        peak = max(peaks[(r["dtype"], r["threads"])].values()) / 1e9
        cells = [C.fmt_rate(med[p]) if p in med else "-" for p in PEERS]
        lines.append(f"| {r['workload']} | {r['batch']} | {r['threads']} | {r['dtype']} | "
                     + " | ".join(cells) + f" | {med.get('fastnn', float('nan')) / best:.2f}x"
                     f" | {gf:.1f} | {100 * gf / peak:.0f}% |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workloads", default="A,B,C,D")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    env = C.environment()
    print(C.environment_markdown(env))
    results, peaks = [], {}
    for name, w in C.workloads(args.quick, args.workloads.split(",")).items():
        w["name"] = name
        X, y = C.make_data(w)
        key = (np.dtype(w["dtype"]).name, args.threads)
        if key not in peaks:
            peaks[key] = gemm_peak(w["dtype"], args.threads)
            print(f"peak {key}: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s"
                                               for k, v in peaks[key].items()), flush=True)
        for batch in w["batches"]:
            t0 = time.perf_counter()
            r = run_config(w, X, y, batch, args.threads, args.repeats)
            results.append(r)
            print(f"{name} batch {batch}: " + ", ".join(
                f"{k} {C.fmt_rate(v['median'])}" for k, v in r["rates"].items()) +
                f"  ({time.perf_counter() - t0:.0f} s; first-step differences " +
                ", ".join(f"{k} {v:.1e}" for k, v in r["check"].items()) + ")", flush=True)
    print()
    print(markdown(results, peaks))


if __name__ == "__main__":
    main()
