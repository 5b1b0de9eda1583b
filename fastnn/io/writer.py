"""The one way fastnn writes a file: checked before any work, written atomically.

Every file fastnn writes (a model, an ensemble, an ONNX graph, the command's predictions and
plot) goes through two calls of this module:

``check_output(path, argument, inputs)`` / ``check_outputs(outputs, inputs)``
    run before the work that produces the file (before a training run, before predicting),
    decide where the bytes will go, and refuse a target that would lose data or a run:

    * an existing directory (IsADirectoryError), a missing parent (FileNotFoundError), a
      parent that is not a directory (NotADirectoryError);
    * a target that cannot be written: an existing file without write permission, or a
      directory in which no file can be created (PermissionError).  The directory is
      probed by creating and removing a temporary file, the very operation the write
      performs, because ``os.access`` answers yes to root everywhere: root is refused
      only what it cannot do (a read-only mount, an immutable file, /proc);
    * a target that is one of the command's inputs, or another of its outputs, after
      resolving symbolic links (``os.path.realpath``) and, for files that exist, by
      ``os.path.samefile`` (the same inode: hard links too) (ValueError);
    * a name longer than the file system allows (``os.pathconf(directory, "PC_NAME_MAX")``)
      or a path longer than ``PC_PATH_MAX``, for the target and for the temporary file
      written beside it (an OSError with errno ENAMETOOLONG), which would otherwise fail
      only after the work;
    * with ``check_outputs(..., stdout=True, stderr=True)``, a stdout or stderr
      redirected to a regular file that is one of the inputs (``>> input.csv``,
      ``2>> input.csv``)
      (ValueError).

    Each message names the argument (``--save``, ``path``), the path, and what was expected.
    An OSError while writing (a full disk, an I/O error, a folder removed meanwhile) is
    raised again with the same class and errno and a message naming them too:
    ``cannot write --save 'out/m.npz': No space left on device``.

``write_output(target, write)``
    calls ``write(fh)`` with a binary file handle and publishes the result.  A regular file
    is written as a temporary file in the target's directory, flushed, fsynced and renamed
    over the target (``os.replace``, atomic on POSIX and Windows), so an interrupted or
    failed write leaves the previous file whole and no temporary file behind; an existing
    target keeps its permission bits and its owner and group (when the process may give a
    file away: root; otherwise the new file is the writer's); a symbolic link is followed
    (its target is replaced, the link stays).  A replace makes a new file (a new inode):
    hard links to the old file keep the old contents, the name given gets the new ones.  A special file (a FIFO, a terminal, ``/dev/stdout``, ``/dev/null``)
    cannot be replaced and is written in place.  Given a path instead of a checked target,
    it checks first (library calls: ``MLP.save(path)``); given a target, it checks it again
    (cheap), so a directory created meanwhile is still refused cleanly.

The path is written exactly as given: no suffix is added (``numpy.save`` would add ".npy",
matplotlib's ``savefig`` ".png"; their output goes through a file handle here).  So the
path a message reports, ``OutputTarget.path``, is the path written.
"""
import contextlib
import errno
import os
import re
import secrets
import stat
import sys

from fastnn.runtime.state import sigint_deferred

__all__ = ["OutputTarget", "check_output", "check_outputs", "write_output"]

#: a path into a process's open descriptors: /dev/fd/1, /proc/self/fd/1, /proc/123/fd/1
_DESCRIPTOR = re.compile(r"^(/dev/fd|/proc/[^/]+/fd)/[^/]+$")
#: the temporary file's name beyond the target's stem: "." + stem + "." + 12 hex + ".tmp"
_TEMP_EXTRA = len(".." + "0" * 12 + ".tmp")
#: the longest stem (in bytes) of a temporary file's name taken from the target's name
_TEMP_STEM = 64


