"""Smoke test of an installed fastnn wheel, run from a directory outside the source tree by
.ci/run and by cibuildwheel (pyproject.toml's test-command): the import, the demo, a fit, save
and load with bitwise-identical predictions, pickling, `fastnn predict`, a deep ensemble on
two threads with its file and its Jacobian.  fastnn must not need scikit-learn: this runs in
an environment without it.
"""
import os
import pickle
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import fastnn
from fastnn.datasets import make_spirals

where = os.path.realpath(fastnn.__file__)
if "site-packages" not in where.split(os.sep):
    sys.exit(f"fastnn was imported from {where}, not from an installed wheel")
print(f"fastnn {fastnn.__version__} from {os.path.dirname(where)}")

command = shutil.which("fastnn")
if command is None:
    sys.exit("the wheel installed no `fastnn` command")
subprocess.run([command, "demo", "--epochs", "2", "--quiet"], check=True)

os.chdir(tempfile.mkdtemp())
X, y = make_spirals(600, n_classes=3, seed=0)
model = fastnn.MLP([2, 32, 3], seed=0)
optimizer = fastnn.Adam(lr=0.01)
model.fit(X, y, "cross_entropy", optimizer, epochs=3, seed=0)
model.save("model.npz", optimizer=optimizer)
loaded, restored = fastnn.load("model.npz", with_optimizer=True)
assert np.array_equal(loaded.predict(X), model.predict(X)), "load changed the predictions"
assert restored.t == optimizer.t
assert np.array_equal(pickle.loads(pickle.dumps(model)).predict(X), model.predict(X))
print("save/load and pickle round trips give identical predictions")

np.savez("data.npz", X=X)
subprocess.run([command, "predict", "model.npz", "data.npz", "--output", "predicted.npy"],
               check=True)
assert np.array_equal(np.load("predicted.npy"), model.predict(X))
print("fastnn predict reproduces the model")

rng = np.random.default_rng(0)
X = rng.standard_normal((300, 3))
ens = fastnn.MLPEnsemble([3, 16, 2], n_members=3, seed=0)
ens.fit(X, np.sin(X[:, :1]), fastnn.GaussianNLL("learned"), "adam", epochs=3, n_threads=2)
ens.save("ensemble.npz")
back = fastnn.load_ensemble("ensemble.npz")
assert np.array_equal(back.predict_std(X), ens.predict_std(X)), "load changed the ensemble"
assert ens.jacobian(X).shape == (300, 2, 3)
print("ensemble trained on 2 threads, saved and loaded; Jacobian computed")

try:
    import sklearn  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("scikit-learn is installed in the wheel's environment; expected a bare install")
