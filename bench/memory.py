"""Question 4: memory of a fit on workload A.

Each measurement runs in a fresh subprocess: import fastnn, note the resident set (the
interpreter and libraries), build the data in place (float32, chunk by chunk, so no temporary
copy), reset the kernel's peak-RSS counter (/proc/self/clear_refs), fit, and read the peak
(VmHWM).  The fit's growth = peak - RSS before the data; the bound to meet is
data + 4 x parameters + workspace + 64 MiB.  Fits of 1, 2 and 4 epochs must give the same peak,
and the RSS after each epoch of one 4-epoch fit must stay flat.

    python bench/memory.py [--quick]
"""
import argparse
import json
import os
import subprocess
import sys

import _common as C

CHILD = r"""
import json, sys
sys.path[:0] = {paths!r}
import numpy as np
import fastnn


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return -1


n, epochs, batch = {n}, {epochs}, {batch}
model = fastnn.MLP([784, 256, 128, 10], seed=0)
base = status("VmRSS")
X = np.empty((n, 784), np.float32)
rng = np.random.default_rng(0)
for s in range(0, n, 4096):
    X[s:s + 4096] = rng.random((min(4096, n - s), 784), dtype=np.float32)
y = rng.integers(0, 10, n)
with_data = status("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
after_epoch = []
model.fit(X, y, "cross_entropy", fastnn.SGD(lr=0.01), epochs=epochs, batch_size=batch, seed=0,
          callbacks=[lambda e, logs: after_epoch.append(status("VmRSS"))])
print(json.dumps(dict(base=base, with_data=with_data, peak=status("VmHWM"), reset=reset,
                      after_epoch=after_epoch, data=X.nbytes + y.nbytes,
                      n_params=model.n_params)))
"""


def measure(n, epochs, batch=256):
    import fastnn
    paths = [os.path.dirname(os.path.dirname(fastnn.__file__))]
    code = CHILD.format(paths=paths, n=n, epochs=epochs, batch=batch)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r.update(n=n, epochs=epochs, batch=batch)
    p = r["n_params"]
    # the workspace of fit: activations, two delta buffers, the gathered batch, labels
    workspace = 4 * batch * ((256 + 128 + 10) + 2 * 256 + 784) + 8 * batch + 8 * n
    r["workspace"] = workspace      # + the epoch's order (8 bytes per sample)
    r["growth"] = r["peak"] - r["base"]
    r["bound"] = r["data"] + 4 * 4 * p + workspace + 64 * 2**20
    return r


def run(quick=False, log=print):
    n = 8192 if quick else 60000
    out = []
    for epochs in ((1, 2) if quick else (1, 2, 4)):
        r = measure(n, epochs)
        out.append(r)
        log(f"n={n} epochs={epochs}: peak {r['peak'] / 2**20:.1f} MiB, growth "
            f"{r['growth'] / 2**20:.1f} MiB, data {r['data'] / 2**20:.1f} MiB, bound "
            f"{r['bound'] / 2**20:.1f} MiB, RSS after each epoch "
            f"{[round(a / 2**20, 1) for a in r['after_epoch']]} MiB")
    return out


def markdown(out):
    mib = lambda b: f"{b / 2**20:.1f} MiB"  # noqa: E731
    lines = ["| rows | epochs | RSS before data | data | peak RSS | fit growth (peak - before "
             "data) | bound: data + 4 x params + workspace + 64 MiB | RSS after each epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in out:
        lines.append(f"| {r['n']} | {r['epochs']} | {mib(r['base'])} | {mib(r['data'])} | "
                     f"{mib(r['peak'])} | {mib(r['growth'])} | {mib(r['bound'])} | "
                     + ", ".join(mib(a) for a in r["after_epoch"]) + " |")
    r = out[0]
    lines += ["", f"Parameters: {r['n_params']:,} ({mib(4 * r['n_params'])} in float32); "
              f"workspace at batch {r['batch']}: {mib(r['workspace'])}. Peak-RSS counter "
              f"reset after building the data: {r['reset']}."]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    out = run(args.quick)
    print()
    print(markdown(out))


if __name__ == "__main__":
    C  # noqa: B018  (puts the source tree on sys.path when fastnn is not installed)
    sys.exit(main())
