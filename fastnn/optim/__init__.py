"""Optimizers and learning-rate schedules (``optimizers``) and full-batch L-BFGS (``lbfgs``).

``fastnn.optim.SGD`` and the other names below are ``fastnn.optim.optimizers``'s.
"""
from fastnn.optim.optimizers import (OPTIMIZERS, PLANNED_RATES_CHECKED, SCHEDULES, Adam, AdamW,
                                     Constant, Cosine, InverseScaling, Optimizer,
                                     ReduceOnPlateau, SGD, Schedule, StepDecay, get_optimizer,
                                     get_schedule)

__all__ = ["OPTIMIZERS", "PLANNED_RATES_CHECKED", "SCHEDULES", "Adam", "AdamW", "Constant", "Cosine",
           "InverseScaling", "Optimizer", "ReduceOnPlateau", "SGD", "Schedule", "StepDecay",
           "get_optimizer", "get_schedule"]
