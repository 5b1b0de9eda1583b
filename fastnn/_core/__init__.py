"""fastnn's compiled core: Cython over BLAS (``_blas`` is the only module that cimports one)
and the plain C of ``src_c/``.

Private: the Python layers above validate every input and call these modules.
``_reference`` holds the plain-NumPy twins the compiled kernels are tested against.
"""
