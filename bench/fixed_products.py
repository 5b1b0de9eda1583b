"""Training's small products: fastnn's fixed-order kernels against OpenBLAS, interleaved.

    python bench/fixed_products.py C float32 [repeats] [n_rows batch] [--large | --thin | --update]

With --large, the question is the large products instead: both sides keep the small products
on the fixed-order kernels, and the products above that range run on OpenBLAS ("blas", as
before fastnn's packed kernel) or on the kernel `_network._product_kernel` chooses ("auto").
With --thin, both sides run the chosen kernels, one with the thin-batch kernel switched off
(`_tiling._set_thin_max_m(0)`: its products go back to the packed or fixed kernel, the same
bits) and one as chosen.  With --update, likewise for the update kernel of X^T D
(`_tiling._set_update_max_k(0)`: its products go back to the fixed or packed kernel, the same
bits).

One process alternates the OpenBLAS path (`_tiling._set_fixed_max(0)`) and the default
(products with m n k up to the threshold on fastnn's own kernels), timing one fit of the
workload of bench/_common.py at 1 thread in thread CPU time, and prints the samples per second
of each and the median of the per-repeat time ratios.  Pin it (`taskset -c 0`); under load,
only ratios from one run are worth quoting.  Also prints how far one epoch's weights moved
from the OpenBLAS path's.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import fastnn  # noqa: E402
from fastnn._core import _network, _tiling  # noqa: E402


def main(argv):
    large = "--large" in argv
    thin = "--thin" in argv
    update = "--update" in argv
    argv = [a for a in argv if a not in ("--large", "--thin", "--update")]
    name, dtype = argv[0], np.dtype(argv[1] if len(argv) > 1 else "float32")
    reps = int(argv[2]) if len(argv) > 2 else 7
    w = dict(C.WORKLOADS[name], dtype=dtype)
    if len(argv) > 4:
        w.update(n=int(argv[3]), batches=(int(argv[4]),))
    X, y = C.make_data(w)
    batch = w["batches"][0]
    default = _tiling._set_fixed_max(0)
    _tiling._set_fixed_max(default)
    thin_max = _tiling._set_thin_max_m(0)
    _tiling._set_thin_max_m(thin_max)
    update_max = _tiling._set_update_max_k(0)
    _tiling._set_update_max_k(update_max)
    modes = (("blas", 0.0), ("fixed", default))

    def select(mode, v):
        if update:
            _tiling._set_update_max_k(0 if mode == "blas" else update_max)
        elif thin:
            _tiling._set_thin_max_m(0 if mode == "blas" else thin_max)
        elif large:
            _tiling._set_product_kernel("blas" if mode == "blas" else "auto")
        else:
            _tiling._set_fixed_max(v)

    def fit(epochs):
        m = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=dtype, seed=0)
        m.fit(X, y, w["loss"], fastnn.SGD(lr=w["lr"]), epochs=epochs, batch_size=batch,
              shuffle=True, seed=0, n_threads=1)
        return m

    try:
        weights = {}
        for mode, v in modes:
            select(mode, v)
            weights[mode] = [layer.W.copy() for layer in fit(1).layers]
        diff = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                   for a, b in zip(weights["blas"], weights["fixed"]))
        print(f"largest relative difference of the weights after one epoch: {diff:.3g}")
        times = {"blas": [], "fixed": []}
        for _ in range(reps):
            for mode, v in modes:
                select(mode, v)
                t0 = time.thread_time()
                fit(w["epochs"])
                times[mode].append(time.thread_time() - t0)
    finally:
        _tiling._set_fixed_max(default)
        _tiling._set_thin_max_m(thin_max)
        _tiling._set_update_max_k(update_max)
        _tiling._set_product_kernel("auto")
    n = w["n"] * w["epochs"]
    ratios = np.array(times["blas"]) / np.array(times["fixed"])
    ours = ("with update" if update else "with thin" if thin else "chosen kernels" if large
            else "fixed-order")
    theirs = "without update" if update else "without thin" if thin else "OpenBLAS"
    print(f"{name} {dtype} batch {batch}: {theirs} {n / np.median(times['blas']) / 1e6:.3f} "
          f"M samples/s, {ours} {n / np.median(times['fixed']) / 1e6:.3f} M samples/s, "
          f"time ratio {theirs} / {ours}: median {np.median(ratios):.3f} "
          f"(each repeat {np.round(ratios, 3).tolist()})")


if __name__ == "__main__":
    main(sys.argv[1:])
