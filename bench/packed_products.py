"""Which kernel should compute each of training's products?  GFLOP/s of every candidate on the
products of workloads A (float32) and D (float64), in thread CPU time.

    taskset -c 0 python bench/packed_products.py [repeats] [--batches 16,64,256,1024] [--update]

For each product of a training step (forward X W per layer, dW = X^T D per layer, dX = D W^T
for every layer but the first; the row-major shapes and transposition flags of
fastnn._core._network) and each batch size, the candidates run interleaved (one call of each
in turn, repeated until it lasted ~3 ms of thread CPU time), `repeats` times:
  packed  fastnn's packed, cache-blocked kernel (src_c/fastnn_gemm_packed.h)
  thin    fastnn's thin-batch kernel, C computed as its transpose (src_c/fastnn_gemm_thin.h;
          the packed kernel's bits)
  fixed   fastnn's fixed-order kernel (src_c/fastnn_gemm.h gemm_fixed_ex)
  update  fastnn's kernel for the fused SGD update (src_c/fastnn_gemm_update.h; the fixed
          kernel's bits; op(B) = B^T runs the fixed kernel itself)
  scipy   scipy's OpenBLAS through cython_blas (what fastnn called before)
  numpy   NumPy's OpenBLAS (np.matmul into a preallocated out, on transposed views)
  torch   torch.mm into a preallocated out (MKL), on transposed views
all on 1 thread (threadpoolctl, torch.set_num_threads).  The clock is time.thread_time, so a
core shared with other processes slows every candidate alike and ratios stay usable; pin the
process to one core.  fastnn's kernels loop in compiled code; numpy and torch are called from a
Python loop (about 1-3 us per call, which matters only for the smallest products).
Every product runs as C := op(A) op(B) (alpha 1, beta 0), except with --update the weight
gradients X^T D, which then run as plain SGD's fused update does, W := W - lr X^T D (alpha
-0.01, beta 1: C read and written; numpy and torch compute only the product, into C).  Prints a
markdown table of the medians (GFLOP/s) and which candidate won each product.
"""
import argparse
import os
import sys
import time

import numpy as np
try:
    import torch  # noqa: F401  (a candidate when installed)
except ImportError:
    pass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from fastnn._core import _products  # noqa: E402

CANDIDATES = ("packed", "thin", "fixed", "update", "scipy", "numpy", "torch")


def products(sizes, batch):
    """(name, trans_a, trans_b, m, n, k) of one training step, row-major C (m, n)."""
    out = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append((f"fwd{i} X W", False, False, batch, n_out, n_in))
        out.append((f"dW{i} X^T D", True, False, n_in, n_out, batch))
        if i > 0:
            out.append((f"dX{i} D W^T", False, True, batch, n_in, n_out))
    return out


def make_calls(torch, dtype, ta, tb, m, n, k, rng, update=False):
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    C_ = np.zeros((m, n), dtype)
    opa, opb = (A.T if ta else A), (B.T if tb else B)
    alpha, beta = 1.0, 0.0
    if update and ta:                     # plain SGD's fused update of W (the C here)
        alpha, beta = -0.01, 1.0
        C_[...] = 0.05 * rng.standard_normal((m, n))

    def ours(kernel):
        return lambda r: _products.gemm(kernel, ta, tb, alpha, A, B, beta, C_, repeat=r)

    def numpy_call(r):
        for _ in range(r):
            np.matmul(opa, opb, out=C_)

    calls = {"packed": ours("packed"), "thin": ours("thin"), "fixed": ours("fixed"),
             "update": ours("update"), "scipy": ours("blas"), "numpy": numpy_call}
    if torch is not None:
        ta_, tb_, tc_ = (torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(C_))
        ta_, tb_ = (ta_.t() if ta else ta_), (tb_.t() if tb else tb_)

        def torch_call(r):
            for _ in range(r):
                torch.mm(ta_, tb_, out=tc_)
        calls["torch"] = torch_call
    return calls


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("repeats", nargs="?", type=int, default=7)
    ap.add_argument("--batches", default="16,64,256,1024")
    ap.add_argument("--target", type=float, default=0.003, help="seconds per sample")
    ap.add_argument("--update", action="store_true",
                    help="X^T D as the fused SGD update: alpha -0.01, beta 1")
    args = ap.parse_args(argv)
    torch = C._torch()
    if torch is not None:
        torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(1):
        for wname, dtype in (("A", np.float32), ("D", np.float64)):
            sizes = C.WORKLOADS[wname]["sizes"]
            for batch in batches:
                for name, ta, tb, m, n, k in products(sizes, batch):
                    calls = make_calls(torch, dtype, ta, tb, m, n, k, rng, args.update)
                    flops = 2.0 * m * n * k
                    reps = {}
                    for c, fn in calls.items():           # warm up, size the loop
                        fn(1)
                        t0 = time.thread_time()
                        fn(3)
                        per = max((time.thread_time() - t0) / 3, 1e-7)
                        reps[c] = max(1, int(args.target / per))
                    samples = {c: [] for c in calls}
                    for _ in range(args.repeats):
                        for c, fn in calls.items():
                            t0 = time.thread_time()
                            fn(reps[c])
                            samples[c].append(flops * reps[c] / (time.thread_time() - t0)
                                              / 1e9)
                    med = {c: float(np.median(v)) for c, v in samples.items()}
                    rows.append((wname, np.dtype(dtype).name, batch, name, ta, tb, m, n, k,
                                 med))
                    print(f"{wname} {batch:5d} {name:12s} m={m:5d} n={n:4d} k={k:5d} "
                          + " ".join(f"{c}={v:6.1f}" for c, v in med.items()), flush=True)
    print()
    print("| workload | batch | product | m x n x k | " + " | ".join(CANDIDATES)
          + " | packed / scipy | best of fastnn's |")
    print("|---|---|---|---|" + "---|" * (len(CANDIDATES) + 2))
    for wname, dt, batch, name, ta, tb, m, n, k, med in rows:
        best = max(("packed", "thin", "fixed", "update", "scipy"), key=lambda c: med[c])
        print(f"| {wname} ({dt}) | {batch} | {name} | {m} x {n} x {k} | "
              + " | ".join(f"{med.get(c, float('nan')):.1f}" for c in CANDIDATES)
              + f" | {med['packed'] / med['scipy']:.2f} | {best} |")


if __name__ == "__main__":
    main(sys.argv[1:])
