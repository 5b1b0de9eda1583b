"""Output to a reader that leaves early (``fastnn train data.csv | head -1``)."""
import contextlib
import os
import signal
import sys
import types

# ------------------------------------------------------------ a reader that leaves early
#
# `fastnn train data.csv | head -1` closes stdout after the first line.  The next write
# anywhere (an epoch line printed inside fit, the summary, tqdm's bar on stderr) would raise
# BrokenPipeError and abandon the run before the model is saved.  So for the whole command
# stdout and stderr are wrapped: the first BrokenPipeError points that descriptor at devnull
# (Python's recipe, so that no later flush, the interpreter's last one included, fails
# again), later writes are dropped, and the command carries on to the end, model saved.
# Any other write error (ENOSPC: stdout redirected to a full disk) is handled alike, so the
# run is not lost either, and makes the exit status 1 with a message at the end.

_PIPE_CLOSED_STATUS = 128 + getattr(signal, "SIGPIPE", 13)  # 13 where it is not defined


class _PipeGuard:
    """A text stream that turns a closed reader into silence instead of an exception."""

    def __init__(self, stream, state, label):
        self._stream = stream
        self._state = state
        self._label = label
        self._closed = False

    def _lost(self, exc):
        self._closed = True
        if isinstance(exc, BrokenPipeError):
            self._state.closed = True
        elif self._state.failed is None:
            self._state.failed = (self._label, exc)
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a real descriptor (a test's)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def write(self, text):
        if self._closed:
            return len(text)
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._lost(exc)
            return len(text)

    def flush(self):
        if self._closed:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self._lost(exc)

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


@contextlib.contextmanager
def _closed_pipes_tolerated():
    state = types.SimpleNamespace(closed=False, failed=None)
    saved = sys.stdout, sys.stderr
    # None: Python started with that descriptor closed, and print() already does nothing
    sys.stdout, sys.stderr = (None if s is None else _PipeGuard(s, state, label)
                              for s, label in zip(saved, ("stdout", "stderr")))
    try:
        yield state
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()  # what is still buffered, while a closed pipe is still caught
    finally:
        sys.stdout, sys.stderr = saved
