"""fastnn with other libraries: scikit-learn estimators (``sklearn``, ``sklearn_ensemble``),
ONNX export (``onnx_export``; ``onnx_pipeline``: scikit-learn Pipelines through skl2onnx, and
``fastnn.to_onnx``) and PyTorch interchange (``torch_interop``).  Each imports its library only
when used; public as ``fastnn.sklearn``, ``fastnn.sklearn_ensemble``, ``fastnn.onnx_export``
and ``fastnn.torch_interop``.
"""
