"""Question 1: the compiled kernels, timed inside compiled code (bench/_bench.pyx).

For dense layers of the workloads' shapes: the bare forward GEMM, dense_forward per activation
and its ratio to that GEMM (the fusion overhead of bias + activation); dense_backward and its
ratio to its GEMMs (dW, and dX except for a first layer) plus one element-wise pass over the
output.  Then the loss + gradient (ns per call and per logit), and one whole training step of
each workload's MLP (gather, forward, loss, backward, SGD update).  ns per call are medians of
interleaved repeats; no Python inside any timed loop.

    python bench/kernels.py [--quick] [--threads 1] [--activations]
"""
import argparse
import sys

import numpy as np

import _common as C
from _compiled import load_bench
_bench = load_bench()

NEW_ACTIVATIONS = ("elu", "selu", "gelu", "gelu_tanh", "silu", "softplus")
# (label, batch, n_in, n_out, activations, first layer?, dtype)
LAYERS = [
    ("A layer 1", 16, 784, 256, ("relu",), True, np.float32),
    ("A layer 1", 256, 784, 256, ("identity", "relu", "tanh", "sigmoid"), True, np.float32),
    ("A layer 1", 1024, 784, 256, ("relu",), True, np.float32),
    ("A layer 2", 16, 256, 128, ("relu",), False, np.float32),
    ("A layer 2", 256, 256, 128, ("identity", "relu", "tanh", "sigmoid"), False, np.float32),
    ("A layer 2", 1024, 256, 128, ("relu",), False, np.float32),
    # the smooth activations, on A's layers at batch 256
    ("A layer 1", 256, 784, 256, NEW_ACTIVATIONS, True, np.float32),
    ("A layer 2", 256, 256, 128, NEW_ACTIVATIONS, False, np.float32),
    ("B layer 1", 32, 64, 32, ("relu",), True, np.float32),
    ("C layer 2", 64, 64, 64, ("tanh",), False, np.float32),
    ("D layer 1", 256, 784, 256, ("relu",), True, np.float64),
    ("D layer 2", 256, 256, 128, ("relu",), False, np.float64),
]
QUICK_LAYERS = [LAYERS[1], LAYERS[4], LAYERS[9]]
NEW_LAYERS = [LAYERS[1], LAYERS[6], LAYERS[4], LAYERS[7]]   # the smooth ones, beside the classics
LOSSES = [("cross_entropy", 32, 10), ("cross_entropy", 256, 10), ("mse", 64, 1)]


def layer_rows(label, batch, n_in, n_out, acts, first, dtype, repeats, min_time):
    cases, flops = _bench.layer_cases(batch, n_in, n_out, acts, dtype, first_layer=first)
    res = _bench.sample_cases(cases, repeats=repeats, min_time=min_time)
    med = {k: C.summary(v["ns"])["median"] for k, v in res.items()}
    gemms_bwd = med["gemm_dW"] + (0.0 if first else med["gemm_dX"])
    rows = [{"label": label, "batch": batch, "shape": f"{n_in}->{n_out}",
             "dtype": np.dtype(dtype).name, "kernel": "GEMM (forward shape)", "ns":
             med["gemm_fwd"], "gflops": flops["gemm_fwd"] / med["gemm_fwd"], "ratio": None,
             "spread": C.spread(C.summary(res["gemm_fwd"]["ns"]))}]
    for act in acts:
        f, b = med[f"forward:{act}"], med[f"backward:{act}"]
        rows.append({"label": label, "batch": batch, "shape": f"{n_in}->{n_out}",
                     "dtype": np.dtype(dtype).name, "kernel": f"dense_forward {act}", "ns": f,
                     "gflops": flops[f"forward:{act}"] / f, "ratio": f / med["gemm_fwd"],
                     "vs": "GEMM", "spread": C.spread(C.summary(res[f"forward:{act}"]["ns"]))})
        if f"predict:{act}" in med:   # GELU/SiLU: the in-place pass prediction uses
            p = med[f"predict:{act}"]
            rows[-1]["kernel"] += " (keeps Z)"
            rows.append({"label": label, "batch": batch, "shape": f"{n_in}->{n_out}",
                         "dtype": np.dtype(dtype).name,
                         "kernel": f"dense_forward {act} in place (predict)", "ns": p,
                         "gflops": flops[f"predict:{act}"] / p, "ratio": p / med["gemm_fwd"],
                         "vs": "GEMM",
                         "spread": C.spread(C.summary(res[f"predict:{act}"]["ns"]))})
        rows.append({"label": label, "batch": batch, "shape": f"{n_in}->{n_out}",
                     "dtype": np.dtype(dtype).name,
                     "kernel": f"dense_backward {act}" + (" (no dX)" if first else ""),
                     "ns": b, "gflops": flops[f"backward:{act}"] / b,
                     "ratio": b / (gemms_bwd + med["pass"]),
                     "vs": ("dW GEMM" if first else "dW + dX GEMMs") + " + 1 pass",
                     "spread": C.spread(C.summary(res[f"backward:{act}"]["ns"]))})
    return rows


