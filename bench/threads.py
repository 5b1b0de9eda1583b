"""Question: what do fastnn's own threads buy, and what does a tile cost?

Three measurements, each interleaved in one process (A B C A B C ...), medians of repeats:

1. Training throughput per workload (A at batch 16/64/256/1024, B, C, D): fastnn with 1 and 2
   threads (``fit(..., n_threads=n)``: the same bits either way), PyTorch with
   ``torch.set_num_threads(2)`` and the plain-NumPy MLP with NumPy's OpenBLAS at 2 threads.
   samples/s of the whole fit call, plain SGD, shuffling, one epoch per timed fit.
   The wall-clock ratio 2 threads / 1 thread is reported with the process CPU time per
   sample, which a busy shared machine inflates less than the wall time, and with what the
   machine allowed at that moment: a large sgemm cut into 16 independent tiles, at 2 threads
   over 1, interleaved with the runs (the 2-vCPU VMs this was measured on sometimes give the
   second vCPU only part of a core for minutes at a time; then no 2-thread figure means
   anything, and the check shows it).
2. The per-tile cost: each of A's products at 1 thread untiled (one BLAS call) vs cut into
   fastnn's fixed tiles (n_threads=1), and the same tiles on 2 threads; the tiles' count.
3. The pool's dispatch cost: one parallel_for of 2 (or 8) empty tasks on 2 threads.

    python bench/threads.py [--quick] [--repeats 5] [--workloads A,B]
"""
import argparse
import os
import time

import numpy as np

import _common as C
from numpy_mlp import NumpyMLP

import fastnn
from fastnn._core import _tiling
from _compiled import load_bench
_bench = load_bench()

CONFIGS = [("A", 16), ("A", 64), ("A", 256), ("A", 1024), ("B", 32), ("C", 64), ("D", 256)]
ROWS = {"A": 16384, "D": 8192}      # rows per timed epoch (B and C: their whole data sets)


EPOCH_TIMES = {}


def fastnn_fit(w, X, y, batch, n_threads):
    model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=w["dtype"], seed=0)
    hist = model.fit(X, y, w["loss"], fastnn.SGD(lr=w["lr"]), epochs=1, batch_size=batch,
                     shuffle=True, seed=0, n_threads=n_threads)
    EPOCH_TIMES.setdefault(n_threads, []).append(sum(hist.time))


def machine_check(n_threads):
    """One 1024 x 1024 x 1024 sgemm cut into fastnn's 16 tiles of 256 x 256 on
    n_threads: run at 1 and 2 threads beside each workload, its ratio is the speed-up the
    machine allowed at that moment (two independent tasks, no synchronisation inside)."""
    from fastnn.runtime import threads
    run = _MACHINE_CHECK.setdefault(n_threads, _bench.tiled_gemm_case(1024, 1024, 1024,
                                                                       n_threads))
    with threads.blas_threads(1):       # each tile on one thread, as in fastnn's fit
        run(20)


_MACHINE_CHECK = {}


def numpy_fit(w, X, y, batch):
    NumpyMLP(w["sizes"], w["activation"], w["loss"], w["dtype"], 0).fit(
        X, y, epochs=1, batch_size=batch, lr=w["lr"], seed=0)


def torch_fit(torch, w, Xt, yt, batch):
    from throughput import torch_fit as fit
    fit(torch, w, Xt, yt, batch, 1)


