"""``python -m fastnn``: the same as the ``fastnn`` command (see fastnn.cli.command)."""
import sys

from fastnn.cli.command import main

sys.exit(main())
