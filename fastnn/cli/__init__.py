"""The ``fastnn`` command (``command``): demo, train and predict on arrays and tables."""
from fastnn.cli.command import UsageError, build_parser, main

__all__ = ["UsageError", "build_parser", "main"]