def _cpu_and_wall(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - t0


def throughput(w, X, y, batch, repeats, torch):
    from threadpoolctl import threadpool_limits
    runs = {"fastnn 1": lambda: fastnn_fit(w, X, y, batch, 1),
            "fastnn 2": lambda: fastnn_fit(w, X, y, batch, 2),
            "numpy 2": lambda: numpy_fit(w, X, y, batch),
            "gemm 1": lambda: machine_check(1), "gemm 2": lambda: machine_check(2)}
    if torch is not None:
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        runs["torch 2"] = lambda: torch_fit(torch, w, Xt, yt, batch)
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    EPOCH_TIMES.clear()
    # the peers at 2 threads (both OpenBLAS copies, torch); fastnn's fit holds scipy's
    # OpenBLAS at 1 inside and uses its own n_threads
    with threadpool_limits(limits=2):
        if torch is not None:
            torch.set_num_threads(2)
        for fn in runs.values():
            fn()                                    # warm-up
        for _ in range(repeats):
            for name, fn in runs.items():
                c, t = _cpu_and_wall(fn)
                cpu[name].append(c)
                wall[name].append(t)
    n = X.shape[0]
    epochs = {k: C.summary([n / t for t in v[-repeats:]]) for k, v in EPOCH_TIMES.items()}
    return ({k: C.summary([n / t for t in v]) for k, v in wall.items()},
            {k: np.median(v) / n * 1e6 for k, v in cpu.items()}, epochs)


def _cpu_sample(cases, repeats, min_time=0.01):
    """Interleaved samples of each case: (thread CPU us, process CPU us, wall us) per call,
    medians over repeats.  On a shared machine the calling thread's CPU time of a 1-thread
    case is its work, whatever the load; the wall time of a 2-thread case is not."""
    reps = {}
    for name, run in cases.items():
        run(1)
        reps[name] = max(1, int(min_time * 1e9 / max(run(1), 1.0)))
    out = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            t0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
            run(reps[name])
            n = reps[name]
            out[name].append(((time.thread_time() - t0) / n * 1e6,
                              (time.process_time() - p0) / n * 1e6,
                              (time.perf_counter() - w0) / n * 1e6))
    return {name: tuple(float(np.median([v[i] for v in vals])) for i in range(3))
            for name, vals in out.items()}


def tile_costs(repeats, batches=(16, 64, 256, 1024), dtype=np.float32):
    """Per product of network A's training step: untiled, tiled at 1 thread, tiled at 2."""
    from fastnn.runtime import threads
    rows = []
    sizes = [784, 256, 128, 10]
    for batch in batches:
        shapes = []
        for k in range(3):
            n_in, n_out = sizes[k], sizes[k + 1]
            shapes.append((f"fwd {n_in}x{n_out}", batch, n_out, n_in, False, False))
            shapes.append((f"dW {n_in}x{n_out}", n_in, n_out, batch, True, False))
            if k > 0:
                shapes.append((f"dX {n_in}x{n_out}", batch, n_in, n_out, False, True))
        for name, m, n, k, ta, tb in shapes:
            cases = {nt: _bench.tiled_gemm_case(m, n, k, nt, ta, tb, dtype) for nt in (0, 1, 2)}
            with threads.blas_threads(1):
                med = _cpu_sample(cases, repeats)
            n_tiles, tm, tn = _tiling.gemm_tiles(m, n, k)
            rows.append(dict(batch=batch, product=name, m=m, n=n, k=k, tiles=n_tiles, tm=tm,
                             tn=tn, untiled_us=med[0][0], tiled_us=med[1][0],
                             two_wall=med[2][2], two_cpu=med[2][1], flops=2.0 * m * n * k))
    return rows


def dispatch_cost(repeats):
    out = {}
    for n_tasks in (2, 8):
        cases = {n_tasks: (lambda nt: lambda reps: _bench._loop_dispatch(2, nt, reps))(n_tasks)}
        res = _bench.sample_cases(cases, repeats=repeats, min_time=0.02)
        out[n_tasks] = float(np.median(res[n_tasks]["ns"]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", default="")
    parser.add_argument("--parts", default="tiles,throughput",
                        help="which of tiles,throughput to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    only = set(args.workloads.split(",")) - {""}
    env = C.environment()
    print(C.environment_markdown(env))
    print(f"load average before: {os.getloadavg()}")
    torch = C.import_peer("torch")

    if "tiles" in parts:
        tile_table(args)
    if "throughput" in parts:
        throughput_table(args, only, torch)
    print(f"\nload average after: {os.getloadavg()}")


def tile_table(args):
    print("\n## Per-product cost of the fixed tiles (network A, float32, us per call; "
          "untiled and tiled: CPU time of the one thread)\n")
    print("| batch | product | m x n x k | tiles | untiled | tiled | tiled/untiled"
          " | us per extra tile | 2 thr wall | 2 thr CPU (both threads) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in tile_costs(max(3, args.repeats), batches=(64, 256) if args.quick else
                        (16, 64, 256, 1024)):
        per_tile = (r["tiled_us"] - r["untiled_us"]) / max(1, r["tiles"] - 1) \
            if r["tiles"] > 1 else 0.0
        print(f"| {r['batch']} | {r['product']} | {r['m']}x{r['n']}x{r['k']} | "
              f"{r['tiles']} of {r['tm']}x{r['tn']} | {r['untiled_us']:.1f} | "
              f"{r['tiled_us']:.1f} | {r['tiled_us'] / r['untiled_us']:.3f} | "
              f"{per_tile:+.2f} | {r['two_wall']:.1f} | {r['two_cpu']:.1f} |", flush=True)
    d = dispatch_cost(max(3, args.repeats))
    print(f"\npool dispatch, 2 threads: {d[2] / 1e3:.2f} us per job of 2 empty tasks, "
          f"{d[8] / 1e3:.2f} us per job of 8")



def throughput_table(args, only, torch):
    print("\n## Training throughput (samples/s, median [min-max]); fastnn 1 and 2 threads, "
          "peers at 2 threads\n")
    print("| workload | batch | dtype | fastnn 1 thr | fastnn 2 thr | 2 thr / 1 thr | "
          "epoch only: 2 thr / 1 thr | machine check: sgemm 2 thr / 1 thr | CPU us/sample 1 / 2 thr | "
          "torch 2 thr | numpy 2 thr | fastnn2/torch2 | fastnn2/numpy2 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, batch in CONFIGS:
        if only and name not in only:
            continue
        w = C.workloads(args.quick, None)[name]
        X, y = C.make_data(w)
        rows = ROWS.get(name, X.shape[0]) // (4 if args.quick else 1)
        X, y = X[:rows], y[:rows]
        rates, cpu, epochs = throughput(w, X, y, batch, args.repeats, torch)
        med = {k: v["median"] for k, v in rates.items()}
        fmt = lambda k: (f"{C.fmt_rate(med[k])} [{C.fmt_rate(rates[k]['min'])}-"  # noqa: E731
                         f"{C.fmt_rate(rates[k]['max'])}]" if k in med else "n/a")
        t2 = med.get("torch 2")
        print(f"| {name} | {batch} | {np.dtype(w['dtype']).name} | {fmt('fastnn 1')} | "
              f"{fmt('fastnn 2')} | {med['fastnn 2'] / med['fastnn 1']:.2f}x | "
              f"{epochs[2]['median'] / epochs[1]['median']:.2f}x | "
              f"{med['gemm 2'] / med['gemm 1']:.2f}x | "
              f"{cpu['fastnn 1']:.2f} / {cpu['fastnn 2']:.2f} | {fmt('torch 2')} | "
              f"{fmt('numpy 2')} | "
              f"{(med['fastnn 2'] / t2) if t2 else float('nan'):.2f}x | "
              f"{med['fastnn 2'] / med['numpy 2']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