class OutputTarget:
    """Where an output goes, as decided by ``check_output``.

    Attributes
    ----------
    path : str
        The path as the caller gave it (decoded): what messages report, and what holds the
        bytes once written.
    argument : str
        The name of the argument or flag that gave it (``"--save"``, ``"path"``).
    real : str
        The file the bytes go to: `path` with every symbolic link resolved.
    special : bool
        A FIFO, device or descriptor path (``/dev/stdout``), written in place, not replaced.
    inputs : tuple of (argument, path)
        The inputs it was checked against (checked again at write time).
    """

    __slots__ = ("path", "argument", "real", "special", "inputs")

    def is_stdout(self):
        """True when this output is the command's own stdout written in place
        (``--output /dev/stdout``, a FIFO or terminal that stdout also is): what else the
        command prints on stdout would go into it."""
        if not self.special:
            return False
        try:
            return os.path.samestat(os.stat(self.path), os.fstat(1))
        except OSError:
            return False

    def __init__(self, path, argument, real, special, inputs):
        self.path = path
        self.argument = argument
        self.real = real
        self.special = special
        self.inputs = inputs

    def __repr__(self):
        return f"OutputTarget({self.argument}={self.path!r})"

    def __fspath__(self):
        return self.path


def _as_str(path, argument):
    """path as str (bytes are decoded as the file system encodes names)."""
    try:
        text = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{argument} must be a str, bytes or os.PathLike; got "
                        f"{type(path).__name__}") from None
    if not text:
        raise ValueError(f"{argument} is an empty string; expected a file path")
    if "\0" in text:
        raise ValueError(f"{argument} {text!r} contains a NUL character; expected a file path")
    return text


def _is_special(path):
    """True for a path that names a descriptor or a device rather than a replaceable file.

    /dev/stdout resolves (through /proc/self/fd/1) to whatever stdout is; when that is a
    regular file, replacing it by a rename would leave the shell's descriptor on the old
    file.  So a path whose links pass through a descriptor directory (/dev/fd/N,
    /proc/PID/fd/N) is written in place, as is an existing file that is neither a regular
    file nor a directory (a FIFO made with mkfifo, a terminal, /dev/null).
    """
    if _descriptor_hop(path) is not None:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _descriptor_hop(path):
    """The first path on `path`'s chain of symbolic links that names a descriptor
    (/dev/fd/N, /proc/PID/fd/N), or None."""
    hop = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on symbolic links in a row
        if _DESCRIPTOR.match(hop):
            return hop
        if not os.path.islink(hop):
            return None
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
    return None


def _own_descriptor(path):
    """N when `path`'s links lead to one of this process's descriptors (/dev/stdout,
    /dev/fd/N, /proc/self/fd/N), else None."""
    hop = _descriptor_hop(path)
    for prefix in ("/dev/fd/", "/proc/self/fd/", f"/proc/{os.getpid()}/fd/"):
        if hop is not None and hop.startswith(prefix) and hop[len(prefix):].isdigit():
            return int(hop[len(prefix):])
    return None


def _limit(directory, name, default):
    """os.pathconf(directory, name), or `default` where the system cannot tell."""
    try:
        value = os.pathconf(directory, name)
    except (AttributeError, ValueError, OSError):  # Windows; an unknown name; a vanished folder
        return default
    return default if value is None or value < 0 else value


def _temp_stem(name, name_max):
    """The stem of the temporary file's name for a target called `name`: a prefix of it short
    enough (in bytes, as the file system counts) that the temporary name fits in name_max."""
    room = max(0, min(_TEMP_STEM, name_max - _TEMP_EXTRA))
    stem = name
    while len(os.fsencode(stem)) > room:  # whole characters, never half of one
        stem = stem[:-1]
    return stem


def _name_too_long(message):
    exc = OSError(message)
    exc.errno = errno.ENAMETOOLONG
    return exc


def _check_lengths(path, argument, real, directory):
    """Refuse a final name longer than PC_NAME_MAX or a path longer than PC_PATH_MAX (of the
    target's directory), for the target and for the temporary file written beside it, so the
    write does not fail with ENAMETOOLONG after the work."""
    name = os.path.basename(real)
    name_max = _limit(directory, "PC_NAME_MAX", 255)
    if len(os.fsencode(name)) > name_max:
        raise _name_too_long(
            f"cannot write {argument} {path!r}: its name is {len(os.fsencode(name))} bytes "
            f"long, more than the file system allows (PC_NAME_MAX {name_max}); choose a "
            "shorter name")
    temp = os.path.join(directory, "." + _temp_stem(name, name_max) + "." + "0" * 12 + ".tmp")
    path_max = _limit(directory, "PC_PATH_MAX", 4096)
    longest = max(len(os.fsencode(p)) for p in (path, real, temp))
    if longest >= path_max:  # PATH_MAX counts the terminating NUL
        raise _name_too_long(
            f"cannot write {argument} {path!r}: the path is {longest} bytes long (resolved, "
            f"or of the temporary file written beside it), more than the file system allows "
            f"(PC_PATH_MAX {path_max}, the final NUL included); choose a shorter path")


