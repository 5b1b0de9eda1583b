"""The public module names of fastnn's flat layout, kept importable after the move into
subpackages: ``import fastnn.model`` (or a pickle naming ``fastnn.model.MLP``) gets the module
``fastnn.nn.model`` itself, not a copy, so attributes, patches and classes are shared.

One finder on ``sys.meta_path`` serves every old name, lazily: ``fastnn.sklearn`` still
imports scikit-learn only when it is first used.
"""
import importlib
import importlib.abc
import importlib.util
import sys

#: old public module name -> the module that now holds its code
MOVED = {
    "fastnn.fpmode": "fastnn.runtime.fpmode",
    "fastnn.threads": "fastnn.runtime.threads",
    "fastnn.layers": "fastnn.nn.layers",
    "fastnn.model": "fastnn.nn.model",
    "fastnn.init": "fastnn.nn.init",
    "fastnn.losses": "fastnn.nn.losses",
    "fastnn.gradcheck": "fastnn.nn.gradcheck",
    "fastnn.sparse": "fastnn.nn.sparse",
    "fastnn.lbfgs": "fastnn.optim.lbfgs",
    "fastnn.trainer": "fastnn.training.trainer",
    "fastnn.distributed": "fastnn.training.distributed",
    "fastnn.tabular": "fastnn.io.tabular",
    "fastnn.sklearn": "fastnn.interop.sklearn",
    "fastnn.sklearn_ensemble": "fastnn.interop.sklearn_ensemble",
    "fastnn.onnx_export": "fastnn.interop.onnx_export",
    "fastnn.torch_interop": "fastnn.interop.torch_interop",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)  # the module itself, under a second name

    def exec_module(self, module):
        pass  # already executed under its own name


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))


def install():
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
