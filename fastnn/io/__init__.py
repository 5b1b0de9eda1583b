"""Files: save and load a model (``saving``; the archive and its limits in ``format``, the
description's field checks in ``description``), the one atomic file writer (``writer``), and
tables read for the command line with their preprocessing (``tabular``, public as
``fastnn.tabular``).

``fastnn.io.load`` and the other names below are ``fastnn.io.saving``'s.
"""
from fastnn.io.saving import (FORMAT, FORMAT_VERSION, MAX_DESCRIPTION_BYTES, ModelFileError,
                              load, save_model)

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_DESCRIPTION_BYTES", "ModelFileError", "load",
           "save_model"]