def _nearest_existing(directory):
    """`directory`, or its nearest ancestor that exists (for the file system's limits)."""
    while directory and not os.path.isdir(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory or os.curdir


def _same_file(a_real, a_path, b_path):
    """Whether the output (a_real, resolved from a_path) and the path b_path name one file."""
    if a_real == os.path.realpath(b_path):
        return True
    try:
        return os.path.samefile(a_path, b_path)  # hard links; links resolved by stat
    except OSError:  # one of them does not exist (yet)
        return False


def check_output(path, argument="path", inputs=()):
    """Decide where `path` will be written and refuse it if writing it could lose data.

    Parameters
    ----------
    path : str, bytes, os.PathLike or OutputTarget
        A target checked before is checked again with its own argument and inputs (so a
        caller such as ``MLP.save`` can be handed the command's checked target).
    argument : str, default "path"
        The argument or flag that gave `path`, named by every message.
    inputs : iterable of (argument, path), optional
        The files the same command reads: `path` must not be any of them.

    Returns
    -------
    OutputTarget

    Raises
    ------
    TypeError
        `path` is not a path.
    ValueError
        `path` is empty, or names the same file as one of `inputs`.
    IsADirectoryError, FileNotFoundError, NotADirectoryError, PermissionError
        `path` is a directory; its directory does not exist or is not a directory; the
        existing file or its directory cannot be written.
    """
    if isinstance(path, OutputTarget):
        path, argument, inputs = path.path, path.argument, path.inputs
    path = _as_str(path, argument)
    inputs = tuple((name, os.fsdecode(os.fspath(p))) for name, p in inputs)
    if path.endswith((os.sep, os.altsep or os.sep)):
        raise IsADirectoryError(f"{argument} {path!r} ends in a path separator, which names a "
                                "directory; expected a file path")
    special = _is_special(path)
    if not special:
        # before realpath and the existence checks, which a path over PATH_MAX would make
        # answer "does not exist"
        absolute = os.path.abspath(path)
        _check_lengths(path, argument, absolute,
                       _nearest_existing(os.path.dirname(absolute)))
    if not special:
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # realpath would stop inside the loop, quietly
                raise OSError(errno.ELOOP, f"cannot write {argument} {path!r}: its symbolic "
                                           "links form a loop; expected a path that resolves "
                                           "to a file") from None
    real = path if special else os.path.realpath(path)
    if special and not os.path.exists(path):
        raise FileNotFoundError(f"cannot write {argument} {path!r}: it names no open "
                                "descriptor")
    if not special:
        if os.path.isdir(real):
            raise IsADirectoryError(f"{argument} {path!r} is an existing directory; expected "
                                    "a file path (a new name inside it, for instance)")
        directory = os.path.dirname(real)
        if not os.path.exists(directory):
            raise FileNotFoundError(f"cannot write {argument} {path!r}: the directory "
                                    f"{directory!r} does not exist")
        if not os.path.isdir(directory):
            raise NotADirectoryError(f"cannot write {argument} {path!r}: {directory!r} is "
                                     "not a directory")
        _check_lengths(path, argument, real, directory)  # links resolved: the name written
    for name, other in inputs:
        if _same_file(real, path, other):
            raise ValueError(f"{argument} {path!r} is the same file as the input {name} "
                             f"{other!r}; writing it would destroy that input: choose "
                             "another path")
    if os.path.lexists(real) and not os.access(real, os.W_OK):
        raise PermissionError(f"cannot write {argument} {path!r}: the existing file is not "
                              "writable")
    if not special:
        _probe_directory(path, argument, os.path.dirname(real))
    return OutputTarget(path, argument, real, special, inputs)


class StreamIsInput(ValueError):
    """A standard stream (stdout, stderr) redirected onto one of the command's inputs.

    ``streams`` names the streams that are (``("stderr",)``, ``("stdout", "stderr")``...):
    the error itself must be reported on another one, or on none, since writing it there
    would append to the input."""

    def __init__(self, message, streams):
        super().__init__(message)
        self.streams = tuple(streams)


def check_outputs(outputs, inputs=(), stdout=False, stderr=False):
    """``check_output`` for each of a command's outputs, and no two of them the same file.

    Parameters
    ----------
    outputs : iterable of (argument, path)
        The outputs the command will write (paths that are None are skipped).
    inputs : iterable of (argument, path)
        The files the command reads.
    stdout : bool, default False
        The command also writes its product to stdout (descriptor 1): when that is a
        regular file (``>> input.csv``) it must not be one of `inputs` (StreamIsInput, a
        ValueError).  A pipe, a terminal or /dev/null is not checked.
    stderr : bool, default False
        The command may write to stderr (descriptor 2: errors, warnings, the progress
        bar): the same rule (``2>> input.csv``).

    Returns
    -------
    dict
        argument -> OutputTarget, for every output given.
    """
    inputs = tuple(inputs)
    # both streams are looked at, used or not: the refusal itself is printed on a stream
    # that is not an input (StreamIsInput.streams lists every one that is)
    clashes = [(label, clash) for label, fd in (("stdout", 1), ("stderr", 2))
               for clash in [_stream_input(fd, inputs)] if clash is not None]
    used = [(label, clash) for label, clash in clashes
            if (label == "stdout" and stdout) or (label == "stderr" and stderr)]
    if used:
        label, (shown, name, other) = used[0]
        where = f" ({shown!r})" if shown and shown != os.path.abspath(other) else ""
        raise StreamIsInput(f"{label}{where}, where the command writes, is the same file as "
                            f"the input {name} {other!r}; writing it would destroy that "
                            f"input: redirect {label} elsewhere (or name an --output, where "
                            "the command has one)", [label for label, _ in clashes])
    targets = {}
    for argument, path in outputs:
        if path is None:
            continue
        target = check_output(path, argument, inputs)
        for other in targets.values():
            if not (target.special and other.special) and \
                    _same_file(target.real, target.path, other.path):
                raise ValueError(f"{argument} {target.path!r} and {other.argument} "
                                 f"{other.path!r} are the same file; each output needs its "
                                 "own path")
        targets[argument] = target
    return targets


def _stream_input(fd, inputs):
    """(name shown, input argument, input path) when descriptor `fd` is a regular file that
    is one of `inputs` (by inode: any name), else None."""
    try:
        out = os.fstat(fd)
    except OSError:  # no such descriptor (closed): nothing to protect
        return None
    if not stat.S_ISREG(out.st_mode):
        return None
    try:
        shown = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # pragma: no cover - no /proc
        shown = None
    for name, other in inputs:
        try:
            if os.path.samestat(out, os.stat(other)):
                return shown, name, other
        except OSError:  # an input that does not exist: the command will say so
            continue
    return None


def write_output(target, write, argument="path"):
    """Write one file: ``write(fh)`` on a binary handle, published atomically.

    A regular file is replaced by a new one (a temporary file renamed over it), with the old
    file's permission bits and, when permitted (root), its owner and group.  Being a new
    inode, it splits hard links: another name linked to the old file keeps the old
    contents (an atomic replace cannot do otherwise; writing in place would lose the
    previous file when the write fails).  A kill -9 during the write leaves the target
    intact and may leave the hidden temporary file ``.NAME.<hex>.tmp`` beside it, which is
    safe to delete.

    Parameters
    ----------
    target : OutputTarget, or str, bytes or os.PathLike
        A target from ``check_output`` (checked again here), or a path (checked here, named
        `argument` in messages).
    write : callable
        Called once with a binary file handle open for writing.
    argument : str, default "path"
        Only for a path: the argument that gave it.

    Returns
    -------
    OutputTarget
        What was written (``.path`` is the path to report).

    Raises
    ------
    OSError
        As ``check_output``; and an OSError while writing (ENOSPC, EIO, a folder removed
        meanwhile, an OSError of `write`) is raised again as the same class with the same
        errno, its message naming the argument and the path (the original is its
        ``__cause__``); the previous file is left whole.
    """
    target = check_output(target, argument)
    try:
        fd = _own_descriptor(target.path) if target.special else None
        if fd is not None:
            # /dev/stdout, /dev/fd/N: the descriptor itself, at its offset (``>>`` appends);
            # opening the path again would truncate the file behind it
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
            with os.fdopen(os.dup(fd), "wb") as fh:
                write(fh)
        elif target.special:
            with open(target.path, "wb") as fh:
                write(fh)
        else:
            _atomic_write(target.real, write)
    except OSError as exc:
        raise _naming(exc, target) from exc
    return target


def _naming(exc, target):
    """`exc` (an OSError while writing `target`) as the same class with the same errno and a
    message naming the argument and the path: callers catching OSError or a subclass
    (BrokenPipeError, FileNotFoundError) still catch it."""
    if getattr(exc, "_fastnn_named", False):  # a nested write_output named it already
        return exc
    reason = exc.strerror or str(exc) or type(exc).__name__
    try:
        named = type(exc)(f"cannot write {target.argument} {target.path!r}: {reason}")
    except Exception:  # pragma: no cover - a subclass with another constructor
        named = OSError(f"cannot write {target.argument} {target.path!r}: {reason}")
    named.errno = exc.errno  # (strerror stays None: str(named) is the message above)
    named._fastnn_named = True
    return named


# ---------------------------------------------------------------------- the atomic write

def _create_temporary(directory, base):
    """(descriptor, name) of a new file in `directory`, never one that existed before."""
    for _ in range(100):
        attempt = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        fd = None
        try:
            with sigint_deferred():
                fd = os.open(attempt, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                             getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:  # not ours: never remove it
            continue
        except BaseException:
            # an interrupt held back until the end of the block: the file is ours
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(attempt)
            raise
        return fd, attempt
    raise FileExistsError(  # pragma: no cover - 100 collisions of 48 random bits
        f"could not create a temporary file in {directory!r}")


def _probe_directory(path, argument, directory):
    """Refuse a directory in which the write's temporary file cannot be created."""
    try:
        fd, name = _create_temporary(directory, "fastnn-probe")
    except OSError as exc:
        raise PermissionError(f"cannot write {argument} {path!r}: no file can be created in "
                              f"the directory {directory!r} ({exc.strerror or exc})") from None
    try:  # removed whatever happens, KeyboardInterrupt included
        closing, fd = fd, None
        os.close(closing)
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)


def _atomic_write(path, write):
    """Call write(fh) on a temporary file beside `path`, fsync it, then rename it over path.

    The temporary file and its descriptor are released on any exception, KeyboardInterrupt
    included; an existing target keeps its permission bits and, where permitted, its owner
    and group.  `path` has its links resolved.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None  # a new file: 0o666, the process umask and its user decide
    # a short prefix of the name (counted in bytes), so that the temporary name stays within
    # NAME_MAX even when the target's name uses all of it
    fd, tmp = _create_temporary(directory, _temp_stem(
        os.path.basename(path), _limit(directory, "PC_NAME_MAX", 255)))
    try:
        if old is not None and hasattr(os, "fchown"):
            # the replaced file's owner (root replacing a user's file would otherwise give
            # it to root); before fchmod, as a chown may clear set-user-ID bits
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):  # only root may give files away
                    os.fchown(fd, old.st_uid, old.st_gid)
        if old is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
        # the descriptor stays ours (closefd=False): closed exactly once, below
        with open(fd, "wb", closefd=False) as fh:
            write(fh)
            fh.flush()
            os.fsync(fd)
        # (an interrupt between these two lines leaks the descriptor; one the other way
        # round could close a descriptor another thread has just been given)
        closing, fd = fd, None
        os.close(closing)
        os.replace(tmp, path)
        tmp = None
    except BaseException:  # KeyboardInterrupt too: never leave the file or its fd behind
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    fd = None
    try:
        with sigint_deferred():
            fd = os.open(directory, os.O_RDONLY)
        os.fsync(fd)
    except OSError:  # pragma: no cover - Windows, or file systems that refuse
        pass
    finally:
        if fd is not None:
            os.close(fd)
