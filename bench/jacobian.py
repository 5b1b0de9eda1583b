"""Question: how fast is fastnn's Jacobian of the inputs, against PyTorch's?

Network A (784-256-128-10 ReLU, float32), 1,000 samples: the full per-sample Jacobian of the
10 logits w.r.t. the 784 inputs, shape (1000, 10, 784), timed interleaved:

  fastnn   model.jacobian(X, of="logits"): one forward and 10 backward passes per chunk of
           rows, compiled, no GIL
  torch    torch.func.vmap(torch.func.jacrev(f))(X) on a torch.nn.Sequential with the same
           weights (reverse mode, vmapped over samples)

Both results are compared (max relative difference) before timing.

    python bench/jacobian.py [--repeats 5] [--samples 1000] [--out FILE]
"""
import argparse
import os

import numpy as np

import _common as C

import fastnn

HERE = os.path.dirname(os.path.abspath(__file__))


def torch_model(model):
    import torch
    layers = []
    for k, layer in enumerate(model.layers):
        lin = torch.nn.Linear(layer.n_in, layer.n_out)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer.W.T.copy()))
            lin.bias.copy_(torch.from_numpy(layer.b.copy()))
        layers.append(lin)
        if k < model.n_layers - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def interleaved_cpu(runs, repeats):
    """Like _common.interleaved, also recording each run's process CPU seconds."""
    import time
    for fn in runs.values():
        fn()
    wall, cpu = {name: [] for name in runs}, {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    w = C.workloads(only=["A"])["A"]
    model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=np.float32, seed=0)
    X = np.random.default_rng(0).random((args.samples, w["sizes"][0]), dtype=np.float32)
    import torch
    net = torch_model(model)
    Xt = torch.from_numpy(X)
    jac = torch.func.vmap(torch.func.jacrev(net))

    def run_torch():
        with torch.no_grad():
            return jac(Xt)

    J, Jt = model.jacobian(X, of="logits"), run_torch().numpy()
    rel = float(np.abs(J - Jt).max() / np.abs(Jt).max())
    sizes = w["sizes"]
    n_out, pairs = sizes[-1], list(zip(sizes[:-1], sizes[1:]))
    # forward: 2 n a b per layer; backward: 2 (n n_out) a b per layer (dX of every layer)
    flops = 2 * args.samples * (1 + n_out) * sum(a * b for a, b in pairs)
    rows = []
    for threads in (1, 2):
        with C.blas_threads(threads), fastnn.runtime.threads.blas_threads(threads):
            times, cpu = interleaved_cpu({"fastnn": lambda: model.jacobian(X, of="logits"),
                                          "torch": run_torch}, args.repeats)
        f, t = C.summary(times["fastnn"]), C.summary(times["torch"])
        rows.append((threads, f, t, C.summary(cpu["fastnn"])["median"],
                     C.summary(cpu["torch"])["median"]))
    lines = ["# Input Jacobian (bench/jacobian.py)", "",
             f"Network A ({w['title'].split(',')[0]}, float32), {args.samples} samples, "
             f"Jacobian of the 10 logits w.r.t. the 784 inputs.  Medians of {args.repeats} "
             "interleaved repeats after a warm-up; the machine is shared and noisy right "
             f"now.  Max |fastnn - torch| / max |torch| = {rel:.1e}.", "",
             "The work is a few large products: one forward pass and, per layer, one product "
             f"for all {n_out} output columns stacked, {flops / 1e9:.2f} GFLOP in all; "
             "'fastnn GFLOP per CPU-s' is that count over fastnn's CPU time, against the "
             "sgemm peak of this machine (~104 GFLOP/s on 1 thread, "
             "measured once with a plain sgemm loop): at the peak, no rearrangement of the pass can be "
             "much faster.", "",
             "CPU ms is the process's CPU time (all its threads), the figure to trust on a "
             f"loaded machine (load average {os.getloadavg()[0]:.1f} on 2 cores at the end of "
             "this run).", "",
             "| BLAS threads | fastnn ms | torch jacrev+vmap ms | fastnn speed-up | "
             "fastnn CPU ms | torch CPU ms | CPU ratio | fastnn GFLOP per CPU-s |",
             "|---|---|---|---|---|---|---|---|"]
    for threads, f, t, fc, tc in rows:
        lines.append(f"| {threads} | {1e3 * f['median']:.1f} (+-{C.spread(f):.0f}%) | "
                     f"{1e3 * t['median']:.1f} (+-{C.spread(t):.0f}%) | "
                     f"{t['median'] / f['median']:.2f}x | {1e3 * fc:.1f} | {1e3 * tc:.1f} | "
                     f"{tc / fc:.2f}x | {flops / fc / 1e9:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or os.path.join(HERE, "RESULTS-jacobian.md")
    with open(out, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
