"""Run by tests/test_core_count.py in a child process pinned to the cores named in argv[1]
(comma-separated); prints one hexadecimal digest per result that must not depend on the
number of cores (fastnn's default thread count, and BLAS's)."""
import hashlib
import os
import sys

os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})

import numpy as np  # noqa: E402  (after the affinity: BLAS sizes its pool at import)

import fastnn  # noqa: E402
from fastnn.optim.lbfgs import LBFGS  # noqa: E402


def digest(*arrays):
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


g = np.random.default_rng(0)
out = {}
# L-BFGS: scipy's optimizer sums long dot products in BLAS (25,000 parameters)
X = g.standard_normal((200, 600))
y = g.integers(0, 5, 200)
m = fastnn.MLP([600, 40, 5], seed=0, dtype=np.float64)
LBFGS(max_iter=4, weight_decay=1e-3).fit(m, X, y, "cross_entropy")
out["lbfgs"] = digest(m.params)
# the validation accuracy with sample weights (300,000 validation rows)
Xv = g.standard_normal((300000, 3))
yv = g.integers(0, 2, 300000)
m = fastnn.MLP([3, 4, 2], seed=0)
h = m.fit(Xv[:100], yv[:100], "cross_entropy", epochs=1, seed=0,
          validation_data=(Xv, yv, g.random(300000)))
out["val_metric"] = digest(np.array(h.val_metric, dtype=np.float64))
# scikit-learn's loss_curve_ with its L2 term (640 x 300 weights)
try:
    from fastnn.interop.sklearn import MLPClassifier
except ImportError:
    pass
else:
    c = MLPClassifier(hidden_layer_sizes=(300,), max_iter=1, random_state=0, alpha=0.1)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c.fit(g.standard_normal((50, 640)), g.integers(0, 2, 50))
    out["loss_curve"] = digest(np.array(c.loss_curve_))
for k, v in out.items():
    print(k, v)
