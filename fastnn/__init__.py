"""fastnn: fast CPU training of dense (fully connected) neural networks.

A Cython core over scipy's BLAS runs the fused dense layers, the maximum-likelihood losses and
whole epochs of minibatch SGD without the GIL; this package is its thin, validating face.

    import fastnn
    model = fastnn.MLP([64, 32, 10], activation="relu", seed=0)
    history = model.fit(X, y, "cross_entropy", fastnn.Adam(lr=1e-3), epochs=20)
    proba = model.predict(X)
"""
from fastnn._version import __version__  # one place, read by fastnn.io.saving too

try:
    from fastnn._core import (_arrays, _blas, _epoch, _layers, _loop, _losses,  # noqa: F401
                              _network, _sensitivity, _sgd, _sparse, _tiling)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "fastnn's compiled extension could not be imported "
        f"({exc}). If you are working from a source checkout, build it first with\n"
        "    pip install .\n"
        "(or `python setup.py build_ext --inplace` for development), and do not run Python "
        "from inside the repository root when testing an installed copy."
    ) from exc

from fastnn import _moved  # noqa: E402
_moved.install()  # the flat layout's module names (fastnn.model, ...) stay importable

from fastnn import datasets, optim  # noqa: E402
from fastnn.io import tabular  # noqa: E402
from fastnn.nn import init, losses  # noqa: E402
from fastnn.runtime import fpmode, threads  # noqa: E402
from fastnn.runtime.fpmode import get_flush_denormals, set_flush_denormals  # noqa: E402
from fastnn.nn.gradcheck import GradientReport, check_gradients  # noqa: E402
from fastnn.nn.layers import ACTIVATIONS, dense_backward, dense_forward  # noqa: E402
from fastnn.nn.losses import (BinaryCrossEntropy, CrossEntropy, GaussianNLL,  # noqa: E402
                              KLDivergence, MSE, PoissonNLL)
from fastnn.nn.model import Dense, MLP  # noqa: E402
from fastnn.optim.optimizers import (SGD, Adam, AdamW, Constant, Cosine, InverseScaling,  # noqa: E402
                                     ReduceOnPlateau, StepDecay)
from fastnn.training.trainer import EarlyStopping, History, TrainingDiverged, fit  # noqa: E402
from fastnn.io.saving import load  # noqa: E402
from fastnn.optim.lbfgs import LBFGS  # noqa: E402
from fastnn.interop.onnx_pipeline import to_onnx  # noqa: E402  (onnx, skl2onnx: only when called)
from fastnn.ensemble import EnsemblePrediction, MLPEnsemble, load_ensemble  # noqa: E402
from fastnn.interop import onnx_export as _onnx_export  # noqa: E402
from fastnn.io import saving as _saving  # noqa: E402
from fastnn.nn import model as _model  # noqa: E402


# MLP's persistence and interchange methods call these functions of the layers above the model
# (fastnn.nn.model.provide), so that the model imports neither the file format nor an
# interchange format; this package, the top of the import graph, connects them.
def _to_torch(model):
    from fastnn.interop.torch_interop import to_torch  # it imports torch: only when called
    return to_torch(model)


def _from_torch(module):
    from fastnn.interop.torch_interop import from_torch
    return from_torch(module)


_model.provide("save", _saving.save_model)
_model.provide("save_onnx", _onnx_export.to_onnx)
_model.provide("to_torch", _to_torch)
_model.provide("from_torch", _from_torch)

__all__ = [
    "ACTIVATIONS", "Adam", "AdamW", "BinaryCrossEntropy", "Constant", "Cosine", "CrossEntropy",
    "Dense", "EarlyStopping", "GaussianNLL", "GradientReport", "History", "InverseScaling",
    "KLDivergence", "LBFGS", "MLP", "MSE", "PoissonNLL", "ReduceOnPlateau", "SGD", "StepDecay",
    "TrainingDiverged", "check_gradients", "datasets", "dense_backward", "dense_forward", "fit",
    "fpmode", "get_flush_denormals", "init", "load", "losses", "optim", "set_flush_denormals",
    "tabular", "threads", "to_onnx", "__version__",
]
__all__ += ["EnsemblePrediction", "MLPEnsemble", "load_ensemble"]  # fastnn.ensemble


def __getattr__(name):
    # fastnn.sklearn needs scikit-learn, an optional dependency: import it on first use only
    if name == "sklearn":
        import importlib
        return importlib.import_module("fastnn.interop.sklearn")
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
