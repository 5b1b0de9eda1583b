"""Where a training run lives: the run and its epochs, history and early stopping
(``engine``), its full-batch L-BFGS form (``full_batch``), ``fastnn.fit`` and the run's
preparation (``trainer``), and the MPI reduction (``distributed``, public as
``fastnn.distributed``).

``fastnn.training.EarlyStopping`` and the other names below are ``fastnn.training.engine``'s.
"""
from fastnn.training.engine import (SIGNAL_CHECK_INTERVAL, EarlyStopping, History,
                                    TrainingDiverged, TrainingRun, epoch_order, evaluate)

__all__ = ["SIGNAL_CHECK_INTERVAL", "EarlyStopping", "History", "TrainingDiverged",
           "TrainingRun", "epoch_order", "evaluate"]
