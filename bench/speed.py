"""Every row of the speed issue's table in one command: training against the compiled peers
and the FLOP peak (bench/peers.py) at 1 and at 2 threads, then one-row and 1,000-row
prediction against onnxruntime and PyTorch (bench/latency.py).

Each peers run is its own process (it pins its CPU affinity before JAX and PyTorch start
their pools); the latency run is this process, at 1 thread.  The markdown of each part is
printed as it ends, under a heading; nothing is written to bench/RESULTS.md (paste the table
under a dated heading after a run on a quiet machine).

    python bench/speed.py [--quick] [--repeats 5] [--threads 1,2] [--cpu-time]

--cpu-time times prediction on the calling thread's CPU time (bench/latency.py) for a
machine shared with other jobs; the training rows always use the wall clock.

Machine check: a VM may give its second vCPU only part of a core.  Before and after every
run at more than one thread, NumPy's sgemm (2048^3) is timed at 1 and at n threads,
interleaved, and the speed-up the machine allowed is printed beside the table (n x: the cores
were all there; near 1 x: the n-thread rows measured a busy machine, not fastnn).
"""
import argparse
import os
import subprocess
import sys

import numpy as np

import _common as C

HERE = os.path.dirname(os.path.abspath(__file__))


def machine_check(n_threads, repeats=5, n=2048):
    """(sgemm GFLOP/s at 1 thread, at n_threads, their ratio): NumPy's BLAS, best of
    `repeats` interleaved runs of an n^3 product."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(np.float32)
    B = rng.standard_normal((n, n)).astype(np.float32)
    best = {1: float("inf"), n_threads: float("inf")}
    for _ in range(repeats):
        for k in best:
            with C.blas_threads(k):
                best[k] = min(best[k], C.timed(lambda: A @ B))
    one, many = (2.0 * n ** 3 / best[k] / 1e9 for k in (1, n_threads))
    return one, many, many / one


def _print_machine_check(n_threads, when):
    one, many, ratio = machine_check(n_threads)
    print(f"- machine check {when}: NumPy sgemm 2048^3 {one:.1f} GFLOP/s at 1 thread, "
          f"{many:.1f} at {n_threads} ({ratio:.2f}x of an ideal {n_threads}x)", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--cpu-time", action="store_true")
    args = ap.parse_args(argv)
    status = 0
    for n in [int(t) for t in args.threads.split(",") if t]:
        print(f"## Training against the compiled peers, {n} thread{'s' * (n > 1)} "
              "(bench/peers.py)\n", flush=True)
        cmd = [sys.executable, os.path.join(HERE, "peers.py"), "--threads", str(n),
               "--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
        if n > 1:
            _print_machine_check(n, "before")
        status |= subprocess.call(cmd)
        if n > 1:
            _print_machine_check(n, "after")
        print(flush=True)
    import latency
    print("## Prediction latency, 1 thread (bench/latency.py)\n", flush=True)
    out = latency.run(args.quick, max(3, args.repeats), "thread" if args.cpu_time else "wall")
    print(latency.markdown(out))
    print()
    for target, measured, verdict, note in latency.targets(out):
        print(f"- {target}: {measured} ({verdict}; {note})")
    return status


if __name__ == "__main__":
    sys.exit(main())
