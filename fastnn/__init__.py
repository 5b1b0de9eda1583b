"""fastnn: fast CPU training of dense (fully connected) neural networks.

A Cython core over scipy's BLAS runs the fused dense layers, the maximum-likelihood losses and
whole epochs of minibatch SGD without the GIL; this package is its thin, validating face.
"""
__version__ = "0.1.0"

try:
    from fastnn import _blas, _layers  # noqa: F401  (compiled; imported first to fail early)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "fastnn's compiled extension could not be imported "
        f"({exc}). If you are working from a source checkout, build it first with\n"
        "    pip install .\n"
        "(or `python setup.py build_ext --inplace` for development), and do not run Python "
        "from inside the repository root when testing an installed copy."
    ) from exc

from fastnn.layers import ACTIVATIONS, dense_backward, dense_forward

__all__ = ["ACTIVATIONS", "dense_backward", "dense_forward", "__version__"]
