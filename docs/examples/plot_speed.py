"""
Training speed against NumPy, PyTorch and scikit-learn
======================================================

The end-to-end training throughput measured by ``bench/run.py`` (section 3 of the benchmark
results, on the machine they describe): samples per second of the whole ``fit`` for each
workload and batch size on one thread, fastnn beside a hand-written NumPy trainer, PyTorch
and scikit-learn, on the same arrays.  Nothing is timed here: the figures are read from
``bench/RESULTS.md`` as committed.
"""
import pathlib
import re

import matplotlib.pyplot as plt
import numpy as np


def results_file():
    """bench/RESULTS.md of the source tree this example belongs to."""
    here = pathlib.Path(__file__).resolve() if "__file__" in globals() else pathlib.Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "bench" / "RESULTS.md").is_file():
            return folder / "bench" / "RESULTS.md"
    raise FileNotFoundError("bench/RESULTS.md not found above " + str(here))


def rate(cell):
    """'83.8k (81.6k-86.3k)' -> 83800.0 (the median; the range is dropped)."""
    value = cell.split()[0]
    return float(value[:-1]) * {"k": 1e3, "M": 1e6}[value[-1]] if value[-1] in "kM" \
        else float(value)


text = results_file().read_text(encoding="utf-8")
section = text[text.index("End-to-end training throughput"):]
header = next(line for line in section.splitlines() if line.startswith("| workload"))
columns = [c.strip() for c in header.strip("|").split("|")]
rows = []
for line in section[section.index(header):].splitlines()[2:]:
    if not line.startswith("|"):
        break
    rows.append(dict(zip(columns, (c.strip() for c in line.strip("|").split("|")))))
machine = re.search(r"^- CPU: (.*?) \(", text, re.M).group(1)

one = [r for r in rows if r["threads"] == "1"]
peers = ["fastnn fit", "NumPy", "PyTorch", "scikit-learn"]
labels = [f"{r['workload']}\nbatch {r['batch']}" for r in one]
pos = np.arange(len(one))
width = 0.8 / len(peers)
fig, ax = plt.subplots(figsize=(9, 4))
for i, peer in enumerate(peers):
    ax.bar(pos + (i - 1.5) * width, [rate(r[peer]) for r in one], width, label=peer)
ax.set_xticks(pos, labels, fontsize=7)
ax.set(yscale="log", ylabel="samples / s (1 thread)",
       title=f"End-to-end training throughput, {machine}")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

for r in one:
    print(f"{r['workload']:>12s} batch {r['batch']:>5s}: fastnn {rate(r['fastnn fit']):>10,.0f}"
          f" samples/s, {rate(r['fastnn fit']) / rate(r['PyTorch']):5.2f}x PyTorch")
