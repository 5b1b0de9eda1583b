"""Question 2: the GEMM floor of a training step, and how far fastnn's step is above it.

The floor of an MLP at a batch size: exactly the GEMM calls one training step needs (forward per
layer, dW per layer, dX for every layer but the first), with fastnn's shapes and transposition
flags, issued back to back from compiled code (bench/_bench.pyx).  It is the limit of this design.
Interleaved with it: fastnn's whole step (gather + net_loss_grad + apply_update, the body of
_sgd.train_epoch), and the parts of that step alone, so that the excess over the floor is
attributed.  Also the machine's GEMM peak (large square products) for scale.

    python bench/gemm_floor.py [--quick] [--threads 1]
"""
import argparse
import sys

import numpy as np

import _common as C
from _compiled import load_bench
_bench = load_bench()


def peak(dtype, threads, min_time, repeats):
    n = 1024
    cases = {"peak": _bench.gemm_case(n, n, n, dtype=dtype)}
    with C.blas_threads(threads):
        res = _bench.sample_cases(cases, repeats=repeats, min_time=min_time)
    return _bench.gemm_flops(n, n, n) / C.summary(res["peak"]["ns"])["median"]


def floor_config(name, w, batch, threads, repeats, min_time):
    cases, info = _bench.step_cases(w["sizes"], w["activation"], w["loss"], batch, w["dtype"],
                                    n_rows=w["n"])
    with C.blas_threads(threads):
        res = _bench.sample_cases(cases, repeats=repeats, min_time=min_time)
    s = {k: C.summary(v["ns"]) for k, v in res.items()}
    med = {k: v["median"] for k, v in s.items()}
    fl = med["floor"]
    gemms = [{"name": k.split(":", 1)[1], "ns": v, "gflops": info["gemm_flops"][k] / v}
             for k, v in med.items() if k.startswith("gemm:")]
    return {"workload": name, "batch": batch, "threads": threads,
            "dtype": np.dtype(w["dtype"]).name, "floor_ns": fl, "floor_spread": C.spread(
                s["floor"]), "floor_gflops": info["flops"] / fl, "step_ns": med["step"],
            "step_spread": C.spread(s["step"]), "ratio": med["step"] / fl,
            "ratio_min": s["step"]["min"] / s["floor"]["max"],
            "ratio_max": s["step"]["max"] / s["floor"]["min"],
            "parts": {k.split(":", 1)[1]: v for k, v in med.items() if k.startswith("part:")},
            "gemms": gemms, "sum_gemms": sum(g["ns"] for g in gemms)}


def run(quick=False, threads=None, log=print):
    repeats, min_time = (3, 0.005) if quick else (5, 0.03)
    counts = (threads,) if threads else C.thread_counts(quick)
    out = {"peaks": {}, "configs": []}
    for t in counts:
        for dt in (np.float32, np.float64):
            out["peaks"][(np.dtype(dt).name, t)] = peak(dt, t, min_time, repeats)
            log(f"GEMM peak {np.dtype(dt).name} {t}T: "
                f"{out['peaks'][(np.dtype(dt).name, t)]:.1f} GFLOP/s")
    for name, w in C.workloads(quick).items():
        for batch in w["batches"]:
            for t in counts:
                r = floor_config(name, w, batch, t, repeats, min_time)
                out["configs"].append(r)
                log(f"{name} B={batch} {t}T: floor {r['floor_ns'] / 1e3:.1f} us "
                    f"({r['floor_gflops']:.1f} GFLOP/s), step {r['step_ns'] / 1e3:.1f} us, "
                    f"step/floor {r['ratio']:.3f}")
    return out


def markdown(out):
    lines = ["GEMM peak (1024 x 1024 x 1024 through cython_blas): " + ", ".join(
        f"{dt} {t} thread{'s' if t > 1 else ''} {g:.0f} GFLOP/s"
        for (dt, t), g in out["peaks"].items()), "",
        "| workload | batch | threads | GEMM floor | floor GFLOP/s | fastnn step | step / floor "
        "(min-max) | gather | forward+loss+backward | update |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["configs"]:
        p, fl = r["parts"], r["floor_ns"]
        lines.append(
            f"| {r['workload']} {r['dtype']} | {r['batch']} | {r['threads']} | "
            f"{fl / 1e3:.1f} us | {r['floor_gflops']:.1f} | {r['step_ns'] / 1e3:.1f} us | "
            f"**{r['ratio']:.3f}** ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | "
            f"{p['gather'] / fl:.3f} | {p['net_loss_grad'] / fl:.3f} | {p['update'] / fl:.3f} |")
    lines += ["", "The last three columns are the parts of a step timed alone, as fractions of "
              "the floor: forward+loss+backward includes the floor's GEMMs (so 1.0 means the "
              "fused element-wise work is free), gather and update are pure excess.", "",
              "Each GEMM of the floor alone, 1 thread (operands hot in cache, so their sum can "
              "be below the floor):", "",
              "| workload | batch | GEMM (what:layer) | time | GFLOP/s |", "|---|---|---|---|---|"]
    for r in out["configs"]:
        if r["threads"] != 1:
            continue
        for g in r["gemms"]:
            lines.append(f"| {r['workload']} {r['dtype']} | {r['batch']} | {g['name']} | "
                         f"{g['ns'] / 1e3:.2f} us | {g['gflops']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="default: 1 and 2")
    args = ap.parse_args(argv)
    out = run(args.quick, args.threads or None)
    print()
    print(markdown(out))


if __name__ == "__main__":
    sys.exit(main())