def run(quick=False, threads=1, log=print, only_new=False):
    """only_new: just A's layers at batch 256 with the classic and the new activations."""
    repeats, min_time = (3, 0.005) if quick else (15, 0.01)
    out = {"threads": threads, "layers": [], "losses": [], "steps": []}
    with C.blas_threads(threads):
        for spec in (NEW_LAYERS if only_new else QUICK_LAYERS if quick else LAYERS):
            rows = layer_rows(*spec, repeats, min_time)
            out["layers"] += rows
            for r in rows:
                log(f"{r['label']} B={r['batch']} {r['dtype']} {r['kernel']}: "
                    f"{r['ns'] / 1e3:.2f} us {r['gflops']:.1f} GFLOP/s"
                    + (f" ratio {r['ratio']:.3f}" if r["ratio"] else ""))
        if only_new:
            return out
        cases = {f"{loss} {b}x{k}": _bench.loss_case(b, k, loss) for loss, b, k in LOSSES}
        res = _bench.sample_cases(cases, repeats=repeats, min_time=min_time)
        for (loss, b, k), (name, v) in zip(LOSSES, res.items()):
            ns = C.summary(v["ns"])["median"]
            out["losses"].append({"loss": loss, "shape": f"{b}x{k}", "ns": ns,
                                  "ns_per_logit": ns / (b * k)})
            log(f"loss {name}: {ns / 1e3:.2f} us ({ns / (b * k):.2f} ns per logit)")
        for name, w in C.workloads(quick).items():
            batches = w["batches"] if name == "A" else w["batches"][:1]
            for batch in batches:
                cases, info = _bench.step_cases(w["sizes"], w["activation"], w["loss"], batch,
                                                w["dtype"], n_rows=min(w["n"], 8192))
                res = _bench.sample_cases({"step": cases["step"]}, repeats=repeats,
                                          min_time=min_time)
                s = C.summary(res["step"]["ns"])
                out["steps"].append({"workload": name, "batch": batch,
                                     "dtype": np.dtype(w["dtype"]).name, "ns": s["median"],
                                     "gflops": info["flops"] / s["median"],
                                     "rate": batch / s["median"] * 1e9, "spread": C.spread(s)})
                log(f"step {name} B={batch}: {s['median'] / 1e3:.2f} us")
    return out


def markdown(out):
    lines = [f"Dense layers ({out['threads']} BLAS thread; ns per call, median of interleaved "
             "repeats; ratio = fused kernel / the bare GEMM(s) it contains, plus one "
             "element-wise pass over the output for backward):", "",
             "| layer | batch | shape | dtype | kernel | time | GFLOP/s | ratio | vs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in out["layers"]:
        ratio = f"{r['ratio']:.3f}" if r["ratio"] else ""
        lines.append(f"| {r['label']} | {r['batch']} | {r['shape']} | {r['dtype']} | "
                     f"{r['kernel']} | {r['ns'] / 1e3:.2f} us (+-{r['spread']:.0f}%) | "
                     f"{r['gflops']:.1f} | {ratio} | {r.get('vs', '')} |")
    lines += ["", "Loss + gradient with respect to the logits (_losses.loss_grad):", "",
              "| loss | logits | time | per logit |", "|---|---|---|---|"]
    for r in out["losses"]:
        lines.append(f"| {r['loss']} | {r['shape']} | {r['ns'] / 1e3:.2f} us | "
                     f"{r['ns_per_logit']:.2f} ns |")
    lines += ["", "One whole training step (gather + forward + loss + backward + SGD update), "
              "timed in compiled code:", "",
              "| workload | batch | dtype | ns per step | samples/s | GFLOP/s (GEMM work) |",
              "|---|---|---|---|---|---|"]
    for r in out["steps"]:
        lines.append(f"| {r['workload']} | {r['batch']} | {r['dtype']} | "
                     f"{r['ns']:,.0f} (+-{r['spread']:.0f}%) | {C.fmt_rate(r['rate'])} | "
                     f"{r['gflops']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--activations", action="store_true",
                    help="only A's layers at batch 256, classic and smooth activations")
    args = ap.parse_args(argv)
    out = run(args.quick, args.threads, only_new=args.activations)
    print()
    print(markdown(out))


if __name__ == "__main__":
    sys.exit(main())
